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
use uspwatch_proto::Command;
use uspwatch_rules::{ActionRecord, ActionStatus, AlertState, Output, VerifyOutcome};
use uspwatch_sim::{AgentStatus, FaultSpec, Fleet, FleetConfig, MqttMode, Scenario};

mod common;
use common::wait::{eventually_sync, holds_for, listener};

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
    let addr = |kind| listener(&gw, kind).map(|a| a.to_string());
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
            // The simulator clears a fault only when the command really fixes it (a Set to
            // a different channel, a reboot), so this checks the command's values.
            let cleared = sys
                .fleet
                .agent(&eid)
                .is_some_and(|a| a.fault_cleared(scenario));
            if fixable && !cleared {
                missing.push(format!("{eid} ({scenario:?}) not cleared by the command"));
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
    eventually_sync(
        "every fault detected, commanded and, when fixable, fixed",
        DEADLINE,
        || {
            let missing = unmet(sys);
            if missing.is_empty() {
                Ok(())
            } else {
                Err(missing)
            }
        },
    )
    .await;
    let agents = sys.fleet.agents();
    for (scenario, ..) in EXPECTATIONS {
        assert!(
            !sys.fleet.faulty(scenario).is_empty(),
            "{scenario:?} assigned to nobody"
        );
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
    // What went wrong must not go wrong a little later either: the checks hold for a few
    // more rule evaluation rounds.
    holds_for(
        "alerts and commands only where there is a fault",
        Duration::from_secs(5),
        || {
            let outputs = sys.outputs.lock().clone();
            let agents = sys.fleet.agents();
            let mut wrong = alerts_on_healthy_agents(&outputs, &agents);
            wrong.extend(misdirected_commands(&outputs, &agents));
            if wrong.is_empty() { Ok(()) } else { Err(wrong) }
        },
    )
    .await;
}

/// Firing alerts on agents that have no fault at all: every one is a false alarm.
fn alerts_on_healthy_agents(outputs: &[Output], agents: &[AgentStatus]) -> Vec<String> {
    let healthy: BTreeSet<&str> = agents
        .iter()
        .filter(|a| a.faults.is_empty())
        .map(|a| a.eid.as_str())
        .collect();
    assert!(!healthy.is_empty(), "no healthy agent to compare with");
    outputs
        .iter()
        .filter_map(|o| match o {
            Output::Alert(c) if c.alert.state == AlertState::Firing => {
                let eid = c.alert.labels.get("endpoint_id")?;
                healthy
                    .contains(eid.as_str())
                    .then(|| format!("{} fired for healthy {eid}", c.alert.rule))
            }
            _ => None,
        })
        .collect()
}

/// What an agent records when it receives `command`: (kind, path, value or command key).
fn as_received(command: &Command) -> Vec<(String, String, String)> {
    match command {
        Command::Set { objects, .. } => objects
            .iter()
            .flat_map(|o| {
                o.params
                    .iter()
                    .map(|(p, v)| ("set".into(), format!("{}{p}", o.obj_path), v.clone()))
            })
            .collect(),
        Command::Operate {
            command,
            command_key,
            ..
        } => vec![("operate".into(), command.clone(), command_key.clone())],
        other => panic!("the rule pack sent an unexpected command: {other:?}"),
    }
}

/// Every remediation command an agent received must be one a rule sent to that very agent,
/// with the same values, from the rule that matches one of the agent's own faults; and every
/// command a rule sent must have reached its agent. A wrong channel, a reboot meant for a
/// silent device reaching a rebooting one, or a command on a healthy agent all fail here.
fn misdirected_commands(outputs: &[Output], agents: &[AgentStatus]) -> Vec<String> {
    let sent: Vec<&ActionRecord> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Action(a) if a.status == ActionStatus::Sent => Some(a),
            _ => None,
        })
        .collect();
    let mut wrong = Vec::new();
    for agent in agents {
        let own_rules: BTreeSet<&str> = agent
            .faults
            .iter()
            .filter_map(|f| {
                EXPECTATIONS
                    .iter()
                    .find(|(s, ..)| *s == f.scenario)
                    .map(|(_, rule, ..)| *rule)
            })
            .collect();
        let meant: Vec<(&ActionRecord, (String, String, String))> = sent
            .iter()
            .filter(|a| a.endpoint_id == agent.eid)
            .flat_map(|a| as_received(&a.command).into_iter().map(move |r| (*a, r)))
            .collect();
        for (action, _) in &meant {
            if !own_rules.contains(action.rule.as_str()) {
                wrong.push(format!(
                    "{} sent {} to {} whose faults are {:?}",
                    action.rule,
                    action.action_id,
                    agent.eid,
                    agent.faults.iter().map(|f| f.scenario).collect::<Vec<_>>()
                ));
            }
        }
        for c in agent.commands.iter().filter(|c| c.kind != "get") {
            let got = (c.kind.clone(), c.path.clone(), c.detail.clone());
            if !meant.iter().any(|(_, r)| *r == got) {
                wrong.push(format!(
                    "{} received {got:?}, which no rule sent it",
                    agent.eid
                ));
            }
        }
    }
    // An action that succeeded was answered by its agent, so the agent must have recorded it.
    let succeeded: BTreeSet<&str> = outputs
        .iter()
        .filter_map(|o| match o {
            Output::Action(a) if a.status == ActionStatus::Succeeded => Some(a.action_id.as_str()),
            _ => None,
        })
        .collect();
    for a in sent
        .iter()
        .filter(|a| succeeded.contains(a.action_id.as_str()))
    {
        let reached = agents.iter().any(|ag| {
            ag.eid == a.endpoint_id
                && as_received(&a.command).iter().all(|r| {
                    ag.commands
                        .iter()
                        .any(|c| (c.kind.clone(), c.path.clone(), c.detail.clone()) == *r)
                })
        });
        if !reached {
            wrong.push(format!(
                "{} for {} never arrived",
                a.action_id, a.endpoint_id
            ));
        }
    }
    wrong
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
    eventually_sync("every Notify acknowledged", Duration::from_secs(60), || {
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
            Ok(())
        } else {
            Err(pending.into_iter().cloned().collect::<Vec<_>>())
        }
    })
    .await;
    sent
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
    // Read until the topic has been quiet for a while, within an overall bound.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    let mut idle = std::time::Instant::now();
    while idle.elapsed() < Duration::from_secs(3) {
        assert!(
            std::time::Instant::now() < deadline,
            "{topic} never went quiet"
        );
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
