//! The shipped JSON Schemas (`schema/*.v1.json`) describe exactly what serde writes: every kind of
//! produced record validates, the schema's properties are exactly the serialised keys, and wrong
//! documents are refused.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use uspwatch_proto::pb::usp::notify::{
    Notification, ObjectCreation, ObjectDeletion, OnBoardRequest,
};
use uspwatch_proto::{
    Event, EventKind, Limits, Message, PresenceEvent, PresenceState, QuarantineEvent, Reason,
    builder, rfc3339_millis, schema, validate, wrap,
};

const AGENT: &str = "os::00256D-0123456789";
const CONTROLLER: &str = "self::uspwatch";
const AT_MS: i64 = 1_764_055_770_123;

fn compile(text: &str) -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    jsonschema::meta::validate(&schema).expect("schema is a valid draft 2020-12 schema");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

fn assert_valid(v: &jsonschema::Validator, doc: &Value) {
    let errors: Vec<String> = v
        .iter_errors(doc)
        .map(|e| format!("{e} at {}", e.instance_path))
        .collect();
    assert!(errors.is_empty(), "{doc:#}\n{}", errors.join("\n"));
}

fn assert_invalid(v: &jsonschema::Validator, what: &str, doc: &Value) {
    assert!(!v.is_valid(doc), "{what} was accepted: {doc:#}");
}

