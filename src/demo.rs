//! `uspwatch demo` (the gateway plus a simulated fleet, with a live console) and
//! `uspwatch simulate` (a fleet against any broker).

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::Context;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use uspwatch_broker::ListenerKind;
use uspwatch_rules::{AlertState, Output, VerifyOutcome};
use uspwatch_sim::{FaultSpec, Fleet, FleetConfig, MqttMode};

use uspwatch::config::AppConfig;
use uspwatch::gateway::Gateway;

/// Faults the demo injects when none are given: three detectable faults, two of them fixable
/// by the default rules' actions, all starting within the first half minute.
pub const DEFAULT_DEMO_FAULTS: &str = "wifi_interference:0.05@5s,reboot_loop:0.02@2s,silent:0.03@20s,memory_leak:0.03@10s,overheating:0.02@10s";

/// Arguments of `uspwatch demo`.
#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Number of simulated agents.
    #[arg(long, default_value_t = 200)]
    agents: usize,
    /// How long to run before printing the summary and exiting.
    #[arg(long, default_value = "120s", value_parser = humantime::parse_duration)]
    duration: Duration,
    /// Comma-separated faults `scenario:fraction@onset`.
    #[arg(long, default_value = DEFAULT_DEMO_FAULTS)]
    faults: String,
    /// MQTT 5 port of the embedded broker (0 = pick a free port); MQTT 3.1.1 uses the next
    /// free port.
    #[arg(long, default_value_t = 1883)]
    mqtt_port: u16,
    /// HTTP port (0 = pick a free port).
    #[arg(long, default_value_t = 8080)]
    http_port: u16,
    /// MQTT versions of the agents: 5, 3.1.1 or mixed.
    #[arg(long, default_value = "mixed")]
    mqtt: MqttMode,
    /// Seed for fault assignment and values.
    #[arg(long, default_value_t = 7)]
    seed: u64,
    /// Where the embedded event log is written (default: a temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Divide the built-in rules' timers (every, for, keep_firing_for, cooldown,
    /// verify_after) by this factor, in step with the simulated devices reporting every few
    /// seconds; 1 keeps production timings.
    #[arg(long, default_value_t = 5)]
    time_scale: u32,
    /// Optional configuration file layered under the demo's own settings.
    #[arg(long, short)]
    config: Option<PathBuf>,
}

/// Arguments of `uspwatch simulate`.
#[derive(Debug, clap::Args)]
pub struct SimulateArgs {
    /// MQTT 5 address of the broker.
    #[arg(long, default_value = "127.0.0.1:1883")]
    broker: String,
    /// MQTT 3.1.1 address, when the broker uses a separate port for it.
    #[arg(long)]
    broker_v311: Option<String>,
    #[arg(long, default_value_t = 10)]
    agents: usize,
    #[arg(long, default_value = "5")]
    mqtt: MqttMode,
    /// Comma-separated faults `scenario:fraction@onset`.
    #[arg(long, default_value = "")]
    faults: String,
    #[arg(long, default_value_t = 7)]
    seed: u64,
    #[arg(long, default_value = "self::uspwatch")]
    controller: String,
    /// Stop after this long (default: until Ctrl-C).
    #[arg(long, value_parser = humantime::parse_duration)]
    duration: Option<Duration>,
    #[arg(long)]
    username: Option<String>,
    /// Password (prefer the USPWATCH_SIM_PASSWORD environment variable).
    #[arg(long, env = "USPWATCH_SIM_PASSWORD", hide_env_values = true)]
    password: Option<String>,
}

fn parse_faults(s: &str) -> anyhow::Result<Vec<FaultSpec>> {
    s.split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .map(|f| {
            f.parse::<FaultSpec>()
                .map_err(|e| anyhow::anyhow!("fault {f:?}: {e}"))
        })
        .collect()
}

