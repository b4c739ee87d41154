//! Bulk Data reports become samples: a `Push!` event's Data (the event is still written and
//! acknowledged after its samples are durable), and reports handed in by the MQTT and HTTP
//! transports. Malformed reports are quarantined with a reason and yield no sample.

use std::time::Duration;

use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use tokio::sync::broadcast;
use uspwatch_pipeline::{BulkReport, Error, RecordTopic};
use uspwatch_proto::{Event, EventKind, Sample, SampleSource, builder};

use super::support::*;

const AGENT: &str = "os::00256D-bulk1";
const NOISE: &str = "Device.WiFi.Radio.1.Stats.Noise";

fn push(msg_id: &str, data: &str) -> uspwatch_proto::pb::usp::Msg {
    builder::event(
        msg_id,
        "uspwatch-bulk",
        true,
        "Device.BulkData.Profile.1.",
        "Push!",
        args(&[("Data", data)]),
    )
}

/// Broadcast events until `n` samples arrived (or a panic after `WAIT`).
async fn samples_from(rx: &mut broadcast::Receiver<std::sync::Arc<Event>>, n: usize) -> Vec<Event> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while out.len() < n {
        let e = tokio::time::timeout_at(deadline, rx.recv())
            .await
            .expect("samples in time")
            .expect("events channel");
        if e.kind == EventKind::Sample {
            out.push((*e).clone());
        }
    }
    out
}

