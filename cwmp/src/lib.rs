//! Sans-IO TR-069 (CWMP) support for uspwatch's ACS endpoint.
//!
//! Everything here is a pure function over bytes or values: no sockets, no clocks.
//!
//! - [`parse`] reads one SOAP envelope of CWMP 1.0–1.4 into an [`Envelope`], refusing DTDs,
//!   unknown entities, deep nesting, oversized bodies and wrong namespaces with a typed
//!   [`Error`] that names the CWMP fault code to answer with;
//! - [`write`] serialises any [`Envelope`] (the ACS's InformResponse, GetParameterValues,
//!   SetParameterValues, Reboot and faults, and, for the simulator, the CPE's side);
//! - [`endpoint_id`] derives the TR-369 §2.2 Endpoint ID (`os::` or `ops::`) from a DeviceId;
//! - [`inform_events`] turns an Inform into canonical [`uspwatch_proto::Event`]s with
//!   `protocol = "cwmp"`.
//!
//! ```
//! use uspwatch_cwmp::{Body, Envelope, Header, Limits, Version, parse, write};
//!
//! let out = write(&Envelope {
//!     version: Version::V1_2,
//!     header: Header { id: Some("acs-1".into()), ..Header::default() },
//!     body: Body::Reboot { command_key: "rb-1".into() },
//! });
//! let back = parse(out.as_bytes(), &Limits::default()).unwrap().unwrap();
//! assert_eq!(back.body, Body::Reboot { command_key: "rb-1".into() });
//! ```

mod command;
pub mod digest;
mod endpoint;
mod error;
mod event;
pub mod fault;
mod soap;
mod write;
mod xml;

pub use command::rpc_for;
pub use endpoint::{IdScheme, endpoint_id};
pub use error::{Error, Result};
pub use event::{PROTOCOL, inform_events, transfer_complete_event};
pub use soap::{
    Body, DeviceId, Envelope, EventStruct, Fault, FaultStruct, Header, Inform, ParameterValue,
    SpvFault, parse,
};
pub use write::write;

/// A CWMP protocol version, as told by the namespace of the envelope.
///
/// CWMP 1.3 and 1.4 reuse the 1.2 namespace (their XSDs extend it); `urn:dslforum-org:cwmp-1-3`
/// and `-1-4` still occur in the field and are accepted. Replies use the namespace the CPE used.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Version {
    V1_0,
    V1_1,
    V1_2,
    V1_3,
    V1_4,
}

impl Version {
    /// Every version, oldest first.
    pub const ALL: [Version; 5] = [
        Version::V1_0,
        Version::V1_1,
        Version::V1_2,
        Version::V1_3,
        Version::V1_4,
    ];

    /// The `cwmp` namespace URI.
    pub fn namespace(self) -> &'static str {
        match self {
            Version::V1_0 => "urn:dslforum-org:cwmp-1-0",
            Version::V1_1 => "urn:dslforum-org:cwmp-1-1",
            Version::V1_2 => "urn:dslforum-org:cwmp-1-2",
            Version::V1_3 => "urn:dslforum-org:cwmp-1-3",
            Version::V1_4 => "urn:dslforum-org:cwmp-1-4",
        }
    }

    /// The version a namespace URI names, if it is a CWMP one.
    pub fn from_namespace(uri: &str) -> Option<Version> {
        Version::ALL.into_iter().find(|v| v.namespace() == uri)
    }
}

/// Bounds on what one envelope may cost to parse.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Limits {
    /// Largest body accepted, in bytes (CWMP requires at least 32768 to be accepted).
    pub max_envelope_bytes: usize,
    /// Deepest element nesting (a CWMP envelope needs 6).
    pub max_depth: usize,
    /// Most elements in one envelope (about 3 per parameter value).
    pub max_elements: usize,
    /// Longest text of one element or attribute, in bytes.
    pub max_text_bytes: usize,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_envelope_bytes: 256 * 1024,
            max_depth: 16,
            max_elements: 16 * 1024,
            max_text_bytes: 16 * 1024,
        }
    }
}