pub async fn simulate(args: SimulateArgs) -> anyhow::Result<()> {
    uspwatch::telemetry::init_logging(&Default::default());
    let shutdown = CancellationToken::new();
    let cfg = FleetConfig {
        broker: args.broker,
        broker_v311: args.broker_v311,
        agents: args.agents,
        mqtt: args.mqtt,
        faults: parse_faults(&args.faults)?,
        seed: args.seed,
        controller_eid: args.controller,
        username: args.username,
        password: args.password,
        ..FleetConfig::default()
    };
    let fleet = Fleet::start(cfg, shutdown.clone()).await?;
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(5));
    loop {
        tokio::select! {
            _ = crate::run::wait_for_signal() => break,
            _ = tick.tick() => {
                let s = fleet.stats();
                tracing::info!(connected = s.connected, notifies = s.notifies_sent, acked = s.notify_resps_received, "fleet");
                if args.duration.is_some_and(|d| started.elapsed() >= d) {
                    break;
                }
            }
        }
    }
    fleet.stop().await;
    shutdown.cancel();
    Ok(())
}

pub async fn demo(args: DemoArgs) -> anyhow::Result<()> {
    let mut cfg = uspwatch::config::load(args.config.as_deref())?;
    uspwatch::telemetry::init_logging(&cfg.log);
    let metrics = uspwatch::telemetry::metrics();
    let tmp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary data directory")?;
            tmp.path().to_path_buf()
        }
    };
    demo_config(&mut cfg, &args, &data_dir);
    if args.time_scale > 1 && cfg.rules.default_pack {
        let rules_dir = data_dir.join("rules");
        std::fs::create_dir_all(&rules_dir)?;
        uspwatch::timescale::write_scaled_pack(&rules_dir, args.time_scale)?;
        cfg.rules.default_pack = false;
        cfg.rules.dirs.push(rules_dir);
    }
    let shutdown = CancellationToken::new();
    let gw = Arc::new(Gateway::start(cfg, shutdown.clone()).await?);
    let http = uspwatch::http::serve(gw.clone(), metrics, shutdown.clone()).await?;
    let v5 = listener(&gw, ListenerKind::V5).context("no MQTT 5 listener")?;
    let v311 = listener(&gw, ListenerKind::V4);
    println!(
        "uspwatch demo: MQTT 5 on {v5}{}, HTTP on http://{http}/ (API under /api/v1, metrics at /metrics)",
        v311.map(|a| format!(", MQTT 3.1.1 on {a}"))
            .unwrap_or_default()
    );
    println!("{} simulated agents, faults: {}", args.agents, args.faults);

    let fleet = Fleet::start(
        FleetConfig {
            broker: v5.to_string(),
            broker_v311: v311.map(|a| a.to_string()),
            agents: args.agents,
            mqtt: args.mqtt,
            faults: parse_faults(&args.faults)?,
            seed: args.seed,
            controller_eid: gw.config.pipeline.controller.endpoint_id.clone(),
            periodic_interval: Duration::from_secs(5),
            sample_interval: Duration::from_secs(2),
            notify_retry_min_wait: Duration::from_secs(2),
            ..FleetConfig::default()
        },
        shutdown.clone(),
    )
    .await?;

    let tally = Tally::spawn(&gw.rules, shutdown.clone());
    let console = Console::new();
    let started = Instant::now();
    let mut tick = tokio::time::interval(Duration::from_secs(1));
    let interrupted = loop {
        tokio::select! {
            _ = crate::run::wait_for_signal() => break true,
            _ = tick.tick() => {
                let summary = summary(&gw, &fleet, &tally);
                console.show(started.elapsed(), &summary);
                if started.elapsed() >= args.duration {
                    break false;
                }
            }
        }
    };
    let summary = summary(&gw, &fleet, &tally);
    console.finish();
    fleet.stop().await;
    shutdown.cancel();
    if interrupted {
        eprintln!("interrupted");
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

fn demo_config(cfg: &mut AppConfig, args: &DemoArgs, data_dir: &std::path::Path) {
    let local = |port| SocketAddr::from(([127, 0, 0, 1], port));
    cfg.broker.listeners.v5 = Some(local(args.mqtt_port));
    cfg.broker.listeners.v311 = Some(local(if args.mqtt_port == 0 {
        0
    } else {
        args.mqtt_port + 1
    }));
    // Simulated agents carry no credentials; they are bound by their usp-endpoint-id/client id.
    cfg.broker.allow_anonymous = true;
    cfg.pipeline.log.dir = data_dir.join("events");
    cfg.http.listen = local(args.http_port);
}

fn listener(gw: &Gateway, kind: ListenerKind) -> Option<SocketAddr> {
    gw.broker
        .local_addrs()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, a)| a)
}

