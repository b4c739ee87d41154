//! [`Pipeline`]: starts the sink, the controller's inbound loop and the side-record writer,
//! and is the handle the binary uses.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use futures::StreamExt;
use futures::stream::FuturesUnordered;
use parking_lot::Mutex;
use serde::Serialize;
use tokio::sync::{broadcast, mpsc};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};
use uspwatch_proto::{Event, PresenceEvent, QuarantineEvent};

use crate::config::PipelineConfig;
use crate::controller::{Controller, Core, inbound};
use crate::error::{Error, Result};
use crate::inventory::Inventory;
use crate::sink::kafka::KafkaSink;
use crate::sink::{LogSink, OutRecord, RecordTopic, Sink};
use crate::spool::LogHandle;
use crate::{InboundRecord, Mtp, now_ms};

/// Presence/quarantine/command records waiting for the sink (full = dropped and counted).
const SIDE_QUEUE: usize = 4096;
/// Side records being made durable at once.
const SIDE_IN_FLIGHT: usize = 1024;

#[derive(Default)]
pub(crate) struct Stats {
    pub(crate) records_received: AtomicU64,
    pub(crate) records_invalid: AtomicU64,
    pub(crate) events_written: AtomicU64,
    pub(crate) duplicates: AtomicU64,
    pub(crate) notify_resps: AtomicU64,
    pub(crate) in_flight: AtomicU64,
    pub(crate) records_dropped: AtomicU64,
    pub(crate) requests_sent: AtomicU64,
    pub(crate) requests_timed_out: AtomicU64,
}

/// Counters for the demo console and readiness.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct PipelineStats {
    pub records_received: u64,
    pub records_invalid: u64,
    /// Notify events made durable (first copies).
    pub events_written: u64,
    /// Notify retries acknowledged without a second event.
    pub duplicates: u64,
    pub notify_resps: u64,
    /// Notifies received and not yet durable.
    pub in_flight: u64,
    /// Records in the spool not yet in Kafka.
    pub spool_depth: u64,
    /// `None` without Kafka; `Some(false)` while records are being spooled.
    pub kafka_up: Option<bool>,
    /// Kafka producers replaced after the cluster lost their state.
    pub kafka_producer_resets: u64,
    /// Presence/quarantine/command records dropped because the sink queue was full.
    pub records_dropped: u64,
    pub requests_sent: u64,
    pub requests_timed_out: u64,
}

