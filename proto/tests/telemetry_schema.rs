//! `schema/telemetry.v1.json` describes exactly what serde writes for a [`Sample`]: produced
//! samples validate, the schema's properties are exactly the serialised keys, and wrong
//! documents are refused.

use std::collections::{BTreeMap, BTreeSet};

use serde_json::{Value, json};
use uspwatch_proto::{Sample, SampleSource, rfc3339_millis, schema};

const AT_MS: i64 = 1_764_055_770_123;

fn compile() -> jsonschema::Validator {
    let schema: Value = serde_json::from_str(schema::TELEMETRY_V1).expect("schema is JSON");
    jsonschema::meta::validate(&schema).expect("a valid draft 2020-12 schema");
    jsonschema::draft202012::new(&schema).expect("schema compiles")
}

fn samples() -> Vec<Sample> {
    let full = Sample {
        sample_id: "os::00256D-0001/m7/0".into(),
        endpoint_id: "os::00256D-0001".into(),
        source: SampleSource::UspPush,
        report_id: "os::00256D-0001/m7".into(),
        origin: "Device.BulkData.Profile.1.".into(),
        path: "Device.WiFi.Radio.1.Stats.Noise".into(),
        value: "-61".into(),
        value_f64: Some(-61.0),
        collected_at: Some(rfc3339_millis(AT_MS - 500)),
        collected_at_ms: Some(AT_MS - 500),
        received_at: rfc3339_millis(AT_MS),
        received_at_ms: AT_MS,
        labels: BTreeMap::from([("region".to_string(), "north".to_string())]),
    };
    let bare = Sample {
        sample_id: "os::00256D-0002/mqtt-1764055770123-0/3".into(),
        endpoint_id: "os::00256D-0002".into(),
        source: SampleSource::Mqtt,
        report_id: "os::00256D-0002/mqtt-1764055770123-0".into(),
        origin: "usp/bulkdata/os::00256D-0002".into(),
        path: "Device.WiFi.SSID.1.SSID".into(),
        value: "lab-net".into(),
        value_f64: None,
        collected_at: None,
        collected_at_ms: None,
        received_at: rfc3339_millis(AT_MS),
        received_at_ms: AT_MS,
        labels: BTreeMap::new(),
    };
    let http = Sample {
        source: SampleSource::Http,
        origin: "/bulkdata".into(),
        ..bare.clone()
    };
    vec![full, bare, http]
}

fn keys(doc: &Value) -> BTreeSet<String> {
    doc.as_object().expect("object").keys().cloned().collect()
}

fn schema_member(member: &str) -> BTreeSet<String> {
    let schema: Value = serde_json::from_str(schema::TELEMETRY_V1).expect("schema is JSON");
    match &schema[member] {
        Value::Object(m) => m.keys().cloned().collect(),
        Value::Array(a) => a
            .iter()
            .filter_map(|v| v.as_str().map(String::from))
            .collect(),
        other => panic!("{member}: {other}"),
    }
}

#[test]
fn produced_samples_validate_and_match_the_schema_fields() {
    let v = compile();
    let docs: Vec<Value> = samples()
        .iter()
        .map(|s| serde_json::to_value(s).expect("serialises"))
        .collect();
    for d in &docs {
        let errors: Vec<String> = v.iter_errors(d).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "{d:#}\n{}", errors.join("\n"));
    }
    let all: BTreeSet<String> = docs.iter().flat_map(keys).collect();
    assert_eq!(all, schema_member("properties"));
    let always = docs.iter().map(keys).reduce(|a, b| &a & &b).expect("docs");
    assert_eq!(always, schema_member("required"));
}

#[test]
fn source_enum_matches_the_rust_enum() {
    let schema: Value = serde_json::from_str(schema::TELEMETRY_V1).expect("schema is JSON");
    let in_schema: BTreeSet<String> = schema["properties"]["source"]["enum"]
        .as_array()
        .expect("enum")
        .iter()
        .filter_map(|v| v.as_str().map(String::from))
        .collect();
    let in_rust: BTreeSet<String> = [
        SampleSource::UspPush,
        SampleSource::Mqtt,
        SampleSource::Http,
    ]
    .iter()
    .map(|s| s.as_str().to_string())
    .collect();
    assert_eq!(in_schema, in_rust);
}

#[test]
fn wrong_samples_are_refused() {
    let v = compile();
    let good = serde_json::to_value(&samples()[0]).expect("serialises");
    let edit = |f: &dyn Fn(&mut serde_json::Map<String, Value>)| {
        let mut d = good.clone();
        f(d.as_object_mut().expect("object"));
        d
    };
    let cases = [
        ("missing sample_id", edit(&|m| drop(m.remove("sample_id")))),
        (
            "unknown source",
            edit(&|m| drop(m.insert("source".into(), json!("ftp")))),
        ),
        (
            "numeric value",
            edit(&|m| drop(m.insert("value".into(), json!(-61)))),
        ),
        (
            "value_f64 as text",
            edit(&|m| drop(m.insert("value_f64".into(), json!("-61")))),
        ),
        (
            "local collected_at",
            edit(&|m| drop(m.insert("collected_at".into(), json!("2026-11-25 07:29")))),
        ),
        (
            "an unknown field",
            edit(&|m| drop(m.insert("extra".into(), json!(1)))),
        ),
        (
            "empty path",
            edit(&|m| drop(m.insert("path".into(), json!("")))),
        ),
        (
            "numeric label",
            edit(&|m| drop(m.insert("labels".into(), json!({"pon": 3})))),
        ),
    ];
    for (what, doc) in cases {
        assert!(!v.is_valid(&doc), "{what} was accepted: {doc:#}");
    }
}
