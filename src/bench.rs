//! `uspwatch bench`: the load harness. It starts the gateway in this process and drives it
//! over loopback MQTT from load worker processes (this binary again, `--worker`), so the
//! gateway's memory and file descriptors are measured apart from the simulated agents'. The
//! same load then goes through a stock rumqttd with a plain subscriber, in the same run, and
//! the results are printed as a table and optionally written as JSON.

mod baseline;
mod client;
mod hist;
mod memory;
mod proc;
mod progress;
mod report;
mod scenarios;
mod worker;

use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;

/// Arguments of `uspwatch bench`.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Scenarios to run, comma-separated: connections, ingest, kafka, fault, baseline, memory
    /// (not run by default).
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "connections,ingest,kafka,fault,baseline"
    )]
    pub scenarios: Vec<String>,
    /// Agents sending Notifies in the ingest, kafka and baseline scenarios.
    #[arg(long, default_value_t = 200)]
    pub agents: usize,
    /// Unanswered Notifies each ingest agent may have outstanding.
    #[arg(long, default_value_t = 8)]
    pub window: usize,
    /// Length of the max-rate ingest run (also the baseline's and the peak-RSS window).
    #[arg(long, default_value = "60s", value_parser = humantime::parse_duration)]
    pub duration: Duration,
    /// Fixed Notify rate of the latency run.
    #[arg(long, default_value_t = 10_000)]
    pub latency_rate: u64,
    /// Length of the fixed-rate latency run.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub latency_duration: Duration,
    /// Length of the ingest run against the mock Kafka cluster.
    #[arg(long, default_value = "20s", value_parser = humantime::parse_duration)]
    pub kafka_duration: Duration,
    /// Idle agents to ramp to (capped by the open-files limit).
    #[arg(long, default_value_t = 20_000)]
    pub connections: usize,
    /// Idle agents connected per second during the ramp.
    #[arg(long, default_value_t = 5_000)]
    pub connect_rate: u64,
    /// All idle agents reconnect within this window after the drop.
    #[arg(long, default_value = "10s", value_parser = humantime::parse_duration)]
    pub storm_window: Duration,
    /// Fault-to-command repetitions.
    #[arg(long, default_value_t = 20)]
    pub fault_reps: usize,
    /// Background Notifies per second during fault-to-command.
    #[arg(long, default_value_t = 2_000)]
    pub fault_background_rate: u64,
    /// Agents answered at one Notify/s each while one agent floods maximum-size Records
    /// (memory scenario).
    #[arg(long, default_value_t = 1_000)]
    pub memory_agents: usize,
    /// Length of each of the memory scenario's two runs (without and with the flood).
    #[arg(long, default_value = "30s", value_parser = humantime::parse_duration)]
    pub memory_duration: Duration,
    /// 127.0.0.x source addresses the agents spread over.
    #[arg(long, default_value_t = 32)]
    pub sources: usize,
    /// Tiny sizes, a few seconds in all (for the test suite).
    #[arg(long)]
    pub smoke: bool,
    /// Also write the results as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Internal: run as a load worker with this JSON job.
    #[arg(long, hide = true)]
    pub worker: Option<String>,
}

impl BenchArgs {
    /// Replaces the sizes with tiny ones.
    fn shrink(&mut self) {
        self.agents = 4;
        self.window = 2;
        self.duration = Duration::from_secs(2);
        self.latency_rate = 200;
        self.latency_duration = Duration::from_secs(1);
        self.kafka_duration = Duration::from_secs(2);
        self.connections = 50;
        self.connect_rate = 500;
        self.storm_window = Duration::from_secs(1);
        self.fault_reps = 2;
        self.fault_background_rate = 100;
        self.sources = 4;
        self.memory_agents = 20;
        self.memory_duration = Duration::from_secs(2);
    }

    fn wants(&self, s: &str) -> bool {
        self.scenarios.iter().any(|x| x.trim() == s)
    }
}

pub async fn run(mut args: BenchArgs) -> anyhow::Result<()> {
    if let Some(spec) = &args.worker {
        let spec: worker::Spec = serde_json::from_str(spec).context("worker job")?;
        return worker::run(spec).await;
    }
    let _ = tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| "error,rumqttd=off".into()),
        )
        .with_writer(std::io::stderr)
        .try_init();
    if args.smoke {
        args.shrink();
    }
    for s in &args.scenarios {
        if ![
            "connections",
            "ingest",
            "kafka",
            "fault",
            "baseline",
            "memory",
        ]
        .contains(&s.trim())
        {
            anyhow::bail!("unknown scenario {s:?}");
        }
    }
    let results = scenarios::run_all(&args).await?;
    print!("{}", results.table());
    if let Some(path) = &args.json {
        std::fs::write(path, serde_json::to_vec_pretty(&results)?)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}
