//! `uspwatch decode`.

use std::process::ExitCode;

/// Arguments of `uspwatch decode`.
#[derive(Debug, clap::Args)]
pub struct DecodeArgs {
    /// The Record as hex.
    #[arg(long, conflicts_with_all = ["base64", "file"])]
    hex: Option<String>,
    /// The Record as base64.
    #[arg(long, conflicts_with = "file")]
    base64: Option<String>,
    /// A file holding the Record's raw bytes.
    file: Option<std::path::PathBuf>,
}

pub fn run(_args: &DecodeArgs) -> ExitCode {
    ExitCode::from(2)
}
