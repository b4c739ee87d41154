//! Kafka as the event store, with the embedded log as its spool.
//!
//! Two modes:
//! - *direct*: records go straight to the idempotent producer (`acks=all`); a record is
//!   durable when its delivery report says so. A failed delivery sends the record to the
//!   spool instead and switches to spooling;
//! - *spooling* (Kafka down, or spool not yet drained): records are appended to the log and
//!   are durable once synced there. A replay task sends the spool to Kafka in order and
//!   moves a cursor (`kafka.cursor` in the log directory); when it has caught up with
//!   everything appended, the sink returns to direct mode. Because the mode is decided
//!   under the same lock that orders appends, no record can slip past the spool.
//!
//! Replay is at-least-once: a record whose delivery report was lost can reach Kafka twice,
//! always with the same `event_id`.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use rdkafka::ClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{DeliveryFuture, FutureProducer, FutureRecord, Producer};
use tokio::sync::{Mutex, Notify};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{debug, error, info, warn};

use super::{Ack, OutRecord, Sink, Stored, counted, log_ack};
use crate::config::KafkaConfig;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::spool::LogHandle;

const REPLAY_BATCH: usize = 1000;
const CURSOR_FILE: &str = "kafka.cursor";

/// Routes librdkafka's callbacks into tracing and tracks whether brokers are reachable.
pub(crate) struct Ctx {
    up: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        match level {
            RDKafkaLogLevel::Emerg
            | RDKafkaLogLevel::Alert
            | RDKafkaLogLevel::Critical
            | RDKafkaLogLevel::Error => error!(facility = fac, "{log_message}"),
            RDKafkaLogLevel::Warning => warn!(facility = fac, "{log_message}"),
            _ => debug!(facility = fac, "{log_message}"),
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::AllBrokersDown) {
            if self.up.swap(false, Ordering::AcqRel) {
                warn!(
                    reason,
                    "all Kafka brokers are down; spooling records locally"
                );
            }
            metrics::gauge!(m::KAFKA_UP).set(0.0);
            self.wake.notify_one();
        } else {
            warn!(error = %error, reason, "kafka client error");
        }
    }
}

pub(crate) struct KafkaSink {
    inner: Arc<Inner>,
}

struct Inner {
    producer: FutureProducer<Ctx>,
    cfg: KafkaConfig,
    log: LogHandle,
    /// Orders appends against mode changes.
    order: Mutex<()>,
    spooling: AtomicBool,
    /// Records ever appended to the log (its next sequence number, as far as we queued).
    appended: AtomicU64,
    /// Log records below this have reached Kafka.
    cursor: AtomicU64,
    cursor_path: PathBuf,
    up: Arc<AtomicBool>,
    wake: Arc<Notify>,
}

impl KafkaSink {
    /// Creates the producer; spooled records left from an earlier run are replayed first.
    pub(crate) fn start(
        cfg: &KafkaConfig,
        log: LogHandle,
        log_dir: PathBuf,
        shutdown: CancellationToken,
    ) -> Result<(KafkaSink, JoinHandle<()>)> {
        let up = Arc::new(AtomicBool::new(true));
        let wake = Arc::new(Notify::new());
        let mut cc = ClientConfig::new();
        cc.set("bootstrap.servers", &cfg.brokers)
            .set("compression.type", &cfg.compression)
            .set("linger.ms", "2")
            .set(
                "message.timeout.ms",
                cfg.delivery_timeout.as_millis().to_string(),
            );
        for (k, v) in &cfg.properties {
            cc.set(k, v);
        }
        cc.set("enable.idempotence", "true").set("acks", "all");
        let producer: FutureProducer<Ctx> = cc
            .create_with_context(Ctx {
                up: up.clone(),
                wake: wake.clone(),
            })
            .map_err(|e| Error::Kafka(e.to_string()))?;
        let cursor_path = log_dir.join(CURSOR_FILE);
        let cursor = read_cursor(&cursor_path)?;
        let appended = log.durable();
        let cursor = cursor.min(appended);
        log.set_keep_from(cursor);
        let spooling = cursor < appended;
        if spooling {
            info!(
                records = appended - cursor,
                "replaying spooled records to Kafka"
            );
        }
        metrics::gauge!(m::SPOOL_DEPTH).set((appended - cursor) as f64);
        metrics::gauge!(m::KAFKA_UP).set(1.0);
        let inner = Arc::new(Inner {
            producer,
            cfg: cfg.clone(),
            log,
            order: Mutex::new(()),
            spooling: AtomicBool::new(spooling),
            appended: AtomicU64::new(appended),
            cursor: AtomicU64::new(cursor),
            cursor_path,
            up,
            wake,
        });
        let task = tokio::spawn(replay(inner.clone(), shutdown));
        Ok((KafkaSink { inner }, task))
    }
}

