//! Every Notify kind reaches `usp.events.v1`, keyed by endpoint id, and is acknowledged only
//! once Kafka has it.

use std::collections::BTreeMap;
use std::time::Duration;

use rdkafka::consumer::Consumer;
use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use uspwatch_proto::builder;
use uspwatch_proto::pb::usp::{Msg, notify};

use super::support::*;

const AGENT: &str = "os::00256D-kafka1";

fn six_kinds() -> Vec<Msg> {
    use notify::Notification as N;
    vec![
        builder::event(
            "n-event",
            "sub-1",
            true,
            "Device.",
            "Boot!",
            args(&[("Cause", "RemoteReboot"), ("FirmwareUpdated", "false")]),
        ),
        builder::value_change(
            "n-vc",
            "sub-2",
            true,
            "Device.WiFi.Radio.1.Stats.Noise",
            "-71",
        ),
        builder::notify(
            "n-oc",
            "sub-3",
            true,
            N::ObjCreation(notify::ObjectCreation {
                obj_path: "Device.WiFi.AccessPoint.1.AssociatedDevice.4.".into(),
                unique_keys: args(&[("MACAddress", "aa:bb:cc:dd:ee:ff")]),
            }),
        ),
        builder::notify(
            "n-od",
            "sub-4",
            true,
            N::ObjDeletion(notify::ObjectDeletion {
                obj_path: "Device.WiFi.AccessPoint.1.AssociatedDevice.4.".into(),
            }),
        ),
        builder::operation_complete(
            "n-opc",
            "sub-5",
            true,
            "Device.IP.Diagnostics.",
            "IPPing()",
            "ck-1",
            Ok(args(&[
                ("Status", "Complete"),
                ("AverageResponseTime", "12"),
            ])),
        ),
        builder::notify(
            "n-obr",
            "",
            true,
            N::OnBoardReq(notify::OnBoardRequest {
                oui: "00256D".into(),
                product_class: "HGW".into(),
                serial_number: "kafka1".into(),
                agent_supported_protocol_versions: "1.3,1.4".into(),
            }),
        ),
    ]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn six_notify_kinds_become_one_kafka_message_each() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("usp.events.v1", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    // A visible round trip, so an acknowledgement sent before the broker answered would be
    // caught by the watermark check below.
    cluster
        .broker_round_trip_time(1, Duration::from_millis(30))
        .expect("rtt");
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(kafka_config(
        dir.path(),
        &bootstrap,
        Duration::from_secs(30),
    ))
    .await;
    let watcher = consumer(&bootstrap, "usp.events.v1", 1);

    let msgs = six_kinds();
    let mut subs = BTreeMap::new();
    for m in &msgs {
        let (id, sub) = match m.body.as_ref().and_then(|b| b.msg_body.as_ref()) {
            Some(uspwatch_proto::pb::usp::body::MsgBody::Request(r)) => match &r.req_type {
                Some(uspwatch_proto::pb::usp::request::ReqType::Notify(n)) => (
                    m.header.as_ref().unwrap().msg_id.clone(),
                    n.subscription_id.clone(),
                ),
                _ => unreachable!(),
            },
            _ => unreachable!(),
        };
        subs.insert(id, sub);
        h.send(from_agent_v5(AGENT, m)).await;
    }
    for acked in 1..=msgs.len() {
        let p = h.next_published().await;
        // Acknowledged only once Kafka has committed at least this many events.
        let (_, high) = watcher
            .fetch_watermarks("usp.events.v1", 0, Duration::from_secs(10))
            .expect("watermarks");
        assert!(
            high >= acked as i64,
            "NotifyResp {acked} sent with only {high} events in Kafka"
        );
        assert_eq!(p.topic, agent_topic(AGENT));
        assert_eq!(p.content_type.as_deref(), Some("usp.msg"));
        assert_eq!(p.response_topic.as_deref(), Some(CONTROLLER_TOPIC));
        let (rec, msg) = p.decode();
        assert_eq!(rec.to_id, AGENT);
        assert_eq!(rec.from_id, CONTROLLER);
        let (id, sub) = notify_resp_id(&msg);
        assert_eq!(
            subs.get(&id),
            Some(&sub),
            "NotifyResp {id} echoes the subscription"
        );
    }

    let got = read_until(&watcher, |m| m.len() >= 6).await;
    let mut kinds = Vec::new();
    for m in &got {
        assert_eq!(m.key(), Some(AGENT.as_bytes()));
        assert_eq!(header(m, "schema"), Some(uspwatch_proto::EVENT_SCHEMA));
        let v = json_value(m);
        check_event_json(&v);
        assert_eq!(header(m, "record_type"), v["kind"].as_str());
        assert_eq!(
            v["event_id"],
            format!("{AGENT}/{}", v["msg_id"].as_str().unwrap())
        );
        kinds.push(v["kind"].as_str().unwrap().to_string());
    }
    kinds.sort();
    assert_eq!(
        kinds,
        [
            "event",
            "object_creation",
            "object_deletion",
            "on_board_request",
            "operation_complete",
            "value_change"
        ]
    );
    let s = h.pipeline.stats();
    assert_eq!(s.events_written, 6);
    assert_eq!(s.notify_resps, 6);
    assert_eq!(s.kafka_up, Some(true));
    assert_eq!(s.spool_depth, 0);
    assert!(h.pipeline.ready().await);
    // Nothing went through the spool: the log holds no record.
    let mut r = uspwatch_pipeline::log::LogReader::open(dir.path()).unwrap();
    assert!(r.read(10).unwrap().is_empty());
    // The inventory learned from the events.
    let d = h.pipeline.inventory().get(AGENT).expect("device known");
    assert_eq!(
        d.onboard.as_ref().map(|o| o.serial_number.as_str()),
        Some("kafka1")
    );
    assert_eq!(
        d.boot.as_ref().and_then(|b| b.cause.as_deref()),
        Some("RemoteReboot")
    );
    h.stop().await;
}
