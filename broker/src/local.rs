//! In-process links: how the controller (and anything else inside the gateway) talks to the
//! router without a socket.
//!
//! A local link is bound to an Endpoint ID with the controller role, and its publishes pass
//! the same ACL and Record checks as a remote controller's: only agent topics, a Record
//! from its own Endpoint ID to the topic's agent, and a reply route that is its own topic. So
//! a bug upstream (a reply route taken from a payload, say) cannot turn the built-in
//! controller into a relay between devices.

use std::sync::Arc;

use bytes::Bytes;
use futures::FutureExt;
use parking_lot::Mutex;
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use rumqttd::protocol::{Disconnect, DisconnectReasonCode, Packet, Publish, PublishProperties};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use tracing::debug;

use crate::acl::{self, Destination, Identity, Side, UspPublish};
use crate::error::{Error, Result};
use crate::state::Shared;

/// Most packets queued behind one pending router signal.
const MAX_RIDING: usize = 1024;

/// One message delivered to a local link, with the MQTT 5 properties it was published with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    pub topic: String,
    pub payload: Bytes,
    pub response_topic: Option<String>,
    pub content_type: Option<String>,
    pub user_properties: Vec<(String, String)>,
}

/// Publishes into the router as a local link (QoS 0, through the controller ACL). Cheap to
/// clone.
#[derive(Clone)]
pub struct LinkPublisher {
    tx: Arc<Mutex<LinkTx>>,
    closed: CancellationToken,
    shared: Arc<Shared>,
    identity: Arc<Identity>,
}

impl std::fmt::Debug for LinkPublisher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LinkPublisher").finish_non_exhaustive()
    }
}

impl LinkPublisher {
    /// Publishes `payload` to `topic` with the given Response Topic and Content Type (MQTT 5
    /// subscribers see both; MQTT 3.1.1 subscribers get the payload only). A topic nobody
    /// subscribes to drops the message, as MQTT does.
    ///
    /// The publish must pass the controller ACL: an agent topic, a valid Record from this
    /// link's Endpoint ID to that agent, a Response Topic or `/reply-to=` naming this link's
    /// own topic. Anything else is [`Error::PublishRefused`] and goes nowhere.
    pub fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        response_topic: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<()> {
        if self.closed.is_cancelled() {
            return Err(Error::LinkClosed);
        }
        self.check(topic, &payload, response_topic, content_type)?;
        let props =
            (response_topic.is_some() || content_type.is_some()).then(|| PublishProperties {
                response_topic: response_topic.map(str::to_owned),
                content_type: content_type.map(str::to_owned),
                ..PublishProperties::default()
            });
        let publish = Publish::new(Bytes::copy_from_slice(topic.as_bytes()), payload, false);
        let packet = Packet::Publish(publish, props);
        let mut tx = self.tx.lock();
        // The router takes a link's whole queue on each signal. While packets queued earlier
        // are still waiting, their signal is pending and will carry this one too: a burst of
        // NotifyResps wakes the router once instead of once per message. Past a bound, every
        // publish signals again, so a router that falls behind pushes back through its
        // bounded event channel instead of this queue growing.
        {
            let mut queued = tx.buffer();
            if !queued.is_empty() && queued.len() < MAX_RIDING {
                queued.push_back(packet);
                return Ok(());
            }
        }
        // `LinkTx::send` never awaits (it queues and signals the router), so it completes on
        // the first poll.
        match tx.send(packet).now_or_never() {
            Some(Ok(_)) => Ok(()),
            _ => Err(Error::LinkClosed),
        }
    }
}

impl LinkPublisher {
    fn check(
        &self,
        topic: &str,
        payload: &Bytes,
        response_topic: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<()> {
        let refused = |reason: String| Error::PublishRefused {
            topic: topic.chars().take(128).collect(),
            reason,
        };
        let acl = &self.shared.acl;
        if acl.may_publish(&self.identity, topic) != Some(Destination::Usp(Side::Agent)) {
            return Err(refused("not an agent topic".into()));
        }
        let p = UspPublish {
            topic,
            payload,
            content_type,
            response_topic,
            v311: false,
            to_local: false,
        };
        acl::check_record(acl, Side::Agent, &self.identity, &p, &self.shared.limits)
            .map(|_| ())
            .map_err(|e| refused(e.to_string()))
    }
}

/// Starts the task that moves router notifications of a local link into `out`; `on_close`
/// runs once the link has left the router.
pub(crate) fn spawn(
    mut link_rx: LinkRx,
    tx: Arc<Mutex<LinkTx>>,
    out: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
    on_close: impl FnOnce() + Send + 'static,
) -> CancellationToken {
    let closed = CancellationToken::new();
    let done = closed.clone();
    tokio::spawn(async move {
        loop {
            let n = tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = out.closed() => break,
                n = link_rx.next() => n,
            };
            match n {
                Ok(Some(Notification::Forward(f))) => {
                    let props = f.properties.unwrap_or_default();
                    let d = Delivery {
                        topic: String::from_utf8_lossy(&f.publish.topic).into_owned(),
                        payload: f.publish.payload,
                        response_topic: props.response_topic,
                        content_type: props.content_type,
                        user_properties: props.user_properties,
                    };
                    if out.send(d).await.is_err() {
                        break;
                    }
                }
                // The router paused this link because its queue was full; we have drained
                // it, so ask for more (without this, delivery stalls for good).
                Ok(Some(Notification::Unschedule)) => {
                    if link_rx.wake().await.is_err() {
                        break;
                    }
                }
                Ok(_) => {}
                Err(_) => break,
            }
        }
        done.cancel();
        let disconnect = Packet::Disconnect(
            Disconnect {
                reason_code: DisconnectReasonCode::NormalDisconnection,
            },
            None,
        );
        let _ = tx.lock().send(disconnect).now_or_never();
        on_close();
        debug!("local link closed");
    });
    closed
}

/// Builds a publisher around a link's sender, bound to `identity`.
pub(crate) fn publisher(
    tx: Arc<Mutex<LinkTx>>,
    closed: CancellationToken,
    shared: Arc<Shared>,
    identity: Identity,
) -> LinkPublisher {
    LinkPublisher {
        tx,
        closed,
        shared,
        identity: Arc::new(identity),
    }
}