fn telemetry(recs: &[uspwatch_pipeline::log::LogRecord]) -> Vec<Sample> {
    recs.iter()
        .filter(|r| r.topic == RecordTopic::Telemetry)
        .map(|r| {
            let v: serde_json::Value = serde_json::from_slice(&r.value).expect("JSON");
            check_schema(uspwatch_proto::schema::TELEMETRY_V1, &v);
            serde_json::from_value(v).expect("a Sample")
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn push_data_becomes_samples_and_the_event_is_still_written() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let mut h = Harness::start(config(&log)).await;
    let mut events = h.pipeline.subscribe_events();
    let data = r#"{"Report":[{"CollectionTime":1736935200,"Device.WiFi.Radio.1.Stats.Noise":-61,"Device.DeviceInfo.SoftwareVersion":"4.2"}]}"#;
    h.send(from_agent_v5(AGENT, &push("p1", data))).await;
    let (record, msg) = h.next_published().await.decode();
    assert_eq!(record.to_id, AGENT);
    assert_eq!(notify_resp_id(&msg).0, "p1");

    let samples = samples_from(&mut events, 2).await;
    let noise = samples
        .iter()
        .find(|s| s.path == NOISE)
        .expect("noise sample");
    assert_eq!(noise.value_f64(), Some(-61.0));
    assert_eq!(noise.event_id, format!("{AGENT}/p1/1"));
    assert_eq!(noise.args["collected_at_ms"], "1736935200000");
    // The inventory reads the exact-path value from the report.
    let d = h.pipeline.inventory().get(AGENT).expect("known");
    assert_eq!(d.device.software_version.as_deref(), Some("4.2"));

    let stored = wait_for_log(&log, |recs| {
        let t = telemetry(recs);
        let push_events = recs
            .iter()
            .filter(|r| r.topic == RecordTopic::Events && r.key == AGENT)
            .count();
        (t.len() == 2 && push_events == 1).then_some(t)
    })
    .await;
    assert!(stored.iter().all(|s| s.source == SampleSource::UspPush
        && s.origin == "Device.BulkData.Profile.1."
        && s.report_id == format!("{AGENT}/p1")
        && s.collected_at.as_deref() == Some("2025-01-15T10:00:00.000Z")));

    // A retry of the same Notify is acknowledged without a second copy of anything.
    h.send(from_agent_v5(AGENT, &push("p1", data))).await;
    let (_, msg) = h.next_published().await.decode();
    assert_eq!(notify_resp_id(&msg).0, "p1");
    h.stop().await;
    let mut all = Vec::new();
    let mut r = uspwatch_pipeline::log::LogReader::open(&log).unwrap();
    loop {
        let b = r.read(1000).unwrap();
        if b.is_empty() {
            break;
        }
        all.extend(b);
    }
    assert_eq!(telemetry(&all).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn malformed_push_data_is_quarantined_and_the_event_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let mut h = Harness::start(config(&log)).await;
    // Valid first value, broken second report: nothing of it may be stored.
    let data = r#"{"Report":[{"Device.WiFi.Radio.1.Stats.Noise":-61},{"Device.X":[1]}]}"#;
    h.send(from_agent_v5(AGENT, &push("p2", data))).await;
    let (_, msg) = h.next_published().await.decode();
    assert_eq!(notify_resp_id(&msg).0, "p2");
    let q = wait_for_log(&log, |recs| {
        recs.iter()
            .find(|r| r.topic == RecordTopic::Quarantine)
            .map(|r| serde_json::from_slice::<serde_json::Value>(&r.value).unwrap())
    })
    .await;
    check_schema(uspwatch_proto::schema::QUARANTINE_V1, &q);
    assert_eq!(q["reason"], "bulk_data_malformed");
    assert_eq!(q["endpoint_id"], AGENT);
    assert_eq!(q["topic"], "Device.BulkData.Profile.1.");
    h.stop().await;
    let mut r = uspwatch_pipeline::log::LogReader::open(&log).unwrap();
    let recs = r.read(1000).unwrap();
    assert!(telemetry(&recs).is_empty());
    assert_eq!(
        recs.iter()
            .filter(|r| r.topic == RecordTopic::Events)
            .count(),
        1,
        "the Push! event itself is written"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reports_from_other_transports_are_all_or_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("events");
    let mut cfg = config(&log);
    cfg.bulk_data.max_samples_per_report = 3;
    let h = Harness::start(cfg).await;
    let mut events = h.pipeline.subscribe_events();
    let csv = "ReportTimestamp,ParameterName,ParameterValue,ParameterType\r\n\
1736935200,Device.WiFi.Radio.1.Stats.Noise,-58,int\r\n\
1736935200,Device.DeviceInfo.ProcessStatus.CPUUsage,93,unsignedInt\r\n";
    let report = |body: &str, ct: Option<&str>| BulkReport {
        endpoint_id: AGENT.into(),
        source: SampleSource::Http,
        origin: "/bulkdata".into(),
        body: bytes::Bytes::copy_from_slice(body.as_bytes()),
        content_type: ct.map(str::to_string),
        report_format: Some("ParameterPerRow".into()),
    };
    let n = h
        .pipeline
        .ingest_report(report(csv, Some("text/csv; charset=UTF-8; header=present")))
        .await
        .expect("stored");
    assert_eq!(n, 2);
    let got = samples_from(&mut events, 2).await;
    assert!(
        got.iter()
            .any(|e| e.path == NOISE && e.value.as_deref() == Some("-58"))
    );

    // Too many values, or the wrong encoding: refused whole.
    let four = format!("{csv}1736935200,Device.A,1,int\r\n1736935200,Device.B,2,int\r\n");
    let e = h
        .pipeline
        .ingest_report(report(&four, Some("text/csv; charset=UTF-8")))
        .await
        .expect_err("over the limit");
    assert!(
        matches!(&e, Error::BulkData { source, .. } if source.is_too_large()),
        "{e}"
    );
    let e = h
        .pipeline
        .ingest_report(report(csv, Some("application/json; charset=UTF-8")))
        .await
        .expect_err("declared JSON");
    assert!(matches!(e, Error::BulkData { .. }));
    let reasons = wait_for_log(&log, |recs| {
        let r: Vec<String> = recs
            .iter()
            .filter(|r| r.topic == RecordTopic::Quarantine)
            .map(|r| r.record_type.clone())
            .collect();
        (r.len() == 2).then_some(r)
    })
    .await;
    assert_eq!(reasons, ["bulk_data_too_large", "bulk_data_malformed"]);
    h.stop().await;
    let mut r = uspwatch_pipeline::log::LogReader::open(&log).unwrap();
    let recs = r.read(1000).unwrap();
    assert_eq!(telemetry(&recs).len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn samples_reach_the_telemetry_topic_keyed_by_device() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster
        .create_topic("usp.telemetry.v1", 1, 1)
        .expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(kafka_config(
        dir.path(),
        &bootstrap,
        Duration::from_secs(10),
    ))
    .await;
    let body = r#"{"Report":[{"Device":{"WiFi":{"Radio":{"1":{"Stats":{"Noise":-66}}}}}}]}"#;
    let n = h
        .pipeline
        .ingest_report(BulkReport {
            endpoint_id: AGENT.into(),
            source: SampleSource::Mqtt,
            origin: "usp/bulkdata/x".into(),
            body: bytes::Bytes::copy_from_slice(body.as_bytes()),
            content_type: None,
            report_format: None,
        })
        .await
        .expect("stored");
    assert_eq!(n, 1);
    let c = consumer(&bootstrap, "usp.telemetry.v1", 1);
    let msgs = read_until(&c, |m| !m.is_empty()).await;
    let m = &msgs[0];
    assert_eq!(m.key(), Some(AGENT.as_bytes()));
    assert_eq!(header(m, "schema"), Some("usp.telemetry.v1"));
    assert_eq!(header(m, "record_type"), Some("mqtt"));
    let v = json_value(m);
    check_schema(uspwatch_proto::schema::TELEMETRY_V1, &v);
    assert_eq!(v["path"], NOISE);
    assert_eq!(v["value_f64"], -66.0);
    h.stop().await;
}
