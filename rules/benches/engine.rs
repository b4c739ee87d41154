//! Rule engine benchmark (not a test): ingest throughput into the window, and the latency of
//! one evaluation round of 20 rules with 5-minute windows over 10,000 devices at a steady
//! 10,000 events/s.
//!
//! `cargo bench -p uspwatch-rules --bench engine`

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use uspwatch_proto::{Command, Event, EventKind};
use uspwatch_rules::{CommandSink, Device, Engine, RulesConfig};

const DEVICES: usize = 10_000;
const RATE: usize = 10_000;
const WINDOW_S: i64 = 300;
const T0: i64 = 1_767_225_600_000;

/// (path, normal value, value of the 1 % of devices that are faulty)
const PATHS: [(&str, f64, f64); 10] = [
    ("Device.WiFi.Radio.1.Stats.Noise", -90.0, -60.0),
    ("Device.DeviceInfo.ProcessStatus.CPUUsage", 20.0, 95.0),
    ("Device.DeviceInfo.MemoryStatus.Free", 250_000.0, 20_000.0),
    (
        "Device.DeviceInfo.TemperatureStatus.TemperatureSensor.1.Value",
        50.0,
        95.0,
    ),
    ("Device.DSL.Line.1.DownstreamNoiseMargin", 90.0, 20.0),
    (
        "Device.Optical.Interface.1.OpticalSignalLevel",
        -16_000.0,
        -28_000.0,
    ),
    ("Device.WiFi.Radio.2.Stats.Noise", -92.0, -62.0),
    (
        "Device.Ethernet.Interface.1.Stats.ErrorsReceived",
        0.0,
        5_000.0,
    ),
    (
        "Device.WiFi.AccessPoint.1.AssociatedDeviceNumberOfEntries",
        4.0,
        0.0,
    ),
    ("Device.DeviceInfo.UpTime", 100_000.0, 10.0),
];

struct Nowhere;

#[async_trait::async_trait]
impl CommandSink for Nowhere {
    async fn send(
        &self,
        _: &str,
        _: Command,
        _: &str,
    ) -> uspwatch_rules::Result<serde_json::Value> {
        Ok(serde_json::Value::Null)
    }
}

fn rules() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for (i, (path, normal, bad)) in PATHS.iter().enumerate() {
        let thr = (normal + bad) / 2.0;
        let op = if bad > normal { ">" } else { "<" };
        out.push((
            format!("avg{i}.toml"),
            format!(
                "name = \"avg{i}\"\nevery = \"1s\"\nwindow = \"5m\"\nsql = \"\"\"\nSELECT endpoint_id, AVG(value_f64) AS v, COUNT(*) AS n FROM events\nWHERE kind = 'value_change' AND path = '{path}'\nGROUP BY endpoint_id HAVING COUNT(*) >= 2 AND AVG(value_f64) {op} {thr}\n\"\"\"\n[annotations]\nsummary = \"{{{{endpoint_id}}}} {{{{v}}}}\"\n"
            ),
        ));
        let second = if i % 2 == 0 {
            // Spread within the window, joined with the inventory.
            format!(
                "SELECT e.endpoint_id, MAX(e.value_f64) - MIN(e.value_f64) AS spread FROM events e JOIN devices d ON d.endpoint_id = e.endpoint_id\nWHERE e.path = '{path}' AND d.online AND e.received_at_ms > now_ms() - 60000\nGROUP BY e.endpoint_id HAVING MAX(e.value_f64) - MIN(e.value_f64) > {}",
                (bad - normal).abs() * 2.0
            )
        } else {
            // The latest value, joined with the window's sample count.
            format!(
                "SELECT l.endpoint_id, l.value_f64 AS v FROM latest l\nWHERE l.path = '{path}' AND l.value_f64 {op} {thr}"
            )
        };
        out.push((
            format!("x{i}.toml"),
            format!(
                "name = \"x{i}\"\nevery = \"1s\"\nwindow = \"5m\"\nsql = \"\"\"\n{second}\n\"\"\"\n"
            ),
        ));
    }
    out
}

fn eid(d: usize) -> String {
    format!("os::00256D-{d:06}")
}