/// The running pipeline.
pub struct Pipeline {
    core: Arc<Core>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl Pipeline {
    /// Opens the log, connects the sink, and starts handling `inbound` records until
    /// `shutdown` is cancelled.
    pub async fn start(
        config: PipelineConfig,
        mtp: Arc<dyn Mtp>,
        inbound: mpsc::Receiver<InboundRecord>,
        shutdown: CancellationToken,
    ) -> Result<Pipeline> {
        config.validate()?;
        let mut tasks = Vec::new();
        let inventory = if config.inventory.persist {
            let path = config.inventory.state_path(&config.log);
            let inv = Inventory::open(&config.inventory, &path)?;
            tasks.push(tokio::spawn(crate::inventory::run_persist(
                inv.clone(),
                path,
                config.inventory.persist_interval,
                shutdown.clone(),
            )));
            inv
        } else {
            Inventory::load(&config.inventory)?
        };
        let keep_from = if config.kafka.is_some() { 0 } else { u64::MAX };
        let log_cfg = config.log.clone();
        let (log, log_task) = tokio::task::spawn_blocking({
            let shutdown = shutdown.clone();
            move || LogHandle::start(&log_cfg, keep_from, shutdown)
        })
        .await
        .map_err(|_| Error::Closed)??;
        tasks.push(log_task);
        let sink: Arc<dyn Sink> = match &config.kafka {
            Some(k) => {
                let (sink, task) =
                    KafkaSink::start(k, log, config.log.dir.clone(), shutdown.clone())?;
                tasks.push(task);
                info!(brokers = %k.brokers, "pipeline writes events to Kafka");
                Arc::new(sink)
            }
            None => {
                info!(dir = %config.log.dir.display(), "pipeline writes events to the embedded log");
                Arc::new(LogSink { log })
            }
        };
        let (side_tx, side_rx) = mpsc::channel(SIDE_QUEUE);
        let (done_tx, done_rx) = mpsc::unbounded_channel();
        let core = Arc::new(Core::new(
            config.controller.clone(),
            config.bulk_data.clone(),
            mtp,
            sink.clone(),
            inventory,
            side_tx,
            done_tx,
        ));
        tasks.push(tokio::spawn(inbound::run_completions(
            done_rx,
            shutdown.clone(),
        )));
        tasks.push(tokio::spawn(side_records(sink, side_rx, shutdown.clone())));
        tasks.push(tokio::spawn(inbound::run(core.clone(), inbound, shutdown)));
        info!(endpoint_id = %core.cfg.endpoint_id, topic = %core.own_topic, "controller endpoint started");
        Ok(Pipeline {
            core,
            tasks: Mutex::new(tasks),
        })
    }

    /// The request API.
    pub fn controller(&self) -> Controller {
        Controller {
            core: self.core.clone(),
        }
    }

    /// A connect or disconnect from the broker: updates the inventory and writes the
    /// presence topic.
    pub fn on_presence(&self, p: PresenceEvent) {
        self.core.inventory.on_presence(&p);
        let rtype = match p.state {
            uspwatch_proto::PresenceState::Connected => "connected",
            uspwatch_proto::PresenceState::Disconnected => "disconnected",
        };
        self.core
            .side_record(RecordTopic::Presence, &p.endpoint_id, rtype, &p);
    }

    /// A record the broker rejected: writes the quarantine topic.
    pub fn on_quarantine(&self, q: QuarantineEvent) {
        self.core
            .side_record(RecordTopic::Quarantine, &q.endpoint_id, &q.reason, &q);
    }

    /// Every new event once, after it is durable. A receiver that falls more than
    /// `controller.event_buffer` behind gets `Lagged` and misses events.
    pub fn subscribe_events(&self) -> broadcast::Receiver<Arc<Event>> {
        self.core.events_tx.subscribe()
    }

    /// The device inventory.
    pub fn inventory(&self) -> Inventory {
        self.core.inventory.clone()
    }

    /// Writes a record (alerts, commands from other components) and returns once durable.
    pub async fn publish_record(
        &self,
        topic: RecordTopic,
        key: &str,
        value: serde_json::Value,
    ) -> Result<()> {
        let rtype = value
            .get("record_type")
            .or_else(|| value.get("state"))
            .and_then(|v| v.as_str())
            .unwrap_or(topic.as_str())
            .to_string();
        let bytes = serde_json::to_vec(&value).map_err(|e| Error::Encode(e.to_string()))?;
        let rec = OutRecord {
            topic,
            key: key.to_string(),
            record_type: rtype,
            value: Bytes::from(bytes),
            at_ms: now_ms(),
        };
        self.core.sink.enqueue(rec).await?.await.map(|_| ())
    }

    /// Ingests a Bulk Data report from MQTT or HTTP: decodes it whole, writes its samples
    /// (`usp.telemetry.v1` or the embedded log) and returns their number once all are durable;
    /// then they reach the inventory and the rule window. A malformed report is quarantined
    /// and refused with [`Error::BulkData`]; nothing of it is stored.
    pub async fn ingest_report(&self, report: crate::BulkReport) -> Result<usize> {
        let now = now_ms();
        let id = crate::bulkdata::report_id(&report, now);
        let samples = self.core.decode_report(&report, &id, now)?;
        let acks = self.core.enqueue_samples(&samples).await?;
        crate::bulkdata::all_durable(acks).await?;
        let n = samples.len();
        self.core.samples_durable(samples);
        Ok(n)
    }

    /// Counters.
    pub fn stats(&self) -> PipelineStats {
        let s = &self.core.stats;
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        PipelineStats {
            records_received: get(&s.records_received),
            records_invalid: get(&s.records_invalid),
            events_written: get(&s.events_written),
            duplicates: get(&s.duplicates),
            notify_resps: get(&s.notify_resps),
            in_flight: get(&s.in_flight),
            spool_depth: self.core.sink.spool_depth(),
            kafka_up: self.core.sink.kafka_up(),
            kafka_producer_resets: self.core.sink.producer_resets(),
            records_dropped: get(&s.records_dropped),
            requests_sent: get(&s.requests_sent),
            requests_timed_out: get(&s.requests_timed_out),
        }
    }

    /// True when records can be made durable: the log is writable and, when Kafka is
    /// configured, Kafka is reachable.
    pub async fn ready(&self) -> bool {
        self.core.sink.ready().await
    }

    /// Waits for the background tasks to end (after `shutdown` was cancelled). Records not
    /// yet durable are abandoned unacknowledged, so their agents retry.
    pub async fn join(&self) {
        let tasks: Vec<_> = std::mem::take(&mut *self.tasks.lock());
        for t in tasks {
            if let Err(e) = t.await {
                warn!(error = %e, "pipeline task failed");
            }
        }
    }
}

async fn side_records(
    sink: Arc<dyn Sink>,
    mut rx: mpsc::Receiver<OutRecord>,
    shutdown: CancellationToken,
) {
    let mut acks = FuturesUnordered::new();
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            Some(res) = acks.next(), if !acks.is_empty() => {
                if let Err(e) = res {
                    warn!(error = %e, "a presence/quarantine/command record was not stored");
                }
            }
            r = rx.recv(), if acks.len() < SIDE_IN_FLIGHT => match r {
                Some(rec) => match sink.enqueue(rec).await {
                    Ok(a) => acks.push(a),
                    Err(e) => warn!(error = %e, "a presence/quarantine/command record was not stored"),
                },
                None => return,
            },
        }
    }
}
