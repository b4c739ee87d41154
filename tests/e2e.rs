//! Whole-system tests: simulated agents over loopback MQTT → broker plugin → controller →
//! event sink (embedded log or librdkafka's mock Kafka cluster) → rules → commands → agents.
//!
//! The default rule pack runs with its timers divided by ten (`uspwatch::timescale`), in step
//! with the simulated devices reporting every second, so a fault's whole life — detection,
//! command, verification, resolution — fits in a test.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use parking_lot::Mutex;
use tokio_util::sync::CancellationToken;

use uspwatch::{AppConfig, Gateway};
use uspwatch_broker::ListenerKind;
use uspwatch_rules::{AlertState, Output, VerifyOutcome};
use uspwatch_sim::{FaultSpec, Fleet, FleetConfig, MqttMode, Scenario};

const AGENTS: usize = 50;
const DEADLINE: Duration = Duration::from_secs(180);

struct System {
    gw: Arc<Gateway>,
    fleet: Fleet,
    outputs: Arc<Mutex<Vec<Output>>>,
    shutdown: CancellationToken,
    _dirs: (tempfile::TempDir, tempfile::TempDir),
}

async fn start(kafka: Option<String>) -> System {
    let data = tempfile::tempdir().expect("tempdir");
    let rules_dir = tempfile::tempdir().expect("tempdir");
    uspwatch::timescale::write_scaled_pack(rules_dir.path(), 10).expect("scaled pack");
    let mut cfg = AppConfig::default();
    cfg.broker.listeners.v5 = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.broker.listeners.v311 = Some("127.0.0.1:0".parse().expect("addr"));
    cfg.broker.allow_anonymous = true;
    cfg.pipeline.log.dir = data.path().join("events");
    if let Some(brokers) = kafka {
        cfg.pipeline.kafka = Some(uspwatch_pipeline::KafkaConfig {
            brokers,
            ..Default::default()
        });
    }
    cfg.rules.default_pack = false;
    cfg.rules.dirs = vec![rules_dir.path().to_path_buf()];
    let errors = uspwatch::config::validate(&cfg);
    assert!(errors.is_empty(), "{errors:?}");

    let shutdown = CancellationToken::new();
    let gw = Arc::new(
        Gateway::start(cfg, shutdown.clone())
            .await
            .expect("gateway"),
    );
    assert!(gw.rule_load_errors.is_empty(), "{:?}", gw.rule_load_errors);
    let outputs = Arc::new(Mutex::new(Vec::new()));
    let mut rx = gw.rules.subscribe();
    let sink = outputs.clone();
    tokio::spawn(async move {
        while let Ok(o) = rx.recv().await {
            sink.lock().push(o);
        }
    });
    let addr = |kind| {
        gw.broker
            .local_addrs()
            .into_iter()
            .find(|(k, _)| *k == kind)
            .map(|(_, a)| a.to_string())
    };
    let fleet = Fleet::start(
        FleetConfig {
            broker: addr(ListenerKind::V5).expect("v5 listener"),
            broker_v311: addr(ListenerKind::V4),
            agents: AGENTS,
            mqtt: MqttMode::Mixed,
            seed: 11,
            controller_eid: gw.config.pipeline.controller.endpoint_id.clone(),
            periodic_interval: Duration::from_secs(1),
            sample_interval: Duration::from_millis(500),
            notify_retry_min_wait: Duration::from_secs(1),
            reboot_delay: Duration::from_millis(500),
            faults: FaultSpec::parse_list(
                "wifi_interference:0.04@3s,reboot_loop:0.04@1s,silent:0.04@4s",
            )
            .expect("faults"),
            ..FleetConfig::default()
        },
        shutdown.clone(),
    )
    .await
    .expect("fleet");
    fleet
        .wait_all_connected(Duration::from_secs(30))
        .await
        .expect("all agents connect");
    System {
        gw,
        fleet,
        outputs,
        shutdown,
        _dirs: (data, rules_dir),
    }
}

/// Per (rule, endpoint): fired, resolved, and the verify outcomes of its actions.
#[derive(Debug, Default, Clone)]
struct Seen {
    fired: bool,
    resolved: bool,
    verified: Vec<VerifyOutcome>,
}

