//! `uspwatch`: the binary that wires the protocol, broker, pipeline, rule and simulator crates
//! together and gives operators their command line.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod bench;
mod decode;
mod demo;
mod log_cmd;
mod rules_cmd;
mod run;

use uspwatch::config;

// Under ingest load glibc malloc took a fifth of the gateway's CPU (arena locks, chunk
// consolidation); jemalloc's thread caches cut that, and its decay purging keeps RSS bounded.
#[global_allocator]
static ALLOC: tikv_jemallocator::Jemalloc = tikv_jemallocator::Jemalloc;

/// TR-369 (USP) gateway for ISP network operations centres.
#[derive(Debug, Parser)]
#[command(name = "uspwatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Run the gateway: MQTT broker with the USP plugin, controller, event log/Kafka, rules, HTTP.
    Run(run::RunArgs),
    /// Run the gateway with a simulated fleet and faults, showing detection and remediation live.
    Demo(demo::DemoArgs),
    /// Connect a simulated fleet of USP agents to any MQTT broker.
    Simulate(demo::SimulateArgs),
    /// Decode a USP Record (hex, base64 or a file of raw bytes) and print it as JSON.
    Decode(decode::DecodeArgs),
    /// Validate a configuration file (and the environment overlay); lists every problem.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
    /// Print the default configuration, annotated.
    GenerateConfig,
    /// Rule tooling.
    Rules {
        #[command(subcommand)]
        command: rules_cmd::RulesCmd,
    },
    /// Backtest rules over recorded events (JSON lines, one Event per line).
    Replay(rules_cmd::ReplayArgs),
    /// Load harness: throughput, latency, connections and memory, against plain rumqttd.
    Bench(bench::BenchArgs),
    /// Print the embedded event log as JSON lines (tail, follow, filter by device, kind, time).
    Log(log_cmd::LogArgs),
    /// Print the argon2 hash of a password for the broker's credentials file (read from stdin).
    HashPassword,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Decode(args) => decode::run(&args),
        Cmd::CheckConfig { file } => check_config(&file),
        Cmd::GenerateConfig => {
            print!("{}", config::generate());
            ExitCode::SUCCESS
        }
        Cmd::HashPassword => hash_password(),
        Cmd::Log(args) => log_cmd::run(&args),
        Cmd::Run(args) => exit(runtime().and_then(|rt| rt.block_on(run::run(args)))),
        Cmd::Demo(args) => exit(runtime().and_then(|rt| rt.block_on(demo::demo(args)))),
        Cmd::Simulate(args) => exit(runtime().and_then(|rt| rt.block_on(demo::simulate(args)))),
        Cmd::Rules { command } => rules_cmd::run(command),
        Cmd::Bench(args) => exit(runtime().and_then(|rt| rt.block_on(bench::run(args)))),
        Cmd::Replay(args) => exit(runtime().and_then(|rt| rt.block_on(rules_cmd::replay(args)))),
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_name("uspwatch")
        .build()?)
}

fn exit(r: anyhow::Result<()>) -> ExitCode {
    match r {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn check_config(file: &std::path::Path) -> ExitCode {
    match config::load(Some(file)) {
        Ok(c) => {
            println!("{}: ok", file.display());
            if c.http.tokens.is_empty() {
                println!("warning: [http] tokens is empty, the API needs no authentication");
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprint!("{}: {e}", file.display());
            ExitCode::from(2)
        }
    }
}

fn hash_password() -> ExitCode {
    let mut line = String::new();
    if std::io::stdin().read_line(&mut line).is_err() || line.trim().is_empty() {
        eprintln!("error: give the password on standard input");
        return ExitCode::from(2);
    }
    match uspwatch_broker::hash_password(line.trim_end_matches(['\r', '\n'])) {
        Ok(h) => {
            println!("{h}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: {e}");
            ExitCode::FAILURE
        }
    }
}
