//! `uspwatch rules test` and `uspwatch replay`.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

/// Rule subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum RulesCmd {
    /// Run rule test cases (input events + expected alerts/actions), like `promtool test rules`.
    Test {
        /// Directory of rule files and their `tests/` cases.
        dir: PathBuf,
    },
}

/// Arguments of `uspwatch replay`.
#[derive(Debug, clap::Args)]
pub struct ReplayArgs {
    /// Directory of rule files, used instead of the built-in pack (default: the built-in pack).
    #[arg(long)]
    rules: Option<PathBuf>,
    /// Recorded events, one JSON Event per line.
    #[arg(long)]
    events: PathBuf,
    /// Print the full report as JSON instead of a table.
    #[arg(long)]
    json: bool,
}

pub fn run(cmd: RulesCmd) -> ExitCode {
    match cmd {
        RulesCmd::Test { dir } => match uspwatch_rules::testing::run_tests(&dir) {
            Ok(report) => {
                print!("{report}");
                if report.failed() == 0 {
                    ExitCode::SUCCESS
                } else {
                    ExitCode::FAILURE
                }
            }
            Err(e) => {
                eprintln!("error: {e}");
                ExitCode::from(2)
            }
        },
    }
}

pub async fn replay(args: ReplayArgs) -> anyhow::Result<()> {
    let mut cfg = uspwatch_rules::RulesConfig::default();
    if let Some(d) = args.rules {
        // A rules directory replaces the built-in pack: backtesting a copy of a pack rule
        // would otherwise clash with its built-in namesake.
        cfg.default_pack = false;
        cfg.dirs = vec![d];
    }
    let tty = std::io::stderr().is_terminal();
    let mut last_pct = u64::MAX;
    let report = uspwatch_rules::replay::replay(&cfg, &args.events, |done, total| {
        let pct = (done * 100).checked_div(total).unwrap_or(100);
        if pct != last_pct && tty {
            last_pct = pct;
            let bar = "#".repeat((pct / 5) as usize);
            eprint!("\r[{bar:<20}] {pct:>3}%");
        }
    })
    .await?;
    if tty {
        eprintln!();
    }
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{report}");
    }
    Ok(())
}
