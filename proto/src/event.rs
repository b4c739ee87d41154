//! The canonical records uspwatch writes to Kafka (and to its embedded log): one [`Event`] per
//! notification, plus presence and quarantine records. Their JSON Schemas live in
//! `proto/schema/` and tests check that what is produced validates against them.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::pb::usp::{Msg, body, notify::Notification, notify::operation_complete, request};
use crate::pb::usp_record::Record;

/// Value of the `schema` header on `usp.events.v1` messages.
pub const EVENT_SCHEMA: &str = "usp.event.v1";
/// Value of the `schema` header on `usp.presence.v1` messages.
pub const PRESENCE_SCHEMA: &str = "usp.presence.v1";
/// Value of the `schema` header on `usp.quarantine.v1` messages.
pub const QUARANTINE_SCHEMA: &str = "usp.quarantine.v1";

/// Which kind of notification an [`Event`] came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    Event,
    ValueChange,
    ObjectCreation,
    ObjectDeletion,
    OperationComplete,
    OnBoardRequest,
    /// A Bulk Data [`crate::Sample`] as a row of the rule tables ([`crate::Sample::to_event`]).
    /// Never written to `usp.events.v1`: samples have their own stream.
    Sample,
}

impl EventKind {
    /// The snake_case name, as in JSON (a bounded metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            EventKind::Event => "event",
            EventKind::ValueChange => "value_change",
            EventKind::ObjectCreation => "object_creation",
            EventKind::ObjectDeletion => "object_deletion",
            EventKind::OperationComplete => "operation_complete",
            EventKind::OnBoardRequest => "on_board_request",
            EventKind::Sample => "sample",
        }
    }
}

/// A failed OperationComplete's error.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct EventError {
    pub code: u32,
    pub message: String,
}

/// One USP notification, as written to `usp.events.v1` (key = `endpoint_id`).
///
/// Field use by kind:
/// - `event`: `path` = obj_path, `name` = event_name (e.g. `Boot!`), `args` = its parameters;
/// - `value_change`: `path` = param_path, `value` = param_value;
/// - `object_creation`: `path` = obj_path, `args` = unique keys; `object_deletion`: `path`;
/// - `operation_complete`: `path` = obj_path, `name` = command_name, `command_key`, and either
///   `args` = output args or `error`;
/// - `on_board_request`: `args` = `oui`, `product_class`, `serial_number`,
///   `agent_supported_protocol_versions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Event {
    /// `<endpoint_id>/<msg_id>`: unique per notification, stable across retries (dedup key).
    pub event_id: String,
    /// The Agent's Endpoint ID (the Record's `from_id`).
    pub endpoint_id: String,
    /// The Controller it was addressed to (the Record's `to_id`).
    pub controller_id: String,
    pub msg_id: String,
    pub subscription_id: String,
    /// Whether the Agent asked for a NotifyResp.
    pub send_resp: bool,
    /// When uspwatch received it, RFC 3339 UTC.
    pub received_at: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    pub kind: EventKind,
    pub path: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub args: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub command_key: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<EventError>,
    /// Inventory labels of the device (region, olt, …), added by the pipeline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
    /// The management protocol the device spoke: absent for USP, `cwmp` for a TR-069 Inform.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub protocol: Option<String>,
}

