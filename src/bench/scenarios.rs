//! The scenarios, run in an order that keeps measurements apart: connections first on a
//! fresh gateway (so its RSS growth is the connections' cost), then ingest and its latency
//! run, fault-to-command, the mock-Kafka gateway, and the stock broker last.

use std::net::SocketAddr;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio_util::sync::CancellationToken;

use uspwatch::{AppConfig, Gateway};
use uspwatch_broker::ListenerKind;
use uspwatch_proto::time::millis_u64;

use super::BenchArgs;
use super::baseline;
use super::proc::{self, RssSampler, Worker};
use super::progress::Steps;
use super::report::*;
use super::worker::{Gate, Report, Spec, Target};

const NOISE_PATH: &str = "Device.WiFi.Radio.1.Stats.Noise";
const TRIGGER_PATH: &str = "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value";
const EID_PREFIX: &str = "os::00256D-BENCH";

/// A rule that fires within ~100 ms of a temperature reading of 90 or more and sends a Set.
const FAST_RULE: &str = r#"
name = "bench_threshold"
severity = "critical"
every = "100ms"
window = "30s"
sql = """
SELECT endpoint_id, MAX(value_f64) AS peak FROM events
WHERE kind = 'value_change'
  AND path = 'Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value'
  AND value_f64 >= 90
GROUP BY endpoint_id
"""
[action]
type = "set"
objects = [{ obj_path = "Device.DeviceInfo.", params = { ProvisioningCode = "bench" } }]
mode = "enforce"
cooldown = "1h"
max_per_hour = 100000
max_fleet_fraction = 1.0
fleet_window = "1m"
"#;

/// Agent index ranges per scenario, so no two scenarios share an Endpoint ID.
const FIRST_CONN: usize = 1;
const FIRST_INGEST: usize = 300_000;
const FIRST_LATENCY: usize = 400_000;
const FIRST_KAFKA: usize = 500_000;
const FIRST_BASELINE: usize = 600_000;
const FIRST_FAULT_BG: usize = 700_000;
const FIRST_FAULT: usize = 800_000;

pub(super) struct Bed {
    pub(super) gw: Gateway,
    pub(super) target: Target,
    _dirs: Vec<tempfile::TempDir>,
}

async fn gateway(
    args: &BenchArgs,
    kafka: Option<String>,
    shutdown: &CancellationToken,
) -> anyhow::Result<Bed> {
    let data = tempfile::tempdir()?;
    let rules = tempfile::tempdir()?;
    std::fs::write(rules.path().join("bench_threshold.toml"), FAST_RULE)?;
    let mut cfg = AppConfig::default();
    cfg.broker.listeners.v5 = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    cfg.broker.listeners.v311 = None;
    cfg.broker.allow_anonymous = true;
    cfg.broker.max_connections =
        args.connections + args.agents * 2 + args.fault_reps + args.memory_agents * 2 + 1_000;
    // Each load agent sends at full speed, far above a real device's ingress limit.
    cfg.broker.ingress_rate = 0;
    cfg.broker.ingress_byte_rate = 0;
    cfg.pipeline.log.dir = data.path().join("events");
    if let Some(brokers) = kafka {
        let k = uspwatch_pipeline::KafkaConfig {
            brokers,
            ..Default::default()
        };
        cfg.pipeline.kafka = Some(k);
    }
    cfg.rules.default_pack = false;
    cfg.rules.dirs = vec![rules.path().to_path_buf()];
    cfg.rules.tick = Duration::from_millis(50);
    let problems = uspwatch::config::validate(&cfg);
    if !problems.is_empty() {
        bail!("bench configuration: {problems:?}");
    }
    let gw = Gateway::start(cfg, shutdown.clone()).await?;
    if !gw.rule_load_errors.is_empty() {
        bail!("bench rule: {:?}", gw.rule_load_errors);
    }
    let broker = gw
        .broker
        .local_addrs()
        .into_iter()
        .find(|(k, _)| *k == ListenerKind::V5)
        .map(|(_, a)| a)
        .context("no MQTT 5 listener")?;
    let c = &gw.config.pipeline.controller;
    let target = Target {
        broker,
        controller_eid: c.endpoint_id.clone(),
        controller_topic: c.own_topic(),
        agent_prefix: c.agent_prefix.clone(),
        eid_prefix: EID_PREFIX.into(),
        sources: args.sources,
    };
    Ok(Bed {
        gw,
        target,
        _dirs: vec![data, rules],
    })
}

