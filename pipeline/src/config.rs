//! Configuration of the pipeline: the controller endpoint, the optional Kafka sink, the
//! embedded log and the inventory. Every field has a documented default; durations are
//! strings such as `"30s"`.
//!
//! TOML shape (all keys optional):
//!
//! ```toml
//! [controller]
//! endpoint_id = "self::uspwatch"
//! agent_prefix = "usp/agent"
//! controller_prefix = "usp/controller"
//! request_timeout = "30s"
//! operate_complete_timeout = "5m"
//! dedup_window = 100000
//! dedup_window_bytes = 33554432
//! max_in_flight = 10000
//! max_in_flight_bytes = 134217728
//!
//! [kafka]                       # absent = events are stored in the embedded log only
//! brokers = "127.0.0.1:9092"
//! delivery_timeout = "10s"
//! properties = { "linger.ms" = "2" }
//! [kafka.topics]
//! events = "usp.events.v1"
//!
//! [log]
//! dir = "./data/events"
//! fsync = "always"              # or "interval" (see fsync_interval) or "never"
//! segment_bytes = 67108864
//! retention = { max_bytes = 1073741824, max_age = "7days" }
//!
//! [inventory]
//! file = "inventory.csv"        # or .toml
//! stale_after = "15m"
//! ```

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Everything the pipeline needs to run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct PipelineConfig {
    pub controller: ControllerConfig,
    /// Kafka sink; `None` (the default) keeps events in the embedded log only.
    pub kafka: Option<KafkaConfig>,
    pub log: LogConfig,
    pub inventory: InventoryConfig,
    /// Bulk Data report ingestion.
    pub bulk_data: crate::BulkDataConfig,
}

impl PipelineConfig {
    /// Checks every section and reports all problems at once.
    pub fn validate(&self) -> Result<()> {
        let mut problems = Vec::new();
        self.controller.check(&mut problems);
        if let Some(k) = &self.kafka {
            k.check(&mut problems);
        }
        self.log.check(&mut problems);
        self.inventory.check(&mut problems);
        self.bulk_data.check(&mut problems);
        if problems.is_empty() {
            Ok(())
        } else {
            Err(Error::Config(problems))
        }
    }
}

/// The controller endpoint.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct ControllerConfig {
    /// Our Endpoint ID. Default `self::uspwatch`.
    pub endpoint_id: String,
    /// Topic prefix of agents, `<prefix>/<EID>`; used to reach an agent we have not heard
    /// from yet. Default `usp/agent`.
    pub agent_prefix: String,
    /// Topic prefix of controllers; we receive on `<prefix>/<our EID>`. Default `usp/controller`.
    pub controller_prefix: String,
    /// How long a request waits for its response. Default 30 s.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// How long an async Operate waits for its OperationComplete. Default 5 min.
    #[serde(with = "humantime_serde")]
    pub operate_complete_timeout: Duration,
    /// How many recent Notify event ids are remembered to recognise retries. Default 100,000.
    pub dedup_window: usize,
    /// Bytes the remembered Notify event ids may take (id text plus about 128 bytes each);
    /// the oldest are forgotten first when either bound is reached. Default 32 MiB (about
    /// 200,000 typical ids, so `dedup_window` is the bound that usually applies).
    pub dedup_window_bytes: usize,
    /// Notifies accepted but not yet durable; when reached, inbound records wait (and agents
    /// are not acknowledged) until the sink catches up. Default 10,000.
    pub max_in_flight: usize,
    /// Bytes of Notifies accepted but not yet durable (each counted as twice its encoded
    /// event: the event and its encoding); when reached, inbound records wait like for
    /// `max_in_flight`. Default 128 MiB (at most 4 GiB).
    pub max_in_flight_bytes: usize,
    /// Largest Record decoded, in bytes. Default 1 MiB.
    pub max_record_size: usize,
    /// Capacity of the event broadcast to subscribers; a slower subscriber misses events
    /// (and is told how many). Default 16,384.
    pub event_buffer: usize,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            endpoint_id: "self::uspwatch".into(),
            agent_prefix: "usp/agent".into(),
            controller_prefix: "usp/controller".into(),
            request_timeout: Duration::from_secs(30),
            operate_complete_timeout: Duration::from_secs(300),
            dedup_window: 100_000,
            dedup_window_bytes: 32 * 1024 * 1024,
            max_in_flight: 10_000,
            max_in_flight_bytes: 128 * 1024 * 1024,
            max_record_size: 1024 * 1024,
            event_buffer: 16_384,
        }
    }
}

