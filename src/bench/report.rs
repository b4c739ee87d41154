//! Results: the JSON document and the human table, with every figure checked against its
//! published target.

use std::fmt::Write;

use serde::Serialize;

use super::BenchArgs;
use super::hist::Summary;
use super::proc::Machine;

#[derive(Debug, Clone, Serialize)]
pub struct ConnResult {
    pub requested: usize,
    /// `requested`, capped by the open-files limit.
    pub target: usize,
    pub fd_limit: u64,
    pub achieved: u64,
    /// Failed connection attempts during the ramp (each retried up to 5 times).
    pub connect_errors: u64,
    pub ramp_s: f64,
    pub connect_rate_per_s: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub rss_per_connection_kib: f64,
    pub storm_agents: u64,
    /// Every agent was back before the deadline.
    pub storm_recovered: bool,
    /// From the drop until the gateway counted every agent connected again.
    pub storm_recovery_s: f64,
    pub storm_reconnected: u64,
    /// Failed connection attempts during the storm (retried).
    pub storm_errors: u64,
    /// CONNECTs the gateway refused during the storm.
    pub storm_refused: u64,
    /// From the drop until the last agent had its CONNACK and SUBACK (agents' view).
    pub storm_client_s: f64,
    /// The same agents against stock rumqttd in a process of its own.
    pub plain: PlainConnResult,
}