pub async fn run_all(args: &BenchArgs) -> anyhow::Result<Results> {
    let shutdown = CancellationToken::new();
    let sampler = RssSampler::start(shutdown.clone());
    let mut r = Results::new(args, proc::machine());
    let bed = gateway(args, None, &shutdown).await?;
    r.gateway_idle_rss_mib = proc::rss_kib() as f64 / 1024.0;
    let wanted = [
        "connections",
        "ingest",
        "ingest",
        "fault",
        "kafka",
        "baseline",
    ];
    let mut steps = Steps::new(wanted.iter().filter(|s| args.wants(s)).count());
    if args.wants("connections") {
        let _p = steps.next("connections");
        r.connections = Some(connections(args, &bed).await?);
    }
    if args.wants("ingest") {
        // The fixed-rate run comes first, so it measures a gateway in steady state rather than
        // one still recovering from the overload of the maximum-rate run (run second, a few
        // hundred milliseconds of that recovery landed in its p99).
        let p = steps.next(&format!("ingest at {} Notify/s", args.latency_rate));
        r.latency = Some(
            ingest(
                args,
                &bed,
                FIRST_LATENCY,
                args.latency_rate,
                args.latency_duration,
            )
            .await?,
        );
        drop(p);
        let _p = steps.next("ingest at the maximum rate");
        sampler.reset();
        let mut ing = ingest(args, &bed, FIRST_INGEST, 0, args.duration).await?;
        ing.peak_rss_mib = sampler.peak_mib();
        r.ingest = Some(ing);
    }
    if args.wants("fault") {
        let _p = steps.next("fault-to-command");
        r.fault = Some(fault(args, &bed).await?);
    }
    if args.wants("kafka") {
        let _p = steps.next("ingest into mock Kafka");
        let cluster = rdkafka::mocking::MockCluster::new(1).context("mock Kafka cluster")?;
        let events = uspwatch_pipeline::KafkaConfig::default().topics.events;
        cluster
            .create_topic(&events, 4, 1)
            .context("mock Kafka topic")?;
        let token = shutdown.child_token();
        let kbed = gateway(args, Some(cluster.bootstrap_servers()), &token).await?;
        r.kafka = Some(ingest(args, &kbed, FIRST_KAFKA, 0, args.kafka_duration).await?);
        token.cancel();
        // The pipeline lets go of Kafka before the mock cluster goes away.
        let _ = tokio::time::timeout(Duration::from_secs(10), kbed.gw.pipeline.join()).await;
        drop(kbed);
        drop(cluster);
    }
    if args.wants("memory") {
        r.memory = Some(super::memory::run(args, &bed, &sampler).await?);
    }
    if args.wants("baseline") {
        let _p = steps.next("the same load through stock rumqttd");
        sampler.reset();
        let mut b = plain(args, &bed).await?;
        b.peak_rss_mib = sampler.peak_mib();
        r.baseline = Some(b);
    }
    r.finish();
    shutdown.cancel();
    Ok(r)
}