impl ControllerConfig {
    /// Our own topic, `<controller_prefix>/<endpoint_id>`.
    pub fn own_topic(&self) -> String {
        format!("{}/{}", self.controller_prefix, self.endpoint_id)
    }

    fn check(&self, p: &mut Vec<String>) {
        if let Err(e) = uspwatch_proto::validate_endpoint_id(&self.endpoint_id) {
            p.push(format!("controller.endpoint_id: {e}"));
        }
        for (name, v) in [
            ("agent_prefix", &self.agent_prefix),
            ("controller_prefix", &self.controller_prefix),
        ] {
            if v.is_empty() || v.ends_with('/') || v.contains(['+', '#']) {
                p.push(format!(
                    "controller.{name}: must be a non-empty topic without wildcards or a trailing '/'"
                ));
            }
        }
        if self.request_timeout.is_zero() {
            p.push("controller.request_timeout: must be > 0".into());
        }
        if self.operate_complete_timeout.is_zero() {
            p.push("controller.operate_complete_timeout: must be > 0".into());
        }
        if self.dedup_window == 0 {
            p.push("controller.dedup_window: must be > 0".into());
        }
        if self.dedup_window_bytes < 64 * 1024 {
            p.push("controller.dedup_window_bytes: must be at least 65536".into());
        }
        if self.max_in_flight == 0 {
            p.push("controller.max_in_flight: must be > 0".into());
        }
        if self.max_in_flight_bytes < 1024 * 1024 || self.max_in_flight_bytes > u32::MAX as usize {
            p.push("controller.max_in_flight_bytes: must be between 1 MiB and 4 GiB".into());
        }
        if self.max_record_size < 64 {
            p.push("controller.max_record_size: must be at least 64 bytes".into());
        }
        if self.event_buffer == 0 {
            p.push("controller.event_buffer: must be > 0".into());
        }
    }
}

/// The Kafka sink.
#[derive(Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaConfig {
    /// `bootstrap.servers`. Default `127.0.0.1:9092`.
    pub brokers: String,
    pub topics: KafkaTopics,
    /// `compression.type`. Default `lz4`.
    pub compression: String,
    /// `message.timeout.ms`: a record not acknowledged within this goes to the local spool
    /// instead. Default 10 s.
    #[serde(with = "humantime_serde")]
    pub delivery_timeout: Duration,
    /// Any librdkafka property, passed through (applied last, so it wins). The producer is
    /// always idempotent with `acks=all`; those two cannot be overridden.
    pub properties: BTreeMap<String, String>,
}

impl Default for KafkaConfig {
    fn default() -> Self {
        KafkaConfig {
            brokers: "127.0.0.1:9092".into(),
            topics: KafkaTopics::default(),
            compression: "lz4".into(),
            delivery_timeout: Duration::from_secs(10),
            properties: BTreeMap::new(),
        }
    }
}

impl std::fmt::Debug for KafkaConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let props: BTreeMap<&str, &str> = self
            .properties
            .iter()
            .map(|(k, v)| {
                let secret = k.contains("password") || k.contains("secret") || k.ends_with(".key");
                (k.as_str(), if secret { "<redacted>" } else { v.as_str() })
            })
            .collect();
        f.debug_struct("KafkaConfig")
            .field("brokers", &self.brokers)
            .field("topics", &self.topics)
            .field("compression", &self.compression)
            .field("delivery_timeout", &self.delivery_timeout)
            .field("properties", &props)
            .finish()
    }
}

impl KafkaConfig {
    fn check(&self, p: &mut Vec<String>) {
        if self.brokers.trim().is_empty() {
            p.push("kafka.brokers: must not be empty".into());
        }
        if self.delivery_timeout < Duration::from_millis(100) {
            p.push("kafka.delivery_timeout: must be at least 100ms".into());
        }
        for (name, t) in self.topics.all() {
            if t.is_empty() || t.len() > 249 {
                p.push(format!("kafka.topics.{name}: must be 1..=249 characters"));
            }
        }
        for k in ["enable.idempotence", "acks"] {
            if self.properties.contains_key(k) {
                p.push(format!(
                    "kafka.properties.{k}: fixed by uspwatch (idempotent, acks=all)"
                ));
            }
        }
    }
}

