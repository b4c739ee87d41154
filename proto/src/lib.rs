//! Sans-IO TR-369 (USP) protocol support for uspwatch.
//!
//! Everything here is a pure function over bytes or values: no sockets, no files, and no clock
//! except [`time::now_ms`], which the decode path never calls.
//! That keeps the code every network peer can reach small, fuzzable and fast.
//!
//! - [`validate`] decodes a Record (and its Msg when the payload is plaintext) and checks every
//!   rule a well-formed Record must satisfy, returning a typed [`Error`] whose [`Reason`] is a
//!   stable metric label;
//! - [`validate_bytes`] does the same for a Record held in a `Bytes` buffer without copying its
//!   payload;
//! - [`builder`] makes the Msgs a Controller (and a test Agent) sends, and [`wrap`] puts a Msg
//!   in a `NoSessionContext` Record;
//! - [`mqtt`] holds the MQTT binding rules (content types, the 3.1.1 `/reply-to=` suffix);
//! - [`Event`] is the canonical notification that becomes one Kafka message; [`Sample`] is
//!   one Bulk Data value (`usp.telemetry.v1`);
//! - [`Command`] is the serialisable request a rule, the HTTP API or a remediation job asks for.
//!
//! ```
//! use uspwatch_proto::{builder, validate, wrap, Limits, Message, Payload};
//!
//! let msg = builder::value_change("msg-1", "sub-1", true, "Device.WiFi.Radio.1.Stats.Noise", "-65");
//! let bytes = wrap(&msg, "os::00256D-0001", "self::uspwatch").encode_to_vec();
//! let decoded = validate(&bytes, &Limits::default()).unwrap();
//! assert!(matches!(decoded.payload, Payload::Msg(_)));
//! let event = uspwatch_proto::Event::from_notify(&decoded.record, decoded.msg().unwrap(), 0).unwrap();
//! assert_eq!(event.event_id, "os::00256D-0001/msg-1");
//! ```

pub mod builder;
mod command;
mod decode;
mod endpoint;
mod error;
mod event;
pub mod json;
pub mod mqtt;
mod sample;
pub mod schema;
pub mod time;

/// Code generated from `proto/usp-msg.proto` and `proto/usp-record.proto`.
pub mod pb {
    #![allow(missing_docs, clippy::all, clippy::pedantic)]
    /// `package usp`: the Msg and its bodies.
    pub mod usp {
        include!(concat!(env!("OUT_DIR"), "/usp.rs"));
    }
    /// `package usp_record`: the Record envelope.
    pub mod usp_record {
        include!(concat!(env!("OUT_DIR"), "/usp_record.rs"));
    }
}

pub use builder::wrap;
pub use command::{Command, ObjectParams};
pub use decode::{
    Decoded, Limits, Opaque, Payload, decode, msg_type_of, validate, validate_bytes, validate_msg,
};
pub use endpoint::{EndpointId, validate_endpoint_id};
pub use error::{Error, Reason, Result};
pub use event::{
    EVENT_SCHEMA, Event, EventError, EventKind, PRESENCE_SCHEMA, PresenceEvent, PresenceState,
    QUARANTINE_SCHEMA, QuarantineEvent,
};
pub use prost::Message;
pub use sample::{Sample, SampleSource, TELEMETRY_SCHEMA};
pub use time::rfc3339_millis;

/// The USP version this crate writes into Records it builds.
pub const USP_VERSION: &str = "1.4";
/// Protocol versions a uspwatch Controller advertises in GetSupportedProtocol.
pub const SUPPORTED_PROTOCOL_VERSIONS: &str = "1.0,1.1,1.2,1.3,1.4";
