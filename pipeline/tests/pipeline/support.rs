//! Test helpers: a fake MTP, agent-side records, Kafka reading and event checks.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{Consumer, StreamConsumer};
use rdkafka::message::{Headers, Message as _, OwnedMessage};
use rdkafka::{Offset, TopicPartitionList};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;
use uspwatch_pipeline::{InboundRecord, Mtp, Pipeline, PipelineConfig};
use uspwatch_proto::pb::usp::{Msg, body, response};
use uspwatch_proto::pb::usp_record::Record;
use uspwatch_proto::{Limits, Message, wrap};

pub const CONTROLLER: &str = "self::uspwatch";
pub const CONTROLLER_TOPIC: &str = "usp/controller/self::uspwatch";
pub const WAIT: Duration = Duration::from_secs(60);

/// One publish the pipeline made.
#[derive(Debug, Clone)]
pub struct Published {
    pub topic: String,
    pub payload: Bytes,
    pub response_topic: Option<String>,
    pub content_type: Option<String>,
}

impl Published {
    pub fn decode(&self) -> (Record, Msg) {
        let d = uspwatch_proto::validate(&self.payload, &Limits::default()).expect("valid record");
        let msg = d.msg().expect("a msg").clone();
        (d.record, msg)
    }
}

/// Captures what the pipeline publishes.
pub struct FakeMtp {
    tx: mpsc::UnboundedSender<Published>,
}

#[async_trait::async_trait]
impl Mtp for FakeMtp {
    async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        response_topic: Option<&str>,
        content_type: Option<&str>,
    ) -> uspwatch_pipeline::Result<()> {
        self.tx
            .send(Published {
                topic: topic.to_string(),
                payload,
                response_topic: response_topic.map(str::to_string),
                content_type: content_type.map(str::to_string),
            })
            .map_err(|_| uspwatch_pipeline::Error::Closed)
    }
}

/// A started pipeline with the agent side's ends of its channels.
pub struct Harness {
    pub pipeline: Pipeline,
    pub to_pipeline: mpsc::Sender<InboundRecord>,
    pub published: mpsc::UnboundedReceiver<Published>,
    pub shutdown: CancellationToken,
}

impl Harness {
    pub async fn start(cfg: PipelineConfig) -> Harness {
        let (tx, published) = mpsc::unbounded_channel();
        let (to_pipeline, inbound) = mpsc::channel(1024);
        let shutdown = CancellationToken::new();
        let pipeline = Pipeline::start(cfg, Arc::new(FakeMtp { tx }), inbound, shutdown.clone())
            .await
            .expect("pipeline starts");
        Harness {
            pipeline,
            to_pipeline,
            published,
            shutdown,
        }
    }

    pub async fn send(&self, rec: InboundRecord) {
        self.to_pipeline.send(rec).await.expect("pipeline running");
    }

    /// The next publish, or a panic after `WAIT`.
    pub async fn next_published(&mut self) -> Published {
        tokio::time::timeout(WAIT, self.published.recv())
            .await
            .expect("a publish in time")
            .expect("pipeline running")
    }

    pub async fn stop(self) {
        self.shutdown.cancel();
        self.pipeline.join().await;
    }
}

pub fn config(dir: &Path) -> PipelineConfig {
    let mut c = PipelineConfig::default();
    c.log.dir = dir.to_path_buf();
    c
}

pub fn kafka_config(dir: &Path, bootstrap: &str, delivery_timeout: Duration) -> PipelineConfig {
    let mut c = config(dir);
    c.kafka = Some(uspwatch_pipeline::KafkaConfig {
        brokers: bootstrap.to_string(),
        delivery_timeout,
        ..Default::default()
    });
    c
}

/// An MQTT 5 publish from `agent` to the controller, with its reply topic.
pub fn from_agent_v5(agent: &str, msg: &Msg) -> InboundRecord {
    InboundRecord {
        topic: CONTROLLER_TOPIC.to_string(),
        payload: Bytes::from(wrap(msg, agent, CONTROLLER).encode_to_vec()),
        response_topic: Some(agent_topic(agent)),
        content_type: Some(uspwatch_proto::mqtt::CONTENT_TYPE.to_string()),
    }
}