/// Kafka topic names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct KafkaTopics {
    /// Every notification. Default `usp.events.v1`.
    pub events: String,
    /// Connects and disconnects. Default `usp.presence.v1`.
    pub presence: String,
    /// Rejected records. Default `usp.quarantine.v1`.
    pub quarantine: String,
    /// Every command sent and its outcome. Default `usp.commands.v1`.
    pub commands: String,
    /// Alert state changes. Default `usp.alerts.v1`.
    pub alerts: String,
    /// Bulk Data samples. Default `usp.telemetry.v1`.
    pub telemetry: String,
}

impl Default for KafkaTopics {
    fn default() -> Self {
        KafkaTopics {
            events: "usp.events.v1".into(),
            presence: "usp.presence.v1".into(),
            quarantine: "usp.quarantine.v1".into(),
            commands: "usp.commands.v1".into(),
            alerts: "usp.alerts.v1".into(),
            telemetry: "usp.telemetry.v1".into(),
        }
    }
}

impl KafkaTopics {
    fn all(&self) -> [(&'static str, &str); 6] {
        [
            ("events", &self.events),
            ("presence", &self.presence),
            ("quarantine", &self.quarantine),
            ("commands", &self.commands),
            ("alerts", &self.alerts),
            ("telemetry", &self.telemetry),
        ]
    }

    /// The configured name of a record topic.
    pub fn name(&self, t: crate::RecordTopic) -> &str {
        use crate::RecordTopic as T;
        match t {
            T::Events => &self.events,
            T::Presence => &self.presence,
            T::Quarantine => &self.quarantine,
            T::Commands => &self.commands,
            T::Alerts => &self.alerts,
            T::Telemetry => &self.telemetry,
        }
    }
}

/// When the embedded log calls fsync.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum FsyncPolicy {
    /// After every write batch, before acknowledging it (group commit). Default.
    Always,
    /// At most every `fsync_interval`; records are acknowledged after the fsync that covers
    /// them, so this trades latency for fewer fsyncs, never durability.
    Interval,
    /// Never: records are acknowledged once written to the OS. Survives a process crash, not
    /// a power loss.
    Never,
}

/// The embedded durable log (the event store without Kafka, the spool with it).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct LogConfig {
    /// Directory of the segment files. Default `./data/events`.
    pub dir: PathBuf,
    /// Default `always`.
    pub fsync: FsyncPolicy,
    /// Used with `fsync = "interval"`. Default 50 ms.
    #[serde(with = "humantime_serde")]
    pub fsync_interval: Duration,
    /// A segment is closed and a new one started past this size. Default 64 MiB.
    pub segment_bytes: u64,
    pub retention: RetentionConfig,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            dir: PathBuf::from("./data/events"),
            fsync: FsyncPolicy::Always,
            fsync_interval: Duration::from_millis(50),
            segment_bytes: 64 * 1024 * 1024,
            retention: RetentionConfig::default(),
        }
    }
}

impl LogConfig {
    fn check(&self, p: &mut Vec<String>) {
        if self.dir.as_os_str().is_empty() {
            p.push("log.dir: must not be empty".into());
        }
        if self.segment_bytes < 4096 {
            p.push("log.segment_bytes: must be at least 4096".into());
        }
        if self.fsync == FsyncPolicy::Interval && self.fsync_interval.is_zero() {
            p.push("log.fsync_interval: must be > 0 with fsync = \"interval\"".into());
        }
        if self.retention.max_bytes < self.segment_bytes {
            p.push("log.retention.max_bytes: must be at least log.segment_bytes".into());
        }
    }
}

/// How much closed log is kept. Segments that Kafka has not yet received are never deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RetentionConfig {
    /// Total size of the log directory. Default 1 GiB.
    pub max_bytes: u64,
    /// Age of a closed segment's newest record. Default 7 days.
    #[serde(with = "humantime_serde")]
    pub max_age: Duration,
}

impl Default for RetentionConfig {
    fn default() -> Self {
        RetentionConfig {
            max_bytes: 1024 * 1024 * 1024,
            max_age: Duration::from_secs(7 * 24 * 3600),
        }
    }
}