/// One second of traffic: every device sends one value change, on a path that rotates.
fn second_of_events(second: usize) -> Vec<Event> {
    (0..RATE)
        .map(|i| {
            let d = i % DEVICES;
            let (path, normal, bad) = PATHS[(d + second) % PATHS.len()];
            let v = if d.is_multiple_of(100) {
                bad
            } else {
                normal + (i % 7) as f64
            };
            let eid = eid(d);
            Event {
                event_id: format!("{eid}/{second}-{i}"),
                endpoint_id: eid,
                controller_id: "self::uspwatch".into(),
                msg_id: format!("{second}-{i}"),
                subscription_id: "uspwatch-vc".into(),
                send_resp: true,
                received_at: String::new(),
                received_at_ms: 0,
                kind: EventKind::ValueChange,
                path: path.into(),
                name: None,
                value: Some(v.to_string()),
                args: BTreeMap::new(),
                command_key: None,
                error: None,
                labels: BTreeMap::from([("region".to_string(), "north".to_string())]),
                protocol: None,
            }
        })
        .collect()
}

fn engine(max_events: usize) -> Engine {
    let config = RulesConfig {
        default_pack: false,
        max_window_events: max_events,
        ..RulesConfig::default()
    };
    let (e, errors) = Engine::from_sources(&config, Arc::new(Nowhere), rules()).expect("engine");
    assert!(errors.is_empty(), "{errors:?}");
    e.set_devices(
        (0..DEVICES)
            .map(|d| Device {
                endpoint_id: eid(d),
                online: true,
                last_seen_ms: T0,
                ..Device::default()
            })
            .collect(),
    );
    e
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    sorted[((sorted.len() - 1) as f64 * p).round() as usize]
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    // Ten distinct seconds of traffic, reused with new timestamps.
    let mut seconds: Vec<Vec<Event>> = (0..PATHS.len()).map(second_of_events).collect();

    // 1. Ingest throughput: a full 5-minute window (3M events) into an empty engine.
    let e = engine(4_000_000);
    let started = Instant::now();
    let mut n = 0u64;
    for s in 0..WINDOW_S as usize {
        let batch = &mut seconds[s % PATHS.len()];
        for (i, ev) in batch.iter_mut().enumerate() {
            ev.received_at_ms = T0 + s as i64 * 1000 + (i * 1000 / RATE) as i64;
            e.ingest(ev);
        }
        n += batch.len() as u64;
    }
    let took = started.elapsed();
    println!(
        "ingest: {n} events in {:.3} s = {:.0} events/s (one thread)",
        took.as_secs_f64(),
        n as f64 / took.as_secs_f64()
    );

    // 2. Steady state at 10k events/s: each round ingests one second of events, then runs
    //    all 20 rules over the 5-minute window.
    let mut rounds = Vec::new();
    let mut ingest_times = Vec::new();
    for r in 0..30 {
        let s = WINDOW_S as usize + r;
        let t = Instant::now();
        let batch = &mut seconds[s % PATHS.len()];
        for (i, ev) in batch.iter_mut().enumerate() {
            ev.received_at_ms = T0 + s as i64 * 1000 + (i * 1000 / RATE) as i64;
            e.ingest(ev);
        }
        ingest_times.push(t.elapsed());
        let now = T0 + (s as i64 + 1) * 1000;
        let report = e.evaluate_at(now).await.expect("evaluate");
        assert_eq!(report.rules_evaluated, 20);
        assert!(report.errors.is_empty(), "{:?}", report.errors);
        rounds.push(Duration::from_micros(report.duration_us));
    }
    // The first rounds include the initial sealing of the window; report steady state.
    let mut steady = rounds[5..].to_vec();
    steady.sort();
    let stats = e.stats();
    println!(
        "evaluation round (20 rules, 5-minute window, {} events in window, {} alerts firing): p50 {:.1} ms, p90 {:.1} ms, max {:.1} ms",
        stats.window_events,
        stats.alerts_firing,
        percentile(&steady, 0.5).as_secs_f64() * 1e3,
        percentile(&steady, 0.9).as_secs_f64() * 1e3,
        steady.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    );
    let ingest_per_s: f64 =
        ingest_times.iter().map(Duration::as_secs_f64).sum::<f64>() / ingest_times.len() as f64;
    println!(
        "steady ingest: {RATE} events per second of traffic take {:.1} ms",
        ingest_per_s * 1e3
    );
    let mut per_rule: Vec<(String, u64)> = e
        .rules()
        .into_iter()
        .map(|r| (r.name, r.last_duration_us.unwrap_or(0)))
        .collect();
    per_rule.sort_by_key(|(_, us)| std::cmp::Reverse(*us));
    let top: Vec<String> = per_rule
        .iter()
        .take(5)
        .map(|(n, us)| format!("{n} {:.1} ms", *us as f64 / 1e3))
        .collect();
    println!("slowest rules (last round): {}", top.join(", "));
}
