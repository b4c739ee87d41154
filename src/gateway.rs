//! Starts the broker, the pipeline and the rule engine and connects them: the only place that
//! knows all three crates.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use async_trait::async_trait;
use bytes::Bytes;
use tokio::sync::{broadcast, mpsc};
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use uspwatch_broker::{Broker, LinkPublisher};
use uspwatch_pipeline::{InboundRecord, Mtp, Pipeline, RecordTopic};
use uspwatch_rules::{CommandSink, Engine, Output};

use crate::config::AppConfig;

/// Capacity of the broker → controller queue. When it is full the broker's local link stops
/// being drained and the router holds messages for it, so devices see back-pressure instead of
/// the gateway growing without bound.
const INBOUND_QUEUE: usize = 16 * 1024;
/// How often the rule thread moves new events into its window (a few hundred per batch at
/// the maximum ingest rate; far inside `controller.event_buffer`).
const RULE_INGEST_INTERVAL: Duration = Duration::from_millis(10);

/// `uspwatch_devices{state}`: devices in the inventory by presence (`online`, `offline`,
/// `stale`), refreshed with the rule engine's device table.
pub const DEVICES: &str = "uspwatch_devices";

/// A running gateway.
pub struct Gateway {
    pub config: AppConfig,
    pub broker: Arc<Broker>,
    pub pipeline: Arc<Pipeline>,
    pub rules: Engine,
    pub rule_load_errors: Vec<String>,
}

/// The controller's transport: publishes through the broker's in-process link.
struct LinkMtp(LinkPublisher);

#[async_trait]
impl Mtp for LinkMtp {
    async fn publish(
        &self,
        topic: &str,
        payload: Bytes,
        response_topic: Option<&str>,
        content_type: Option<&str>,
    ) -> uspwatch_pipeline::Result<()> {
        self.0
            .publish(topic, payload, response_topic, content_type)
            .map_err(|e| match e {
                uspwatch_broker::Error::LinkClosed => uspwatch_pipeline::Error::Closed,
                other => uspwatch_pipeline::Error::TransportUnavailable(other.to_string()),
            })
    }
}

/// Rule actions go to devices through the controller.
struct ControllerSink(uspwatch_pipeline::Controller);

#[async_trait]
impl CommandSink for ControllerSink {
    async fn send(
        &self,
        endpoint_id: &str,
        command: uspwatch_proto::Command,
        origin: &str,
    ) -> uspwatch_rules::Result<serde_json::Value> {
        use uspwatch_rules::Error as E;
        match self.0.request(endpoint_id, &command, origin).await {
            Ok(r) if r.ok => Ok(serde_json::to_value(&r).unwrap_or(serde_json::Value::Null)),
            Ok(r) => Err(E::CommandFailed(format!(
                "device answered with an error: {}",
                r.response
            ))),
            Err(e) if e.is_retryable() => Err(E::CommandUndelivered(e.to_string())),
            Err(e) => Err(E::CommandFailed(e.to_string())),
        }
    }
}

impl Gateway {
    /// Starts every component; returns once all listeners are bound.
    pub async fn start(config: AppConfig, shutdown: CancellationToken) -> anyhow::Result<Gateway> {
        let broker = Arc::new(
            Broker::start(config.broker.clone(), shutdown.clone())
                .await
                .context("starting the MQTT broker")?,
        );
        let controller_eid = config.pipeline.controller.endpoint_id.clone();
        let own_topic = format!(
            "{}/{}",
            config.pipeline.controller.controller_prefix, controller_eid
        );
        let (publisher, mut deliveries) = broker
            .local_link(
                &controller_eid,
                &[own_topic.clone(), format!("{own_topic}/#")],
            )
            .context("attaching the controller to the broker")?;
        let (in_tx, in_rx) = mpsc::channel(INBOUND_QUEUE);
        let pipeline = Arc::new(
            Pipeline::start(
                config.pipeline.clone(),
                Arc::new(LinkMtp(publisher)),
                in_rx,
                shutdown.clone(),
            )
            .await
            .context("starting the event pipeline")?,
        );
        tokio::spawn(async move {
            while let Some(d) = deliveries.recv().await {
                let rec = InboundRecord {
                    topic: d.topic,
                    payload: d.payload,
                    response_topic: d.response_topic,
                    content_type: d.content_type,
                };
                if in_tx.send(rec).await.is_err() {
                    break;
                }
            }
        });
        spawn_forward(broker.presence(), shutdown.clone(), {
            let p = pipeline.clone();
            move |ev| p.on_presence(ev)
        });
        crate::bulkdata::spawn_mqtt(
            &broker,
            &pipeline,
            &config.broker.topics.bulk_data_topics,
            shutdown.clone(),
        )
        .context("subscribing to the Bulk Data topics")?;
        spawn_forward(broker.quarantine(), shutdown.clone(), {
            let p = pipeline.clone();
            move |ev| p.on_quarantine(ev)
        });

        let (rules, load_errors) = Engine::new(
            &config.rules,
            Arc::new(ControllerSink(pipeline.controller())),
        )
        .context("starting the rule engine")?;
        let rule_load_errors: Vec<String> = load_errors.iter().map(|e| e.to_string()).collect();
        for e in &rule_load_errors {
            warn!(error = %e, "rule not loaded");
        }
        spawn_rule_outputs(&rules, &pipeline, shutdown.clone());
        spawn_device_sync(&rules, &pipeline, shutdown.clone());
        spawn_rule_thread(&rules, pipeline.subscribe_events(), shutdown.clone())
            .context("starting the rule engine thread")?;
        if let Some(k) = &config.pipeline.kafka {
            crate::command_requests::spawn(
                &config.command_requests,
                &k.brokers,
                pipeline.clone(),
                shutdown.clone(),
            )
            .context("starting the command-request consumer")?;
        }

        crate::telemetry::spawn_connection_summary(
            &broker,
            crate::telemetry::CONNECTION_SUMMARY_EVERY,
            shutdown.clone(),
        );
        for (kind, addr) in broker.local_addrs() {
            info!(listener = ?kind, %addr, "MQTT listener ready");
        }
        Ok(Gateway {
            config,
            broker,
            pipeline,
            rules,
            rule_load_errors,
        })
    }
}

