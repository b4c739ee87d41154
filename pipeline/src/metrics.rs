//! Metric names of the pipeline. Labels are bounded: `record_type`, `kind`, `reason`,
//! `store`, `stream` (the six logical record streams), `command`, `outcome`, `stage`.

/// Counter, labels `record_type`: USP Records received from the MQTT link.
pub const RECORDS_RECEIVED: &str = "uspwatch_pipeline_records_received_total";
/// Counter, labels `reason` (a proto `Reason` name): Records that failed decoding here.
pub const RECORDS_INVALID: &str = "uspwatch_pipeline_records_invalid_total";
/// Counter, labels `kind`: Notify events made durable (first copy only).
pub const EVENTS: &str = "uspwatch_pipeline_events_total";
/// Counter: Notifies recognised as retries of one already accepted (no second event).
pub const DUPLICATES: &str = "uspwatch_pipeline_duplicate_notifies_total";
/// Counter: NotifyResps sent.
pub const NOTIFY_RESPS: &str = "uspwatch_pipeline_notify_resps_total";
/// Counter, labels `reason` (`publish_failed`, `sink_failed`): Notifies left unacknowledged
/// because of an error (the agent retries).
pub const NOTIFY_UNACKED: &str = "uspwatch_pipeline_notify_unacked_total";
/// Histogram (seconds), labels `store` (`kafka`, `log`): from receipt to durable.
pub const DURABLE_SECONDS: &str = "uspwatch_pipeline_durable_seconds";
/// Gauge: Notifies received but not yet durable.
pub const IN_FLIGHT: &str = "uspwatch_pipeline_in_flight";
/// Gauge: records in the local spool that Kafka has not yet acknowledged.
pub const SPOOL_DEPTH: &str = "uspwatch_pipeline_spool_depth";
/// Gauge: 1 when Kafka accepts records, 0 when records are being spooled.
pub const KAFKA_UP: &str = "uspwatch_pipeline_kafka_up";
/// Counter: Kafka deliveries that failed (the record went to the spool or is retried).
pub const KAFKA_DELIVERY_FAILURES: &str = "uspwatch_pipeline_kafka_delivery_failures_total";
/// Counter: Kafka producers replaced because the cluster lost their state (unknown producer
/// id, fatal idempotence error).
pub const KAFKA_PRODUCER_RESETS: &str = "uspwatch_pipeline_kafka_producer_resets_total";
/// Counter: spooled records delivered to Kafka on replay.
pub const SPOOL_REPLAYED: &str = "uspwatch_pipeline_spool_replayed_total";
/// Counter, labels `stream`: records written to a sink.
pub const RECORDS_WRITTEN: &str = "uspwatch_pipeline_records_written_total";
/// Counter, labels `stream`: presence/quarantine/command records dropped because the sink
/// queue was full.
pub const RECORDS_DROPPED: &str = "uspwatch_pipeline_records_dropped_total";
/// Gauge: bytes in the embedded log directory.
pub const LOG_BYTES: &str = "uspwatch_pipeline_log_bytes";
/// Counter: damaged log entries found (a torn tail cut off on open, or a damaged entry
/// stepped over on open or while reading).
pub const LOG_CORRUPT: &str = "uspwatch_pipeline_log_corrupt_total";
/// Counter, labels `stage` (`open`, `read`): bytes of damaged log entries stepped over to
/// reach the intact records after them.
pub const LOG_SKIPPED_BYTES: &str = "uspwatch_pipeline_log_skipped_bytes_total";
/// Counter, labels `stage` (`open`, `read`): log records lost in damaged entries (the gap in
/// sequence numbers a skip left).
pub const LOG_SKIPPED_RECORDS: &str = "uspwatch_pipeline_log_skipped_records_total";
/// Counter: log fsyncs.
pub const LOG_FSYNCS: &str = "uspwatch_pipeline_log_fsyncs_total";
/// Counter, labels `command`, `outcome` (`ok`, `error`, `timeout`, `failed`): requests sent
/// to agents.
pub const REQUESTS: &str = "uspwatch_pipeline_requests_total";
/// Histogram (seconds), labels `command`: request round trip (to OperationComplete for
/// async Operate).
pub const REQUEST_SECONDS: &str = "uspwatch_pipeline_request_seconds";
/// Counter: responses that matched no pending request (late or unknown msg_id).
pub const UNMATCHED_RESPONSES: &str = "uspwatch_pipeline_unmatched_responses_total";

/// Counter: devices forgotten by the inventory (offline past `evict_after`, or beyond
/// `max_devices`).
pub const INVENTORY_EVICTED: &str = "uspwatch_pipeline_inventory_evicted_total";

