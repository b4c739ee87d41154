//! The inbound loop: every Record the broker delivers to our topic.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};
use uspwatch_proto::pb::usp::{Msg, body, request};
use uspwatch_proto::pb::usp_record::record::PayloadSecurity;
use uspwatch_proto::pb::usp_record::{Record, mqtt_connect_record::MqttVersion, record};
use uspwatch_proto::{Event, EventKind, Limits, Reason, builder, mqtt, validate};

use super::{Core, Route, complete_operation, complete_request};
use crate::dedup::Seen;
use crate::metrics as m;
use crate::sink::{OutRecord, RecordTopic};
use crate::{InboundRecord, now_ms};

pub(crate) async fn run(
    core: Arc<Core>,
    mut inbound: mpsc::Receiver<InboundRecord>,
    shutdown: CancellationToken,
) {
    let limits = Limits {
        max_record_size: core.cfg.max_record_size,
    };
    loop {
        let rec = tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            r = inbound.recv() => match r {
                Some(r) => r,
                None => return,
            },
        };
        handle(&core, &limits, rec).await;
    }
}

/// The reply route an inbound publish names, if any (checked by the caller).
fn route_of(rec: &InboundRecord) -> Option<Route> {
    if let Some(rt) = rec.response_topic.as_deref().filter(|t| !t.is_empty()) {
        return Some(Route {
            reply_topic: rt.to_string(),
            v5: true,
        });
    }
    match mqtt::split_reply_to(&rec.topic) {
        Ok(Some((_, reply))) => Some(Route {
            reply_topic: reply,
            v5: false,
        }),
        _ => None,
    }
}

async fn handle(core: &Arc<Core>, limits: &Limits, rec: InboundRecord) {
    core.stats.records_received.fetch_add(1, Ordering::Relaxed);
    if let Some(ct) = rec.content_type.as_deref()
        && !mqtt::is_usp_content_type(ct)
    {
        core.stats.records_invalid.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::RECORDS_INVALID, "reason" => "wrong_content_type").increment(1);
        debug!(topic = %rec.topic, content_type = ct, "ignored a non-USP publish");
        return;
    }
    let decoded = match validate(&rec.payload, limits) {
        Ok(d) => d,
        Err(e) => {
            let reason = e.reason().as_str();
            core.stats.records_invalid.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::RECORDS_INVALID, "reason" => reason).increment(1);
            debug!(topic = %rec.topic, reason, error = %e, "dropped an undecodable record");
            return;
        }
    };
    metrics::counter!(m::RECORDS_RECEIVED, "record_type" => decoded.record_type()).increment(1);
    let from = decoded.record.from_id.clone();
    if decoded.record.to_id != core.cfg.endpoint_id {
        core.stats.records_invalid.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::RECORDS_INVALID, "reason" => "to_id_mismatch").increment(1);
        warn!(endpoint_id = %from, to_id = %decoded.record.to_id, "record not addressed to this controller");
        return;
    }
    // This controller implements neither USP session context nor E2E protection; such a
    // Record must not be read or answered as if it were plaintext without a session.
    let unsupported = if decoded.record.payload_security == PayloadSecurity::Tls12 as i32 {
        Some(Reason::SecureSessionNotSupported)
    } else if matches!(
        decoded.record.record_type,
        Some(record::RecordType::SessionContext(_))
    ) {
        Some(Reason::SessionContextNotSupported)
    } else {
        None
    };
    if let Some(reason) = unsupported {
        reject(core, &from, reason);
        return;
    }
    let now = now_ms();
    let mut route = route_of(&rec);
    if let Some(record::RecordType::MqttConnect(c)) = &decoded.record.record_type {
        route = Some(Route {
            reply_topic: c.subscribed_topic.clone(),
            v5: c.version == MqttVersion::V5 as i32,
        });
    }
    // Reply routes come from identity: only the agent's own topic (or below it) is ever
    // stored or answered to, whatever the publish or the Record names.
    if let Some(r) = &route
        && !mqtt::is_own_reply_topic(&r.reply_topic, &core.agent_topic(&from))
    {
        reject(core, &from, Reason::ForeignReplyTo);
        return;
    }
    if let Some(record::RecordType::Disconnect(d)) = &decoded.record.record_type {
        core.inventory.disconnected(&from, &d.reason);
        return;
    }
    let version = route.as_ref().map(|r| if r.v5 { "5" } else { "3.1.1" });
    core.inventory.touch(&from, now, version);
    if let Some(r) = &route {
        let known = core.routes.read().get(&from) == Some(r);
        if !known {
            core.routes.write().insert(from.clone(), r.clone());
        }
    }
    let Some(msg) = decoded.msg() else { return };
    let Some(b) = msg.body.as_ref().and_then(|b| b.msg_body.as_ref()) else {
        return;
    };
    let msg_id = msg
        .header
        .as_ref()
        .map(|h| h.msg_id.clone())
        .unwrap_or_default();
    match b {
        body::MsgBody::Request(r) => match &r.req_type {
            Some(request::ReqType::Notify(_)) => {
                let route = route.unwrap_or_else(|| core.route(&from));
                notify(core, &decoded.record, msg, route, now).await;
            }
            _ => debug!(endpoint_id = %from, msg_id, "ignoring a request sent to the controller"),
        },
        body::MsgBody::Response(_) | body::MsgBody::Error(_) => {
            let msg: Msg = msg.clone();
            complete_request(core, &from, msg, &msg_id);
        }
    }
}