/// Device inventory.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct InventoryConfig {
    /// Static labels per Endpoint ID: CSV with a header row whose first column is the EID,
    /// or TOML with one table per EID. Default none.
    pub file: Option<PathBuf>,
    /// A device silent for this long is reported as stale. Default 15 min.
    #[serde(with = "humantime_serde")]
    pub stale_after: Duration,
    /// Latest values remembered per device (the oldest path is forgotten first). Default 256.
    pub max_values_per_device: usize,
    /// Recent events remembered per device. Default 32.
    pub recent_events: usize,
    /// Keep what identifies each device (first/last seen, model, firmware, serial, last boot,
    /// boot count, provisioning state) across restarts. Default true.
    pub persist: bool,
    /// The state file. Default `inventory.json` in the event log directory (`log.dir`).
    pub state_file: Option<PathBuf>,
    /// How often the state file is rewritten when something changed (and once at shutdown).
    /// Default 30 s.
    #[serde(with = "humantime_serde")]
    pub persist_interval: Duration,
    /// An offline device unseen for this long is forgotten. Default 30 days.
    #[serde(with = "humantime_serde")]
    pub evict_after: Duration,
    /// Most devices remembered; beyond it the longest-unseen offline devices are forgotten
    /// first (connected ones never). Default 250,000.
    pub max_devices: usize,
}

impl Default for InventoryConfig {
    fn default() -> Self {
        InventoryConfig {
            file: None,
            stale_after: Duration::from_secs(15 * 60),
            max_values_per_device: 256,
            recent_events: 32,
            persist: true,
            state_file: None,
            persist_interval: Duration::from_secs(30),
            evict_after: Duration::from_secs(30 * 24 * 3600),
            max_devices: 250_000,
        }
    }
}

impl InventoryConfig {
    fn check(&self, p: &mut Vec<String>) {
        if self.stale_after.is_zero() {
            p.push("inventory.stale_after: must be > 0".into());
        }
        if self.persist_interval.is_zero() {
            p.push("inventory.persist_interval: must be > 0".into());
        }
        if self.evict_after.is_zero() {
            p.push("inventory.evict_after: must be > 0".into());
        }
        if self.max_devices == 0 {
            p.push("inventory.max_devices: must be > 0".into());
        }
    }

    /// Where the state file lives (`state_file`, else beside the event log).
    pub fn state_path(&self, log: &LogConfig) -> PathBuf {
        self.state_file
            .clone()
            .unwrap_or_else(|| log.dir.join("inventory.json"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_validate_and_toml_round_trips() {
        let c = PipelineConfig::default();
        c.validate().unwrap();
        let text = toml::to_string(&c).unwrap();
        let back: PipelineConfig = toml::from_str(&text).unwrap();
        assert_eq!(back, c);
    }

    #[test]
    fn parses_the_documented_shape() {
        let c: PipelineConfig = toml::from_str(
            r#"
            [controller]
            request_timeout = "5s"
            [kafka]
            brokers = "127.0.0.1:1"
            properties = { "linger.ms" = "2", "sasl.password" = "hunter2" }
            [kafka.topics]
            events = "ev"
            [log]
            fsync = "interval"
            retention = { max_bytes = 1073741824, max_age = "7days" }
            [inventory]
            stale_after = "1m"
            "#,
        )
        .unwrap();
        c.validate().unwrap();
        let k = c.kafka.as_ref().unwrap();
        assert_eq!(k.topics.events, "ev");
        assert_eq!(k.topics.presence, "usp.presence.v1");
        assert_eq!(c.controller.request_timeout, Duration::from_secs(5));
        assert!(!format!("{k:?}").contains("hunter2"));
    }

    #[test]
    fn reports_every_problem() {
        let mut c = PipelineConfig::default();
        c.controller.endpoint_id = "nope".into();
        c.controller.max_in_flight = 0;
        c.log.segment_bytes = 1;
        c.kafka = Some(KafkaConfig {
            properties: BTreeMap::from([("acks".into(), "1".into())]),
            ..KafkaConfig::default()
        });
        let Err(Error::Config(p)) = c.validate() else {
            panic!("accepted");
        };
        assert_eq!(p.len(), 4, "{p:?}");
        assert!(toml::from_str::<PipelineConfig>("[log]\nbogus = 1").is_err());
    }
}
