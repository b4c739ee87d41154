//! Helpers shared by the rule engine's integration tests.
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::sync::Arc;

use parking_lot::Mutex;
use uspwatch_proto::{Command, Event, EventKind};
use uspwatch_rules::CommandSink;

/// A sink that records every command and answers OK.
#[derive(Default)]
pub struct RecordingSink {
    pub sent: Mutex<Vec<(String, Command, String)>>,
}

#[async_trait::async_trait]
impl CommandSink for RecordingSink {
    async fn send(
        &self,
        endpoint_id: &str,
        command: Command,
        origin: &str,
    ) -> uspwatch_rules::Result<serde_json::Value> {
        self.sent
            .lock()
            .push((endpoint_id.to_string(), command, origin.to_string()));
        Ok(serde_json::json!({"ok": true}))
    }
}

impl RecordingSink {
    pub fn new() -> Arc<Self> {
        Arc::new(Self::default())
    }
    pub fn count(&self) -> usize {
        self.sent.lock().len()
    }
}

/// 2026-01-01T00:00:00Z in ms.
pub const T0: i64 = 1_767_225_600_000;

pub fn value_change(eid: &str, path: &str, value: &str, ts: i64) -> Event {
    Event {
        event_id: format!("{eid}/{ts}-{path}"),
        endpoint_id: eid.into(),
        controller_id: "self::uspwatch".into(),
        msg_id: format!("{ts}"),
        subscription_id: "uspwatch-vc".into(),
        send_resp: true,
        received_at: uspwatch_proto::rfc3339_millis(ts),
        received_at_ms: ts,
        kind: EventKind::ValueChange,
        path: path.into(),
        name: None,
        value: Some(value.into()),
        args: BTreeMap::new(),
        command_key: None,
        error: None,
        labels: BTreeMap::new(),
        protocol: None,
    }
}

pub fn event(eid: &str, path: &str, name: &str, args: &[(&str, &str)], ts: i64) -> Event {
    Event {
        kind: EventKind::Event,
        name: Some(name.into()),
        value: None,
        subscription_id: "uspwatch-boot".into(),
        args: args
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect(),
        ..value_change(eid, path, "", ts)
    }
}
