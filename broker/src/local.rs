//! In-process links: how the controller (and anything else inside the gateway) talks to the
//! router without a socket and without the ACL.

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

use crate::error::{Error, Result};

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

/// Publishes into the router as a local link (QoS 0, not subject to the ACL). Cheap to clone.
#[derive(Clone)]
pub struct LinkPublisher {
    tx: Arc<Mutex<LinkTx>>,
    closed: CancellationToken,
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

/// Starts the task that moves router notifications of a local link into `out`.
pub(crate) fn spawn(
    mut link_rx: LinkRx,
    tx: Arc<Mutex<LinkTx>>,
    out: mpsc::Sender<Delivery>,
    shutdown: CancellationToken,
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
        debug!("local link closed");
    });
    closed
}

/// Builds a publisher around a link's sender.
pub(crate) fn publisher(tx: Arc<Mutex<LinkTx>>, closed: CancellationToken) -> LinkPublisher {
    LinkPublisher { tx, closed }
}
