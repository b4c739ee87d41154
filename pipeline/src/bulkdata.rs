//! Bulk Data reports → samples: decoding (by `uspwatch-bulkdata`), quarantine of malformed
//! reports, and the samples' way to the sink, the inventory and the rule window.
//!
//! Three transports meet here: the `Data` of a `Device.BulkData.Profile.{i}.Push!` event (the
//! controller's Notify path), and, through [`crate::Pipeline::ingest_report`], MQTT publishes
//! on Bulk Data topics and the HTTP collector, both wired by the binary. A report is decoded
//! whole before anything is written: a malformed one becomes a quarantine record with its
//! reason and yields no sample.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use tracing::{debug, warn};
use uspwatch_bulkdata::{Hints, Limits};
use uspwatch_proto::{Event, QuarantineEvent, Reason, Sample, SampleSource, rfc3339_millis};

use crate::controller::Core;
use crate::error::{Error, Result};
use crate::metrics as m;
use crate::sink::{Ack, OutRecord, RecordTopic};

/// The event that carries a report over USP.
pub(crate) const PUSH_EVENT: &str = "Push!";
/// The object every Bulk Data profile lives under.
pub(crate) const PROFILE_PREFIX: &str = "Device.BulkData.Profile.";

/// Bounds of Bulk Data ingestion (`[pipeline.bulk_data]`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct BulkDataConfig {
    /// Largest report accepted, in bytes (a `Push!` is also bounded by
    /// `controller.max_record_size`). Default 1 MiB.
    pub max_report_bytes: usize,
    /// Most values in one report; a larger report is refused whole. Default 10,000.
    pub max_samples_per_report: usize,
    /// Bytes of a refused report copied into its quarantine record. Default 4096.
    pub quarantine_payload_cap: usize,
    /// Accept reports on the HTTP listener at `POST /bulkdata` (HTTP Basic with the broker's
    /// device credentials). Default true.
    pub http_collector: bool,
}

impl Default for BulkDataConfig {
    fn default() -> Self {
        let limits = Limits::default();
        BulkDataConfig {
            max_report_bytes: limits.max_report_bytes,
            max_samples_per_report: limits.max_samples,
            quarantine_payload_cap: 4096,
            http_collector: true,
        }
    }
}

impl BulkDataConfig {
    pub(crate) fn check(&self, p: &mut Vec<String>) {
        if self.max_report_bytes == 0 {
            p.push("bulk_data.max_report_bytes: must be > 0".into());
        }
        if self.max_samples_per_report == 0 {
            p.push("bulk_data.max_samples_per_report: must be > 0".into());
        }
    }

    fn limits(&self) -> Limits {
        Limits {
            max_report_bytes: self.max_report_bytes,
            max_samples: self.max_samples_per_report,
        }
    }
}

/// A report from MQTT or HTTP, with the device identity its transport authenticated.
#[derive(Debug, Clone)]
pub struct BulkReport {
    /// The device, as bound by its MQTT connection or HTTP credentials (never the report's
    /// own claim).
    pub endpoint_id: String,
    pub source: SampleSource,
    /// The MQTT topic or the HTTP request path.
    pub origin: String,
    pub body: Bytes,
    /// MQTT 5 Content Type or HTTP `Content-Type`.
    pub content_type: Option<String>,
    /// HTTP `BBF-Report-Format`.
    pub report_format: Option<String>,
}

/// Distinguishes reports received in the same millisecond.
static REPORT_SEQ: AtomicU64 = AtomicU64::new(0);

impl Core {
    /// Decodes a report into samples, or quarantines it and returns why.
    pub(crate) fn decode_report(
        &self,
        r: &BulkReport,
        report_id: &str,
        received_at_ms: i64,
    ) -> Result<Vec<Sample>> {
        let decoded = Hints::from_headers(r.content_type.as_deref(), r.report_format.as_deref())
            .and_then(|h| uspwatch_bulkdata::decode(&r.body, &h, &self.bulk.limits()));
        let readings = match decoded {
            Ok(readings) => readings,
            Err(e) => {
                self.quarantine_report(r, &e, received_at_ms);
                return Err(Error::BulkData {
                    endpoint_id: r.endpoint_id.clone(),
                    source: e,
                });
            }
        };
        let labels = self.inventory.labels(&r.endpoint_id);
        let received_at = rfc3339_millis(received_at_ms);
        let samples = readings
            .into_iter()
            .enumerate()
            .map(|(n, rd)| Sample {
                sample_id: format!("{report_id}/{n}"),
                endpoint_id: r.endpoint_id.clone(),
                source: r.source,
                report_id: report_id.to_string(),
                origin: r.origin.clone(),
                path: rd.name,
                value: rd.value,
                value_f64: rd.number,
                collected_at: rd.collection_time_ms.map(rfc3339_millis),
                collected_at_ms: rd.collection_time_ms,
                received_at: received_at.clone(),
                received_at_ms,
                labels: labels.clone(),
            })
            .collect();
        Ok(samples)
    }

