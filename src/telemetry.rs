//! Logging and the Prometheus metrics recorder.
//!
//! Log volume must not grow with the fleet: per-connection lines are DEBUG, and what an
//! operator sees at INFO is a periodic summary of connections ([`spawn_connection_summary`]).

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use metrics_exporter_prometheus::{PrometheusBuilder, PrometheusHandle};
use tokio::sync::broadcast;
use tokio_util::sync::CancellationToken;
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::EnvFilter;
use tracing_subscriber::filter::LevelFilter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogConfig, LogFormat};

/// How often the connection summary is logged (when anything changed).
pub const CONNECTION_SUMMARY_EVERY: Duration = Duration::from_secs(60);

/// Installs the tracing subscriber, writing to stderr. `RUST_LOG` overrides the configured
/// filter.
pub fn init_logging(config: &LogConfig) {
    install(config, BoxMakeWriter::new(std::io::stderr), true);
}

/// Like [`init_logging`], appending to `path` instead (the demo's full-screen console owns the
/// terminal).
pub fn init_logging_to_file(config: &LogConfig, path: &Path) -> std::io::Result<()> {
    let file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    install(
        config,
        BoxMakeWriter::new(std::sync::Mutex::new(file)),
        false,
    );
    Ok(())
}

fn install(config: &LogConfig, writer: BoxMakeWriter, ansi: bool) {
    let directives = std::env::var("RUST_LOG")
        .ok()
        .filter(|s| !s.trim().is_empty())
        .unwrap_or_else(|| config.filter.clone());
    let (filter, router_noise) = filter(&directives);
    let fmt = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi);
    let fmt = match config.format {
        LogFormat::Human => fmt.boxed(),
        LogFormat::Json => fmt.json().boxed(),
    };
    // A second install (tests, or `demo` after `run` in one process) keeps the first one.
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(router_noise.then_some(RouterNoise))
        .with(fmt)
        .try_init();
}

/// The filter for `directives`, and whether the embedded router's routine noise is dropped.
///
/// rumqttd logs several INFO lines per connection and an ERROR for every ordinary disconnect
/// race ("no-connection id N is already gone"). Unless the directives name rumqttd
/// themselves, it is held to WARN and those routine errors are dropped; the broker crate
/// reports connections itself (per connection at DEBUG, in summary at INFO).
fn filter(directives: &str) -> (EnvFilter, bool) {
    let base = EnvFilter::try_new(directives).unwrap_or_else(|_| EnvFilter::new("info"));
    if directives.contains("rumqttd") {
        return (base, false);
    }
    let verbose = base.max_level_hint().is_none_or(|l| l > LevelFilter::WARN);
    let tuned = if verbose {
        EnvFilter::try_new(format!("{directives},rumqttd=warn")).unwrap_or(base)
    } else {
        base
    };
    (tuned, true)
}

/// Drops rumqttd's routine per-connection errors (see [`filter`]).
struct RouterNoise;

/// Messages rumqttd logs at ERROR for races every disconnect can hit.
const ROUTER_ROUTINE_ERRORS: &[&str] = &["is already gone", "Connection is already disconnected"];

impl<S: Subscriber> Layer<S> for RouterNoise {
    fn event_enabled(&self, event: &Event<'_>, _: Context<'_, S>) -> bool {
        let meta = event.metadata();
        if *meta.level() != Level::ERROR || !meta.target().starts_with("rumqttd") {
            return true;
        }
        let mut message = MessageText(String::new());
        event.record(&mut message);
        !ROUTER_ROUTINE_ERRORS
            .iter()
            .any(|routine| message.0.contains(routine))
    }
}

struct MessageText(String);

impl Visit for MessageText {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            self.0 = format!("{value:?}");
        }
    }

    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.0 = value.to_string();
        }
    }
}

/// Connection changes over one summary period.
#[derive(Debug, Default, PartialEq)]
struct ConnectionTally {
    connected: u64,
    /// Disconnects by reason (the broker's fixed set of reasons).
    disconnected: BTreeMap<String, u64>,
}

impl ConnectionTally {
    fn record(&mut self, ev: &uspwatch_proto::PresenceEvent) {
        match ev.state {
            uspwatch_proto::PresenceState::Connected => self.connected += 1,
            uspwatch_proto::PresenceState::Disconnected => {
                *self.disconnected.entry(ev.reason.clone()).or_default() += 1;
            }
        }
    }

