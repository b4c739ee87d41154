//! Where records become durable: one trait, two implementations.
//!
//! - [`LogSink`]: the embedded log is the store (no Kafka configured);
//! - [`kafka::KafkaSink`]: Kafka, with the embedded log as the spool while Kafka is down.
//!
//! `enqueue` fixes a record's position (records of one caller keep their order) and
//! returns an [`Ack`] that resolves once the record is durable in whichever store took it.

pub(crate) mod kafka;

use bytes::Bytes;
use futures::future::BoxFuture;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::spool::LogHandle;

/// The logical record streams (each maps to a configured Kafka topic).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RecordTopic {
    /// Notifications (`usp.events.v1`).
    Events,
    /// Connects and disconnects (`usp.presence.v1`).
    Presence,
    /// Rejected records (`usp.quarantine.v1`).
    Quarantine,
    /// Commands sent and their outcomes (`usp.commands.v1`).
    Commands,
    /// Alert state changes (`usp.alerts.v1`).
    Alerts,
    /// Bulk Data samples (`usp.telemetry.v1`).
    Telemetry,
}

impl RecordTopic {
    /// Bounded metric label.
    pub fn as_str(self) -> &'static str {
        match self {
            RecordTopic::Events => "events",
            RecordTopic::Presence => "presence",
            RecordTopic::Quarantine => "quarantine",
            RecordTopic::Commands => "commands",
            RecordTopic::Alerts => "alerts",
            RecordTopic::Telemetry => "telemetry",
        }
    }

    /// Value of the Kafka `schema` header.
    pub fn schema(self) -> &'static str {
        match self {
            RecordTopic::Events => uspwatch_proto::EVENT_SCHEMA,
            RecordTopic::Presence => uspwatch_proto::PRESENCE_SCHEMA,
            RecordTopic::Quarantine => uspwatch_proto::QUARANTINE_SCHEMA,
            RecordTopic::Commands => "usp.command.v1",
            RecordTopic::Alerts => "usp.alert.v1",
            RecordTopic::Telemetry => uspwatch_proto::TELEMETRY_SCHEMA,
        }
    }

    pub(crate) fn code(self) -> u8 {
        match self {
            RecordTopic::Events => 1,
            RecordTopic::Presence => 2,
            RecordTopic::Quarantine => 3,
            RecordTopic::Commands => 4,
            RecordTopic::Alerts => 5,
            RecordTopic::Telemetry => 6,
        }
    }

    pub(crate) fn from_code(c: u8) -> Option<Self> {
        Some(match c {
            1 => RecordTopic::Events,
            2 => RecordTopic::Presence,
            3 => RecordTopic::Quarantine,
            4 => RecordTopic::Commands,
            5 => RecordTopic::Alerts,
            6 => RecordTopic::Telemetry,
            _ => return None,
        })
    }
}

/// A record on its way to a store.
#[derive(Debug, Clone)]
pub(crate) struct OutRecord {
    pub(crate) topic: RecordTopic,
    pub(crate) key: String,
    /// The `record_type` header.
    pub(crate) record_type: String,
    pub(crate) value: Bytes,
    pub(crate) at_ms: i64,
}

/// Which store made a record durable.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Stored {
    Kafka,
    Log,
}

impl Stored {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Stored::Kafka => "kafka",
            Stored::Log => "log",
        }
    }
}

/// Resolves once the record is durable.
pub(crate) type Ack = BoxFuture<'static, Result<Stored>>;

/// Counts the record as written once its ack resolves successfully.
pub(crate) fn counted(stream: RecordTopic, ack: Ack) -> Ack {
    Box::pin(async move {
        let r = ack.await;
        if r.is_ok() {
            metrics::counter!(crate::metrics::RECORDS_WRITTEN, "stream" => stream.as_str())
                .increment(1);
        }
        r
    })
}

#[async_trait::async_trait]
pub(crate) trait Sink: Send + Sync + 'static {
    /// Takes a record in call order; waits while the store's queue is full.
    async fn enqueue(&self, rec: OutRecord) -> Result<Ack>;
    /// `Some(up)` when Kafka is configured.
    fn kafka_up(&self) -> Option<bool>;
    /// Records in the spool not yet delivered to Kafka.
    fn spool_depth(&self) -> u64;
    /// Kafka producers replaced after the cluster lost their state.
    fn producer_resets(&self) -> u64 {
        0
    }
    /// Whether records can currently be made durable.
    async fn ready(&self) -> bool;
}

/// The embedded log as the event store.
pub(crate) struct LogSink {
    pub(crate) log: LogHandle,
}

pub(crate) fn log_ack(rx: crate::spool::Durable) -> Ack {
    Box::pin(async move {
        match rx.await {
            Ok(Ok(_)) => Ok(Stored::Log),
            Ok(Err(e)) => Err(Error::LogUnavailable(e)),
            Err(_) => Err(Error::Closed),
        }
    })
}

#[async_trait::async_trait]
impl Sink for LogSink {
    async fn enqueue(&self, rec: OutRecord) -> Result<Ack> {
        let stream = rec.topic;
        Ok(counted(stream, log_ack(self.log.append(rec).await?)))
    }

    fn kafka_up(&self) -> Option<bool> {
        None
    }

    fn spool_depth(&self) -> u64 {
        0
    }

    async fn ready(&self) -> bool {
        self.log.healthy()
    }
}