fn read_cursor(path: &std::path::Path) -> Result<u64> {
    match std::fs::read_to_string(path) {
        Ok(s) => Ok(s.trim().parse().unwrap_or_else(|_| {
            warn!(path = %path.display(), "unreadable Kafka cursor; replaying the whole spool");
            0
        })),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(0),
        Err(e) => Err(Error::log_io(path, e)),
    }
}

fn write_cursor(path: &std::path::Path, seq: u64) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, seq.to_string())?;
    std::fs::rename(&tmp, path)
}

impl Inner {
    fn headers(rec: &OutRecord) -> OwnedHeaders {
        OwnedHeaders::new_with_capacity(2)
            .insert(Header {
                key: "schema",
                value: Some(rec.topic.schema()),
            })
            .insert(Header {
                key: "record_type",
                value: Some(rec.record_type.as_str()),
            })
    }

    /// Hands a record to librdkafka, waiting while its queue is full.
    async fn produce(&self, rec: &OutRecord) -> Result<DeliveryFuture> {
        let topic = self.cfg.topics.name(rec.topic);
        loop {
            let r = FutureRecord::to(topic)
                .key(rec.key.as_str())
                .payload(&rec.value[..])
                .timestamp(rec.at_ms)
                .headers(Self::headers(rec));
            match self.producer.send_result(r) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => return Err(Error::Kafka(e.to_string())),
            }
        }
    }

    /// Appends to the spool; the caller holds `order`.
    async fn spool_locked(&self, rec: OutRecord) -> Result<Ack> {
        if !self.spooling.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        let rx = self.log.append(rec).await?;
        let depth =
            self.appended.fetch_add(1, Ordering::AcqRel) + 1 - self.cursor.load(Ordering::Acquire);
        metrics::gauge!(m::SPOOL_DEPTH).set(depth as f64);
        Ok(log_ack(rx))
    }

    async fn spool(&self, rec: OutRecord) -> Result<Stored> {
        let ack = {
            let _g = self.order.lock().await;
            self.spool_locked(rec).await?
        };
        ack.await
    }
}

impl KafkaSink {
    async fn enqueue_uncounted(&self, rec: OutRecord) -> Result<Ack> {
        let inner = &self.inner;
        let _g = inner.order.lock().await;
        if inner.spooling.load(Ordering::Acquire) || !inner.up.load(Ordering::Acquire) {
            return inner.spool_locked(rec).await;
        }
        let delivery = match inner.produce(&rec).await {
            Ok(d) => d,
            Err(e) => {
                warn!(error = %e, "kafka refused a record; spooling it");
                return inner.spool_locked(rec).await;
            }
        };
        let inner = inner.clone();
        Ok(Box::pin(async move {
            match delivery.await {
                Ok(Ok(_)) => Ok(Stored::Kafka),
                Ok(Err((e, _))) => {
                    metrics::counter!(m::KAFKA_DELIVERY_FAILURES).increment(1);
                    debug!(error = %e, "kafka delivery failed; spooling the record");
                    inner.spool(rec).await
                }
                Err(_) => inner.spool(rec).await,
            }
        }))
    }
}

#[async_trait::async_trait]
impl Sink for KafkaSink {
    async fn enqueue(&self, rec: OutRecord) -> Result<Ack> {
        let stream = rec.topic;
        Ok(counted(stream, self.enqueue_uncounted(rec).await?))
    }

    fn kafka_up(&self) -> Option<bool> {
        let i = &self.inner;
        Some(i.up.load(Ordering::Acquire) && !i.spooling.load(Ordering::Acquire))
    }

    fn spool_depth(&self) -> u64 {
        let i = &self.inner;
        i.appended
            .load(Ordering::Acquire)
            .saturating_sub(i.cursor.load(Ordering::Acquire))
    }

