//! [`Sample`]: one parameter value from a Bulk Data report, as written to
//! `usp.telemetry.v1` (key = `endpoint_id`) and the embedded log.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::{Event, EventKind};

/// Value of the `schema` header on `usp.telemetry.v1` messages.
pub const TELEMETRY_SCHEMA: &str = "usp.telemetry.v1";

/// How a Bulk Data report reached uspwatch.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SampleSource {
    /// The `Data` argument of a `Device.BulkData.Profile.{i}.Push!` USP event.
    UspPush,
    /// An MQTT publish on a configured Bulk Data topic.
    Mqtt,
    /// An HTTP POST or PUT to the collector.
    Http,
}

impl SampleSource {
    /// The snake_case name, as in JSON (a bounded metric label).
    pub fn as_str(self) -> &'static str {
        match self {
            SampleSource::UspPush => "usp_push",
            SampleSource::Mqtt => "mqtt",
            SampleSource::Http => "http",
        }
    }
}

/// One parameter value of a Bulk Data report.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Sample {
    /// `<report_id>/<n>`: unique per sample, stable across redeliveries of a `Push!` report —
    /// deduplicate on it.
    pub sample_id: String,
    /// The device that sent the report (bound by its connection or credentials).
    pub endpoint_id: String,
    pub source: SampleSource,
    /// The report this sample came from: the `Push!` event's `event_id`, or
    /// `<endpoint_id>/<source>-<received_at_ms>-<n>` for MQTT and HTTP reports.
    pub report_id: String,
    /// The profile object path of a `Push!` (`Device.BulkData.Profile.1.`), the MQTT topic, or
    /// the HTTP request path.
    pub origin: String,
    /// The parameter path, or the profile's alternative name for it.
    pub path: String,
    /// The value as text.
    pub value: String,
    /// The value as a number, when it is a finite one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub value_f64: Option<f64>,
    /// When the device collected it (RFC 3339 UTC), when the report says.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected_at: Option<String>,
    /// The same instant in milliseconds since the Unix epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub collected_at_ms: Option<i64>,
    /// When uspwatch received the report, RFC 3339 UTC.
    pub received_at: String,
    /// The same instant in milliseconds since the Unix epoch.
    pub received_at_ms: i64,
    /// Inventory labels of the device, added by the pipeline.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub labels: BTreeMap<String, String>,
}

impl Sample {
    /// The sample as a row of the rule engine's `events` table: `kind = 'sample'`, `path`,
    /// `value` and `value_f64` as a ValueChange has them, so one rule can read both. `ts` is
    /// the receipt time, as for every event; `args` carries `source`, `origin`, `report_id`
    /// and `collected_at_ms` (when known).
    pub fn to_event(&self) -> Event {
        let mut args = BTreeMap::from([
            ("source".to_string(), self.source.as_str().to_string()),
            ("origin".to_string(), self.origin.clone()),
            ("report_id".to_string(), self.report_id.clone()),
        ]);
        if let Some(t) = self.collected_at_ms {
            args.insert("collected_at_ms".to_string(), t.to_string());
        }
        Event {
            event_id: self.sample_id.clone(),
            endpoint_id: self.endpoint_id.clone(),
            controller_id: String::new(),
            msg_id: self.report_id.clone(),
            subscription_id: String::new(),
            send_resp: false,
            received_at: self.received_at.clone(),
            received_at_ms: self.received_at_ms,
            kind: EventKind::Sample,
            path: self.path.clone(),
            name: None,
            value: Some(self.value.clone()),
            args,
            command_key: None,
            error: None,
            labels: self.labels.clone(),
            protocol: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sample_reads_like_a_value_change() {
        let s = Sample {
            sample_id: "os::00256D-1/m1/0".into(),
            endpoint_id: "os::00256D-1".into(),
            source: SampleSource::UspPush,
            report_id: "os::00256D-1/m1".into(),
            origin: "Device.BulkData.Profile.1.".into(),
            path: "Device.WiFi.Radio.1.Stats.Noise".into(),
            value: "-61".into(),
            value_f64: Some(-61.0),
            collected_at: Some(crate::rfc3339_millis(1_000)),
            collected_at_ms: Some(1_000),
            received_at: crate::rfc3339_millis(2_000),
            received_at_ms: 2_000,
            labels: BTreeMap::new(),
        };
        let e = s.to_event();
        assert_eq!(e.kind.as_str(), "sample");
        assert_eq!(e.value_f64(), Some(-61.0));
        assert_eq!(e.path, s.path);
        assert_eq!(e.args["collected_at_ms"], "1000");
        let back: Sample = serde_json::from_str(&serde_json::to_string(&s).unwrap()).unwrap();
        assert_eq!(back, s);
    }
}
