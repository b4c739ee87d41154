//! The JSON Schemas (draft 2020-12) of the records uspwatch writes to Kafka, so consumers and
//! other crates' tests can validate against exactly what this crate ships.

/// Schema of [`crate::Event`] (`usp.events.v1`).
pub const EVENT_V1: &str = include_str!("../schema/event.v1.json");
/// Schema of [`crate::PresenceEvent`] (`usp.presence.v1`).
pub const PRESENCE_V1: &str = include_str!("../schema/presence.v1.json");
/// Schema of [`crate::QuarantineEvent`] (`usp.quarantine.v1`).
pub const QUARANTINE_V1: &str = include_str!("../schema/quarantine.v1.json");
/// Schema of [`crate::Sample`] (`usp.telemetry.v1`).
pub const TELEMETRY_V1: &str = include_str!("../schema/telemetry.v1.json");
