//! `uspwatch demo` (the gateway plus a simulated fleet, with a live console) and
//! `uspwatch simulate` (a fleet against any broker).
//!
//! On a terminal the demo is a full-screen view (`demo/console.rs`) and logs go to a file;
//! otherwise it prints one line per step of the story (alert fired, action sent, verified,
//! resolved), never one per connection.

use std::io::{IsTerminal, Write};
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use parking_lot::Mutex;
use serde_json::json;
use tokio_util::sync::CancellationToken;

use uspwatch_broker::ListenerKind;
use uspwatch_sim::{FaultSpec, Fleet, FleetConfig, MqttMode};

mod console;
mod story;

use story::{Snapshot, Story};

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
    /// One line per step of the story even on a terminal, instead of the full-screen view.
    #[arg(long)]
    plain: bool,
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
    let tty = std::io::stdout().is_terminal() && !args.plain;
    let tmp;
    let data_dir = match &args.data_dir {
        Some(d) => d.clone(),
        None => {
            tmp = tempfile::tempdir().context("creating a temporary data directory")?;
            tmp.path().to_path_buf()
        }
    };
    // The full-screen view owns the terminal, so logs go to a file that outlives the run.
    let log_file = match &args.data_dir {
        Some(d) => d.join("uspwatch-demo.log"),
        None => std::env::temp_dir().join(format!("uspwatch-demo-{}.log", std::process::id())),
    };
    let cfg = demo_config(&args, &data_dir, tty.then_some(log_file.as_path()))?;
    let metrics = uspwatch::telemetry::metrics();
    let shutdown = CancellationToken::new();
    let gw = Arc::new(Gateway::start(cfg, shutdown.clone()).await?);
    let http = uspwatch::http::serve(gw.clone(), metrics, shutdown.clone()).await?;
    let v5 = listener(&gw, ListenerKind::V5).context("no MQTT 5 listener")?;
    let v311 = listener(&gw, ListenerKind::V4);
    let endpoints = format!(
        "MQTT 5 {v5}{} · web console and API http://{http}/",
        v311.map(|a| format!(" · MQTT 3.1.1 {a}"))
            .unwrap_or_default()
    );
    if !tty {
        println!("uspwatch demo: {endpoints} (API under /api/v1, metrics at /metrics)");
        println!("{} simulated agents, faults: {}", args.agents, args.faults);
    }

    let started = Instant::now();
    let story = Arc::new(Mutex::new(Story::new(started)));
    feed_story(&gw, &story, shutdown.clone());
    // Provisioning a large fleet takes a while (agents connect at a bounded rate): the
    // console shows the progress meanwhile.
    let fleet_cfg = FleetConfig {
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
    };
    let mut fleet_start = tokio::spawn(Fleet::start(fleet_cfg, shutdown.clone()));
    let mut fleet: Option<Fleet> = None;
    let view = View {
        gw: &gw,
        story: &story,
        started,
        args: &args,
        endpoints: &endpoints,
        log_file: &log_file,
    };
    let outcome = if tty {
        view.run_screen(&mut fleet_start, &mut fleet).await
    } else {
        view.run_lines(&mut fleet_start, &mut fleet).await
    };
    if fleet.is_none() {
        fleet_start.abort();
    }
    let summary = summary(&gw, fleet.as_ref(), &story.lock());
    if let Some(f) = fleet {
        f.stop().await;
    }
    shutdown.cancel();
    if let Ended::Interrupted = outcome? {
        eprintln!("interrupted");
    }
    if tty {
        println!("logs: {}", log_file.display());
    }
    println!("{}", serde_json::to_string(&summary)?);
    Ok(())
}

/// Feeds the story from the rule engine's outputs and the broker's quarantine stream.
fn feed_story(gw: &Gateway, story: &Arc<Mutex<Story>>, shutdown: CancellationToken) {
    let s = story.clone();
    uspwatch::gateway::spawn_forward(gw.rules.subscribe(), shutdown.clone(), move |out| {
        s.lock().on_output(&out)
    });
    let s = story.clone();
    uspwatch::gateway::spawn_forward(gw.broker.quarantine(), shutdown, move |q| {
        s.lock().on_quarantine(&q.reason)
    });
}

enum Ended {
    Elapsed,
    Interrupted,
}

type FleetStart = tokio::task::JoinHandle<uspwatch_sim::Result<Fleet>>;

/// What the running demo shows, on a terminal or as lines.
struct View<'a> {
    gw: &'a Gateway,
    story: &'a Mutex<Story>,
    started: Instant,
    args: &'a DemoArgs,
    endpoints: &'a str,
    log_file: &'a std::path::Path,
}