/// An MQTT 3.1.1 publish from `agent`: the reply topic rides in the topic.
pub fn from_agent_v311(agent: &str, record: &Record) -> InboundRecord {
    InboundRecord {
        topic: uspwatch_proto::mqtt::with_reply_to(CONTROLLER_TOPIC, &agent_topic(agent)),
        payload: Bytes::from(record.encode_to_vec()),
        response_topic: None,
        content_type: None,
    }
}

pub fn agent_topic(agent: &str) -> String {
    format!("usp/agent/{agent}")
}

/// The NotifyResp's msg_id, or a panic if the Msg is something else.
pub fn notify_resp_id(msg: &Msg) -> (String, String) {
    let id = msg
        .header
        .as_ref()
        .map(|h| h.msg_id.clone())
        .unwrap_or_default();
    match msg.body.as_ref().and_then(|b| b.msg_body.as_ref()) {
        Some(body::MsgBody::Response(r)) => match &r.resp_type {
            Some(response::RespType::NotifyResp(n)) => (id, n.subscription_id.clone()),
            other => panic!("not a NotifyResp: {other:?}"),
        },
        other => panic!("not a response: {other:?}"),
    }
}

pub fn args(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
    pairs
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect()
}

/// A consumer reading `topic` from the beginning without joining a group (no rebalance wait).
pub fn consumer(bootstrap: &str, topic: &str, partitions: i32) -> StreamConsumer {
    let c: StreamConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", "uspwatch-test")
        .set("enable.auto.commit", "false")
        .set("auto.offset.reset", "earliest")
        .create()
        .expect("consumer");
    let mut tpl = TopicPartitionList::new();
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Beginning)
            .expect("partition");
    }
    c.assign(&tpl).expect("assign");
    c
}

/// Reads messages until `done` says so, or panics after `WAIT`.
pub async fn read_until(
    c: &StreamConsumer,
    mut done: impl FnMut(&[OwnedMessage]) -> bool,
) -> Vec<OwnedMessage> {
    let mut out = Vec::new();
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(&out) {
        let m = tokio::time::timeout_at(deadline, c.recv())
            .await
            .unwrap_or_else(|_| panic!("only {} messages arrived", out.len()))
            .expect("consume");
        out.push(m.detach());
    }
    out
}

pub fn header<'a>(m: &'a OwnedMessage, name: &str) -> Option<&'a str> {
    let h = m.headers()?;
    h.iter()
        .find(|h| h.key == name)
        .and_then(|h| h.value)
        .and_then(|v| std::str::from_utf8(v).ok())
}

pub fn json_value(m: &OwnedMessage) -> serde_json::Value {
    serde_json::from_slice(m.payload().expect("a value")).expect("JSON value")
}

/// Checks a JSON value against one of the schemas the proto crate publishes.
pub fn check_schema(schema: &str, v: &serde_json::Value) {
    let schema: serde_json::Value = serde_json::from_str(schema).expect("schema is JSON");
    let validator = jsonschema::validator_for(&schema).expect("schema compiles");
    if let Err(e) = validator.validate(v) {
        panic!("{v} does not validate: {e}");
    }
}

/// Checks an event against the Event JSON Schema (`usp.events.v1`).
pub fn check_event_json(v: &serde_json::Value) {
    check_schema(uspwatch_proto::schema::EVENT_V1, v);
}

/// Re-reads the log directory until `found` returns something, or panics after `WAIT`.
pub async fn wait_for_log<T>(
    dir: &Path,
    mut found: impl FnMut(&[uspwatch_pipeline::log::LogRecord]) -> Option<T>,
) -> T {
    let deadline = tokio::time::Instant::now() + WAIT;
    loop {
        let mut r = uspwatch_pipeline::log::LogReader::open(dir).expect("log readable");
        let mut recs = Vec::new();
        loop {
            let b = r.read(1000).expect("log readable");
            if b.is_empty() {
                break;
            }
            recs.extend(b);
        }
        if let Some(t) = found(&recs) {
            return t;
        }
        assert!(tokio::time::Instant::now() < deadline, "log never matched");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}