fn seen(outputs: &[Output]) -> BTreeMap<(String, String), Seen> {
    let mut m: BTreeMap<(String, String), Seen> = BTreeMap::new();
    for o in outputs {
        match o {
            Output::Alert(c) => {
                let eid = c
                    .alert
                    .labels
                    .get("endpoint_id")
                    .cloned()
                    .unwrap_or_default();
                let s = m.entry((c.alert.rule.clone(), eid)).or_default();
                match c.alert.state {
                    AlertState::Firing => s.fired = true,
                    AlertState::Resolved => s.resolved = true,
                    AlertState::Pending => {}
                }
            }
            Output::Action(a) => {
                if let Some(v) = a.verify {
                    m.entry((a.rule.clone(), a.endpoint_id.clone()))
                        .or_default()
                        .verified
                        .push(v);
                }
            }
        }
    }
    m
}

/// What the test expects of each scenario: the rule, the command that must reach exactly the
/// faulty agents, and whether it is fixable (then: verified fixed and resolved).
const EXPECTATIONS: [(Scenario, &str, &str, bool); 3] = [
    (
        Scenario::WifiInterference,
        "wifi_noise_high",
        "Device.WiFi.Radio.1.Channel",
        true,
    ),
    (
        Scenario::RebootLoop,
        "reboot_loop",
        "Device.SelfTestDiagnostics()",
        false,
    ),
    (Scenario::Silent, "device_silent", "Device.Reboot()", true),
];

fn unmet(sys: &System) -> Vec<String> {
    let outputs = sys.outputs.lock().clone();
    let seen = seen(&outputs);
    let mut missing = Vec::new();
    for (scenario, rule, command, fixable) in EXPECTATIONS {
        for eid in sys.fleet.faulty(scenario) {
            let s = seen
                .get(&(rule.to_string(), eid.clone()))
                .cloned()
                .unwrap_or_default();
            if !s.fired {
                missing.push(format!("{rule} not fired for {eid}"));
            }
            let received = sys
                .fleet
                .agent(&eid)
                .is_some_and(|a| a.commands.iter().any(|c| c.path.starts_with(command)));
            if !received {
                missing.push(format!("{eid} ({scenario:?}) has not received {command}"));
            }
            if fixable && !s.verified.contains(&VerifyOutcome::Fixed) {
                missing.push(format!("{rule} not verified fixed for {eid}"));
            }
            if fixable && !s.resolved {
                missing.push(format!("{rule} not resolved for {eid}"));
            }
        }
    }
    missing
}

async fn run_scenarios(sys: &System) {
    let started = tokio::time::Instant::now();
    loop {
        let missing = unmet(sys);
        if missing.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < DEADLINE,
            "after {DEADLINE:?}: {missing:#?}"
        );
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
    // The commands reached the faulty agents (checked while waiting), and only them.
    let agents = sys.fleet.agents();
    for (scenario, _, command, _) in EXPECTATIONS {
        let faulty: BTreeSet<String> = sys.fleet.faulty(scenario).into_iter().collect();
        assert!(!faulty.is_empty(), "{scenario:?} assigned to nobody");
        for a in agents.iter().filter(|a| !faulty.contains(&a.eid)) {
            let got = a.commands.iter().any(|c| c.path.starts_with(command));
            assert!(
                !got || !a.faults.is_empty(),
                "{} has no fault but received {command}",
                a.eid
            );
        }
    }
    // Both MQTT versions were among the faulty agents, and behaved the same (checked above).
    let versions: BTreeSet<String> = EXPECTATIONS
        .iter()
        .flat_map(|(s, ..)| sys.fleet.faulty(*s))
        .filter_map(|eid| agents.iter().find(|a| a.eid == eid))
        .map(|a| format!("{:?}", a.mqtt))
        .collect();
    assert_eq!(
        versions.len(),
        2,
        "faulty agents all spoke one MQTT version: {versions:?}"
    );
    let healthy: Vec<_> = agents
        .iter()
        .filter(|a| a.faults.is_empty() && a.commands.iter().any(|c| c.kind != "get"))
        .map(|a| (&a.eid, &a.commands))
        .collect();
    assert!(
        healthy.is_empty(),
        "healthy agents were commanded: {healthy:?}"
    );
}

