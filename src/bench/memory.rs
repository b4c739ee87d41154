//! The memory scenario: one agent sends maximum-size Notifies as fast as they are answered
//! while 1,000 others send small ones at a fixed rate. The gateway's RSS must stay under the
//! bound its byte budgets add up to, and the 1,000 must keep the latency they have without
//! the flood (measured first, in the same run).

use std::fmt::Write;
use std::time::Duration;

use anyhow::bail;
use serde::Serialize;

use super::BenchArgs;
use super::hist::Summary;
use super::proc::{self, RssSampler, Worker};
use super::scenarios::Bed;
use super::worker::{Gate, Report, Spec};

const FIRST_QUIET: usize = 900_000;
const FIRST_LOUD: usize = 910_000;
const FIRST_FLOOD: usize = 920_000;
const SMALL_PATH: &str = "Device.WiFi.Radio.1.Stats.Noise";
const BIG_PATH: &str = "Device.X_Vendor.Diagnostics.Dump";
/// Room for the Record and Notify around the value, so the Record stays within
/// `max_record_size`.
const ENVELOPE: usize = 1024;
/// Memory besides the byte budgets that the bound allows for: the allocator's slack, the
/// Arrow builders' growth (capacity doubles) and one record being decoded and encoded.
const SLACK_MIB: f64 = 128.0;

#[derive(Debug, Clone, Serialize)]
pub struct MemoryResult {
    /// Bytes of the value each flood Notify carries (the record is ~1 KiB more).
    pub record_bytes: usize,
    pub flood_notifies: u64,
    pub flood_mib_per_s: f64,
    pub others: u64,
    pub others_rate: u64,
    /// The 1,000 alone, then with the flood.
    pub quiet_latency: Summary,
    pub loud_latency: Summary,
    pub loud_answered_share: f64,
    pub rss_before_mib: f64,
    pub peak_rss_mib: f64,
    /// RSS before + every byte budget on the flood's path + slack.
    pub bound_mib: f64,
    pub bound_parts: String,
}

impl MemoryResult {
    pub fn rows(&self, o: &mut String) {
        let mut row = |k: &str, v: String| {
            let _ = writeln!(o, "  {k:<44} {v}");
        };
        row(
            "flood: Notifies of value bytes",
            format!(
                "{} × {} B ({:.1} MiB/s answered)",
                self.flood_notifies, self.record_bytes, self.flood_mib_per_s
            ),
        );
        row(
            "others: agents at a fixed total rate",
            format!("{} at {}/s", self.others, self.others_rate),
        );
        row("others alone: p50/p99/max", lat(&self.quiet_latency));
        row(
            "others with the flood: p50/p99/max",
            lat(&self.loud_latency),
        );
        row(
            "others answered during the flood",
            format!("{:.1} %", self.loud_answered_share * 100.0),
        );
        row(
            "RSS before → peak (bound)",
            format!(
                "{:.0} → {:.0} MiB ({:.0} MiB = {})",
                self.rss_before_mib, self.peak_rss_mib, self.bound_mib, self.bound_parts
            ),
        );
    }

    pub fn met(&self) -> bool {
        self.peak_rss_mib <= self.bound_mib
            && self.loud_answered_share >= 0.99
            && self.loud_latency.p99_ms <= (2.0 * self.quiet_latency.p99_ms).max(20.0)
    }
}

fn lat(s: &Summary) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms (n={})",
        s.p50_ms, s.p99_ms, s.max_ms, s.count
    )
}

fn spec(bed: &Bed, first: usize, agents: usize, rate: u64, secs: Duration, value: usize) -> Spec {
    Spec::Ingest {
        target: bed.target.clone(),
        first,
        agents,
        window: if value > 0 { 4 } else { 1 },
        rate,
        duration_ms: secs.as_millis() as u64,
        gate: Gate::NotifyResp,
        path: if value > 0 { BIG_PATH } else { SMALL_PATH }.into(),
        value_size: value,
    }
}

struct Ran {
    answered: u64,
    sent: u64,
    elapsed_s: f64,
    latency: Summary,
}

async fn connected(w: &mut Worker) -> anyhow::Result<()> {
    match w.next(Duration::from_secs(180)).await? {
        Report::Connected { .. } => Ok(()),
        _ => bail!("unexpected worker report"),
    }
}

async fn ingested(w: &mut Worker, within: Duration) -> anyhow::Result<Ran> {
    let Report::Ingested {
        sent,
        answered,
        elapsed_ms,
        latency,
        ..
    } = w.next(within).await?
    else {
        bail!("unexpected worker report");
    };
    Ok(Ran {
        answered,
        sent,
        elapsed_s: (elapsed_ms as f64 / 1000.0).max(1e-9),
        latency: latency.summary(),
    })
}

pub(super) async fn run(
    args: &BenchArgs,
    bed: &Bed,
    sampler: &RssSampler,
) -> anyhow::Result<MemoryResult> {
    let others = args.memory_agents;
    let rate = others as u64;
    let secs = args.memory_duration;
    let cfg = &bed.gw.config;
    let record_bytes = cfg
        .broker
        .max_record_size
        .min(cfg.pipeline.controller.max_record_size)
        .saturating_sub(ENVELOPE);

    eprintln!("bench: memory — {others} agents at {rate}/s, no flood");
    let mut quiet = Worker::spawn(&spec(bed, FIRST_QUIET, others, rate, secs, 0))?;
    connected(&mut quiet).await?;
    let q = ingested(&mut quiet, secs + Duration::from_secs(60)).await?;
    quiet.finish().await;

    eprintln!("bench: memory — the same with one agent sending {record_bytes}-byte values");
    let rss_before = proc::rss_kib() as f64 / 1024.0;
    sampler.reset();
    // The flood runs from before the others connect until after they finish.
    let flood_secs = secs + Duration::from_secs(20);
    let mut flood = Worker::spawn(&spec(bed, FIRST_FLOOD, 1, 0, flood_secs, record_bytes))?;
    connected(&mut flood).await?;
    let mut loud = Worker::spawn(&spec(bed, FIRST_LOUD, others, rate, secs, 0))?;
    connected(&mut loud).await?;
    let l = ingested(&mut loud, secs + Duration::from_secs(60)).await?;
    loud.finish().await;
    let f = ingested(&mut flood, flood_secs + Duration::from_secs(60)).await?;
    flood.finish().await;
    let peak = sampler.peak_mib();

    let mib = |b: usize| b as f64 / (1024.0 * 1024.0);
    let window = mib(cfg.rules.max_window_bytes);
    let in_flight = mib(cfg.pipeline.controller.max_in_flight_bytes);
    let r = &cfg.broker.router;
    let router = mib(r.controller_segment_size * (r.controller_segment_count + 1));
    let dedup = mib(cfg.pipeline.controller.dedup_window_bytes);
    let bound = rss_before + window + in_flight + router + dedup + SLACK_MIB;
    Ok(MemoryResult {
        record_bytes,
        flood_notifies: f.answered,
        flood_mib_per_s: f.answered as f64 * record_bytes as f64 / (1024.0 * 1024.0) / f.elapsed_s,
        others: rate,
        others_rate: rate,
        quiet_latency: q.latency,
        loud_latency: l.latency,
        loud_answered_share: l.answered as f64 / l.sent.max(1) as f64,
        rss_before_mib: rss_before,
        peak_rss_mib: peak,
        bound_mib: bound,
        bound_parts: format!(
            "before {rss_before:.0} + rule window {window:.0} + in flight {in_flight:.0} + router {router:.0} + dedup {dedup:.0} + slack {SLACK_MIB:.0}"
        ),
    })
}
