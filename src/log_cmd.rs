//! `uspwatch log`: the embedded event log as JSON lines, the way a Kafka console consumer
//! shows a topic — for operators of the embedded default, who have no Kafka to read.
//!
//! Each line is one record's value exactly as it would be on Kafka (an Event, a Sample, a
//! presence or quarantine record, …). Filters: the stream (one of the Kafka topics' logical
//! names, or `all`), the device (the record key), the kind (the `record_type` header: the
//! event kind, the sample source, the quarantine reason, …) and a time range. `--tail N`
//! starts with the last N matches; `--follow` keeps printing what is written afterwards.

use std::collections::VecDeque;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{Context, bail};
use uspwatch_pipeline::RecordTopic;
use uspwatch_pipeline::log::{LogReader, LogRecord};

/// How often `--follow` looks for new records.
const FOLLOW_POLL: Duration = Duration::from_millis(250);
/// Records read from the log at a time.
const BATCH: usize = 1000;

/// Arguments of `uspwatch log`.
#[derive(Debug, clap::Args)]
pub struct LogArgs {
    /// The log directory. Default: `[pipeline.log] dir` of `--config`, else `./data/events`.
    #[arg(long)]
    dir: Option<PathBuf>,
    /// Take the log directory from this configuration file.
    #[arg(long)]
    config: Option<PathBuf>,
    /// `events`, `telemetry`, `presence`, `quarantine`, `commands`, `alerts` or `all`.
    #[arg(long, default_value = "events")]
    stream: String,
    /// Only records of this device (Endpoint ID).
    #[arg(long)]
    device: Option<String>,
    /// Only records of this kind (e.g. `value_change`, `event`, `sample`'s source `usp_push`,
    /// a quarantine reason).
    #[arg(long)]
    kind: Option<String>,
    /// Only records written at or after this time: RFC 3339 (`2026-11-25T09:00:00Z`) or an age
    /// (`10m`, `2h`).
    #[arg(long)]
    since: Option<String>,
    /// Only records written before this time (same forms as `--since`).
    #[arg(long)]
    until: Option<String>,
    /// Start with the last N matching records only.
    #[arg(long)]
    tail: Option<usize>,
    /// Keep running and print records as they are written.
    #[arg(long, short = 'f')]
    follow: bool,
}

struct Filter {
    stream: Option<RecordTopic>,
    device: Option<String>,
    kind: Option<String>,
    since_ms: Option<i64>,
    until_ms: Option<i64>,
}

impl Filter {
    fn matches(&self, r: &LogRecord) -> bool {
        self.stream.is_none_or(|s| s == r.topic)
            && self.device.as_deref().is_none_or(|d| d == r.key)
            && self.kind.as_deref().is_none_or(|k| k == r.record_type)
            && self.since_ms.is_none_or(|t| r.at_ms >= t)
            && self.until_ms.is_none_or(|t| r.at_ms < t)
    }
}

fn stream_of(name: &str) -> anyhow::Result<Option<RecordTopic>> {
    Ok(Some(match name {
        "all" => return Ok(None),
        "events" => RecordTopic::Events,
        "telemetry" => RecordTopic::Telemetry,
        "presence" => RecordTopic::Presence,
        "quarantine" => RecordTopic::Quarantine,
        "commands" => RecordTopic::Commands,
        "alerts" => RecordTopic::Alerts,
        other => bail!(
            "unknown stream {other:?}: use events, telemetry, presence, quarantine, commands, alerts or all"
        ),
    }))
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .unwrap_or(0)
}

/// An RFC 3339 instant or an age before now, as epoch milliseconds.
fn instant(s: &str) -> anyhow::Result<i64> {
    if let Ok(t) = humantime::parse_rfc3339_weak(s) {
        let d = t.duration_since(UNIX_EPOCH).unwrap_or_default();
        return Ok(i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
    }
    let age = humantime::parse_duration(s)
        .with_context(|| format!("{s:?} is neither an RFC 3339 time nor an age like 10m"))?;
    Ok(now_ms().saturating_sub(i64::try_from(age.as_millis()).unwrap_or(i64::MAX)))
}

fn log_dir(args: &LogArgs) -> anyhow::Result<PathBuf> {
    if let Some(d) = &args.dir {
        return Ok(d.clone());
    }
    match &args.config {
        Some(f) => Ok(uspwatch::config::load(Some(f))
            .map_err(|e| anyhow::anyhow!("{}: {e}", f.display()))?
            .pipeline
            .log
            .dir),
        None => Ok(PathBuf::from("./data/events")),
    }
}

pub fn run(args: &LogArgs) -> ExitCode {
    match print(args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}

fn print(args: &LogArgs) -> anyhow::Result<()> {
    let filter = Filter {
        stream: stream_of(&args.stream)?,
        device: args.device.clone(),
        kind: args.kind.clone(),
        since_ms: args.since.as_deref().map(instant).transpose()?,
        until_ms: args.until.as_deref().map(instant).transpose()?,
    };
    let dir = log_dir(args)?;
    if !dir.is_dir() {
        bail!("{} is not an event log directory", dir.display());
    }
    let stdout = std::io::stdout();
    let mut out = std::io::BufWriter::new(stdout.lock());
    let mut reader = open(&dir, 0)?;
    let mut tail: VecDeque<LogRecord> = VecDeque::new();
    loop {
        let batch = reader.read(BATCH).context("reading the event log")?;
        if batch.is_empty() {
            break;
        }
        for r in batch.into_iter().filter(|r| filter.matches(r)) {
            match args.tail {
                Some(n) => {
                    tail.push_back(r);
                    if tail.len() > n {
                        tail.pop_front();
                    }
                }
                None => {
                    if !line(&mut out, &r)? {
                        return Ok(());
                    }
                }
            }
        }
    }
    for r in &tail {
        if !line(&mut out, r)? {
            return Ok(());
        }
    }
    out.flush().ok();
    if !args.follow {
        return Ok(());
    }
    let mut next = reader.next_seq();
    loop {
        std::thread::sleep(FOLLOW_POLL);
        // The directory is re-listed each round: the writer appends to its last segment and
        // starts new ones, which a reader opened earlier does not see.
        let mut r = open(&dir, next)?;
        loop {
            let batch = r.read(BATCH).context("reading the event log")?;
            if batch.is_empty() {
                break;
            }
            for rec in batch.iter().filter(|r| filter.matches(r)) {
                if !line(&mut out, rec)? {
                    return Ok(());
                }
            }
        }
        if out.flush().is_err() {
            return Ok(());
        }
        next = next.max(r.next_seq());
    }
}

fn open(dir: &Path, from_seq: u64) -> anyhow::Result<LogReader> {
    LogReader::open_from(dir, from_seq)
        .with_context(|| format!("opening the event log in {}", dir.display()))
}

/// Writes one record's value as a line; `false` when stdout is gone (e.g. `| head`).
fn line(out: &mut impl Write, r: &LogRecord) -> anyhow::Result<bool> {
    let text = String::from_utf8_lossy(&r.value);
    match writeln!(out, "{}", text.trim_end()) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(false),
        Err(e) => Err(e).context("writing to standard output"),
    }
}