/// Counter, labels `source` (`usp_push`, `mqtt`, `http`): Bulk Data samples made durable.
pub const SAMPLES: &str = "uspwatch_pipeline_bulkdata_samples_total";
/// Counter, labels `source`, `reason` (`bulk_data_malformed`, `bulk_data_too_large`): Bulk
/// Data reports refused and quarantined.
pub const BULK_DATA_REJECTED: &str = "uspwatch_pipeline_bulkdata_rejected_total";

/// Registers the description of every metric above.
/// Registers descriptions and creates the bounded series at zero, so dashboards and `rate()`
/// see a series before the first event of its kind.
pub fn describe() {
    use metrics::{Unit, describe_counter, describe_gauge, describe_histogram};
    let streams = [
        "events",
        "presence",
        "quarantine",
        "commands",
        "alerts",
        "telemetry",
    ];
    for stream in streams {
        metrics::counter!(RECORDS_WRITTEN, "stream" => stream).increment(0);
        metrics::counter!(RECORDS_DROPPED, "stream" => stream).increment(0);
    }
    for source in ["usp_push", "mqtt", "http"] {
        metrics::counter!(SAMPLES, "source" => source).increment(0);
        for reason in ["bulk_data_malformed", "bulk_data_too_large"] {
            metrics::counter!(BULK_DATA_REJECTED, "source" => source, "reason" => reason)
                .increment(0);
        }
    }
    for stage in ["open", "read"] {
        metrics::counter!(LOG_SKIPPED_BYTES, "stage" => stage).increment(0);
        metrics::counter!(LOG_SKIPPED_RECORDS, "stage" => stage).increment(0);
    }
    for reason in ["sink_failed", "publish_failed"] {
        metrics::counter!(NOTIFY_UNACKED, "reason" => reason).increment(0);
    }
    for reason in ["wrong_content_type", "to_id_mismatch", "undecodable"] {
        metrics::counter!(RECORDS_INVALID, "reason" => reason).increment(0);
    }
    for name in [
        DUPLICATES,
        KAFKA_DELIVERY_FAILURES,
        KAFKA_PRODUCER_RESETS,
        SPOOL_REPLAYED,
        LOG_CORRUPT,
        LOG_FSYNCS,
        UNMATCHED_RESPONSES,
        INVENTORY_EVICTED,
    ] {
        metrics::counter!(name).increment(0);
    }
    metrics::gauge!(SPOOL_DEPTH).increment(0.0);
    describe_counter!(RECORDS_RECEIVED, "USP Records received from the MQTT link");
    describe_counter!(
        RECORDS_INVALID,
        "USP Records the controller could not decode"
    );
    describe_counter!(EVENTS, "Notify events made durable");
    describe_counter!(
        DUPLICATES,
        "Notify retries acknowledged without a second event"
    );
    describe_counter!(NOTIFY_RESPS, "NotifyResps sent");
    describe_counter!(
        NOTIFY_UNACKED,
        "Notifies left unacknowledged after an error"
    );
    describe_histogram!(DURABLE_SECONDS, Unit::Seconds, "Notify receipt to durable");
    describe_gauge!(IN_FLIGHT, "Notifies received but not yet durable");
    describe_gauge!(SPOOL_DEPTH, "Spooled records not yet acknowledged by Kafka");
    describe_gauge!(KAFKA_UP, "1 when Kafka accepts records, 0 while spooling");
    describe_counter!(KAFKA_DELIVERY_FAILURES, "Failed Kafka deliveries");
    describe_counter!(
        KAFKA_PRODUCER_RESETS,
        "Kafka producers replaced after the cluster lost their state"
    );
    describe_counter!(
        SPOOL_REPLAYED,
        "Spooled records delivered to Kafka on replay"
    );
    describe_counter!(RECORDS_WRITTEN, "Records written to a sink");
    describe_counter!(
        RECORDS_DROPPED,
        "Records dropped because the sink queue was full"
    );
    describe_gauge!(LOG_BYTES, Unit::Bytes, "Bytes in the embedded log");
    describe_counter!(LOG_CORRUPT, "Damaged log entries found");
    describe_counter!(
        LOG_SKIPPED_BYTES,
        Unit::Bytes,
        "Bytes of damaged log entries skipped"
    );
    describe_counter!(LOG_SKIPPED_RECORDS, "Log records lost in damaged entries");
    describe_counter!(LOG_FSYNCS, "Embedded log fsyncs");
    describe_counter!(REQUESTS, "Requests sent to agents, by outcome");
    describe_histogram!(REQUEST_SECONDS, Unit::Seconds, "Request round trip");
    describe_counter!(UNMATCHED_RESPONSES, "Responses matching no pending request");
    describe_counter!(SAMPLES, "Bulk Data samples made durable");
    describe_counter!(
        BULK_DATA_REJECTED,
        "Bulk Data reports refused and quarantined"
    );
    describe_counter!(
        INVENTORY_EVICTED,
        "Devices forgotten by the inventory (offline too long, or over max_devices)"
    );
}
