//! `uspwatch`: the binary that wires the protocol, broker, pipeline, rule and simulator crates
//! together and gives operators their command line.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

mod decode;

/// TR-369 (USP) gateway for ISP network operations centres.
#[derive(Debug, Parser)]
#[command(name = "uspwatch", version, about)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Decode a USP Record (hex, base64 or a file of raw bytes) and print it as JSON.
    Decode(decode::DecodeArgs),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Cmd::Decode(args) => decode::run(&args),
    }
}
