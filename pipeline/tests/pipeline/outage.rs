//! Kafka goes down while 5,000 Notifies arrive and comes back: nothing is lost, every
//! Notify is acknowledged, retries are counted and carry the same event_id, and redeliveries
//! are bounded.

use std::collections::{HashMap, HashSet};
use std::time::Duration;

use rdkafka::message::Message as _;
use rdkafka::mocking::MockCluster;
use uspwatch_proto::builder;

use super::support::*;

const NOTIFIES: usize = 5_000;
const RETRIES: usize = 100;
const AGENTS: usize = 50;
/// What one failed replay batch can resend at most.
const MAX_REDELIVERED: usize = 1000;

fn agent(i: usize) -> String {
    format!("os::00256D-outage{}", i % AGENTS)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_outage_loses_nothing() {
    let cluster = MockCluster::new(1).expect("mock cluster");
    cluster.create_topic("usp.events.v1", 4, 1).expect("topic");
    let bootstrap = cluster.bootstrap_servers();
    let dir = tempfile::tempdir().unwrap();
    let mut h = Harness::start(kafka_config(dir.path(), &bootstrap, Duration::from_secs(2))).await;

    // Kafka is up: the first event goes straight there.
    h.send(from_agent_v5(
        &agent(0),
        &builder::value_change("warm", "s", true, "Device.X", "0"),
    ))
    .await;
    notify_resp_id(&h.next_published().await.decode().1);
    assert_eq!(h.pipeline.stats().spool_depth, 0);

    cluster.broker_down(1).expect("broker down");
    let sender = h.to_pipeline.clone();
    let feed = tokio::spawn(async move {
        for i in 0..NOTIFIES {
            let m = builder::value_change(&format!("m{i}"), "s", true, "Device.X", &i.to_string());
            sender.send(from_agent_v5(&agent(i), &m)).await.unwrap();
            // Agents retry some Notifies before their NotifyResp arrives.
            if i < RETRIES {
                sender.send(from_agent_v5(&agent(i), &m)).await.unwrap();
            }
        }
    });
    let mut acked: HashMap<(String, String), usize> = HashMap::new();
    while acked.values().sum::<usize>() < NOTIFIES + RETRIES {
        let p = h.next_published().await;
        let (rec, msg) = p.decode();
        let (id, _) = notify_resp_id(&msg);
        *acked.entry((rec.to_id, id)).or_default() += 1;
    }
    feed.await.unwrap();
    assert_eq!(acked.len(), NOTIFIES, "every Notify acknowledged");
    let s = h.pipeline.stats();
    assert_eq!(s.duplicates, RETRIES as u64);
    assert_eq!(s.events_written, NOTIFIES as u64 + 1);
    assert!(
        s.spool_depth > 0,
        "events were spooled while Kafka was down: {s:?}"
    );
    assert_eq!(s.kafka_up, Some(false));

    cluster.broker_up(1).expect("broker up");
    let watcher = consumer(&bootstrap, "usp.events.v1", 4);
    let mut seen: HashSet<String> = HashSet::new();
    let got = read_until(&watcher, |msgs| {
        if let Some(m) = msgs.last() {
            seen.insert(json_value(m)["event_id"].as_str().unwrap().to_string());
        }
        seen.len() > NOTIFIES
    })
    .await;
    let mut copies: HashMap<String, usize> = HashMap::new();
    for m in &got {
        let v = json_value(m);
        let eid = v["event_id"].as_str().unwrap().to_string();
        assert_eq!(m.key(), v["endpoint_id"].as_str().map(str::as_bytes));
        *copies.entry(eid).or_default() += 1;
    }
    for i in 0..NOTIFIES {
        let id = format!("{}/m{i}", agent(i));
        assert!(copies.contains_key(&id), "{id} lost");
    }
    // Redelivered copies (if any) are the same event, with the same event_id; replay resends
    // at most what was in flight when a delivery failed, never the whole spool.
    let redelivered: usize = copies.values().map(|c| c - 1).sum();
    assert!(
        redelivered <= MAX_REDELIVERED,
        "{redelivered} copies beyond the first"
    );

    // The spool drains and the sink goes back to writing Kafka directly.
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let s = h.pipeline.stats();
        if s.spool_depth == 0 && s.kafka_up == Some(true) {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "spool never drained: {s:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    h.send(from_agent_v5(
        &agent(1),
        &builder::value_change("after", "s", true, "Device.X", "1"),
    ))
    .await;
    notify_resp_id(&h.next_published().await.decode().1);
    assert_eq!(h.pipeline.stats().spool_depth, 0);
    h.stop().await;
}