/// Takes every Notify with send_resp=true sent so far and waits until each has been
/// acknowledged with a NotifyResp; returns their `<eid>/<msg_id>`.
async fn acknowledged_notifies(fleet: &Fleet) -> Vec<String> {
    let id = |eid: &str, msg_id: &str| format!("{eid}/{msg_id}");
    let sent: Vec<String> = fleet
        .agents()
        .iter()
        .flat_map(|a| a.notifies.iter().map(|n| id(&a.eid, &n.msg_id)))
        .collect();
    let started = tokio::time::Instant::now();
    loop {
        let acked: BTreeSet<String> = fleet
            .agents()
            .iter()
            .flat_map(|a| {
                a.notifies
                    .iter()
                    .filter(|n| n.acked)
                    .map(|n| id(&a.eid, &n.msg_id))
            })
            .collect();
        let pending: Vec<&String> = sent.iter().filter(|s| !acked.contains(*s)).collect();
        if pending.is_empty() {
            return sent;
        }
        assert!(
            started.elapsed() < Duration::from_secs(60),
            "never acknowledged: {pending:?}"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

fn assert_exactly_once(sent: &[String], stored: &[String]) {
    let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
    for id in stored {
        *counts.entry(id.as_str()).or_default() += 1;
    }
    let dup: Vec<_> = counts.iter().filter(|(_, n)| **n > 1).collect();
    assert!(dup.is_empty(), "stored more than once: {dup:?}");
    let missing: Vec<_> = sent
        .iter()
        .filter(|id| !counts.contains_key(id.as_str()))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} never stored: {missing:?}",
        missing.len(),
        sent.len()
    );
}

fn event_id(value: &[u8]) -> String {
    let v: serde_json::Value = serde_json::from_slice(value).expect("event JSON");
    v["event_id"].as_str().expect("event_id").to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_to_embedded_log_to_rules_to_commands() {
    let sys = start(None).await;
    run_scenarios(&sys).await;
    let sent = acknowledged_notifies(&sys.fleet).await;
    assert!(!sent.is_empty());
    let dir = sys.gw.config.pipeline.log.dir.clone();
    let mut reader = uspwatch_pipeline::log::LogReader::open(&dir).expect("open log");
    let mut stored = Vec::new();
    loop {
        let batch = reader.read(10_000).expect("read log");
        if batch.is_empty() {
            break;
        }
        stored.extend(
            batch
                .iter()
                .filter(|r| r.topic == uspwatch_pipeline::RecordTopic::Events)
                .map(|r| event_id(&r.value)),
        );
    }
    assert_exactly_once(&sent, &stored);
    sys.fleet.stop().await;
    sys.shutdown.cancel();
}

/// Reads every message of `topic` from the beginning (no consumer group: plain assignment).
fn read_topic(bootstrap: &str, topic: &str) -> Vec<Vec<u8>> {
    use rdkafka::consumer::{BaseConsumer, Consumer};
    use rdkafka::{ClientConfig, Message, Offset, TopicPartitionList};
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "e2e-reader")
        .set("enable.auto.commit", "false")
        .create()
        .expect("consumer");
    let md = consumer
        .fetch_metadata(Some(topic), Duration::from_secs(10))
        .expect("metadata");
    let mut tpl = TopicPartitionList::new();
    for t in md.topics() {
        for p in t.partitions() {
            tpl.add_partition_offset(topic, p.id(), Offset::Beginning)
                .expect("partition");
        }
    }
    consumer.assign(&tpl).expect("assign");
    let mut out = Vec::new();
    let mut idle = std::time::Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        match consumer.poll(Duration::from_millis(200)) {
            Some(Ok(m)) => {
                out.push(m.payload().unwrap_or_default().to_vec());
                idle = std::time::Instant::now();
            }
            Some(Err(e)) => panic!("consume {topic}: {e}"),
            None => {}
        }
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn fleet_to_kafka_to_rules_to_commands() {
    let cluster = rdkafka::mocking::MockCluster::new(1).expect("mock cluster");
    let bootstrap = cluster.bootstrap_servers();
    let sys = start(Some(bootstrap.clone())).await;
    run_scenarios(&sys).await;
    let sent = acknowledged_notifies(&sys.fleet).await;
    assert!(!sent.is_empty());
    // The fleet stops so the topic goes quiet and the reader knows it has seen everything.
    sys.fleet.stop().await;
    let topic = uspwatch_pipeline::KafkaConfig::default().topics.events;
    let stored: Vec<String> = tokio::task::spawn_blocking(move || read_topic(&bootstrap, &topic))
        .await
        .expect("reader")
        .iter()
        .map(|v| event_id(v))
        .collect();
    assert_exactly_once(&sent, &stored);
    sys.shutdown.cancel();
}