#[derive(Debug, Clone, Serialize)]
pub struct PlainConnResult {
    pub achieved: u64,
    pub connect_rate_per_s: f64,
    pub rss_before_mib: f64,
    pub rss_after_mib: f64,
    pub rss_per_connection_kib: f64,
    pub storm_reconnected: u64,
    /// From the drop until the last agent had its CONNACK and SUBACK.
    pub storm_client_s: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct IngestResult {
    pub agents: u64,
    pub window: usize,
    /// 0 = as fast as the gateway answers.
    pub target_rate: u64,
    pub duration_s: f64,
    pub sent: u64,
    /// Notifies answered with a NotifyResp (durable).
    pub answered: u64,
    pub errors: u64,
    pub notifies_per_s: f64,
    pub records_accepted_per_s: f64,
    pub events_durable_per_s: f64,
    /// Notify publish to NotifyResp arrival.
    pub latency: Summary,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct BaselineResult {
    pub agents: u64,
    pub window: usize,
    pub duration_s: f64,
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub acked_per_s: f64,
    /// Messages the plain subscriber received per second.
    pub delivered_per_s: f64,
    pub puback_latency: Summary,
    pub peak_rss_mib: f64,
}

#[derive(Debug, Clone, Serialize)]
pub struct FaultResult {
    pub reps: usize,
    pub background_rate: u64,
    pub background_events_per_s: f64,
    /// Threshold-crossing Notify published to the rule's Set arriving at the agent.
    pub latency: Summary,
    pub timeouts: u64,
    pub errors: u64,
}

#[derive(Debug, Clone, Serialize)]
pub struct TargetCheck {
    pub name: String,
    pub target: String,
    pub measured: String,
    pub met: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct Results {
    pub date: String,
    pub command: String,
    pub machine: Machine,
    pub gateway_idle_rss_mib: f64,
    pub connections: Option<ConnResult>,
    pub ingest: Option<IngestResult>,
    pub latency: Option<IngestResult>,
    pub kafka: Option<IngestResult>,
    pub fault: Option<FaultResult>,
    pub baseline: Option<BaselineResult>,
    pub memory: Option<super::memory::MemoryResult>,
    /// uspwatch durable Notifies/s over stock rumqttd deliveries/s, same load.
    pub ingest_ratio: Option<f64>,
    pub kafka_ratio: Option<f64>,
    pub peak_rss_ratio: Option<f64>,
    pub targets: Vec<TargetCheck>,
}

impl Results {
    pub fn new(_args: &BenchArgs, machine: Machine) -> Results {
        Results {
            date: chrono_free_now(),
            command: std::env::args().collect::<Vec<_>>().join(" "),
            machine,
            gateway_idle_rss_mib: 0.0,
            connections: None,
            ingest: None,
            latency: None,
            kafka: None,
            fault: None,
            baseline: None,
            memory: None,
            ingest_ratio: None,
            kafka_ratio: None,
            peak_rss_ratio: None,
            targets: Vec::new(),
        }
    }

    /// Ratios and target checks.
    pub fn finish(&mut self) {
        let base = self.baseline.as_ref().map(|b| b.delivered_per_s);
        let ratio = |x: f64| base.filter(|b| *b > 0.0).map(|b| x / b);
        self.ingest_ratio = self.ingest.as_ref().and_then(|i| ratio(i.notifies_per_s));
        self.kafka_ratio = self.kafka.as_ref().and_then(|i| ratio(i.notifies_per_s));
        if let (Some(i), Some(b)) = (&self.ingest, &self.baseline)
            && b.peak_rss_mib > 0.0
        {
            self.peak_rss_ratio = Some(i.peak_rss_mib / b.peak_rss_mib);
        }
        let mut t = Vec::new();
        let mut check = |name: &str, target: &str, measured: String, met: bool| {
            t.push(TargetCheck {
                name: name.into(),
                target: target.into(),
                measured,
                met,
            })
        };
        if let Some(r) = self.ingest_ratio {
            check(
                "ingest vs stock rumqttd",
                ">= 1.0x",
                format!("{r:.2}x"),
                r >= 1.0,
            );
        }
        if let Some(l) = &self.latency {
            check(
                "NotifyResp p99 at the latency rate",
                "<= 20 ms at 10k/s",
                format!("{:.1} ms at {:.0}/s", l.latency.p99_ms, l.notifies_per_s),
                l.target_rate >= 10_000
                    && l.latency.p99_ms <= 20.0
                    && l.notifies_per_s >= 0.95 * l.target_rate as f64,
            );
        }
        if let Some(c) = &self.connections {
            check(
                "idle agents",
                ">= 100000",
                format!("{} (fd limit {})", c.achieved, c.fd_limit),
                c.achieved >= 100_000,
            );
            check(
                "RSS per idle connection",
                "<= 20 KiB",
                format!("{:.1} KiB", c.rss_per_connection_kib),
                c.rss_per_connection_kib <= 20.0,
            );
            check(
                "reconnect storm recovery",
                "20000 agents <= 30 s",
                format!("{} agents, {:.1} s", c.storm_agents, c.storm_recovery_s),
                c.storm_recovered && c.storm_agents >= 20_000 && c.storm_recovery_s <= 30.0,
            );
        }
        if let Some(f) = &self.fault {
            check(
                "fault-to-command p99",
                "<= 1 s",
                format!("{:.0} ms", f.latency.p99_ms),
                f.latency.count > 0 && f.timeouts == 0 && f.latency.p99_ms <= 1000.0,
            );
        }
        if let Some(i) = &self.ingest {
            check(
                "peak RSS, sustained max-rate ingest",
                "<= 1024 MiB",
                format!("{:.0} MiB over {:.0} s", i.peak_rss_mib, i.duration_s),
                i.peak_rss_mib <= 1024.0,
            );
        }
        if let Some(m) = &self.memory {
            check(
                "RSS and others' latency, one agent flooding max-size Records",
                "peak RSS <= budgets bound; others' p99 <= 2x alone",
                format!(
                    "{:.0} MiB (bound {:.0}); p99 {:.1} ms vs {:.1} ms alone",
                    m.peak_rss_mib, m.bound_mib, m.loud_latency.p99_ms, m.quiet_latency.p99_ms
                ),
                m.met(),
            );
        }
        self.targets = t;
    }

    pub fn table(&self) -> String {
        let mut o = String::new();
        let m = &self.machine;
        let _ = writeln!(
            o,
            "uspwatch bench — {} — {} × {}, {:.1} GiB, kernel {}",
            self.date, m.cpus, m.cpu_model, m.memory_gib, m.kernel
        );
        let _ = writeln!(o, "gateway idle RSS {:.0} MiB", self.gateway_idle_rss_mib);
        let row = |o: &mut String, k: &str, v: String| {
            let _ = writeln!(o, "  {k:<44} {v}");
        };
        if let Some(i) = &self.ingest {
            let _ = writeln!(o, "ingest (max rate, embedded log, fsync always)");
            ingest_rows(&mut o, i, row);
            if let Some(r) = self.ingest_ratio {
                row(&mut o, "ratio to stock rumqttd", format!("{r:.2}x"));
            }
        }
        if let Some(l) = &self.latency {
            let _ = writeln!(o, "ingest at a fixed {} Notify/s", l.target_rate);
            ingest_rows(&mut o, l, row);
        }
        if let Some(k) = &self.kafka {
            let _ = writeln!(o, "ingest (max rate, mock Kafka cluster)");
            ingest_rows(&mut o, k, row);
            if let Some(r) = self.kafka_ratio {
                row(&mut o, "ratio to stock rumqttd", format!("{r:.2}x"));
            }
        }
        if let Some(b) = &self.baseline {
            let _ = writeln!(o, "baseline: stock rumqttd, plain subscriber, same load");
            row(
                &mut o,
                "agents × window",
                format!("{} × {}", b.agents, b.window),
            );
            row(&mut o, "PUBACKs/s", format!("{:.0}", b.acked_per_s));
            row(
                &mut o,
                "delivered to subscriber/s",
                format!("{:.0}", b.delivered_per_s),
            );
            row(&mut o, "PUBACK latency p50/p99/max", lat(&b.puback_latency));
            row(
                &mut o,
                "peak RSS (process)",
                format!("{:.0} MiB", b.peak_rss_mib),
            );
        }
        if let Some(m) = &self.memory {
            let _ = writeln!(o, "memory: one agent floods maximum-size Records");
            m.rows(&mut o);
        }
        if let Some(c) = &self.connections {
            let _ = writeln!(o, "connections");
            row(
                &mut o,
                "idle agents achieved / target",
                format!("{} / {} (fd limit {})", c.achieved, c.target, c.fd_limit),
            );
            row(
                &mut o,
                "connect rate",
                format!("{:.0}/s", c.connect_rate_per_s),
            );
            row(
                &mut o,
                "RSS before → after",
                format!("{:.0} → {:.0} MiB", c.rss_before_mib, c.rss_after_mib),
            );
            row(
                &mut o,
                "RSS per connection",
                format!("{:.1} KiB", c.rss_per_connection_kib),
            );
            row(
                &mut o,
                "reconnect storm: recovery",
                format!(
                    "{:.1} s for {} agents ({})",
                    c.storm_recovery_s,
                    c.storm_agents,
                    if c.storm_recovered {
                        "all back"
                    } else {
                        "NOT all back"
                    }
                ),
            );
            row(
                &mut o,
                "reconnect storm: agents' view",
                format!("{:.1} s", c.storm_client_s),
            );
            row(
                &mut o,
                "reconnect storm: failed attempts / refused",
                format!("{} / {}", c.storm_errors, c.storm_refused),
            );
            let p = &c.plain;
            row(
                &mut o,
                "stock rumqttd: idle agents / connect rate",
                format!("{} / {:.0}/s", p.achieved, p.connect_rate_per_s),
            );
            row(
                &mut o,
                "stock rumqttd: RSS per connection",
                format!(
                    "{:.1} KiB ({:.0} → {:.0} MiB); uspwatch/stock {:.2}x",
                    p.rss_per_connection_kib,
                    p.rss_before_mib,
                    p.rss_after_mib,
                    c.rss_per_connection_kib / p.rss_per_connection_kib.max(1e-9)
                ),
            );
            row(
                &mut o,
                "stock rumqttd: storm, agents' view",
                format!("{:.1} s, {} back", p.storm_client_s, p.storm_reconnected),
            );
        }
        if let Some(f) = &self.fault {
            let _ = writeln!(o, "fault-to-command ({} repetitions)", f.reps);
            row(
                &mut o,
                "background load",
                format!(
                    "{:.0} events/s (asked {}/s)",
                    f.background_events_per_s, f.background_rate
                ),
            );
            row(&mut o, "latency p50/p99/max", lat(&f.latency));
            row(
                &mut o,
                "timeouts / errors",
                format!("{} / {}", f.timeouts, f.errors),
            );
        }
        let _ = writeln!(o, "targets");
        for t in &self.targets {
            let _ = writeln!(
                o,
                "  [{}] {:<38} {:<22} measured {}",
                if t.met { " ok " } else { "MISS" },
                t.name,
                t.target,
                t.measured
            );
        }
        o
    }
}

fn lat(s: &Summary) -> String {
    format!(
        "{:.2} / {:.2} / {:.2} ms (n={})",
        s.p50_ms, s.p99_ms, s.max_ms, s.count
    )
}

fn ingest_rows(o: &mut String, i: &IngestResult, row: impl Fn(&mut String, &str, String)) {
    row(o, "agents × window", format!("{} × {}", i.agents, i.window));
    row(
        o,
        "Notifies answered/s (NotifyResp)",
        format!("{:.0}", i.notifies_per_s),
    );
    row(
        o,
        "records accepted by the broker/s",
        format!("{:.0}", i.records_accepted_per_s),
    );
    row(
        o,
        "events durable/s",
        format!("{:.0}", i.events_durable_per_s),
    );
    row(o, "NotifyResp latency p50/p99/max", lat(&i.latency));
    row(
        o,
        "sent / answered / errors",
        format!("{} / {} / {}", i.sent, i.answered, i.errors),
    );
    if i.peak_rss_mib > 0.0 {
        row(
            o,
            "peak RSS (process)",
            format!("{:.0} MiB", i.peak_rss_mib),
        );
    }
}

/// RFC 3339 UTC time of now, to the second.
fn chrono_free_now() -> String {
    uspwatch_proto::rfc3339_millis(uspwatch_proto::time::now_ms())
}