    /// `keep_alive_timeout=2 socket_closed=1`, or `-`.
    fn reasons(&self) -> String {
        if self.disconnected.is_empty() {
            return "-".into();
        }
        self.disconnected
            .iter()
            .map(|(r, n)| format!("{r}={n}"))
            .collect::<Vec<_>>()
            .join(" ")
    }
}

/// Logs, every `every` in which anything changed, how many devices are connected and how many
/// connected and disconnected (by reason) since the last line: one INFO line per period
/// instead of one per connection.
pub fn spawn_connection_summary(
    broker: &Arc<uspwatch_broker::Broker>,
    every: Duration,
    shutdown: CancellationToken,
) {
    let mut presence = broker.presence();
    let broker = broker.clone();
    tokio::spawn(async move {
        let mut tally = ConnectionTally::default();
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tick.tick().await;
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                ev = presence.recv() => match ev {
                    Ok(ev) => tally.record(&ev),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        tracing::debug!(skipped = n, "connection summary lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => return,
                },
                _ = tick.tick() => {
                    if tally != ConnectionTally::default() {
                        let disconnected: u64 = tally.disconnected.values().sum();
                        tracing::info!(
                            online = broker.stats().connections,
                            connected = tally.connected,
                            disconnected,
                            reasons = %tally.reasons(),
                            period = %humantime::format_duration(every),
                            "connections"
                        );
                        tally = ConnectionTally::default();
                    }
                }
            }
        }
    });
}

/// Latency buckets in seconds, from sub-millisecond routing to multi-second device commands.
const BUCKETS: &[f64] = &[
    0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
];

/// Installs the process-wide Prometheus recorder once and registers every crate's metric
/// descriptions; later calls return the same handle.
pub fn metrics() -> PrometheusHandle {
    static HANDLE: std::sync::OnceLock<PrometheusHandle> = std::sync::OnceLock::new();
    HANDLE
        .get_or_init(|| {
            let builder = PrometheusBuilder::new()
                .set_buckets(BUCKETS)
                .unwrap_or_else(|_| PrometheusBuilder::new());
            let handle = match builder.install_recorder() {
                Ok(h) => h,
                // Another recorder is already installed: render from a private one so
                // /metrics still answers.
                Err(_) => PrometheusBuilder::new().build_recorder().handle(),
            };
            uspwatch_broker::metrics::describe();
            uspwatch_pipeline::metrics::describe();
            uspwatch_rules::metrics::describe();
            crate::http::describe_metrics();
            handle
        })
        .clone()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn router_is_held_to_warn_unless_named() {
        let (f, noise) = filter("info");
        assert!(noise);
        assert!(f.to_string().contains("rumqttd=warn"), "{f}");
        let (f, noise) = filter("info,rumqttd=debug");
        assert!(!noise);
        assert!(f.to_string().contains("rumqttd=debug"), "{f}");
        // Quieter than WARN overall: the router is not made louder than everything else.
        let (f, _) = filter("error");
        assert!(!f.to_string().contains("rumqttd"), "{f}");
    }

    fn presence(
        state: uspwatch_proto::PresenceState,
        reason: &str,
    ) -> uspwatch_proto::PresenceEvent {
        uspwatch_proto::PresenceEvent {
            endpoint_id: "os::x".into(),
            state,
            reason: reason.into(),
            mqtt_version: "5".into(),
            client_id: "x".into(),
            remote_addr: None,
            at: String::new(),
            at_ms: 0,
        }
    }

    #[test]
    fn tally_counts_by_reason() {
        use uspwatch_proto::PresenceState::{Connected, Disconnected};
        let mut t = ConnectionTally::default();
        assert_eq!(t.reasons(), "-");
        t.record(&presence(Connected, "connect"));
        t.record(&presence(Connected, "connect"));
        t.record(&presence(Disconnected, "socket_closed"));
        t.record(&presence(Disconnected, "keep_alive_timeout"));
        t.record(&presence(Disconnected, "socket_closed"));
        assert_eq!(t.connected, 2);
        assert_eq!(t.reasons(), "keep_alive_timeout=1 socket_closed=2");
    }
}