/// Counts of rule outputs since the demo started (the engine's own stats are gauges of the
/// current state; the summary wants totals).
#[derive(Default)]
struct Tally {
    alerts_fired: AtomicU64,
    alerts_resolved: AtomicU64,
    actions_verified: AtomicU64,
}

impl Tally {
    fn spawn(rules: &uspwatch_rules::Engine, shutdown: CancellationToken) -> Arc<Tally> {
        let tally = Arc::new(Tally::default());
        let t = tally.clone();
        uspwatch::gateway::spawn_forward(rules.subscribe(), shutdown, move |out| match out {
            Output::Alert(c) => {
                let counter = match c.alert.state {
                    AlertState::Firing if c.previous != Some(AlertState::Firing) => &t.alerts_fired,
                    AlertState::Resolved if c.previous != Some(AlertState::Resolved) => {
                        &t.alerts_resolved
                    }
                    _ => return,
                };
                counter.fetch_add(1, Ordering::Relaxed);
            }
            Output::Action(a) => {
                if a.verify == Some(VerifyOutcome::Fixed) {
                    t.actions_verified.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        tally
    }
}

fn summary(gw: &Gateway, fleet: &Fleet, tally: &Tally) -> serde_json::Value {
    let b = gw.broker.stats();
    let p = gw.pipeline.stats();
    let r = gw.rules.stats();
    let f = fleet.stats();
    json!({
        "agents_connected": f.connected,
        "agents_online": b.connections,
        "events": p.events_written,
        "duplicates": p.duplicates,
        "alerts_pending": r.alerts_pending,
        "alerts_firing": r.alerts_firing,
        "alerts_fired": tally.alerts_fired.load(Ordering::Relaxed),
        "alerts_resolved": tally.alerts_resolved.load(Ordering::Relaxed),
        "actions_sent": r.actions_sent,
        "actions_verified": tally.actions_verified.load(Ordering::Relaxed),
        "actions_suppressed": r.actions_suppressed,
        "rejected": b.records_rejected,
    })
}

/// The live view: redrawn in place on a terminal, periodic log lines otherwise.
struct Console {
    tty: bool,
    drawn: std::sync::atomic::AtomicBool,
}

impl Console {
    fn new() -> Self {
        Console {
            tty: std::io::stdout().is_terminal(),
            drawn: false.into(),
        }
    }

    fn show(&self, elapsed: Duration, s: &serde_json::Value) {
        let secs = elapsed.as_secs();
        let g = |k: &str| s.get(k).and_then(|v| v.as_u64()).unwrap_or(0);
        let lines = [
            format!("uspwatch demo  t+{secs:>4}s"),
            format!("  agents online   {:>8}", g("agents_online")),
            format!("  events          {:>8}", g("events")),
            format!(
                "  alerts          pending {:>4}  firing {:>4}  fired {:>4}  resolved {:>4}",
                g("alerts_pending"),
                g("alerts_firing"),
                g("alerts_fired"),
                g("alerts_resolved")
            ),
            format!(
                "  actions         sent {:>4}  verified {:>4}  suppressed {:>4}",
                g("actions_sent"),
                g("actions_verified"),
                g("actions_suppressed")
            ),
            format!("  records rejected {:>7}", g("rejected")),
        ];
        let mut out = std::io::stdout().lock();
        if self.tty {
            if self.drawn.swap(true, std::sync::atomic::Ordering::Relaxed) {
                let _ = write!(out, "\x1b[{}A", lines.len());
            }
            for l in &lines {
                let _ = writeln!(out, "\x1b[2K{l}");
            }
        } else if secs.is_multiple_of(10) {
            let _ = writeln!(
                out,
                "{}",
                lines[1..]
                    .iter()
                    .map(|l| l.trim())
                    .collect::<Vec<_>>()
                    .join(" | ")
            );
        }
        let _ = out.flush();
    }

    fn finish(&self) {
        if self.tty {
            println!();
        }
    }
}