    async fn ready(&self) -> bool {
        if !self.inner.log.healthy() {
            return false;
        }
        if self.kafka_up() == Some(true) {
            return true;
        }
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            inner
                .producer
                .client()
                .fetch_metadata(None, Duration::from_millis(500))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

/// Sends the spool to Kafka in order while in spooling mode.
async fn replay(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut reader = Some(inner.log.reader(inner.cursor.load(Ordering::Acquire)));
    let mut backoff = Duration::from_millis(100);
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if !inner.spooling.load(Ordering::Acquire) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = inner.wake.notified() => continue,
            }
        }
        let Some(mut r) = reader.take() else { return };
        let joined = tokio::task::spawn_blocking(move || {
            let batch = r.read(REPLAY_BATCH);
            (r, batch)
        })
        .await;
        let Ok((r, batch)) = joined else {
            error!("spool reader panicked; replay stops");
            return;
        };
        reader = Some(r);
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot read the spool; retrying");
                sleep_or_cancel(&shutdown, backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if batch.is_empty() {
            let g = inner.order.lock().await;
            let cursor = inner.cursor.load(Ordering::Acquire);
            if cursor >= inner.appended.load(Ordering::Acquire) {
                inner.spooling.store(false, Ordering::Release);
                inner.up.store(true, Ordering::Release);
                metrics::gauge!(m::KAFKA_UP).set(1.0);
                metrics::gauge!(m::SPOOL_DEPTH).set(0.0);
                info!(cursor, "spool drained; writing to Kafka directly");
                drop(g);
                continue;
            }
            drop(g);
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = inner.log.wait_written() => {}
            }
            continue;
        }
        let mut deliveries = Vec::with_capacity(batch.len());
        for rec in &batch {
            let out = OutRecord {
                topic: rec.topic,
                key: rec.key.clone(),
                record_type: rec.record_type.clone(),
                value: rec.value.clone(),
                at_ms: rec.at_ms,
            };
            match inner.produce(&out).await {
                Ok(d) => deliveries.push(d),
                Err(e) => {
                    warn!(error = %e, "kafka refused a spooled record");
                    break;
                }
            }
        }
        let mut delivered = 0usize;
        let mut failed = deliveries.len() < batch.len();
        for (d, rec) in deliveries.into_iter().zip(&batch) {
            match d.await {
                Ok(Ok(_)) if !failed => delivered += 1,
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if !failed && permanent(&e) => {
                    // Retrying cannot help; the record stays in the log, Kafka never gets it.
                    error!(seq = rec.seq, stream = rec.topic.as_str(), error = %e, "kafka rejected a spooled record for good; skipping it");
                    metrics::counter!(m::KAFKA_DELIVERY_FAILURES).increment(1);
                    delivered += 1;
                }
                _ => {
                    if !failed {
                        metrics::counter!(m::KAFKA_DELIVERY_FAILURES).increment(1);
                    }
                    failed = true;
                }
            }
        }
        if delivered > 0 {
            let next = batch[delivered - 1].seq + 1;
            inner.cursor.store(next, Ordering::Release);
            inner.log.set_keep_from(next);
            if let Err(e) = write_cursor(&inner.cursor_path, next) {
                warn!(error = %e, "cannot persist the Kafka cursor; a restart would resend records");
            }
            metrics::counter!(m::SPOOL_REPLAYED).increment(delivered as u64);
            let depth = inner.appended.load(Ordering::Acquire).saturating_sub(next);
            metrics::gauge!(m::SPOOL_DEPTH).set(depth as f64);
            if !inner.up.swap(true, Ordering::AcqRel) {
                info!("kafka is reachable again; replaying the spool");
                metrics::gauge!(m::KAFKA_UP).set(1.0);
            }
        }
        if failed {
            // Re-read from the first record Kafka did not confirm.
            reader = Some(inner.log.reader(inner.cursor.load(Ordering::Acquire)));
            sleep_or_cancel(&shutdown, backoff).await;
            backoff = (backoff * 2).min(Duration::from_secs(5));
        } else {
            backoff = Duration::from_millis(100);
        }
    }
}

/// Errors that no retry can fix (the record itself or our rights are the problem).
fn permanent(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::MessageSizeTooLarge
                | C::InvalidMessage
                | C::InvalidMessageSize
                | C::InvalidRecord
                | C::TopicAuthorizationFailed
                | C::ClusterAuthorizationFailed
                | C::InvalidTopic
        )
    )
}

async fn sleep_or_cancel(shutdown: &CancellationToken, d: Duration) {
    tokio::select! {
        _ = shutdown.cancelled() => {}
        _ = tokio::time::sleep(d) => {}
    }
}
