//! What the fleet reports about itself: fleet-wide counters and per-agent status.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicI64, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use serde::Serialize;

use crate::config::Scenario;
use crate::metrics as m;

/// Fleet-wide totals since start.
#[derive(Debug, Clone, Default, PartialEq, Serialize)]
pub struct FleetStats {
    pub agents: usize,
    /// Agents with an MQTT session and a granted subscription right now.
    pub connected: usize,
    /// Notifies sent for the first time (every kind, with or without `send_resp`).
    pub notifies_sent: u64,
    /// NotifyResps that acknowledged a pending Notify.
    pub notify_resps_received: u64,
    /// Notifies with `send_resp=true` still waiting for a NotifyResp.
    pub unacked_now: u64,
    /// Notify retransmissions.
    pub retries: u64,
    /// Requests received, by kind (`get`, `set`, `add`, `delete`, `operate`, `get_instances`,
    /// `get_supported_dm`, `get_supported_protocol`, `other`); kinds never seen are absent.
    pub requests_received: BTreeMap<String, u64>,
    /// Simulated reboots (local and remote).
    pub reboots: u64,
    /// Received Records that failed validation or were addressed to someone else.
    pub invalid_records_received: u64,
}

/// The MQTT version an agent speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MqttVersion {
    #[serde(rename = "5")]
    V5,
    #[serde(rename = "3.1.1")]
    V311,
}

/// An agent's WAN technology: DSL for even indices, PON for odd ones.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Wan {
    Dsl,
    Pon,
}

impl Wan {
    pub(crate) fn of_index(index: usize) -> Wan {
        if index.is_multiple_of(2) {
            Wan::Dsl
        } else {
            Wan::Pon
        }
    }
}

/// A fault assigned to an agent.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FaultStatus {
    pub scenario: Scenario,
    /// When it starts, relative to the fleet's start.
    #[serde(with = "humantime_serde")]
    pub onset: Duration,
    /// Producing its symptoms now.
    pub active: bool,
    /// Fixed by something the controller did (it never comes back).
    pub cleared: bool,
}

/// A request the agent received.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ReceivedCommand {
    /// `get`, `set`, `add`, `delete`, `operate`, …
    pub kind: String,
    /// The parameter (Set: object path + parameter), object or command path.
    pub path: String,
    /// Set: the value; Operate: the command key; otherwise empty.
    pub detail: String,
}

/// A Notify sent with `send_resp=true`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct NotifyRecord {
    pub msg_id: String,
    pub subscription_id: String,
    /// A NotifyResp with this msg_id arrived.
    pub acked: bool,
}

/// One agent's view for tests and the demo console.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AgentStatus {
    pub eid: String,
    pub index: usize,
    pub mqtt: MqttVersion,
    pub wan: Wan,
    pub connected: bool,
    /// Boot! events produced so far (the first boot included).
    pub boots: u32,
    pub faults: Vec<FaultStatus>,
    pub commands: Vec<ReceivedCommand>,
    /// Notifies sent with `send_resp=true`, in order (empty when `track_notifies` is off).
    pub notifies: Vec<NotifyRecord>,
}

impl AgentStatus {
    /// Whether the agent has this scenario assigned and not cleared, and it is active.
    pub fn fault_active(&self, s: Scenario) -> bool {
        self.faults.iter().any(|f| f.scenario == s && f.active)
    }

    /// Whether this scenario was assigned and then fixed.
    pub fn fault_cleared(&self, s: Scenario) -> bool {
        self.faults.iter().any(|f| f.scenario == s && f.cleared)
    }
}

/// Request kinds counted separately (index into [`Counters::requests`]).
pub(crate) const REQUEST_KINDS: [&str; 9] = [
    "get",
    "set",
    "add",
    "delete",
    "operate",
    "get_instances",
    "get_supported_dm",
    "get_supported_protocol",
    "other",
];

/// Fleet-wide counters shared by every agent task (relaxed atomics: totals only).
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub(crate) connected: AtomicUsize,
    pub(crate) notifies_sent: AtomicU64,
    pub(crate) notify_resps: AtomicU64,
    pub(crate) unacked: AtomicI64,
    pub(crate) retries: AtomicU64,
    pub(crate) requests: [AtomicU64; REQUEST_KINDS.len()],
    pub(crate) reboots: AtomicU64,
    pub(crate) invalid: AtomicU64,
}

impl Counters {
    pub(crate) fn snapshot(&self, agents: usize) -> FleetStats {
        FleetStats {
            agents,
            connected: self.connected.load(Relaxed),
            notifies_sent: self.notifies_sent.load(Relaxed),
            notify_resps_received: self.notify_resps.load(Relaxed),
            unacked_now: self.unacked.load(Relaxed).max(0) as u64,
            retries: self.retries.load(Relaxed),
            requests_received: REQUEST_KINDS
                .iter()
                .zip(&self.requests)
                .map(|(k, v)| (k.to_string(), v.load(Relaxed)))
                .filter(|(_, v)| *v > 0)
                .collect(),
            reboots: self.reboots.load(Relaxed),
            invalid_records_received: self.invalid.load(Relaxed),
        }
    }

    pub(crate) fn request(&self, kind: &'static str) {
        let i = REQUEST_KINDS
            .iter()
            .position(|k| *k == kind)
            .unwrap_or(REQUEST_KINDS.len() - 1);
        self.requests[i].fetch_add(1, Relaxed);
        metrics::counter!(m::REQUESTS, "kind" => REQUEST_KINDS[i]).increment(1);
    }

    pub(crate) fn invalid(&self) {
        self.invalid.fetch_add(1, Relaxed);
        metrics::counter!(m::INVALID_RECORDS).increment(1);
    }

    pub(crate) fn set_connected(&self, up: bool) {
        if up {
            self.connected.fetch_add(1, Relaxed);
            metrics::gauge!(m::AGENTS_CONNECTED).increment(1.0);
            metrics::counter!(m::CONNECTS).increment(1);
        } else {
            self.connected.fetch_sub(1, Relaxed);
            metrics::gauge!(m::AGENTS_CONNECTED).decrement(1.0);
        }
    }

    pub(crate) fn sent(&self, kind: &'static str, send_resp: bool) {
        self.notifies_sent.fetch_add(1, Relaxed);
        metrics::counter!(m::NOTIFIES_SENT, "kind" => kind).increment(1);
        if send_resp {
            self.unacked.fetch_add(1, Relaxed);
            metrics::gauge!(m::NOTIFIES_UNACKED).increment(1.0);
        }
    }

    pub(crate) fn acked(&self, latency: Duration) {
        self.notify_resps.fetch_add(1, Relaxed);
        self.unacked.fetch_sub(1, Relaxed);
        metrics::counter!(m::NOTIFY_RESPS).increment(1);
        metrics::gauge!(m::NOTIFIES_UNACKED).decrement(1.0);
        metrics::histogram!(m::NOTIFY_ACK_SECONDS).record(latency.as_secs_f64());
    }

    pub(crate) fn retried(&self) {
        self.retries.fetch_add(1, Relaxed);
        metrics::counter!(m::NOTIFY_RETRIES).increment(1);
    }

    pub(crate) fn rebooted(&self, remote: bool) {
        self.reboots.fetch_add(1, Relaxed);
        let cause = if remote { "remote" } else { "local" };
        metrics::counter!(m::REBOOTS, "cause" => cause).increment(1);
    }
}