fn reject(core: &Core, from: &str, reason: Reason) {
    core.stats.records_invalid.fetch_add(1, Ordering::Relaxed);
    metrics::counter!(m::RECORDS_INVALID, "reason" => reason.as_str()).increment(1);
    warn!(endpoint_id = %from, reason = reason.as_str(), "record refused");
}

async fn notify(core: &Arc<Core>, record: &Record, msg: &Msg, route: Route, now: i64) {
    let received = Instant::now();
    let Some(mut event) = Event::from_notify(record, msg, now) else {
        return;
    };
    event.labels = core.inventory.labels(&event.endpoint_id);
    let seen = core.dedup.lock().check(&event.event_id);
    let done = match seen {
        Seen::Duplicate(first) => {
            core.stats.duplicates.fetch_add(1, Ordering::Relaxed);
            metrics::counter!(m::DUPLICATES).increment(1);
            if !event.send_resp {
                return;
            }
            // Retries count against the same bound as first copies.
            let Ok(permit) = core.in_flight.clone().acquire_owned().await else {
                return;
            };
            let core2 = core.clone();
            core.complete(async move {
                let core = core2;
                let _permit = permit;
                if first.durable().await {
                    send_notify_resp(&core, &event, &route).await;
                }
            });
            return;
        }
        Seen::New(tx) => tx,
    };
    // Bounded: when max_in_flight Notifies wait for the sink, the inbound loop waits here,
    // so agents stop being acknowledged instead of memory growing.
    let Ok(permit) = core.in_flight.clone().acquire_owned().await else {
        return;
    };
    core.stats.in_flight.fetch_add(1, Ordering::Relaxed);
    metrics::gauge!(m::IN_FLIGHT).increment(1.0);
    let out = match serde_json::to_vec(&event) {
        Ok(v) => OutRecord {
            topic: RecordTopic::Events,
            key: event.endpoint_id.clone(),
            record_type: event.kind.as_str().to_string(),
            value: Bytes::from(v),
            at_ms: now,
        },
        Err(e) => {
            warn!(error = %e, "could not encode an event");
            done.finish(false);
            release(core);
            return;
        }
    };
    // Bounded in bytes too: an in-flight Notify holds its event and its encoding.
    let Ok(bytes) = core.in_flight_bytes(out.value.len()).await else {
        done.finish(false);
        release(core);
        return;
    };
    // A Push! carries a Bulk Data report: its samples are stored with the event, and the
    // NotifyResp waits for both.
    let samples = core.push_samples(&event);
    let enqueued = match core.sink.enqueue(out).await {
        Ok(a) => core.enqueue_samples(&samples).await.map(|s| (a, s)),
        Err(e) => Err(e),
    };
    let (ack, sample_acks) = match enqueued {
        Ok(a) => a,
        Err(e) => {
            warn!(endpoint_id = %event.endpoint_id, msg_id = %event.msg_id, error = %e, "event not stored; the agent will retry");
            metrics::counter!(m::NOTIFY_UNACKED, "reason" => "sink_failed").increment(1);
            done.finish(false);
            release(core);
            return;
        }
    };
    let core2 = core.clone();
    core.complete(async move {
        let core = core2;
        let stored = ack.await;
        let stored = match crate::bulkdata::all_durable(sample_acks).await {
            Ok(()) => stored,
            Err(e) => Err(e),
        };
        release(&core);
        drop((permit, bytes));
        match stored {
            Ok(store) => {
                done.finish(true);
                metrics::histogram!(m::DURABLE_SECONDS, "store" => store.as_str())
                    .record(received.elapsed().as_secs_f64());
                metrics::counter!(m::EVENTS, "kind" => event.kind.as_str()).increment(1);
                core.stats.events_written.fetch_add(1, Ordering::Relaxed);
                let ev = Arc::new(event);
                core.inventory.on_event(&ev);
                if ev.kind == EventKind::OperationComplete {
                    complete_operation(&core, &ev);
                }
                if ev.send_resp {
                    send_notify_resp(&core, &ev, &route).await;
                }
                let _ = core.events_tx.send(ev);
                core.samples_durable(samples);
            }
            Err(e) => {
                done.finish(false);
                warn!(endpoint_id = %event.endpoint_id, msg_id = %event.msg_id, error = %e, "event not stored; the agent will retry");
                metrics::counter!(m::NOTIFY_UNACKED, "reason" => "sink_failed").increment(1);
            }
        }
    });
}

