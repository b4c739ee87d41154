//! The uspwatch MQTT broker: rumqttd's router with a USP plugin in front of it.
//!
//! rumqttd 0.20 has no publish hook, no topic ACL, no CONNACK properties, no TCP_NODELAY and
//! no way to see a certificate's Endpoint ID. So the accept loop and the per-connection task
//! are ours (they replace rumqttd's `RemoteLink`), using rumqttd's codecs and registering
//! every connection with `rumqttd::Router` through `rumqttd::local::LinkBuilder`. The router
//! keeps what it is good at: subscriptions, fan-out, QoS 1/2 state and sessions.
//!
//! In the connection task:
//! - CONNECT: authenticate (client certificate SAN `urn:bbf:usp:id:<EID>`, hashed password
//!   file, or anonymous claims when allowed) and bind the connection to one Endpoint ID;
//!   CONNACK carries Response Information and a `subscribe-topic` user property (MQTT 5);
//! - SUBSCRIBE: only the endpoint's own topic (SUBACK 0x87 / 0x80 otherwise);
//! - PUBLISH: ACL, then the Record is decoded and validated before the router sees it; an
//!   invalid one is acknowledged, never delivered, and reported as a [`QuarantineEvent`].
//!
//! ```no_run
//! # async fn demo() -> uspwatch_broker::Result<()> {
//! use uspwatch_broker::{Broker, BrokerConfig};
//! let shutdown = tokio_util::sync::CancellationToken::new();
//! let broker = Broker::start(BrokerConfig::default(), shutdown.clone()).await?;
//! let (publisher, mut deliveries) = broker.local_link(
//!     "self::uspwatch",
//!     &["usp/controller/self::uspwatch".into(), "usp/controller/self::uspwatch/#".into()],
//! )?;
//! while let Some(d) = deliveries.recv().await {
//!     use uspwatch_proto::Message;
//!     let Ok(r) = uspwatch_proto::validate(&d.payload, &Default::default()) else { continue };
//!     let agent = &r.record.from_id;
//!     let resp = uspwatch_proto::builder::notify_resp("m1", "sub-1");
//!     let reply = uspwatch_proto::wrap(&resp, "self::uspwatch", agent).encode_to_vec();
//!     // Only the agent's own topic passes the controller ACL, whatever route it named.
//!     let topic = format!("usp/agent/{agent}");
//!     publisher.publish(&topic, reply.into(), Some("usp/controller/self::uspwatch"), Some("usp.msg"))?;
//! }
//! # Ok(()) }
//! ```

// Everything here faces network peers: no unwrap, no silent truncation, no overflow panics.
// Tests may unwrap and do plain arithmetic.
#![warn(
    clippy::unwrap_used,
    clippy::cast_possible_truncation,
    clippy::arithmetic_side_effects
)]
#![cfg_attr(
    test,
    allow(
        clippy::unwrap_used,
        clippy::cast_possible_truncation,
        clippy::arithmetic_side_effects
    )
)]

