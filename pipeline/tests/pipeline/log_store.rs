//! Without Kafka the embedded log is the event store: events are acknowledged once synced
//! there, retries are recognised, and a slow store holds back acknowledgements instead of
//! queueing without bound.

use std::time::Duration;

use tokio::sync::broadcast::error::TryRecvError;
use uspwatch_pipeline::{FsyncPolicy, RecordTopic};
use uspwatch_proto::{PresenceEvent, PresenceState, QuarantineEvent, builder, wrap};

use super::support::*;

const AGENT: &str = "os::00256D-log1";
const AGENT_V311: &str = "os::00256D-log2";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn events_are_stored_once_and_acknowledged() {
    let dir = tempfile::tempdir().unwrap();
    let labels = dir.path().join("inventory.csv");
    std::fs::write(
        &labels,
        format!("endpoint_id,region,olt\n{AGENT},north,olt-7\n"),
    )
    .unwrap();
    let mut cfg = config(&dir.path().join("events"));
    cfg.inventory.file = Some(labels);
    let mut h = Harness::start(cfg).await;
    let mut events = h.pipeline.subscribe_events();
    assert!(h.pipeline.ready().await);

    h.pipeline.on_presence(PresenceEvent {
        endpoint_id: AGENT.into(),
        state: PresenceState::Connected,
        reason: "connect".into(),
        mqtt_version: "5".into(),
        client_id: AGENT.into(),
        remote_addr: Some("127.0.0.1:40000".into()),
        at: uspwatch_proto::rfc3339_millis(0),
        at_ms: 0,
    });
    h.pipeline.on_quarantine(QuarantineEvent {
        endpoint_id: AGENT.into(),
        client_id: AGENT.into(),
        topic: CONTROLLER_TOPIC.into(),
        reason: "msg_type_mismatch".into(),
        usp_err_code: Some(7004),
        detail: "x".into(),
        size: 3,
        payload_b64: "AAAA".into(),
        truncated: false,
        at: uspwatch_proto::rfc3339_millis(0),
        at_ms: 0,
    });

    // Garbage is counted and dropped (sent first: records are handled in order).
    h.send(uspwatch_pipeline::InboundRecord {
        topic: CONTROLLER_TOPIC.into(),
        payload: bytes::Bytes::from_static(b"\xff\xff not a record"),
        response_topic: None,
        content_type: None,
    })
    .await;
    let vc = builder::value_change(
        "v1",
        "sub-9",
        true,
        "Device.WiFi.Radio.1.Stats.Noise",
        "-70",
    );
    h.send(from_agent_v5(AGENT, &vc)).await;
    h.send(from_agent_v5(AGENT, &vc)).await; // a retry
    let quiet = builder::value_change("v2", "sub-9", false, "Device.X", "1");
    h.send(from_agent_v5(AGENT, &quiet)).await;
    // A 3.1.1 agent is answered on its reply-to topic, without MQTT 5 properties.
    let obr = builder::value_change("v3", "sub-1", true, "Device.Y", "2");
    h.send(from_agent_v311(
        AGENT_V311,
        &wrap(&obr, AGENT_V311, CONTROLLER),
    ))
    .await;

    let mut resps = Vec::new();
    for _ in 0..3 {
        let p = h.next_published().await;
        let (rec, msg) = p.decode();
        let (id, sub) = notify_resp_id(&msg);
        if rec.to_id == AGENT_V311 {
            assert_eq!(
                p.topic,
                uspwatch_proto::mqtt::with_reply_to(&agent_topic(AGENT_V311), CONTROLLER_TOPIC)
            );
            assert_eq!(p.content_type, None);
        }
        resps.push((rec.to_id, id, sub));
    }
    resps.sort();
    assert_eq!(
        resps,
        [
            (AGENT.to_string(), "v1".to_string(), "sub-9".to_string()),
            (AGENT.to_string(), "v1".to_string(), "sub-9".to_string()),
            (
                AGENT_V311.to_string(),
                "v3".to_string(),
                "sub-1".to_string()
            ),
        ]
    );

    // Each event is broadcast once, after it is durable, with inventory labels.
    let mut got = Vec::new();
    while got.len() < 3 {
        let e = tokio::time::timeout(WAIT, events.recv())
            .await
            .unwrap()
            .unwrap();
        got.push(e);
    }
    assert_eq!(events.try_recv().err(), Some(TryRecvError::Empty));
    let v1 = got.iter().find(|e| e.msg_id == "v1").expect("v1 broadcast");
    assert_eq!(v1.labels["region"], "north");
    check_event_json(&serde_json::to_value(&**v1).unwrap());

    let s = h.pipeline.stats();
    assert_eq!(s.events_written, 3);
    assert_eq!(s.duplicates, 1);
    assert_eq!(s.notify_resps, 3);
    assert_eq!(s.records_invalid, 1);
    assert_eq!(s.kafka_up, None);

    h.pipeline
        .publish_record(
            RecordTopic::Alerts,
            AGENT,
            serde_json::json!({"state": "firing"}),
        )
        .await
        .expect("alert stored");

    let d = h.pipeline.inventory().get(AGENT).expect("known");
    assert!(d.device.online);
    assert_eq!(d.device.labels["olt"], "olt-7");
    assert_eq!(d.latest["Device.WiFi.Radio.1.Stats.Noise"].value, "-70");
    assert_eq!(h.pipeline.inventory().snapshot().len(), 2);

    let log_dir = dir.path().join("events");
    let topics = wait_for_log(&log_dir, |recs| {
        let mut t: Vec<_> = recs
            .iter()
            .map(|r| (r.topic, r.record_type.clone(), r.value.clone()))
            .collect();
        t.sort_by_key(|(t, r, _)| (t.as_str(), r.clone()));
        (t.len() >= 6).then_some(t)
    })
    .await;
    let kinds: Vec<_> = topics.iter().map(|(t, r, _)| (*t, r.clone())).collect();
    assert_eq!(
        kinds,
        [
            (RecordTopic::Alerts, "firing".to_string()),
            (RecordTopic::Events, "value_change".to_string()),
            (RecordTopic::Events, "value_change".to_string()),
            (RecordTopic::Events, "value_change".to_string()),
            (RecordTopic::Presence, "connected".to_string()),
            (RecordTopic::Quarantine, "msg_type_mismatch".to_string()),
        ]
    );
    for (topic, _, value) in &topics {
        let v: serde_json::Value = serde_json::from_slice(value).unwrap();
        match topic {
            RecordTopic::Events => check_event_json(&v),
            RecordTopic::Presence => check_schema(uspwatch_proto::schema::PRESENCE_V1, &v),
            RecordTopic::Quarantine => check_schema(uspwatch_proto::schema::QUARANTINE_V1, &v),
            _ => {}
        }
    }
    h.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_store_holds_back_acknowledgements() {
    let slow = |dir: &std::path::Path, interval| {
        let mut cfg = config(dir);
        cfg.log.fsync = FsyncPolicy::Interval;
        cfg.log.fsync_interval = interval;
        cfg.controller.max_in_flight = 2;
        cfg
    };
    let send_six = |h: &Harness| {
        let tx = h.to_pipeline.clone();
        async move {
            for i in 0..6 {
                let m = builder::value_change(&format!("b{i}"), "s", true, "Device.X", "1");
                tx.send(from_agent_v5(AGENT, &m)).await.unwrap();
            }
        }
    };

    // A store that never becomes durable during the test: two Notifies wait for it, the
    // third waits for room, the rest are not read, and nothing is acknowledged.
    let dir = tempfile::tempdir().unwrap();
    let h = Harness::start(slow(dir.path(), Duration::from_secs(3600))).await;
    let feed = tokio::spawn(send_six(&h));
    let deadline = tokio::time::Instant::now() + WAIT;
    while h.pipeline.stats().records_received < 3 {
        assert!(tokio::time::Instant::now() < deadline);
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    // A negative check: give the pipeline time to (wrongly) read or acknowledge more.
    tokio::time::sleep(Duration::from_millis(300)).await;
    let s = h.pipeline.stats();
    assert_eq!(
        (s.in_flight, s.records_received, s.notify_resps),
        (2, 3, 0),
        "{s:?}"
    );
    feed.abort();
    h.stop().await;

    // A store that becomes durable now and then: every Notify is acknowledged, and never
    // more than two wait at once.
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(slow(dir.path(), Duration::from_millis(50))).await;
    send_six(&h).await;
    for _ in 0..6 {
        notify_resp_id(&h.next_published().await.decode().1);
        assert!(h.pipeline.stats().in_flight <= 2);
    }
    h.stop().await;
}