    fn quarantine_report(&self, r: &BulkReport, e: &uspwatch_bulkdata::Error, at_ms: i64) {
        let reason = if e.is_too_large() {
            Reason::BulkDataTooLarge
        } else {
            Reason::BulkDataMalformed
        };
        metrics::counter!(m::BULK_DATA_REJECTED, "source" => r.source.as_str(), "reason" => reason.as_str())
            .increment(1);
        warn!(endpoint_id = %r.endpoint_id, source = r.source.as_str(), reason = %e, "Bulk Data report quarantined");
        let cap = self.bulk.quarantine_payload_cap.min(r.body.len());
        let q = QuarantineEvent {
            endpoint_id: r.endpoint_id.clone(),
            client_id: String::new(),
            topic: r.origin.clone(),
            reason: reason.as_str().to_string(),
            usp_err_code: None,
            detail: e.to_string(),
            size: r.body.len(),
            payload_b64: base64::Engine::encode(
                &base64::engine::general_purpose::STANDARD,
                &r.body[..cap],
            ),
            truncated: cap < r.body.len(),
            at: rfc3339_millis(at_ms),
            at_ms,
        };
        self.side_record(RecordTopic::Quarantine, &q.endpoint_id, &q.reason, &q);
    }

    /// Hands samples to the sink in order; the acks resolve once each is durable.
    pub(crate) async fn enqueue_samples(&self, samples: &[Sample]) -> Result<Vec<Ack>> {
        let mut acks = Vec::with_capacity(samples.len());
        for s in samples {
            let value = serde_json::to_vec(s).map_err(|e| Error::Encode(e.to_string()))?;
            let rec = OutRecord {
                topic: RecordTopic::Telemetry,
                key: s.endpoint_id.clone(),
                record_type: s.source.as_str().to_string(),
                value: Bytes::from(value),
                at_ms: s.received_at_ms,
            };
            acks.push(self.sink.enqueue(rec).await?);
        }
        Ok(acks)
    }

    /// Once durable: the inventory learns the values and the rule window gets the samples
    /// as `kind = 'sample'` rows.
    pub(crate) fn samples_durable(&self, samples: Vec<Sample>) {
        if samples.is_empty() {
            return;
        }
        let source = samples[0].source;
        metrics::counter!(m::SAMPLES, "source" => source.as_str()).increment(samples.len() as u64);
        for s in samples {
            let ev = Arc::new(s.to_event());
            self.inventory.on_event(&ev);
            let _ = self.events_tx.send(ev);
        }
    }

    /// The samples of a `Push!` event's `Data`; none (and a quarantine record when malformed)
    /// otherwise. The event itself is written either way.
    pub(crate) fn push_samples(&self, event: &Event) -> Vec<Sample> {
        if event.name.as_deref() != Some(PUSH_EVENT) || !event.path.starts_with(PROFILE_PREFIX) {
            return Vec::new();
        }
        let Some(data) = event.args.get("Data") else {
            debug!(endpoint_id = %event.endpoint_id, "Push! without Data");
            return Vec::new();
        };
        let report = BulkReport {
            endpoint_id: event.endpoint_id.clone(),
            source: SampleSource::UspPush,
            origin: event.path.clone(),
            body: Bytes::copy_from_slice(data.as_bytes()),
            content_type: None,
            report_format: None,
        };
        self.decode_report(&report, &event.event_id, event.received_at_ms)
            .unwrap_or_default()
    }
}

/// `<endpoint_id>/<source>-<received_at_ms>-<n>`: unique per report in this process.
pub(crate) fn report_id(r: &BulkReport, received_at_ms: i64) -> String {
    let n = REPORT_SEQ.fetch_add(1, Ordering::Relaxed);
    format!(
        "{}/{}-{received_at_ms}-{n}",
        r.endpoint_id,
        r.source.as_str()
    )
}

/// Waits for every ack; fails if any record was not stored.
pub(crate) async fn all_durable(acks: Vec<Ack>) -> Result<()> {
    futures::future::try_join_all(acks).await.map(|_| ())
}