mod acl;
// Its arithmetic is on entry numbers of the credentials file (bounded by the file), in error
// messages only.
#[allow(clippy::arithmetic_side_effects)]
mod auth;
mod codec;
mod config;
mod connection;
mod error;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod listener;
mod local;
pub mod metrics;
mod ratelimit;
mod session;
mod state;
mod tls;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rumqttd::{Router, RouterConfig, SegmentConfig};
use serde::Serialize;
use tokio::net::TcpListener;
use tokio::sync::{Semaphore, broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use uspwatch_proto::{Limits, PresenceEvent, QuarantineEvent};

pub use auth::{Role, hash_password};
pub use config::{
    BrokerConfig, ListenersConfig, LoginConfig, RouterSizing, TlsConfig, TopicsConfig,
};
pub use error::{Error, Result};
pub use local::{Delivery, LinkPublisher};
pub use tls::EID_URI_PREFIX;

use crate::acl::{Acl, Identity};
use crate::auth::{Credentials, LoginGate};
use crate::ratelimit::{Buckets, Rates};
use crate::session::Sessions;
use crate::state::{Counters, LOCAL_PREFIX, LinkFactory, Shared};

/// Router connection slots kept for local links on top of `max_connections`.
const LOCAL_LINK_RESERVE: usize = 64;

/// The filters not already covered by another one: rumqttd delivers a message once per
/// matching filter, so `x` next to `x/#` would deliver every message on `x` twice.
fn covering(filters: &[String]) -> Vec<&String> {
    filters
        .iter()
        .enumerate()
        .filter(|(i, f)| {
            !filters
                .iter()
                .enumerate()
                .any(|(j, g)| (g != *f || j < *i) && rumqttd::protocol::matches(f, g))
        })
        .map(|(_, f)| f)
        .collect()
}

/// Which listener an address belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum ListenerKind {
    /// MQTT 5 over TCP.
    V5,
    /// MQTT 3.1.1 over TCP.
    V4,
    /// MQTT 5 over TLS.
    TlsV5,
    /// MQTT 3.1.1 over TLS.
    TlsV4,
}

impl ListenerKind {
    fn is_v5(self) -> bool {
        matches!(self, ListenerKind::V5 | ListenerKind::TlsV5)
    }
}

/// Counters for consoles and readiness checks (the same facts as the metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct BrokerStats {
    /// Client connections now established (all versions and transports).
    pub connections: u64,
    pub connections_v5: u64,
    pub connections_v311: u64,
    pub connections_tls: u64,
    /// CONNECTs accepted / refused since start.
    pub connects_accepted: u64,
    pub connects_refused: u64,
    /// USP Records routed / quarantined since start.
    pub records_accepted: u64,
    pub records_rejected: u64,
    /// Non-USP Bulk Data publishes routed.
    pub bulk_data: u64,
    /// Publishes and subscription filters refused by the ACL.
    pub acl_denied_publish: u64,
    pub acl_denied_subscribe: u64,
    /// Password (argon2) checks run since start; an unknown username costs one too.
    pub login_checks: u64,
}

/// A running broker. Listeners and connections stop when the shutdown token is cancelled.
/// MQTT 5 user property the broker puts on every publish routed to a Bulk Data topic: the
/// Endpoint ID the publishing connection is bound to. Any value the client set is replaced.
pub const BULK_DATA_PUBLISHER: &str = "uspwatch-publisher-endpoint-id";

/// rumqttd's router thread has no stop; it idles once every connection is gone.
pub struct Broker {
    shared: Arc<Shared>,
    addrs: Vec<(ListenerKind, SocketAddr)>,
    local_no: AtomicU64,
}

impl std::fmt::Debug for Broker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Broker")
            .field("addrs", &self.addrs)
            .finish_non_exhaustive()
    }
}

