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
//!
//! A Kafka that forgot us — rebuilt, its topic re-created, or our producer id expired during
//! a long outage — answers `UnknownProducerId`, and librdkafka then declares the idempotent
//! producer fatally failed: it refuses every record from then on. The sink notices (a fatal
//! error callback, or a delivery or produce error that means the producer state is gone),
//! replaces the producer with a new one and replays the spool through it. Records in flight
//! at that moment may reach Kafka twice, with the same `event_id`.

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
use crate::log::{LogReader, LogRecord};
use crate::metrics as m;
use crate::spool::LogHandle;

const REPLAY_BATCH: usize = 1000;
const CURSOR_FILE: &str = "kafka.cursor";

/// Routes librdkafka's callbacks into tracing and tracks whether brokers are reachable and
/// whether the producer is still usable.
pub(crate) struct Ctx {
    up: Arc<AtomicBool>,
    wake: Arc<Notify>,
    state_lost: Arc<AtomicBool>,
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
        } else if error.rdkafka_error_code() == Some(RDKafkaErrorCode::Fatal) {
            error!(reason, "kafka producer failed fatally; it will be replaced");
            self.up.store(false, Ordering::Release);
            metrics::gauge!(m::KAFKA_UP).set(0.0);
            self.state_lost.store(true, Ordering::Release);
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
    /// Replaced as a whole when its state is lost; users clone the `Arc` for each use.
    producer: parking_lot::RwLock<Arc<FutureProducer<Ctx>>>,
    client_cfg: ClientConfig,
    /// Set when the producer reported a fatal error or a lost producer id.
    state_lost: Arc<AtomicBool>,
    producer_resets: AtomicU64,
    cfg: KafkaConfig,
    log: LogHandle,
    /// Orders appends against mode changes.
    order: Mutex<()>,
    spooling: AtomicBool,
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
        let state_lost = Arc::new(AtomicBool::new(false));
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
        let producer = new_producer(&cc, &up, &wake, &state_lost)?;
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
            producer: parking_lot::RwLock::new(Arc::new(producer)),
            client_cfg: cc,
            state_lost,
            producer_resets: AtomicU64::new(0),
            cfg: cfg.clone(),
            log,
            order: Mutex::new(()),
            spooling: AtomicBool::new(spooling),
            cursor: AtomicU64::new(cursor),
            cursor_path,
            up,
            wake,
        });
        let task = tokio::spawn(replay(inner.clone(), shutdown));
        Ok((KafkaSink { inner }, task))
    }
}

fn new_producer(
    cc: &ClientConfig,
    up: &Arc<AtomicBool>,
    wake: &Arc<Notify>,
    state_lost: &Arc<AtomicBool>,
) -> Result<FutureProducer<Ctx>> {
    cc.create_with_context(Ctx {
        up: up.clone(),
        wake: wake.clone(),
        state_lost: state_lost.clone(),
    })
    .map_err(Error::Kafka)
}

