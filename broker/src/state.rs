//! State shared by the listeners, the connection tasks and the `Broker` handle.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use rumqttd::Notification;
use rumqttd::local::{LinkRx, LinkTx};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use uspwatch_proto::{Limits, PresenceEvent, QuarantineEvent};

use crate::acl::Acl;
use crate::auth::{Credentials, LoginGate};
use crate::config::BrokerConfig;
use crate::ratelimit::Buckets;
use crate::session::Sessions;

/// Registers a connection with the router: `(client id, clean session)`. The router's
/// sender type is not nameable outside rumqttd, so it lives inside this closure.
pub(crate) type LinkFactory =
    Arc<dyn Fn(&str, bool) -> Result<(LinkTx, LinkRx, Notification), String> + Send + Sync>;

/// Router client ids of local links start with this; remote clients may not use it.
pub(crate) const LOCAL_PREFIX: &str = "uspwatch-local-";

/// Counters behind `BrokerStats`.
#[derive(Default)]
pub(crate) struct Counters {
    pub conn_v5: AtomicU64,
    pub conn_v311: AtomicU64,
    pub conn_tls: AtomicU64,
    pub connects_accepted: AtomicU64,
    pub connects_refused: AtomicU64,
    pub records_accepted: AtomicU64,
    pub records_rejected: AtomicU64,
    pub bulk_data: AtomicU64,
    pub acl_denied_publish: AtomicU64,
    pub acl_denied_subscribe: AtomicU64,
}

impl Counters {
    pub(crate) fn inc(c: &AtomicU64) {
        c.fetch_add(1, Ordering::Relaxed);
    }
    pub(crate) fn dec(c: &AtomicU64) {
        c.fetch_sub(1, Ordering::Relaxed);
    }
}

pub(crate) struct Shared {
    pub config: BrokerConfig,
    pub acl: Acl,
    pub limits: Limits,
    pub credentials: Option<Credentials>,
    /// Every password check goes through it.
    pub login: LoginGate,
    pub link: LinkFactory,
    pub presence: broadcast::Sender<PresenceEvent>,
    pub quarantine: broadcast::Sender<QuarantineEvent>,
    pub counters: Counters,
    /// Which Endpoint ID owns each client id, and its newest connection.
    pub sessions: Sessions,
    /// Ingress token buckets of the connected agents.
    pub buckets: Buckets,
    /// Endpoint IDs served by in-process links (the built-in controller), with their link
    /// count: they take plaintext Records without a session context only.
    pub local_endpoints: Mutex<HashMap<String, usize>>,
    pub next_conn: AtomicU64,
    pub shutdown: CancellationToken,
}

pub(crate) use uspwatch_proto::time::now_ms;

impl Shared {
    /// Whether `eid` is served by an in-process link.
    pub(crate) fn is_local_endpoint(&self, eid: &str) -> bool {
        self.local_endpoints.lock().contains_key(eid)
    }
}