impl Broker {
    /// Validates the configuration, starts the router and binds every listener. Returns
    /// once all listeners accept connections.
    pub async fn start(config: BrokerConfig, shutdown: CancellationToken) -> Result<Broker> {
        let problems = config.validate();
        if !problems.is_empty() {
            return Err(Error::Config(problems));
        }
        let credentials = config
            .credentials_file
            .as_deref()
            .map(Credentials::load)
            .transpose()?;
        let l = &config.listeners;
        let tls = match (&config.tls, l.tls_v5.is_some() || l.tls_v311.is_some()) {
            (Some(t), true) => Some(tls::acceptor(t)?),
            _ => None,
        };

        let r = &config.router;
        let controller_filter = format!("{}/#", config.topics.controller_prefix);
        let router_config = RouterConfig {
            max_connections: config.max_connections.saturating_add(LOCAL_LINK_RESERVE),
            max_outgoing_packet_count: r.max_outgoing_packet_count,
            max_segment_size: r.max_segment_size,
            max_segment_count: r.max_segment_count,
            custom_segment: Some(HashMap::from([(
                controller_filter,
                SegmentConfig {
                    max_segment_size: r.controller_segment_size,
                    max_segment_count: r.controller_segment_count,
                },
            )])),
            initialized_filters: None,
            ..RouterConfig::default()
        };
        let router_tx = Router::new(0, router_config).spawn();
        let link: LinkFactory = Arc::new(move |client_id: &str, clean: bool| {
            rumqttd::local::LinkBuilder::new(client_id, router_tx.clone())
                .clean_session(clean)
                .build()
                .map_err(|e| e.to_string())
        });

        let (presence, _) = broadcast::channel(config.event_capacity);
        let (quarantine, _) = broadcast::channel(config.event_capacity);
        let shared = Arc::new(Shared {
            acl: Acl::new(config.topics.clone()),
            limits: Limits {
                max_record_size: config.max_record_size,
            },
            credentials,
            login: LoginGate::new(config.login.clone()),
            link,
            presence,
            quarantine,
            counters: Counters::default(),
            sessions: Sessions::default(),
            buckets: Buckets::new(Rates {
                records_per_sec: f64::from(config.ingress_rate),
                record_burst: f64::from(config.ingress_burst),
                #[allow(clippy::cast_precision_loss)] // byte rates far below 2^52
                bytes_per_sec: config.ingress_byte_rate as f64,
                #[allow(clippy::cast_precision_loss)]
                byte_burst: config.ingress_byte_burst as f64,
            }),
            local_endpoints: Mutex::new(HashMap::new()),
            next_conn: AtomicU64::new(1),
            shutdown: shutdown.child_token(),
            config,
        });

        let slots = Arc::new(Semaphore::new(shared.config.max_connections));
        let l = shared.config.listeners.clone();
        let mut addrs = Vec::new();
        for (kind, addr) in [
            (ListenerKind::V5, l.v5),
            (ListenerKind::V4, l.v311),
            (ListenerKind::TlsV5, l.tls_v5),
            (ListenerKind::TlsV4, l.tls_v311),
        ] {
            let Some(addr) = addr else { continue };
            let listener = TcpListener::bind(addr)
                .await
                .map_err(|source| Error::Bind { addr, source })?;
            let bound = listener
                .local_addr()
                .map_err(|source| Error::Bind { addr, source })?;
            let acceptor = match kind {
                ListenerKind::TlsV5 | ListenerKind::TlsV4 => tls.clone(),
                _ => None,
            };
            listener::spawn(shared.clone(), listener, kind, acceptor, slots.clone());
            addrs.push((kind, bound));
        }
        Ok(Broker {
            shared,
            addrs,
            local_no: AtomicU64::new(0),
        })
    }

    /// The bound address of every listener (the real port when configured with port 0).
    pub fn local_addrs(&self) -> Vec<(ListenerKind, SocketAddr)> {
        self.addrs.clone()
    }

