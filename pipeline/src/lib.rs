//! The uspwatch controller pipeline: a USP Controller endpoint that tees every Notify,
//! loss-free, into Kafka or an embedded durable log, keeps an inventory of the fleet, and
//! sends requests to agents.
//!
//! The data path: the broker hands every Record published to `usp/controller/<our EID>` to
//! [`Pipeline::start`]'s `inbound` channel. A Notify becomes an [`uspwatch_proto::Event`],
//! is handed to the sink, and its NotifyResp is published (through [`Mtp`]) only once the
//! sink has made the event durable: a Kafka delivery report (idempotent producer,
//! `acks=all`) or an fsync of the embedded log, which is also the spool while Kafka is
//! down. Retries of a Notify (same `from_id`/`msg_id`) are acknowledged without a second
//! event. Queues are bounded: when the sink falls behind, the controller stops reading and
//! acknowledging, and agents retry.
//!
//! ```no_run
//! # async fn run(mtp: std::sync::Arc<dyn uspwatch_pipeline::Mtp>) -> uspwatch_pipeline::Result<()> {
//! use uspwatch_pipeline::{Pipeline, PipelineConfig};
//! use tokio_util::sync::CancellationToken;
//!
//! let (_to_pipeline, inbound) = tokio::sync::mpsc::channel(1024);
//! let shutdown = CancellationToken::new();
//! let p = Pipeline::start(PipelineConfig::default(), mtp, inbound, shutdown.clone()).await?;
//! let mut events = p.subscribe_events();
//! while let Ok(e) = events.recv().await {
//!     println!("{} {}", e.endpoint_id, e.kind.as_str());
//! }
//! # Ok(()) }
//! ```

mod bulkdata;
mod config;
mod controller;
mod dedup;
mod error;
mod inventory;
pub mod log;
pub mod metrics;
mod pipeline;
mod sink;
mod spool;

pub use bulkdata::{BulkDataConfig, BulkReport};
pub use config::{
    ControllerConfig, FsyncPolicy, InventoryConfig, KafkaConfig, KafkaTopics, LogConfig,
    PipelineConfig, RetentionConfig,
};
pub use controller::{CommandResult, Controller};
pub use error::{Error, Result};
pub use inventory::{
    BootInfo, Device, DeviceDetail, DeviceStatus, FleetDevice, Inventory, LatestValue,
    MODEL_NAME_PATH, OnBoardInfo, Provisioning, SERIAL_NUMBER_PATH, SOFTWARE_VERSION_PATH,
};
pub use pipeline::{Pipeline, PipelineStats};
pub use sink::RecordTopic;

/// Outbound side of the MQTT transport, implemented by the binary over the broker's local
/// link.
#[async_trait::async_trait]
pub trait Mtp: Send + Sync + 'static {
    /// Publishes `payload` to `topic`; MQTT 5 properties when given. Fails with
    /// [`Error::TransportUnavailable`] when a later attempt may succeed,
    /// [`Error::PublishRefused`] when this publish never can, and [`Error::Closed`] once the
    /// transport has shut down.
    async fn publish(
        &self,
        topic: &str,
        payload: bytes::Bytes,
        response_topic: Option<&str>,
        content_type: Option<&str>,
    ) -> Result<()>;
}

/// A publish the broker delivered to the controller's topic.
#[derive(Debug, Clone)]
pub struct InboundRecord {
    pub topic: String,
    pub payload: bytes::Bytes,
    /// MQTT 5 Response Topic property.
    pub response_topic: Option<String>,
    /// MQTT 5 Content Type property.
    pub content_type: Option<String>,
}

pub(crate) use uspwatch_proto::time::now_ms;