fn release(core: &Core) {
    core.stats.in_flight.fetch_sub(1, Ordering::Relaxed);
    metrics::gauge!(m::IN_FLIGHT).decrement(1.0);
}

async fn send_notify_resp(core: &Core, event: &Event, route: &Route) {
    let resp = builder::notify_resp(&event.msg_id, &event.subscription_id);
    // Counted before publishing so that whoever sees the NotifyResp also sees the count.
    core.stats.notify_resps.fetch_add(1, Ordering::Relaxed);
    match core.send(&event.endpoint_id, route, &resp).await {
        Ok(()) => metrics::counter!(m::NOTIFY_RESPS).increment(1),
        Err(e) => {
            core.stats.notify_resps.fetch_sub(1, Ordering::Relaxed);
            warn!(endpoint_id = %event.endpoint_id, msg_id = %event.msg_id, error = %e, "could not send NotifyResp; the agent will retry");
            metrics::counter!(m::NOTIFY_UNACKED, "reason" => "publish_failed").increment(1);
        }
    }
}

/// Drives the work that follows each Notify's durability (NotifyResp, inventory,
/// broadcast) in one task: a delivery report then wakes a task that is usually already
/// running, instead of one task per Notify. At most `max_in_flight` are pending.
pub(crate) async fn run_completions(
    mut rx: mpsc::UnboundedReceiver<futures::future::BoxFuture<'static, ()>>,
    shutdown: CancellationToken,
) {
    use futures::StreamExt;
    let mut running = futures::stream::FuturesUnordered::new();
    loop {
        tokio::select! {
            biased;
            _ = shutdown.cancelled() => return,
            Some(()) = running.next(), if !running.is_empty() => {}
            f = rx.recv() => match f {
                Some(f) => {
                    running.push(f);
                    while let Ok(f) = rx.try_recv() {
                        running.push(f);
                    }
                }
                None => return,
            },
        }
    }
}