impl Event {
    /// Converts a Notify Msg into its Event; `None` if the Msg is not a Notify with a
    /// notification.
    pub fn from_notify(record: &Record, msg: &Msg, received_at_ms: i64) -> Option<Event> {
        let msg_id = &msg.header.as_ref()?.msg_id;
        let Some(body::MsgBody::Request(r)) = msg.body.as_ref()?.msg_body.as_ref() else {
            return None;
        };
        let Some(request::ReqType::Notify(n)) = &r.req_type else {
            return None;
        };
        let mut e = Event {
            event_id: format!("{}/{}", record.from_id, msg_id),
            endpoint_id: record.from_id.clone(),
            controller_id: record.to_id.clone(),
            msg_id: msg_id.clone(),
            subscription_id: n.subscription_id.clone(),
            send_resp: n.send_resp,
            received_at: crate::rfc3339_millis(received_at_ms),
            received_at_ms,
            kind: EventKind::Event,
            path: String::new(),
            name: None,
            value: None,
            args: BTreeMap::new(),
            command_key: None,
            error: None,
            labels: BTreeMap::new(),
            protocol: None,
        };
        match n.notification.as_ref()? {
            Notification::Event(ev) => {
                e.path = ev.obj_path.clone();
                e.name = Some(ev.event_name.clone());
                e.args = ev.params.clone();
            }
            Notification::ValueChange(vc) => {
                e.kind = EventKind::ValueChange;
                e.path = vc.param_path.clone();
                e.value = Some(vc.param_value.clone());
            }
            Notification::ObjCreation(oc) => {
                e.kind = EventKind::ObjectCreation;
                e.path = oc.obj_path.clone();
                e.args = oc.unique_keys.clone();
            }
            Notification::ObjDeletion(od) => {
                e.kind = EventKind::ObjectDeletion;
                e.path = od.obj_path.clone();
            }
            Notification::OperComplete(oc) => {
                e.kind = EventKind::OperationComplete;
                e.path = oc.obj_path.clone();
                e.name = Some(oc.command_name.clone());
                e.command_key = Some(oc.command_key.clone());
                match &oc.operation_resp {
                    Some(operation_complete::OperationResp::ReqOutputArgs(o)) => {
                        e.args = o.output_args.clone();
                    }
                    Some(operation_complete::OperationResp::CmdFailure(f)) => {
                        e.error = Some(EventError {
                            code: f.err_code,
                            message: f.err_msg.clone(),
                        });
                    }
                    None => {}
                }
            }
            Notification::OnBoardReq(ob) => {
                e.kind = EventKind::OnBoardRequest;
                e.args = BTreeMap::from([
                    ("oui".to_string(), ob.oui.clone()),
                    ("product_class".to_string(), ob.product_class.clone()),
                    ("serial_number".to_string(), ob.serial_number.clone()),
                    (
                        "agent_supported_protocol_versions".to_string(),
                        ob.agent_supported_protocol_versions.clone(),
                    ),
                ]);
            }
        }
        Some(e)
    }

    /// The value as a number, when it parses as one (used by rules as `value_f64`).
    pub fn value_f64(&self) -> Option<f64> {
        self.value.as_deref().and_then(|v| v.trim().parse().ok())
    }
}

/// Whether a device came or went.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PresenceState {
    Connected,
    Disconnected,
}

/// A connect or disconnect, as written to `usp.presence.v1` (key = `endpoint_id`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PresenceEvent {
    pub endpoint_id: String,
    pub state: PresenceState,
    /// `connect`, `disconnect` (clean), `keep_alive_timeout`, `socket_closed`, `protocol_error`,
    /// `session_taken_over`, `shutdown`, `disconnect_record`.
    pub reason: String,
    /// `5` or `3.1.1`.
    pub mqtt_version: String,
    pub client_id: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub remote_addr: Option<String>,
    pub at: String,
    pub at_ms: i64,
}

/// A rejected Record, as written to `usp.quarantine.v1` (key = the connection's endpoint id).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct QuarantineEvent {
    /// The endpoint the connection is bound to (not the Record's claim).
    pub endpoint_id: String,
    pub client_id: String,
    pub topic: String,
    /// A [`crate::Reason`] name.
    pub reason: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usp_err_code: Option<u32>,
    pub detail: String,
    pub size: usize,
    /// The Record's bytes, base64, cut to a configured cap.
    pub payload_b64: String,
    pub truncated: bool,
    pub at: String,
    pub at_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::builder;

    #[test]
    fn operation_complete_failure_becomes_error() {
        let m = builder::operation_complete(
            "m",
            "s",
            true,
            "Device.IP.Diagnostics.",
            "IPPing()",
            "ck",
            Err((7022, "no route".into())),
        );
        let r = builder::wrap(&m, "os::00256D-1", "self::c");
        let e = Event::from_notify(&r, &m, 1000).unwrap();
        assert_eq!(e.kind, EventKind::OperationComplete);
        assert_eq!(e.command_key.as_deref(), Some("ck"));
        assert_eq!(
            e.error,
            Some(EventError {
                code: 7022,
                message: "no route".into()
            })
        );
        assert_eq!(e.received_at, "1970-01-01T00:00:01.000Z");
    }

    #[test]
    fn non_notify_gives_none() {
        let m = builder::get("m", &["Device."], 0);
        let r = builder::wrap(&m, "self::c", "os::00256D-1");
        assert!(Event::from_notify(&r, &m, 0).is_none());
    }

    #[test]
    fn value_f64_parses_numbers_only() {
        let m = builder::value_change("m", "s", false, "Device.X", " -71 ");
        let r = builder::wrap(&m, "os::00256D-1", "self::c");
        let e = Event::from_notify(&r, &m, 0).unwrap();
        assert_eq!(e.value_f64(), Some(-71.0));
        let json = serde_json::to_string(&e).unwrap();
        let back: Event = serde_json::from_str(&json).unwrap();
        assert_eq!(back, e);
    }
}