/// Errors after which this producer can deliver nothing more: librdkafka failed it, or the
/// cluster no longer knows its producer id and epoch.
fn producer_state_lost(e: &KafkaError) -> bool {
    use RDKafkaErrorCode as C;
    matches!(
        e.rdkafka_error_code(),
        Some(
            C::Fatal
                | C::UnknownProducerId
                | C::InvalidProducerEpoch
                | C::InvalidProducerIdMapping
                | C::OutOfOrderSequenceNumber
                | C::ProducerFenced
        )
    )
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

    fn producer(&self) -> Arc<FutureProducer<Ctx>> {
        self.producer.read().clone()
    }

    /// Remembers that the producer must be replaced when `e` says its state is gone.
    fn note_failure(&self, e: &KafkaError) {
        if producer_state_lost(e) && !self.state_lost.swap(true, Ordering::AcqRel) {
            warn!(error = %e, "kafka no longer knows this producer; it will be replaced");
            self.wake.notify_one();
        }
    }

    /// Replaces the producer if its state was lost; true when it did.
    async fn renew_producer(&self) -> bool {
        let fatal = self.producer().client().fatal_error();
        if !self.state_lost.swap(false, Ordering::AcqRel) && fatal.is_none() {
            return false;
        }
        let reason = match &fatal {
            Some((code, detail)) => format!("{code:?}: {detail}"),
            None => "producer id or epoch unknown to the cluster".to_string(),
        };
        let fresh = match new_producer(&self.client_cfg, &self.up, &self.wake, &self.state_lost) {
            Ok(p) => p,
            Err(e) => {
                error!(error = %e, "cannot create a new kafka producer; retrying");
                self.state_lost.store(true, Ordering::Release);
                return false;
            }
        };
        let old = std::mem::replace(&mut *self.producer.write(), Arc::new(fresh));
        // Dropping a producer purges and flushes it, which blocks for a while.
        drop(tokio::task::spawn_blocking(move || drop(old)));
        self.producer_resets.fetch_add(1, Ordering::Relaxed);
        metrics::counter!(m::KAFKA_PRODUCER_RESETS).increment(1);
        warn!(
            reason,
            "replaced the kafka producer after its state was lost; replaying the spool (records may reach Kafka twice, with the same event_id)"
        );
        true
    }

    /// Hands a record to librdkafka, waiting while its queue is full.
    async fn produce(&self, rec: &OutRecord) -> Result<DeliveryFuture> {
        let topic = self.cfg.topics.name(rec.topic);
        let producer = self.producer();
        loop {
            let r = FutureRecord::to(topic)
                .key(rec.key.as_str())
                .payload(&rec.value[..])
                .timestamp(rec.at_ms)
                .headers(Self::headers(rec));
            match producer.send_result(r) {
                Ok(f) => return Ok(f),
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), _)) => {
                    tokio::time::sleep(Duration::from_millis(1)).await;
                }
                Err((e, _)) => {
                    self.note_failure(&e);
                    return Err(Error::Kafka(e));
                }
            }
        }
    }

    /// Appends to the spool; the caller holds `order`.
    async fn spool_locked(&self, rec: OutRecord) -> Result<Ack> {
        if !self.spooling.swap(true, Ordering::AcqRel) {
            self.wake.notify_one();
        }
        let rx = self.log.append(rec).await?;
        let depth = self
            .log
            .end()
            .saturating_sub(self.cursor.load(Ordering::Acquire));
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
                    inner.note_failure(&e);
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

    fn producer_resets(&self) -> u64 {
        self.inner.producer_resets.load(Ordering::Relaxed)
    }

    fn spool_depth(&self) -> u64 {
        let i = &self.inner;
        i.log.end().saturating_sub(i.cursor.load(Ordering::Acquire))
    }

    async fn ready(&self) -> bool {
        if !self.inner.log.healthy() {
            return false;
        }
        if self.kafka_up() == Some(true) {
            return true;
        }
        let producer = self.inner.producer();
        tokio::task::spawn_blocking(move || {
            producer
                .client()
                .fetch_metadata(None, Duration::from_millis(500))
                .is_ok()
        })
        .await
        .unwrap_or(false)
    }
}

const MIN_BACKOFF: Duration = Duration::from_millis(100);
const MAX_BACKOFF: Duration = Duration::from_secs(5);

