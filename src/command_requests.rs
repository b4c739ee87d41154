//! Commands from remediation jobs over Kafka: each message on the command-request topic is
//! `{"request_id": "...", "endpoint_id": "...", "command": {"type": "operate", ...}}`. It is
//! sent through the controller like an API or rule command, so its `sent` and `outcome`
//! records land on the commands topic with `origin = "kafka:<request_id>"`. A request that
//! cannot be parsed gets a `rejected` record there instead, keyed by the Kafka key.

use std::sync::Arc;
use std::time::Duration;

use rdkafka::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::Message;
use serde::{Deserialize, Serialize};
use serde_json::json;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use uspwatch_pipeline::{Pipeline, RecordTopic};
use uspwatch_proto::Command;

/// `[command_requests]`: the Kafka topic remediation jobs write commands to. Only used when
/// `[pipeline.kafka]` is configured.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CommandRequestsConfig {
    /// Consume command requests (default true when Kafka is configured).
    pub enabled: bool,
    /// Topic name (default `usp.command-requests.v1`).
    pub topic: String,
    /// Consumer group (default `uspwatch-commands`).
    pub group_id: String,
    /// Requests executed at once; further messages wait (default 64).
    pub max_in_flight: usize,
}

impl Default for CommandRequestsConfig {
    fn default() -> Self {
        CommandRequestsConfig {
            enabled: true,
            topic: "usp.command-requests.v1".into(),
            group_id: "uspwatch-commands".into(),
            max_in_flight: 64,
        }
    }
}

impl CommandRequestsConfig {
    pub fn validate(&self) -> Vec<String> {
        let mut e = Vec::new();
        if self.topic.is_empty() {
            e.push("topic must not be empty".into());
        }
        if self.group_id.is_empty() {
            e.push("group_id must not be empty".into());
        }
        if self.max_in_flight == 0 {
            e.push("max_in_flight must be at least 1".into());
        }
        e
    }
}

/// One command request.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct CommandRequest {
    request_id: String,
    endpoint_id: String,
    command: Command,
}

/// Starts the consumer when Kafka and the feature are configured.
pub fn spawn(
    config: &CommandRequestsConfig,
    brokers: &str,
    pipeline: Arc<Pipeline>,
    shutdown: CancellationToken,
) -> anyhow::Result<()> {
    if !config.enabled {
        return Ok(());
    }
    let consumer: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", brokers)
        .set("group.id", &config.group_id)
        .set("enable.auto.commit", "true")
        .set("auto.offset.reset", "latest")
        .create()?;
    consumer.subscribe(&[&config.topic])?;
    info!(topic = %config.topic, "accepting command requests from Kafka");
    let limit = Arc::new(Semaphore::new(config.max_in_flight));
    tokio::spawn(async move {
        loop {
            let msg = tokio::select! {
                _ = shutdown.cancelled() => break,
                m = consumer.recv() => m,
            };
            let msg = match msg {
                Ok(m) => m,
                Err(e) => {
                    warn!(error = %e, "command request consumer error");
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    continue;
                }
            };
            let key = msg
                .key()
                .map(|k| String::from_utf8_lossy(k).into_owned())
                .unwrap_or_default();
            let parsed = msg
                .payload()
                .ok_or_else(|| "empty message".to_string())
                .and_then(|p| {
                    serde_json::from_slice::<CommandRequest>(p).map_err(|e| e.to_string())
                });
            let Ok(permit) = limit.clone().acquire_owned().await else {
                break;
            };
            let pipeline = pipeline.clone();
            tokio::spawn(async move {
                let _permit = permit;
                execute(&pipeline, key, parsed).await;
            });
        }
    });
    Ok(())
}

async fn execute(pipeline: &Pipeline, key: String, parsed: Result<CommandRequest, String>) {
    let req = match parsed {
        Ok(r) => r,
        Err(error) => {
            warn!(key = %key, error = %error, "rejected a command request");
            reject(pipeline, &key, None, &error).await;
            return;
        }
    };
    let origin = format!("kafka:{}", req.request_id);
    if let Err(e) = req.command.validate() {
        reject(
            pipeline,
            &req.endpoint_id,
            Some(&req.request_id),
            &e.to_string(),
        )
        .await;
        return;
    }
    // The controller records `sent` and `outcome` on the commands topic itself.
    if let Err(e) = pipeline
        .controller()
        .request(&req.endpoint_id, &req.command, &origin)
        .await
    {
        info!(request_id = %req.request_id, endpoint_id = %req.endpoint_id, error = %e, "command request failed");
    }
}

async fn reject(pipeline: &Pipeline, key: &str, request_id: Option<&str>, error: &str) {
    let record = json!({
        "phase": "outcome",
        "outcome": "rejected",
        "origin": request_id.map(|r| format!("kafka:{r}")).unwrap_or_else(|| "kafka".into()),
        "request_id": request_id,
        "endpoint_id": key,
        "error": error,
    });
    if let Err(e) = pipeline
        .publish_record(RecordTopic::Commands, key, record)
        .await
    {
        warn!(error = %e, "could not record a rejected command request");
    }
}
