//! Metric names of the rule engine. Labels are bounded: `rule` (loaded rule names), `state`,
//! `status`, `reason`, `outcome`, `result` — never an endpoint id.

/// Counter: events appended to the rule window.
pub const EVENTS_INGESTED: &str = "uspwatch_rules_events_ingested_total";
/// Counter: durable events the window never received because its consumer fell behind the
/// event stream (the binary feeds the window from a bounded broadcast).
pub const EVENTS_SKIPPED: &str = "uspwatch_rules_events_skipped_total";
/// Counter: events dropped from the window (aged out or over `max_window_events` /
/// `max_window_bytes`).
pub const EVENTS_EVICTED: &str = "uspwatch_rules_events_evicted_total";
/// Counter, label `bound` (`events`, `bytes`): events dropped before their time because the
/// window was over `max_window_events` or `max_window_bytes` (oldest first; rules then see a
/// shorter window). Also counted in [`EVENTS_EVICTED`].
pub const EVENTS_EVICTED_EARLY: &str = "uspwatch_rules_events_evicted_early_total";
/// Counter: `latest` values forgotten (oldest first) to stay within a quarter of
/// `max_window_bytes`.
pub const LATEST_EVICTED: &str = "uspwatch_rules_latest_evicted_total";
/// Gauge: events currently in the window.
pub const WINDOW_EVENTS: &str = "uspwatch_rules_window_events";
/// Gauge: bytes held by the window's events and `latest` values (at most `max_window_bytes`).
pub const WINDOW_BYTES: &str = "uspwatch_rules_window_bytes";

/// Publishes the window's size and what it dropped to stay within its bounds since the last
/// call.
pub(crate) fn record_window(ring: &mut crate::tables::ring::Ring) {
    let [by_events, by_bytes, latest] = ring.take_unreported();
    metrics::counter!(EVENTS_EVICTED).increment(by_events + by_bytes);
    metrics::counter!(EVENTS_EVICTED_EARLY, "bound" => "events").increment(by_events);
    metrics::counter!(EVENTS_EVICTED_EARLY, "bound" => "bytes").increment(by_bytes);
    metrics::counter!(LATEST_EVICTED).increment(latest);
    metrics::gauge!(WINDOW_EVENTS).set(ring.rows() as f64);
    metrics::gauge!(WINDOW_BYTES).set(ring.bytes() as f64);
}
/// Gauge: rules loaded.
pub const RULES_LOADED: &str = "uspwatch_rules_loaded";
/// Histogram (seconds), label `rule`: time to run one rule's query.
pub const RULE_EVAL_SECONDS: &str = "uspwatch_rules_rule_evaluation_seconds";
/// Counter, label `rule`: rule evaluations whose query failed.
pub const RULE_EVAL_FAILURES: &str = "uspwatch_rules_rule_evaluation_failures_total";
/// Histogram (seconds): one evaluation round (all due rules and verifications).
pub const ROUND_SECONDS: &str = "uspwatch_rules_round_seconds";
/// Gauge, label `state` (pending/firing/resolved): alerts in memory.
pub const ALERTS: &str = "uspwatch_rules_alerts";
/// Counter, labels `rule`, `state`: alert state changes.
pub const ALERT_TRANSITIONS: &str = "uspwatch_rules_alert_transitions_total";
/// Counter, labels `rule`, `status` (sent/succeeded/failed/dry_run/suppressed), `reason`
/// (guardrail name or empty): action records.
pub const ACTIONS: &str = "uspwatch_rules_actions_total";
/// Counter, labels `rule`, `outcome` (fixed/not_fixed/unknown): verifications.
pub const VERIFICATIONS: &str = "uspwatch_rules_verifications_total";
/// Gauge: 1 while the kill switch is on.
pub const KILL_SWITCH: &str = "uspwatch_rules_kill_switch";
/// Counter, label `result` (ok/error): Alertmanager pushes.
pub const ALERTMANAGER_PUSHES: &str = "uspwatch_rules_alertmanager_pushes_total";

/// Registers the description of every metric above.
pub fn describe() {
    use metrics::{describe_counter, describe_gauge, describe_histogram};
    for result in ["ok", "error"] {
        metrics::counter!(ALERTMANAGER_PUSHES, "result" => result).increment(0);
    }
    describe_counter!(EVENTS_INGESTED, "Events appended to the rule window");
    describe_counter!(EVENTS_EVICTED, "Events dropped from the rule window");
    metrics::counter!(EVENTS_SKIPPED).increment(0);
    describe_counter!(
        EVENTS_SKIPPED,
        "Durable events the rule window missed because it fell behind the event stream"
    );
    describe_gauge!(WINDOW_EVENTS, "Events currently in the rule window");
    describe_gauge!(WINDOW_BYTES, "Bytes held by the rule window");
    for bound in ["events", "bytes"] {
        metrics::counter!(EVENTS_EVICTED_EARLY, "bound" => bound).increment(0);
    }
    metrics::counter!(LATEST_EVICTED).increment(0);
    describe_counter!(
        EVENTS_EVICTED_EARLY,
        "Events dropped from the rule window before their time, by the bound that was hit"
    );
    describe_counter!(
        LATEST_EVICTED,
        "Latest values forgotten to keep within the rule window's byte budget"
    );
    describe_gauge!(RULES_LOADED, "Rules loaded");
    describe_histogram!(
        RULE_EVAL_SECONDS,
        metrics::Unit::Seconds,
        "Time to run one rule's query"
    );
    describe_counter!(RULE_EVAL_FAILURES, "Rule evaluations whose query failed");
    describe_histogram!(
        ROUND_SECONDS,
        metrics::Unit::Seconds,
        "Time of one evaluation round"
    );
    describe_gauge!(ALERTS, "Alerts in memory by state");
    describe_counter!(ALERT_TRANSITIONS, "Alert state changes");
    describe_counter!(ACTIONS, "Action records by status and guardrail reason");
    describe_counter!(VERIFICATIONS, "Action verifications by outcome");
    describe_gauge!(KILL_SWITCH, "1 while the action kill switch is on");
    describe_counter!(ALERTMANAGER_PUSHES, "Alertmanager pushes by result");
}
