//! The task that runs one agent: it connects, feeds the model received Records and timer
//! ticks, and carries out what the model asks (publish, reboot). One task per agent, one timer
//! per agent (the model's next deadline), no polling.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rand::Rng;
use tokio::time::{Instant, sleep, sleep_until};
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uspwatch_proto::{Message, builder};

use crate::link::{self, Client, Endpoint, Ev};
use crate::metrics as m;
use crate::model::{Agent, Dest, Out};

/// USP Record error "Session context terminated": the reason code an agent gives when it
/// closes its MTP on purpose (R-MTP.9).
const DISCONNECT_REASON_CODE: u32 = 7105;
/// How long a closing connection may take to flush before it is dropped.
const DRAIN_TIMEOUT: Duration = Duration::from_secs(2);
const MAX_RECONNECT_BACKOFF: Duration = Duration::from_secs(30);

/// What every agent task needs besides its model.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) controller_eid: String,
    pub(crate) controller_topic: String,
    pub(crate) reboot_delay: Duration,
}

enum Outcome {
    Shutdown,
    Reboot,
    Lost { was_up: bool },
}

#[derive(Clone, Copy, PartialEq)]
enum Drain {
    No,
    Reboot,
    Shutdown,
}

/// Runs an agent until `shutdown`.
pub(crate) async fn run(
    mut model: Agent,
    ep: Endpoint,
    shared: Arc<Shared>,
    start_delay: Duration,
    shutdown: CancellationToken,
) {
    if pause(start_delay, &shutdown).await {
        return;
    }
    let mut failures: u32 = 0;
    loop {
        let outcome = connection(&mut model, &ep, &shared, &shutdown).await;
        model.on_disconnected();
        let wait = match outcome {
            Outcome::Shutdown => return,
            Outcome::Reboot => {
                failures = 0;
                shared.reboot_delay
            }
            Outcome::Lost { was_up } => {
                metrics::counter!(m::CONNECTION_ERRORS).increment(1);
                failures = if was_up { 1 } else { failures + 1 };
                let base = Duration::from_millis(500) * 2u32.pow(failures.min(6));
                base.min(MAX_RECONNECT_BACKOFF)
                    .mul_f64(rand::rng().random_range(0.5..=1.0))
            }
        };
        if pause(wait, &shutdown).await {
            return;
        }
    }
}

/// Sleeps; true when cancelled instead.
async fn pause(d: Duration, shutdown: &CancellationToken) -> bool {
    tokio::select! {
        _ = shutdown.cancelled() => true,
        _ = sleep(d) => false,
    }
}

async fn connection(
    model: &mut Agent,
    ep: &Endpoint,
    shared: &Shared,
    shutdown: &CancellationToken,
) -> Outcome {
    let agent_topic = model.agent_topic();
    let (mut client, mut events) = link::connect(ep, &agent_topic);
    let mut reply_topic = agent_topic.clone();
    let mut up = false;
    let mut drain = Drain::No;
    let mut drain_deadline = Instant::now();
    loop {
        let polled = {
            // The poll future stays alive across timer ticks: dropping it half-way through a
            // write could lose a packet.
            let poll = events.poll();
            tokio::pin!(poll);
            loop {
                let deadline = match drain {
                    Drain::No if up => model.next_deadline(),
                    Drain::No => Instant::now() + Duration::from_secs(3600),
                    _ => drain_deadline,
                };
                tokio::select! {
                    ev = &mut poll => break ev,
                    _ = shutdown.cancelled(), if drain == Drain::No => {
                        if !up {
                            return Outcome::Shutdown;
                        }
                        close(&mut client, model, shared, "shutdown");
                        drain = Drain::Shutdown;
                        drain_deadline = Instant::now() + DRAIN_TIMEOUT;
                    }
                    _ = sleep_until(deadline) => {
                        match drain {
                            Drain::Reboot => return Outcome::Reboot,
                            Drain::Shutdown => return Outcome::Shutdown,
                            Drain::No => {}
                        }
                        let outs = model.on_timer(Instant::now());
                        match apply(outs, &mut client, shared) {
                            Some(true) => {
                                close(&mut client, model, shared, "reboot");
                                drain = Drain::Reboot;
                                drain_deadline = Instant::now() + DRAIN_TIMEOUT;
                            }
                            // A crash: the connection just drops.
                            Some(false) => return Outcome::Reboot,
                            None => {}
                        }
                    }
                }
            }
        };
        let ev = match polled {
            Ok(ev) => ev,
            Err(e) => {
                return match drain {
                    Drain::Reboot => Outcome::Reboot,
                    Drain::Shutdown => Outcome::Shutdown,
                    Drain::No => {
                        debug!(endpoint_id = %model.eid, error = %e, "MQTT connection lost");
                        Outcome::Lost { was_up: up }
                    }
                };
            }
        };
        match ev {
            Ev::ConnAck {
                ok: true,
                response_information,
                subscribe_topics,
            } => {
                if let Some(r) = response_information {
                    reply_topic = r;
                }
                client.set_reply_topic(&reply_topic);
                let mut topics = vec![reply_topic.clone()];
                topics.extend(subscribe_topics.into_iter().filter(|t| *t != reply_topic));
                if !client.subscribe(&topics) {
                    return Outcome::Lost { was_up: false };
                }
            }
            Ev::ConnAck { ok: false, .. } => {
                warn!(endpoint_id = %model.eid, "broker refused the MQTT connection");
                return Outcome::Lost { was_up: false };
            }
            Ev::SubAck { ok } if !up => {
                if !ok {
                    // R-MQTT.17: no granted subscription, no publishing.
                    warn!(endpoint_id = %model.eid, "broker refused the subscription");
                    return Outcome::Lost { was_up: false };
                }
                up = true;
                let outs = model.on_connected(Instant::now(), &reply_topic);
                apply(outs, &mut client, shared);
            }
            Ev::Publish {
                topic,
                payload,
                response_topic,
            } if drain == Drain::No => {
                let reply = link::reply_of(&topic, response_topic);
                let outs = model.on_record(Instant::now(), &payload, reply);
                if apply(outs, &mut client, shared).is_some() {
                    close(&mut client, model, shared, "reboot");
                    drain = Drain::Reboot;
                    drain_deadline = Instant::now() + DRAIN_TIMEOUT;
                }
            }
            Ev::DisconnectSent => {
                return match drain {
                    Drain::Shutdown => Outcome::Shutdown,
                    _ => Outcome::Reboot,
                };
            }
            Ev::DisconnectReceived if drain == Drain::No => {
                return Outcome::Lost { was_up: up };
            }
            _ => {}
        }
        client.flush();
    }
}

/// Publishes the model's Records; returns `Some(graceful)` if it asked for a reboot.
fn apply(outs: Vec<Out>, client: &mut Client, shared: &Shared) -> Option<bool> {
    let mut reboot = None;
    for o in outs {
        match o {
            Out::Publish { to, payload } => {
                let topic = match to {
                    Dest::Controller => shared.controller_topic.clone(),
                    Dest::Reply(t) => t,
                };
                client.publish(topic, payload);
            }
            Out::Reboot { graceful } => reboot = Some(graceful),
        }
    }
    reboot
}

/// A DisconnectRecord (R-MTP.7), then MQTT DISCONNECT once everything queued is out.
fn close(client: &mut Client, model: &Agent, shared: &Shared, why: &str) {
    let record = builder::disconnect(
        &model.eid,
        &shared.controller_eid,
        DISCONNECT_REASON_CODE,
        why,
    );
    client.publish(
        shared.controller_topic.clone(),
        Bytes::from(record.encode_to_vec()),
    );
    client.close();
}