async fn wait_for(mut f: impl FnMut() -> bool, timeout: Duration) -> bool {
    let deadline = tokio::time::Instant::now() + timeout;
    while tokio::time::Instant::now() < deadline {
        if f() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    f()
}

async fn connections(args: &BenchArgs, bed: &Bed) -> anyhow::Result<ConnResult> {
    // The gateway holds one descriptor per connection, and so does each worker.
    let limit = proc::fd_limit() as usize;
    let reserve = 512;
    let cap = limit.saturating_sub(reserve).max(1);
    let target = args.connections.min(cap);
    let per_worker = cap;
    let workers_n = target.div_ceil(per_worker).max(1);
    let rss_before = proc::rss_kib();
    let stats0 = bed.gw.broker.stats();
    let started = tokio::time::Instant::now();
    let mut workers = Vec::new();
    for w in 0..workers_n {
        let first = FIRST_CONN + w * per_worker;
        let n = per_worker.min(target - w * per_worker);
        workers.push(Worker::spawn(&Spec::Idle {
            target: bed.target.clone(),
            first,
            agents: n,
            connect_rate: (args.connect_rate / workers_n as u64).max(1),
            storm_window_ms: millis_u64(args.storm_window),
        })?);
    }
    let ramp_budget =
        Duration::from_secs_f64(target as f64 / args.connect_rate.max(1) as f64 * 3.0 + 60.0);
    let (mut up, mut errors) = (0u64, 0u64);
    for w in &mut workers {
        if let Report::Connected {
            up: u, errors: e, ..
        } = w.next(ramp_budget).await?
        {
            up += u;
            errors += e;
        }
    }
    let ramp = started.elapsed();
    let broker = bed.gw.broker.clone();
    wait_for(
        || broker.stats().connections >= stats0.connections + up,
        Duration::from_secs(10),
    )
    .await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let achieved = broker.stats().connections - stats0.connections;
    let rss_after = proc::rss_kib();

    // The storm: every agent drops at once and all return within the storm window.
    let before_storm = broker.stats();
    let storm_start = tokio::time::Instant::now();
    for w in &mut workers {
        w.send("storm").await?;
    }
    wait_for(
        || broker.stats().connections < before_storm.connections,
        Duration::from_secs(10),
    )
    .await;
    let storm_budget = args.storm_window + Duration::from_secs(120);
    let recovered = wait_for(
        || {
            let s = broker.stats();
            s.connections >= before_storm.connections
                && s.connects_accepted >= before_storm.connects_accepted + achieved
        },
        storm_budget,
    )
    .await;
    let recovery = storm_start.elapsed();
    let (mut back, mut storm_errors, mut storm_client_s) = (0u64, 0u64, 0f64);
    for w in &mut workers {
        if let Ok(Report::Recovered {
            up: u,
            errors: e,
            elapsed_ms,
        }) = w.next(storm_budget).await
        {
            back += u;
            storm_errors += e;
            storm_client_s = storm_client_s.max(elapsed_ms as f64 / 1000.0);
        }
    }
    let after = broker.stats();
    for w in workers {
        w.finish().await;
    }
    let plain = plain_connections(args, bed, target.min(per_worker)).await?;
    Ok(ConnResult {
        plain,
        requested: args.connections,
        target,
        fd_limit: limit as u64,
        achieved,
        connect_errors: errors,
        ramp_s: ramp.as_secs_f64(),
        connect_rate_per_s: up as f64 / ramp.as_secs_f64().max(1e-9),
        rss_before_mib: rss_before as f64 / 1024.0,
        rss_after_mib: rss_after as f64 / 1024.0,
        rss_per_connection_kib: (rss_after.saturating_sub(rss_before)) as f64
            / achieved.max(1) as f64,
        storm_agents: achieved,
        storm_recovered: recovered,
        storm_recovery_s: recovery.as_secs_f64(),
        storm_reconnected: back,
        storm_client_s,
        storm_errors,
        storm_refused: after.connects_refused - before_storm.connects_refused,
    })
}

/// The same idle agents against stock rumqttd in its own process (so its RSS is its own).
async fn plain_connections(
    args: &BenchArgs,
    bed: &Bed,
    n: usize,
) -> anyhow::Result<PlainConnResult> {
    let c = &bed.gw.config.pipeline.controller;
    let mut broker = Worker::spawn(&Spec::PlainBroker {
        max_connections: n + 64,
        controller_prefix: c.controller_prefix.clone(),
        controller_topic: bed.target.controller_topic.clone(),
    })?;
    let Report::Listening { addr } = broker.next(Duration::from_secs(30)).await? else {
        bail!("unexpected worker report");
    };
    let rss = |r: Report| match r {
        Report::Rss { kib } => Ok(kib),
        _ => Err(anyhow::anyhow!("unexpected worker report")),
    };
    broker.send("rss").await?;
    let before = rss(broker.next(Duration::from_secs(10)).await?)?;
    let mut w = Worker::spawn(&Spec::Idle {
        target: Target {
            broker: addr,
            ..bed.target.clone()
        },
        first: FIRST_CONN,
        agents: n,
        connect_rate: args.connect_rate.max(1),
        storm_window_ms: millis_u64(args.storm_window),
    })?;
    let budget = Duration::from_secs_f64(n as f64 / args.connect_rate.max(1) as f64 * 3.0 + 60.0);
    let Report::Connected { up, elapsed_ms, .. } = w.next(budget).await? else {
        bail!("unexpected worker report");
    };
    tokio::time::sleep(Duration::from_secs(1)).await;
    broker.send("rss").await?;
    let after = rss(broker.next(Duration::from_secs(10)).await?)?;
    w.send("storm").await?;
    let storm = w.next(args.storm_window + Duration::from_secs(120)).await?;
    w.finish().await;
    broker.finish().await;
    let (storm_up, storm_s) = match storm {
        Report::Recovered { up, elapsed_ms, .. } => (up, elapsed_ms as f64 / 1000.0),
        _ => (0, 0.0),
    };
    Ok(PlainConnResult {
        achieved: up,
        connect_rate_per_s: up as f64 / (elapsed_ms as f64 / 1000.0).max(1e-9),
        rss_before_mib: before as f64 / 1024.0,
        rss_after_mib: after as f64 / 1024.0,
        rss_per_connection_kib: after.saturating_sub(before) as f64 / up.max(1) as f64,
        storm_reconnected: storm_up,
        storm_client_s: storm_s,
    })
}

async fn ingest(
    args: &BenchArgs,
    bed: &Bed,
    first: usize,
    rate: u64,
    duration: Duration,
) -> anyhow::Result<IngestResult> {
    let mut w = Worker::spawn(&Spec::Ingest {
        target: bed.target.clone(),
        first,
        agents: args.agents,
        window: args.window,
        rate,
        duration_ms: millis_u64(duration),
        gate: Gate::NotifyResp,
        path: NOISE_PATH.into(),
        value_size: 0,
    })?;
    let Report::Connected { up, .. } = w.next(Duration::from_secs(120)).await? else {
        bail!("unexpected worker report");
    };
    let p0 = bed.gw.pipeline.stats();
    let b0 = bed.gw.broker.stats();
    let t0 = tokio::time::Instant::now();
    let done = w.next(duration + Duration::from_secs(60)).await?;
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    let p1 = bed.gw.pipeline.stats();
    let b1 = bed.gw.broker.stats();
    w.finish().await;
    let Report::Ingested {
        sent,
        answered,
        errors,
        elapsed_ms,
        latency,
    } = done
    else {
        bail!("unexpected worker report");
    };
    let secs = (elapsed_ms as f64 / 1000.0).max(1e-9);
    Ok(IngestResult {
        agents: up,
        window: args.window,
        target_rate: rate,
        duration_s: secs,
        sent,
        answered,
        errors,
        notifies_per_s: answered as f64 / secs,
        records_accepted_per_s: (b1.records_accepted - b0.records_accepted) as f64 / elapsed,
        events_durable_per_s: (p1.events_written - p0.events_written) as f64 / elapsed,
        latency: latency.summary(),
        peak_rss_mib: 0.0,
    })
}

async fn plain(args: &BenchArgs, bed: &Bed) -> anyhow::Result<BaselineResult> {
    let c = &bed.gw.config.pipeline.controller;
    let p = baseline::start(
        args.agents + 64,
        &c.controller_prefix,
        &bed.target.controller_topic,
    )
    .await?;
    let target = Target {
        broker: p.addr,
        ..bed.target.clone()
    };
    let mut w = Worker::spawn(&Spec::Ingest {
        target,
        first: FIRST_BASELINE,
        agents: args.agents,
        window: args.window,
        rate: 0,
        duration_ms: millis_u64(args.duration),
        gate: Gate::PubAck,
        path: NOISE_PATH.into(),
        value_size: 0,
    })?;
    let Report::Connected { up, .. } = w.next(Duration::from_secs(120)).await? else {
        bail!("unexpected worker report");
    };
    let d0 = p.delivered.load(std::sync::atomic::Ordering::Relaxed);
    let t0 = tokio::time::Instant::now();
    let done = w.next(args.duration + Duration::from_secs(60)).await?;
    let elapsed = t0.elapsed().as_secs_f64().max(1e-9);
    let d1 = p.delivered.load(std::sync::atomic::Ordering::Relaxed);
    w.finish().await;
    let Report::Ingested {
        sent,
        answered,
        errors,
        elapsed_ms,
        latency,
    } = done
    else {
        bail!("unexpected worker report");
    };
    let secs = (elapsed_ms as f64 / 1000.0).max(1e-9);
    Ok(BaselineResult {
        agents: up,
        window: args.window,
        duration_s: secs,
        sent,
        acked: answered,
        errors,
        acked_per_s: answered as f64 / secs,
        delivered_per_s: (d1 - d0) as f64 / elapsed,
        puback_latency: latency.summary(),
        peak_rss_mib: 0.0,
    })
}

async fn fault(args: &BenchArgs, bed: &Bed) -> anyhow::Result<FaultResult> {
    let reps = args.fault_reps.max(1);
    let bg_duration = Duration::from_secs(30) * reps as u32 / 10 + Duration::from_secs(30);
    let mut bg = Worker::spawn(&Spec::Ingest {
        target: bed.target.clone(),
        first: FIRST_FAULT_BG,
        agents: args.agents,
        window: args.window,
        rate: args.fault_background_rate,
        duration_ms: millis_u64(bg_duration),
        gate: Gate::NotifyResp,
        path: NOISE_PATH.into(),
        value_size: 0,
    })?;
    bg.next(Duration::from_secs(120)).await?;
    let p0 = bed.gw.pipeline.stats();
    let t0 = tokio::time::Instant::now();
    let mut w = Worker::spawn(&Spec::Fault {
        target: bed.target.clone(),
        first: FIRST_FAULT,
        reps,
        path: TRIGGER_PATH.into(),
        value: "95".into(),
        timeout_ms: 10_000,
    })?;
    w.next(Duration::from_secs(60)).await?;
    // Repetitions run one after another, each bounded by its 10 s timeout.
    let done = w
        .next(Duration::from_secs(11) * reps as u32 + Duration::from_secs(10))
        .await?;
    let bg_rate = (bed.gw.pipeline.stats().events_written - p0.events_written) as f64
        / t0.elapsed().as_secs_f64();
    w.finish().await;
    drop(bg);
    let Report::Faults {
        latency,
        timeouts,
        errors,
    } = done
    else {
        bail!("unexpected worker report");
    };
    Ok(FaultResult {
        reps,
        background_rate: args.fault_background_rate,
        background_events_per_s: bg_rate,
        latency: latency.summary(),
        timeouts,
        errors,
    })
}
