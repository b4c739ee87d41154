//! Metric names of the broker (all through the `metrics` facade) and their descriptions.
//!
//! Labels are bounded: `mqtt_version` (`5`, `3.1.1`), `transport` (`tcp`, `tls`), `reason`
//! (a closed set per metric, documented below), `record_type` (USP record_type names), `op`
//! (`publish`, `subscribe`). Never an endpoint id, client id or topic.

use metrics::{describe_counter, describe_gauge};

/// Gauge, labels `mqtt_version`, `transport`: client connections currently established.
pub const CONNECTIONS: &str = "uspwatch_broker_connections";
/// Counter, label `reason` (`accepted`, `bad_credentials`, `not_authorized`,
/// `endpoint_mismatch`, `client_id_invalid`, `protocol_error`, `unsupported_version`,
/// `timeout`, `tls_handshake`, `server_busy`, `login_throttled`, `login_busy`,
/// `client_id_in_use`): CONNECT outcomes.
pub const CONNECTS: &str = "uspwatch_broker_connects_total";
/// Counter, label `reason` (presence reasons: `disconnect`, `keep_alive_timeout`,
/// `write_timeout`, `socket_closed`, `malformed_packet`, `protocol_error`, `packet_too_large`,
/// `session_taken_over`, `shutdown`): connections that ended.
pub const DISCONNECTS: &str = "uspwatch_broker_disconnects_total";
/// Counter, label `record_type`: USP Records that passed validation and were routed.
pub const RECORDS_ACCEPTED: &str = "uspwatch_broker_records_accepted_total";
/// Counter, label `reason` (a `uspwatch_proto::Reason` name): USP Records quarantined.
pub const RECORDS_REJECTED: &str = "uspwatch_broker_records_rejected_total";
/// Counter: non-USP payloads routed untouched on Bulk Data topics.
pub const BULK_DATA: &str = "uspwatch_broker_bulk_data_total";
/// Counter, label `op` (`publish`, `subscribe`): requests refused by the topic ACL.
pub const ACL_DENIED: &str = "uspwatch_broker_acl_denied_total";

/// Counter, label `scope` (`source`, `username`: backed off after failed logins; `busy`: no
/// password check slot within `login.queue_timeout`): logins refused without a password check.
pub const LOGIN_THROTTLED: &str = "uspwatch_broker_login_throttled_total";
/// Gauge: password (argon2) checks running now, at most `login.max_concurrent_checks`.
pub const LOGIN_CHECKS_ACTIVE: &str = "uspwatch_broker_login_checks_active";

/// Registers the description of every metric above with the installed recorder.
/// Registers descriptions and creates every bounded series at zero, so dashboards and
/// `rate()` see a series before the first event of its kind.
pub fn describe() {
    for version in ["5", "3.1.1"] {
        for transport in ["tcp", "tls"] {
            metrics::gauge!(CONNECTIONS, "mqtt_version" => version, "transport" => transport)
                .increment(0.0);
        }
    }
    for reason in uspwatch_proto::Reason::ALL {
        metrics::counter!(RECORDS_REJECTED, "reason" => reason.as_str()).increment(0);
    }
    for op in ["publish", "subscribe"] {
        metrics::counter!(ACL_DENIED, "op" => op).increment(0);
    }
    metrics::counter!(BULK_DATA).increment(0);
    for scope in ["source", "username", "busy"] {
        metrics::counter!(LOGIN_THROTTLED, "scope" => scope).increment(0);
    }
    metrics::gauge!(LOGIN_CHECKS_ACTIVE).increment(0.0);
    describe_gauge!(CONNECTIONS, "Client connections currently established.");
    describe_counter!(
        CONNECTS,
        "CONNECT outcomes by reason (accepted or why refused)."
    );
    describe_counter!(DISCONNECTS, "Client connections that ended, by reason.");
    describe_counter!(
        RECORDS_ACCEPTED,
        "USP Records that passed validation and were routed, by record type."
    );
    describe_counter!(
        RECORDS_REJECTED,
        "USP Records quarantined (acknowledged, never delivered), by reason."
    );
    describe_counter!(
        BULK_DATA,
        "Non-USP payloads routed untouched on Bulk Data topics."
    );
    describe_counter!(
        LOGIN_THROTTLED,
        "Logins refused without a password check: backed-off source or username, or no check slot."
    );
    describe_gauge!(LOGIN_CHECKS_ACTIVE, "Password checks running now.");
    describe_counter!(
        ACL_DENIED,
        "Publishes and subscriptions refused by the topic ACL."
    );
}