fn args(kv: &[(&str, &str)]) -> BTreeMap<String, String> {
    kv.iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

fn event_of(msg: uspwatch_proto::pb::usp::Msg) -> Event {
    let bytes = wrap(&msg, AGENT, CONTROLLER).encode_to_vec();
    let d = validate(&bytes, &Limits::default()).expect("valid record");
    Event::from_notify(&d.record, d.msg().expect("msg"), AT_MS).expect("a notify")
}

/// One Event of each kind, both OperationComplete outcomes, and one with inventory labels.
fn events() -> Vec<Event> {
    let mut labelled = event_of(builder::value_change(
        "m2",
        "s",
        false,
        "Device.WiFi.Radio.1.Stats.Noise",
        "-92",
    ));
    labelled.labels = args(&[("olt", "olt-7"), ("region", "eu-west")]);
    let mut cwmp = event_of(builder::value_change(
        "m8",
        "s",
        true,
        "Device.DeviceInfo.UpTime",
        "86400",
    ));
    cwmp.protocol = Some("cwmp".into());
    vec![
        event_of(builder::event(
            "m1",
            "boot",
            true,
            "Device.",
            "Boot!",
            args(&[
                ("Cause", "LocalReboot"),
                ("CommandKey", ""),
                ("FirmwareUpdated", "false"),
            ]),
        )),
        labelled,
        event_of(builder::notify(
            "m3",
            "s",
            false,
            Notification::ObjCreation(ObjectCreation {
                obj_path: "Device.WiFi.AccessPoint.1.AssociatedDevice.4.".into(),
                unique_keys: args(&[("MACAddress", "a0:b1:c2:d3:e4:f5")]),
            }),
        )),
        event_of(builder::notify(
            "m4",
            "s",
            false,
            Notification::ObjDeletion(ObjectDeletion {
                obj_path: "Device.WiFi.AccessPoint.1.AssociatedDevice.4.".into(),
            }),
        )),
        event_of(builder::operation_complete(
            "m5",
            "s",
            true,
            "Device.IP.Diagnostics.",
            "IPPing()",
            "ping-1",
            Ok(args(&[("SuccessCount", "3")])),
        )),
        event_of(builder::operation_complete(
            "m6",
            "s",
            true,
            "Device.IP.Diagnostics.",
            "IPPing()",
            "ping-2",
            Err((7022, "Host name could not be resolved".into())),
        )),
        event_of(builder::notify(
            "m7",
            "s",
            true,
            Notification::OnBoardReq(OnBoardRequest {
                oui: "00256D".into(),
                product_class: "HG8245".into(),
                serial_number: "0123456789".into(),
                agent_supported_protocol_versions: "1.0,1.1,1.2,1.3".into(),
            }),
        )),
        cwmp,
    ]
}

fn presences() -> Vec<PresenceEvent> {
    vec![
        PresenceEvent {
            endpoint_id: AGENT.into(),
            state: PresenceState::Connected,
            reason: "connect".into(),
            mqtt_version: "5".into(),
            client_id: "cpe-0123456789".into(),
            remote_addr: Some("127.0.0.1:50322".into()),
            at: rfc3339_millis(AT_MS),
            at_ms: AT_MS,
        },
        PresenceEvent {
            endpoint_id: AGENT.into(),
            state: PresenceState::Disconnected,
            reason: "keep_alive_timeout".into(),
            mqtt_version: "3.1.1".into(),
            client_id: "cpe-0123456789".into(),
            remote_addr: None,
            at: rfc3339_millis(AT_MS),
            at_ms: AT_MS,
        },
    ]
}

fn quarantines() -> Vec<QuarantineEvent> {
    let bad = [0x0a, 0x03, b'1', b'.', b'4'];
    let err = validate(&bad, &Limits::default()).expect_err("no record_type");
    vec![
        QuarantineEvent {
            endpoint_id: AGENT.into(),
            client_id: "cpe-0123456789".into(),
            topic: "usp/controller/self::uspwatch".into(),
            reason: err.reason().as_str().into(),
            usp_err_code: err.reason().usp_err_code(),
            detail: err.to_string(),
            size: bad.len(),
            payload_b64: "CgMxLjQ=".into(),
            truncated: false,
            at: rfc3339_millis(AT_MS),
            at_ms: AT_MS,
        },
        QuarantineEvent {
            endpoint_id: AGENT.into(),
            client_id: "cpe-0123456789".into(),
            topic: "usp/controller/self::uspwatch".into(),
            reason: Reason::WrongContentType.as_str().into(),
            usp_err_code: None,
            detail: "content type \"application/json\" is not a USP content type".into(),
            size: 2_000_000,
            payload_b64: String::new(),
            truncated: true,
            at: rfc3339_millis(AT_MS),
            at_ms: AT_MS,
        },
    ]
}

fn to_json<T: serde::Serialize>(v: &T) -> Value {
    serde_json::to_value(v).expect("serialises")
}

fn keys(doc: &Value) -> BTreeSet<String> {
    doc.as_object()
        .expect("an object")
        .keys()
        .cloned()
        .collect()
}

fn schema_keys(text: &str, member: &str) -> BTreeSet<String> {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    match &schema[member] {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        other => panic!("{member}: {other}"),
    }
}

fn schema_enum(text: &str, property: &str) -> BTreeSet<String> {
    let schema: Value = serde_json::from_str(text).expect("schema is JSON");
    schema["properties"][property]["enum"]
        .as_array()
        .expect("an enum")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect()
}

#[test]
fn events_of_every_kind_validate() {
    let v = compile(schema::EVENT_V1);
    let produced = events();
    let kinds: BTreeSet<&str> = produced.iter().map(|e| e.kind.as_str()).collect();
    assert_eq!(kinds.len(), 6, "{kinds:?}");
    assert!(produced.iter().any(|e| e.error.is_some()));
    for e in &produced {
        assert_valid(&v, &to_json(e));
    }
}

#[test]
fn presence_and_quarantine_events_validate() {
    let p = compile(schema::PRESENCE_V1);
    for e in presences() {
        assert_valid(&p, &to_json(&e));
    }
    let q = compile(schema::QUARANTINE_V1);
    for e in quarantines() {
        assert_valid(&q, &to_json(&e));
    }
}

#[test]
fn schema_properties_are_exactly_the_serialised_fields() {
    let all_event_keys: BTreeSet<String> =
        events().iter().flat_map(|e| keys(&to_json(e))).collect();
    assert_eq!(all_event_keys, schema_keys(schema::EVENT_V1, "properties"));
    let always: BTreeSet<String> = events()
        .iter()
        .map(|e| keys(&to_json(e)))
        .reduce(|a, b| &a & &b)
        .expect("events");
    assert_eq!(always, schema_keys(schema::EVENT_V1, "required"));

    for (text, docs) in [
        (
            schema::PRESENCE_V1,
            presences().iter().map(to_json).collect::<Vec<_>>(),
        ),
        (
            schema::QUARANTINE_V1,
            quarantines().iter().map(to_json).collect(),
        ),
    ] {
        let all: BTreeSet<String> = docs.iter().flat_map(keys).collect();
        assert_eq!(all, schema_keys(text, "properties"));
        let always = docs.iter().map(keys).reduce(|a, b| &a & &b).expect("docs");
        assert_eq!(always, schema_keys(text, "required"));
    }
}

#[test]
fn schema_enums_match_the_rust_enums() {
    let kinds = [
        EventKind::Event,
        EventKind::ValueChange,
        EventKind::ObjectCreation,
        EventKind::ObjectDeletion,
        EventKind::OperationComplete,
        EventKind::OnBoardRequest,
    ];
    let names: BTreeSet<String> = kinds
        .iter()
        .map(|k| to_json(k).as_str().expect("a string").to_string())
        .collect();
    assert_eq!(names, schema_enum(schema::EVENT_V1, "kind"));
    let states: BTreeSet<String> = [PresenceState::Connected, PresenceState::Disconnected]
        .iter()
        .map(|s| to_json(s).as_str().expect("a string").to_string())
        .collect();
    assert_eq!(states, schema_enum(schema::PRESENCE_V1, "state"));
    let reasons: BTreeSet<String> = Reason::ALL.iter().map(|r| r.as_str().to_string()).collect();
    assert_eq!(reasons, schema_enum(schema::QUARANTINE_V1, "reason"));
}

/// `doc` with `edit` applied to its top-level object.
fn edited(doc: &Value, edit: impl FnOnce(&mut serde_json::Map<String, Value>)) -> Value {
    let mut d = doc.clone();
    edit(d.as_object_mut().expect("an object"));
    d
}

#[test]
fn wrong_documents_are_refused() {
    let ev = compile(schema::EVENT_V1);
    let failed = to_json(&events()[5]);
    assert_valid(&ev, &failed);
    assert_invalid(
        &ev,
        "missing event_id",
        &edited(&failed, |m| drop(m.remove("event_id"))),
    );
    assert_invalid(
        &ev,
        "an unknown field",
        &edited(&failed, |m| drop(m.insert("extra".into(), json!(1)))),
    );
    assert_invalid(
        &ev,
        "an unknown kind",
        &edited(&failed, |m| drop(m.insert("kind".into(), json!("alarm")))),
    );
    assert_invalid(
        &ev,
        "send_resp as a string",
        &edited(&failed, |m| {
            drop(m.insert("send_resp".into(), json!("true")))
        }),
    );
    assert_invalid(
        &ev,
        "a non-string arg",
        &edited(&failed, |m| drop(m.insert("args".into(), json!({"n": 3})))),
    );
    assert_invalid(
        &ev,
        "an error without message",
        &edited(&failed, |m| {
            drop(m.insert("error".into(), json!({"code": 7022})))
        }),
    );
    assert_invalid(
        &ev,
        "a negative error code",
        &edited(&failed, |m| {
            drop(m.insert("error".into(), json!({"code": -1, "message": "x"})))
        }),
    );
    assert_invalid(
        &ev,
        "a local timestamp",
        &edited(&failed, |m| {
            drop(m.insert("received_at".into(), json!("2026-11-25 07:29:30")))
        }),
    );
    assert_invalid(
        &ev,
        "received_at_ms as a float",
        &edited(&failed, |m| {
            drop(m.insert("received_at_ms".into(), json!(1.5)))
        }),
    );
    assert_invalid(
        &ev,
        "an unknown protocol",
        &edited(&failed, |m| {
            drop(m.insert("protocol".into(), json!("snmp")))
        }),
    );
    assert_invalid(&ev, "not an object", &json!(["event"]));

    let pr = compile(schema::PRESENCE_V1);
    let p = to_json(&presences()[0]);
    assert_invalid(
        &pr,
        "an unknown state",
        &edited(&p, |m| drop(m.insert("state".into(), json!("online")))),
    );
    assert_invalid(
        &pr,
        "missing client_id",
        &edited(&p, |m| drop(m.remove("client_id"))),
    );

    let qu = compile(schema::QUARANTINE_V1);
    let q = to_json(&quarantines()[0]);
    assert_invalid(
        &qu,
        "an unknown reason",
        &edited(&q, |m| {
            drop(m.insert("reason".into(), json!("looked_wrong")))
        }),
    );
    assert_invalid(
        &qu,
        "a negative size",
        &edited(&q, |m| drop(m.insert("size".into(), json!(-1)))),
    );
    assert_invalid(
        &qu,
        "payload not base64",
        &edited(&q, |m| {
            drop(m.insert("payload_b64".into(), json!("not base64!")))
        }),
    );
}
