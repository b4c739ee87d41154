//! A Kafka that forgot us: the cluster answers a retried produce with `UnknownProducerId`
//! (as after a rebuild, a re-created topic or an expired producer id), which makes
//! librdkafka fail the idempotent producer for good. The sink replaces the producer on its
//! own: every acknowledged event reaches Kafka without a restart.

use std::collections::HashSet;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use rdkafka::types::{RDKafkaApiKey, RDKafkaRespErr};
use uspwatch_proto::builder;

use super::support::*;

const AGENT: &str = "os::00256D-lost1";
const EVENTS: usize = 200;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sink_replaces_a_producer_the_cluster_forgot() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("usp.events.v1", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(kafka_config(dir.path(), &bootstrap, Duration::from_secs(5))).await;

    h.send(from_agent_v5(
        AGENT,
        &builder::value_change("warm", "s", true, "Device.X", "0"),
    ))
    .await;
    notify_resp_id(&h.next_published().await.decode().1);
    assert_eq!(h.pipeline.stats().kafka_producer_resets, 0);

    // The next produce fails with a retriable error, and its retry finds the producer id
    // unknown: librdkafka cannot retry without risking reordering and fails the producer.
    use RDKafkaRespErr as E;
    cluster.request_errors(
        RDKafkaApiKey::Produce,
        &[
            E::RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS,
            E::RD_KAFKA_RESP_ERR_UNKNOWN_PRODUCER_ID,
        ],
    );
    let mut acked = HashSet::new();
    for i in 0..EVENTS {
        let m = builder::value_change(&format!("m{i}"), "s", true, "Device.X", &i.to_string());
        h.send(from_agent_v5(AGENT, &m)).await;
    }
    while acked.len() < EVENTS {
        acked.insert(notify_resp_id(&h.next_published().await.decode().1).0);
    }

    // Without a restart: the producer is replaced, the spool drains, direct writes resume.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = h.pipeline.stats();
        if s.kafka_producer_resets >= 1 && s.spool_depth == 0 && s.kafka_up == Some(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the sink never recovered: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let watcher = consumer(&bootstrap, "usp.events.v1", 1);
    let mut seen = HashSet::new();
    read_until(&watcher, |msgs| {
        if let Some(m) = msgs.last() {
            seen.insert(json_value(m)["msg_id"].as_str().unwrap().to_string());
        }
        acked.is_subset(&seen)
    })
    .await;

    h.send(from_agent_v5(
        AGENT,
        &builder::value_change("after", "s", true, "Device.X", "1"),
    ))
    .await;
    notify_resp_id(&h.next_published().await.decode().1);
    read_until(&watcher, |msgs| {
        msgs.last()
            .is_some_and(|m| json_value(m)["msg_id"] == "after")
    })
    .await;
    assert_eq!(h.pipeline.stats().spool_depth, 0);
    h.stop().await;
}