/// Sends the spool to Kafka in order while in spooling mode.
async fn replay(inner: Arc<Inner>, shutdown: CancellationToken) {
    let mut reader = inner.log.reader(inner.cursor.load(Ordering::Acquire));
    let mut backoff = MIN_BACKOFF;
    loop {
        if shutdown.is_cancelled() {
            return;
        }
        if inner.renew_producer().await {
            // Whatever the old producer had in flight is resent through the new one.
            reader = inner.log.reader(inner.cursor.load(Ordering::Acquire));
        }
        if !inner.spooling.load(Ordering::Acquire) {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = inner.wake.notified() => continue,
            }
        }
        let (r, batch) = match read_batch(reader).await {
            Some(x) => x,
            None => return,
        };
        reader = r;
        let batch = match batch {
            Ok(b) => b,
            Err(e) => {
                error!(error = %e, "cannot read the spool; retrying");
                sleep_or_cancel(&shutdown, backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        if batch.is_empty() {
            if !inner.leave_spooling_if_drained().await {
                tokio::select! {
                    _ = shutdown.cancelled() => return,
                    _ = inner.log.wait_written() => {}
                }
            }
            continue;
        }
        let (delivered, failed) = inner.deliver(&batch).await;
        if let Some(last) = delivered.checked_sub(1).and_then(|i| batch.get(i)) {
            inner.advance_cursor(last.seq + 1, delivered);
        }
        if failed {
            // Re-read from the first record Kafka did not confirm.
            reader = inner.log.reader(inner.cursor.load(Ordering::Acquire));
            sleep_or_cancel(&shutdown, backoff).await;
            backoff = (backoff * 2).min(MAX_BACKOFF);
        } else {
            backoff = MIN_BACKOFF;
        }
    }
}

/// Reads the next spool batch off the runtime; `None` if the reader panicked.
async fn read_batch(mut r: LogReader) -> Option<(LogReader, Result<Vec<LogRecord>>)> {
    let joined = tokio::task::spawn_blocking(move || {
        let batch = r.read(REPLAY_BATCH);
        (r, batch)
    })
    .await;
    if joined.is_err() {
        error!("spool reader panicked; replay stops");
    }
    joined.ok()
}

impl Inner {
    /// Back to direct mode if everything appended has been replayed; decided under the
    /// lock that orders appends, so no record can slip past the spool.
    async fn leave_spooling_if_drained(&self) -> bool {
        let _g = self.order.lock().await;
        let cursor = self.cursor.load(Ordering::Acquire);
        if cursor < self.log.end() {
            return false;
        }
        self.spooling.store(false, Ordering::Release);
        self.up.store(true, Ordering::Release);
        metrics::gauge!(m::KAFKA_UP).set(1.0);
        metrics::gauge!(m::SPOOL_DEPTH).set(0.0);
        info!(cursor, "spool drained; writing to Kafka directly");
        true
    }

    /// Sends a batch and awaits its delivery reports. Returns how many records, from the
    /// first, are done with (delivered, or refused for good), and whether one failed.
    async fn deliver(&self, batch: &[LogRecord]) -> (usize, bool) {
        let mut deliveries = Vec::with_capacity(batch.len());
        for rec in batch {
            let out = OutRecord {
                topic: rec.topic,
                key: rec.key.clone(),
                record_type: rec.record_type.clone(),
                value: rec.value.clone(),
                at_ms: rec.at_ms,
            };
            match self.produce(&out).await {
                Ok(d) => deliveries.push(d),
                Err(e) => {
                    warn!(error = %e, "kafka refused a spooled record");
                    break;
                }
            }
        }
        let mut delivered = 0usize;
        let mut failed = deliveries.len() < batch.len();
        for (d, rec) in deliveries.into_iter().zip(batch) {
            match d.await {
                Ok(Ok(_)) if !failed => delivered += 1,
                Ok(Ok(_)) => {}
                Ok(Err((e, _))) if !failed && permanent(&e) => {
                    // Retrying cannot help; the record stays in the log, Kafka never gets it.
                    error!(seq = rec.seq, stream = rec.topic.as_str(), error = %e, "kafka rejected a spooled record for good; skipping it");
                    metrics::counter!(m::KAFKA_DELIVERY_FAILURES).increment(1);
                    delivered += 1;
                }
                Ok(Err((e, _))) => {
                    self.note_failure(&e);
                    if !failed {
                        metrics::counter!(m::KAFKA_DELIVERY_FAILURES).increment(1);
                    }
                    failed = true;
                }
                Err(_) => {
                    if !failed {
                        metrics::counter!(m::KAFKA_DELIVERY_FAILURES).increment(1);
                    }
                    failed = true;
                }
            }
        }
        (delivered, failed)
    }

    /// Records that everything below `next` reached Kafka.
    fn advance_cursor(&self, next: u64, delivered: usize) {
        self.cursor.store(next, Ordering::Release);
        self.log.set_keep_from(next);
        if let Err(e) = write_cursor(&self.cursor_path, next) {
            warn!(error = %e, "cannot persist the Kafka cursor; a restart would resend records");
        }
        metrics::counter!(m::SPOOL_REPLAYED).increment(delivered as u64);
        let depth = self.log.end().saturating_sub(next);
        metrics::gauge!(m::SPOOL_DEPTH).set(depth as f64);
        if !self.up.swap(true, Ordering::AcqRel) {
            info!("kafka is reachable again; replaying the spool");
            metrics::gauge!(m::KAFKA_UP).set(1.0);
        }
    }
}

/// Whether a later attempt may succeed: not when the client cannot be configured, nor when
/// the record itself or our rights are the problem. A lost producer state is retryable: the
/// sink replaces the producer.
pub(crate) fn retryable(e: &KafkaError) -> bool {
    !matches!(
        e,
        KafkaError::ClientCreation(_) | KafkaError::ClientConfig(..)
    ) && !permanent(e)
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