impl View<'_> {
    /// Takes the started fleet once `Fleet::start` has returned; a failed start ends the demo.
    async fn poll_fleet(
        &self,
        start: &mut FleetStart,
        fleet: &mut Option<Fleet>,
    ) -> anyhow::Result<()> {
        if fleet.is_none() && start.is_finished() {
            *fleet = Some(start.await.context("fleet task")??);
        }
        Ok(())
    }

    async fn run_screen(
        &self,
        start: &mut FleetStart,
        fleet: &mut Option<Fleet>,
    ) -> anyhow::Result<Ended> {
        let mut screen = console::Screen::open().context("opening the terminal")?;
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = crate::run::wait_for_signal() => return Ok(Ended::Interrupted),
                _ = tick.tick() => {}
            }
            self.poll_fleet(start, fleet).await?;
            let snap = Snapshot::take(self.gw);
            {
                let mut story = self.story.lock();
                story.sample_events(snap.events_total);
                let header = console::Header {
                    elapsed: self.started.elapsed(),
                    duration: self.args.duration,
                    endpoints: self.endpoints,
                    log_file: self.log_file,
                    agents: self.args.agents,
                };
                screen.draw(&header, &snap, &story)?;
                story.take_lines();
            }
            if self.started.elapsed() >= self.args.duration {
                return Ok(Ended::Elapsed);
            }
        }
    }

    async fn run_lines(
        &self,
        start: &mut FleetStart,
        fleet: &mut Option<Fleet>,
    ) -> anyhow::Result<Ended> {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        let mut announced_fleet = false;
        let mut out = std::io::stdout();
        loop {
            tokio::select! {
                _ = crate::run::wait_for_signal() => return Ok(Ended::Interrupted),
                _ = tick.tick() => {}
            }
            self.poll_fleet(start, fleet).await?;
            let snap = Snapshot::take(self.gw);
            let secs = self.started.elapsed().as_secs();
            let mut story = self.story.lock();
            story.sample_events(snap.events_total);
            let connected = snap.broker_connections as usize;
            if !announced_fleet && connected >= self.args.agents {
                announced_fleet = true;
                story.line(format!("fleet connected   {connected} agents"));
            } else if !announced_fleet && secs > 0 && secs.is_multiple_of(5) {
                story.line(format!(
                    "fleet connecting  {connected}/{} agents",
                    self.args.agents
                ));
            }
            if secs > 0 && secs.is_multiple_of(STATUS_EVERY_S) {
                let t = snap.totals();
                let (rate, verified) = (story.rate(), story.actions_verified);
                story.line(format!(
                    "status            {} online, {} stale, {} offline; {} events ({}/s); {} firing, {} pending; {} actions verified fixed; {} records quarantined",
                    t.online,
                    t.stale,
                    t.offline,
                    snap.events_total,
                    rate,
                    snap.firing.len(),
                    snap.pending,
                    verified,
                    snap.records_rejected
                ));
            }
            for l in story.take_lines() {
                let _ = writeln!(out, "{l}");
            }
            let _ = out.flush();
            drop(story);
            if self.started.elapsed() >= self.args.duration {
                return Ok(Ended::Elapsed);
            }
        }
    }
}

/// Off a terminal, a status line this often (seconds), between the story lines.
const STATUS_EVERY_S: u64 = 30;

/// The demo's configuration (over `--config`, if given), with logging installed: to
/// `log_file` when the full-screen view owns the terminal.
fn demo_config(
    args: &DemoArgs,
    data_dir: &std::path::Path,
    log_file: Option<&std::path::Path>,
) -> anyhow::Result<AppConfig> {
    let mut cfg = uspwatch::config::load(args.config.as_deref())?;
    match log_file {
        Some(f) => uspwatch::telemetry::init_logging_to_file(&cfg.log, f)
            .with_context(|| format!("opening the log file {}", f.display()))?,
        None => uspwatch::telemetry::init_logging(&cfg.log),
    }
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
    if args.time_scale > 1 && cfg.rules.default_pack {
        let rules_dir = data_dir.join("rules");
        std::fs::create_dir_all(&rules_dir)?;
        uspwatch::timescale::write_scaled_pack(&rules_dir, args.time_scale)?;
        cfg.rules.default_pack = false;
        cfg.rules.dirs.push(rules_dir);
    }
    Ok(cfg)
}

fn listener(gw: &Gateway, kind: ListenerKind) -> Option<SocketAddr> {
    gw.broker
        .local_addrs()
        .into_iter()
        .find(|(k, _)| *k == kind)
        .map(|(_, a)| a)
}

fn summary(gw: &Gateway, fleet: Option<&Fleet>, story: &Story) -> serde_json::Value {
    let b = gw.broker.stats();
    let p = gw.pipeline.stats();
    let r = gw.rules.stats();
    json!({
        "agents_connected": fleet.map_or(0, |f| f.stats().connected),
        "agents_online": b.connections,
        "events": p.events_written,
        "duplicates": p.duplicates,
        "alerts_pending": r.alerts_pending,
        "alerts_firing": r.alerts_firing,
        "alerts_fired": story.alerts_fired,
        "alerts_resolved": story.alerts_resolved,
        "actions_sent": r.actions_sent,
        "actions_verified": story.actions_verified,
        "actions_suppressed": r.actions_suppressed,
        "rejected": b.records_rejected,
    })
}
