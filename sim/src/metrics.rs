//! Metric names the simulator emits through the `metrics` facade. Labels are bounded: never an
//! endpoint id, msg id or topic.

/// Gauge: agents in the fleet.
pub const AGENTS: &str = "uspwatch_sim_agents";
/// Gauge: agents with an MQTT session and a granted subscription.
pub const AGENTS_CONNECTED: &str = "uspwatch_sim_agents_connected";
/// Counter: MQTT connections established (including reconnects).
pub const CONNECTS: &str = "uspwatch_sim_connects_total";
/// Counter: MQTT connection attempts that failed or connections that dropped.
pub const CONNECTION_ERRORS: &str = "uspwatch_sim_connection_errors_total";
/// Counter, label `kind` (`event`, `value_change`, `operation_complete`): Notifies sent for the
/// first time.
pub const NOTIFIES_SENT: &str = "uspwatch_sim_notifies_sent_total";
/// Counter: Notify retransmissions (R-NOT.1–4 backoff, or after a reconnect).
pub const NOTIFY_RETRIES: &str = "uspwatch_sim_notify_retries_total";
/// Counter: NotifyResps that acknowledged a pending Notify.
pub const NOTIFY_RESPS: &str = "uspwatch_sim_notify_resps_received_total";
/// Gauge: Notifies with `send_resp=true` not yet acknowledged.
pub const NOTIFIES_UNACKED: &str = "uspwatch_sim_notifies_unacked";
/// Histogram, seconds: from a Notify's first transmission to its NotifyResp.
pub const NOTIFY_ACK_SECONDS: &str = "uspwatch_sim_notify_ack_seconds";
/// Counter, label `kind` (`get`, `set`, `add`, `delete`, `operate`, `get_instances`,
/// `get_supported_dm`, `get_supported_protocol`, `other`): requests received.
pub const REQUESTS: &str = "uspwatch_sim_requests_received_total";
/// Counter, label `cause` (`local`, `remote`): simulated reboots.
pub const REBOOTS: &str = "uspwatch_sim_reboots_total";
/// Counter: received Records that failed validation or were not addressed to the agent.
pub const INVALID_RECORDS: &str = "uspwatch_sim_invalid_records_total";

/// Registers a description for every metric above.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    describe_gauge!(AGENTS, "Simulated agents in the fleet");
    describe_gauge!(AGENTS_CONNECTED, "Simulated agents currently connected");
    describe_counter!(CONNECTS, "MQTT connections established by simulated agents");
    describe_counter!(CONNECTION_ERRORS, "MQTT connection failures and drops");
    describe_counter!(NOTIFIES_SENT, "Notifies sent for the first time, by kind");
    describe_counter!(NOTIFY_RETRIES, "Notify retransmissions");
    describe_counter!(
        NOTIFY_RESPS,
        "NotifyResps that acknowledged a pending Notify"
    );
    describe_gauge!(NOTIFIES_UNACKED, "Notifies awaiting a NotifyResp");
    describe_histogram!(
        NOTIFY_ACK_SECONDS,
        metrics::Unit::Seconds,
        "Time from a Notify's first transmission to its NotifyResp"
    );
    describe_counter!(REQUESTS, "Controller requests received, by kind");
    describe_counter!(REBOOTS, "Simulated reboots, by cause");
    describe_counter!(
        INVALID_RECORDS,
        "Received Records that were invalid or misaddressed"
    );
}