/// Runs the rule engine's window ingest and its evaluation rounds on a thread of their own.
///
/// Sealing the window and running the SQL take tens of milliseconds of CPU at a time and hold
/// the window's lock; on the shared runtime they stalled the broker's connection tasks and the
/// controller behind them (the NotifyResp latency tail). On one thread, ingest and evaluation
/// never contend for the lock, and the kernel shares the cores fairly with the I/O workers.
fn spawn_rule_thread(
    rules: &Engine,
    events: broadcast::Receiver<Arc<uspwatch_proto::Event>>,
    shutdown: CancellationToken,
) -> std::io::Result<()> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let rules = rules.clone();
    std::thread::Builder::new()
        .name("rules".into())
        .spawn(move || {
            rt.block_on(async move {
                tokio::spawn(drain_events(rules.clone(), events, shutdown.clone()));
                rules.run(shutdown).await;
            });
        })?;
    Ok(())
}

/// Moves new events into the rule window in batches every few milliseconds. Waiting on the
/// channel instead would cost the controller a thread wake-up per event at ingest rates.
async fn drain_events(
    rules: Engine,
    mut events: broadcast::Receiver<Arc<uspwatch_proto::Event>>,
    shutdown: CancellationToken,
) {
    let mut tick = tokio::time::interval(RULE_INGEST_INTERVAL);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tick.tick() => {}
        }
        loop {
            match events.try_recv() {
                Ok(ev) => rules.ingest(&ev),
                Err(broadcast::error::TryRecvError::Empty) => break,
                Err(broadcast::error::TryRecvError::Lagged(n)) => {
                    metrics::counter!(uspwatch_rules::metrics::EVENTS_SKIPPED).increment(n);
                    warn!(skipped = n, "rule window fell behind the event stream");
                }
                Err(broadcast::error::TryRecvError::Closed) => return,
            }
        }
    }
}

/// Forwards a broadcast stream to a callback until shutdown; a lagging receiver logs how many
/// items it skipped rather than stopping.
pub fn spawn_forward<T: Clone + Send + 'static>(
    mut rx: broadcast::Receiver<T>,
    shutdown: CancellationToken,
    mut f: impl FnMut(T) + Send + 'static,
) {
    tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rx.recv() => match r {
                    Ok(v) => f(v),
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(skipped = n, "internal subscriber lagged");
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            }
        }
    });
}

fn spawn_rule_outputs(rules: &Engine, pipeline: &Arc<Pipeline>, shutdown: CancellationToken) {
    let mut rx = rules.subscribe();
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        loop {
            let out = tokio::select! {
                _ = shutdown.cancelled() => break,
                r = rx.recv() => match r {
                    Ok(o) => o,
                    Err(broadcast::error::RecvError::Lagged(n)) => {
                        warn!(skipped = n, "rule output subscriber lagged");
                        continue;
                    }
                    Err(broadcast::error::RecvError::Closed) => break,
                },
            };
            let (topic, key, value) = match &out {
                Output::Alert(a) => (
                    RecordTopic::Alerts,
                    a.alert.fingerprint.clone(),
                    serde_json::to_value(a),
                ),
                Output::Action(a) => (
                    RecordTopic::Commands,
                    a.endpoint_id.clone(),
                    serde_json::to_value(a),
                ),
            };
            match value {
                Ok(v) => {
                    if let Err(e) = pipeline.publish_record(topic, &key, v).await {
                        warn!(error = %e, "could not record a rule output");
                    }
                }
                Err(e) => warn!(error = %e, "could not serialise a rule output"),
            }
        }
    });
}

/// Keeps the rule engine's `devices` table in step with the inventory.
fn spawn_device_sync(rules: &Engine, pipeline: &Arc<Pipeline>, shutdown: CancellationToken) {
    let rules = rules.clone();
    let pipeline = pipeline.clone();
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(Duration::from_secs(1));
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => break,
                _ = tick.tick() => {
                    let snapshot = pipeline.inventory().fleet();
                    let online = snapshot.iter().filter(|d| d.online).count();
                    let stale = snapshot.iter().filter(|d| d.stale).count();
                    metrics::gauge!(DEVICES, "state" => "online").set(online as f64);
                    metrics::gauge!(DEVICES, "state" => "offline").set((snapshot.len() - online) as f64);
                    metrics::gauge!(DEVICES, "state" => "stale").set(stale as f64);
                    // Until the first device is known, the engine counts the endpoints in its
                    // window as the fleet. An empty table would make max_fleet_fraction's
                    // budget a single action for the whole fleet in the seconds after a start.
                    if snapshot.is_empty() {
                        continue;
                    }
                    let devices = snapshot
                        .into_iter()
                        .map(|d| uspwatch_rules::Device {
                            endpoint_id: d.endpoint_id,
                            online: d.online,
                            stale: d.stale,
                            last_seen_ms: d.last_seen_ms.unwrap_or(0),
                            labels: d.labels,
                            software_version: d.software_version,
                            model: d.model_name,
                        })
                        .collect();
                    rules.set_devices(devices);
                }
            }
        }
    });
}
