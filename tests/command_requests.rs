//! Remediation jobs submit commands over Kafka (librdkafka's mock cluster): a request reaches
//! the device and its outcome appears on the commands topic; a malformed one is rejected there.

use std::time::{Duration, Instant};

use rdkafka::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::producer::{FutureProducer, FutureRecord};
use rdkafka::{Message, Offset, TopicPartitionList};
use serde_json::{Value, json};

use uspwatch::{AppConfig, Gateway};

fn commands_consumer(bootstrap: &str, topic: &str) -> BaseConsumer {
    let c: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "test-reader")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    let md = c
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    c.assign(&tpl).expect("assign");
    c
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn kafka_command_requests_reach_devices() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    cluster
        .create_topic("usp.command-requests.v1", 1, 1)
        .expect("topic");
    cluster
        .create_topic("usp.commands.v1", 1, 1)
        .expect("topic");
    let data = tempfile::tempdir().expect("tempdir");
    let mut cfg = AppConfig::default();
    cfg.broker.listeners.v5 = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.broker.listeners.v311 = None;
    cfg.broker.allow_anonymous = true;
    cfg.pipeline.log.dir = data.path().join("events");
    let k = uspwatch_pipeline::KafkaConfig {
        brokers: bootstrap.clone(),
        ..Default::default()
    };
    let commands_topic = k.topics.commands.clone();
    cfg.pipeline.kafka = Some(k);
    cfg.command_requests.group_id = "uspwatch-test".into();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let gw = Gateway::start(cfg, shutdown.clone())
        .await
        .expect("gateway");
    let v5 = gw.broker.local_addrs()[0].1.to_string();
    let fleet = uspwatch_sim::Fleet::start(
        uspwatch_sim::FleetConfig {
            broker: v5,
            agents: 1,
            mqtt: uspwatch_sim::MqttMode::V5,
            ..Default::default()
        },
        shutdown.clone(),
    )
    .await
    .expect("fleet");
    fleet
        .wait_all_connected(Duration::from_secs(20))
        .await
        .expect("connected");
    let eid = fleet.agents()[0].eid.clone();

    let producer: FutureProducer = ClientConfig::new()
        .set("bootstrap.servers", &bootstrap)
        .create()
        .expect("producer");
    let good = json!({
        "request_id": "job-1",
        "endpoint_id": eid,
        "command": {"type": "set", "objects": [{"obj_path": "Device.WiFi.Radio.1.", "params": {"Channel": "6"}}]},
    })
    .to_string();
    // The consumer group needs a few seconds to get its partition; keep offering the request
    // until the device has it (the controller ignores nothing: each copy is a new command).
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        producer
            .send(
                FutureRecord::to("usp.command-requests.v1")
                    .key(&eid)
                    .payload(&good),
                Duration::from_secs(5),
            )
            .await
            .expect("produce");
        let got_it = || {
            fleet
                .agent(&eid)
                .is_some_and(|a| a.commands.iter().any(|c| c.kind == "set"))
        };
        let wait_until = Instant::now() + Duration::from_secs(3);
        while !got_it() && Instant::now() < wait_until {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        if got_it() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "the device never got the command"
        );
    }
    producer
        .send(
            FutureRecord::to("usp.command-requests.v1")
                .key("junk")
                .payload("{not json"),
            Duration::from_secs(5),
        )
        .await
        .expect("produce");

    let records = tokio::task::spawn_blocking(move || {
        let c = commands_consumer(&bootstrap, &commands_topic);
        let mut seen: Vec<Value> = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(Ok(m)) = c.poll(Duration::from_millis(200)) {
                let v: Value = serde_json::from_slice(m.payload().unwrap_or_default())
                    .expect("JSON command record");
                seen.push(v);
            }
            let ok = seen
                .iter()
                .any(|v| v["origin"] == json!("kafka:job-1") && v["outcome"] == json!("ok"));
            let rejected = seen.iter().any(|v| v["outcome"] == json!("rejected"));
            if ok && rejected {
                break;
            }
        }
        seen
    })
    .await
    .expect("reader");
    assert!(
        records
            .iter()
            .any(|v| v["origin"] == json!("kafka:job-1") && v["outcome"] == json!("ok")),
        "{records:#?}"
    );
    assert!(
        records
            .iter()
            .any(|v| v["outcome"] == json!("rejected") && v["endpoint_id"] == json!("junk")),
        "{records:#?}"
    );
    fleet.stop().await;
    shutdown.cancel();
}
