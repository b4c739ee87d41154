//! Events accepted into the spool survive the pipeline being dropped without flushing, and
//! a torn segment tail, and reach Kafka after a restart on the same directory.

use std::collections::HashSet;
use std::io::Write;
use std::time::Duration;

use rdkafka::mocking::MockCluster;
use uspwatch_proto::builder;

use super::support::*;

const AGENT: &str = "os::00256D-crash1";
const EVENTS: usize = 300;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spooled_events_survive_a_crash_and_a_torn_tail() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("usp.events.v1", 1, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    cluster.broker_down(1).expect("broker down");
    let dir = tempfile::tempdir().unwrap();
    let cfg = kafka_config(dir.path(), &bootstrap, Duration::from_secs(1));

    let mut h = Harness::start(cfg.clone()).await;
    for i in 0..EVENTS {
        let m = builder::value_change(&format!("c{i}"), "s", true, "Device.X", &i.to_string());
        h.send(from_agent_v5(AGENT, &m)).await;
    }
    let mut acked = HashSet::new();
    while acked.len() < EVENTS {
        acked.insert(notify_resp_id(&h.next_published().await.decode().1).0);
    }
    assert_eq!(h.pipeline.stats().spool_depth, EVENTS as u64);
    // Crash: stop the tasks, flush nothing to Kafka.
    h.stop().await;

    // A write torn by the crash: a frame header promising more bytes than follow.
    let mut segs: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "seg"))
        .collect();
    segs.sort();
    let last = segs.last().expect("a segment").clone();
    let good_len = std::fs::metadata(&last).unwrap().len();
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&last)
        .unwrap();
    f.write_all(&[200, 0, 0, 0, 1, 2, 3, 4, b'{', b'"'])
        .unwrap();
    drop(f);

    cluster.broker_up(1).expect("broker up");
    let mut h = Harness::start(cfg).await;
    assert_eq!(
        std::fs::metadata(&last).unwrap().len(),
        good_len,
        "torn tail cut off"
    );
    let watcher = consumer(&bootstrap, "usp.events.v1", 1);
    let mut seen = HashSet::new();
    read_until(&watcher, |msgs| {
        if let Some(m) = msgs.last() {
            seen.insert(json_value(m)["msg_id"].as_str().unwrap().to_string());
        }
        seen.len() >= EVENTS
    })
    .await;
    assert_eq!(seen, acked);

    // New events after the restart are stored too (directly once the spool is drained).
    h.send(from_agent_v5(
        AGENT,
        &builder::value_change("post", "s", true, "Device.X", "x"),
    ))
    .await;
    assert_eq!(
        notify_resp_id(&h.next_published().await.decode().1).0,
        "post"
    );
    read_until(&watcher, |msgs| {
        msgs.last()
            .is_some_and(|m| json_value(m)["msg_id"] == "post")
    })
    .await;
    h.stop().await;
}
