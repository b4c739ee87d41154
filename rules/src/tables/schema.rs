//! Arrow schemas of the tables rules query.

use std::sync::{Arc, LazyLock};

use arrow::array::{Array, MapBuilder, StringBuilder};
use arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};

/// Time zone of every `ts`-like column.
pub(crate) const TZ: &str = "UTC";

pub(crate) fn map_builder() -> MapBuilder<StringBuilder, StringBuilder> {
    MapBuilder::new(None, StringBuilder::new(), StringBuilder::new())
}

fn map_type() -> DataType {
    map_builder().finish().data_type().clone()
}

pub(crate) fn ts_type() -> DataType {
    DataType::Timestamp(TimeUnit::Millisecond, Some(TZ.into()))
}

static EVENTS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("event_id", DataType::Utf8, false),
        Field::new("endpoint_id", DataType::Utf8, false),
        Field::new("controller_id", DataType::Utf8, false),
        Field::new("msg_id", DataType::Utf8, false),
        Field::new("subscription_id", DataType::Utf8, false),
        Field::new("send_resp", DataType::Boolean, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("value_f64", DataType::Float64, true),
        Field::new("args", map_type(), false),
        Field::new("command_key", DataType::Utf8, true),
        Field::new("error_code", DataType::UInt32, true),
        Field::new("error_message", DataType::Utf8, true),
        Field::new("labels", map_type(), false),
        Field::new("received_at_ms", DataType::Int64, false),
        Field::new("ts", ts_type(), false),
    ]))
});

/// `events`: the retained window, one row per notification.
pub(crate) fn events_schema() -> SchemaRef {
    EVENTS.clone()
}

static KEY: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("kind", DataType::Utf8, true),
        Field::new("path", DataType::Utf8, true),
        Field::new("name", DataType::Utf8, true),
    ]))
});

/// The columns an `events` partition is keyed by.
pub(crate) fn partition_key_schema() -> SchemaRef {
    KEY.clone()
}

static LATEST: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("endpoint_id", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("path", DataType::Utf8, false),
        Field::new("name", DataType::Utf8, true),
        Field::new("value", DataType::Utf8, true),
        Field::new("value_f64", DataType::Float64, true),
        Field::new("received_at_ms", DataType::Int64, false),
        Field::new("ts", ts_type(), false),
    ]))
});

/// `latest`: the newest notification per (endpoint, kind, path, name).
pub(crate) fn latest_schema() -> SchemaRef {
    LATEST.clone()
}

static DEVICES: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("endpoint_id", DataType::Utf8, false),
        Field::new("online", DataType::Boolean, false),
        Field::new("stale", DataType::Boolean, false),
        Field::new("last_seen_ms", DataType::Int64, false),
        Field::new("last_seen", ts_type(), false),
        Field::new("labels", map_type(), false),
        Field::new("software_version", DataType::Utf8, true),
        Field::new("model", DataType::Utf8, true),
    ]))
});

/// `devices`: inventory and presence.
pub(crate) fn devices_schema() -> SchemaRef {
    DEVICES.clone()
}

static COMMANDS: LazyLock<SchemaRef> = LazyLock::new(|| {
    Arc::new(Schema::new(vec![
        Field::new("action_id", DataType::Utf8, false),
        Field::new("rule", DataType::Utf8, false),
        Field::new("endpoint_id", DataType::Utf8, false),
        Field::new("fingerprint", DataType::Utf8, false),
        Field::new("kind", DataType::Utf8, false),
        Field::new("command", DataType::Utf8, false),
        Field::new("command_key", DataType::Utf8, true),
        Field::new("mode", DataType::Utf8, false),
        Field::new("status", DataType::Utf8, false),
        Field::new("reason", DataType::Utf8, true),
        Field::new("response", DataType::Utf8, true),
        Field::new("verify", DataType::Utf8, true),
        Field::new("at_ms", DataType::Int64, false),
        Field::new("ts", ts_type(), false),
    ]))
});

/// `commands`: recent actions and their outcomes.
pub(crate) fn commands_schema() -> SchemaRef {
    COMMANDS.clone()
}