    /// An in-process link for the controller with Endpoint ID `client_id`, subscribed (QoS
    /// 0) to `filters` (a filter covered by another, like `x` by `x/#`, is left out so nothing
    /// arrives twice). Deliveries keep the MQTT 5 properties they were published with. Its
    /// publishes pass the controller ACL (see [`LinkPublisher::publish`]); Records sent to it
    /// by clients must be plaintext without a session context, which in-process endpoints do
    /// not implement. When the receiver is dropped the link leaves the router.
    pub fn local_link(
        &self,
        client_id: &str,
        filters: &[String],
    ) -> Result<(LinkPublisher, mpsc::Receiver<Delivery>)> {
        if client_id.is_empty() || client_id.contains(['+', '#', '/', '$']) {
            return Err(Error::InvalidClientId(client_id.to_owned()));
        }
        // A unique router id per link, outside what remote clients may use, so a device can
        // never take the controller's session over.
        let n = self.local_no.fetch_add(1, Ordering::Relaxed);
        let router_id = format!("{LOCAL_PREFIX}{n}-{client_id}");
        let (mut tx, rx, _ack) = (self.shared.link)(&router_id, true).map_err(Error::Link)?;
        for f in covering(filters) {
            tx.subscribe(f.clone())
                .map_err(|e| Error::Link(e.to_string()))?;
        }
        let tx = Arc::new(Mutex::new(tx));
        let (out, deliveries) = mpsc::channel(self.shared.config.local_link_capacity);
        {
            let mut locals = self.shared.local_endpoints.lock();
            let n = locals.entry(client_id.to_owned()).or_insert(0);
            *n = n.saturating_add(1);
        }
        let on_close = {
            let (shared, eid) = (self.shared.clone(), client_id.to_owned());
            move || {
                let mut locals = shared.local_endpoints.lock();
                if let Some(n) = locals.get_mut(&eid) {
                    *n = n.saturating_sub(1);
                    if *n == 0 {
                        locals.remove(&eid);
                    }
                }
            }
        };
        let closed = local::spawn(rx, tx.clone(), out, self.shared.shutdown.clone(), on_close);
        let identity = Identity {
            eid: client_id.to_owned(),
            role: Role::Controller,
        };
        Ok((
            local::publisher(tx, closed, self.shared.clone(), identity),
            deliveries,
        ))
    }

    /// Checks a username and password against the credentials file, as CONNECT does, for
    /// transports outside MQTT (the Bulk Data HTTP collector). Returns the Endpoint ID of an
    /// `agent` entry; `None` for a wrong password, an unknown user, a controller entry or no
    /// credentials file. Argon2 is deliberately slow: call it off the async threads.
    pub fn verify_agent(&self, username: &str, password: &[u8]) -> Option<String> {
        let (eid, role) = self
            .shared
            .credentials
            .as_ref()?
            .verify(username, password)?;
        (role == auth::Role::Agent).then_some(eid)
    }

    /// Connects, clean disconnects and losses of client connections.
    pub fn presence(&self) -> broadcast::Receiver<PresenceEvent> {
        self.shared.presence.subscribe()
    }

    /// Every rejected Record (acknowledged to the client, delivered nowhere).
    pub fn quarantine(&self) -> broadcast::Receiver<QuarantineEvent> {
        self.shared.quarantine.subscribe()
    }

    /// Checks a username/password against the credentials file, as CONNECT does: the
    /// Endpoint ID the entry is bound to, or `None` (also when no file is configured). Argon2
    /// is deliberately slow: call it off the async threads.
    pub fn verify_password(&self, username: &str, password: &[u8]) -> Option<(String, Role)> {
        self.shared.credentials.as_ref()?.verify(username, password)
    }

    /// A snapshot of the broker's counters.
    pub fn stats(&self) -> BrokerStats {
        let c = &self.shared.counters;
        let g = |a: &AtomicU64| a.load(Ordering::Relaxed);
        BrokerStats {
            connections: g(&c.conn_v5).saturating_add(g(&c.conn_v311)),
            connections_v5: g(&c.conn_v5),
            connections_v311: g(&c.conn_v311),
            connections_tls: g(&c.conn_tls),
            connects_accepted: g(&c.connects_accepted),
            connects_refused: g(&c.connects_refused),
            records_accepted: g(&c.records_accepted),
            records_rejected: g(&c.records_rejected),
            bulk_data: g(&c.bulk_data),
            acl_denied_publish: g(&c.acl_denied_publish),
            acl_denied_subscribe: g(&c.acl_denied_subscribe),
            login_checks: self
                .shared
                .credentials
                .as_ref()
                .map_or(0, Credentials::evaluations),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::covering;

    #[test]
    fn covered_filters_are_dropped() {
        let f = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        let input = f(&["usp/c/x", "usp/c/x/#", "usp/c/y", "usp/c/y"]);
        let got: Vec<&str> = covering(&input).into_iter().map(String::as_str).collect();
        assert_eq!(got, vec!["usp/c/x/#", "usp/c/y"]);
    }
}
