//! Every way a USP Record can be rejected, as one error type.
//!
//! [`Error`] carries the detail an operator needs in a log line; [`Reason`] is its bounded,
//! stable label (metrics, quarantine events) and maps to a USP error code where one exists.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Why a Record (or something about to become one) was rejected.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    #[error("record is {size} bytes, over the {limit}-byte limit")]
    TooLarge { size: usize, limit: usize },
    #[error("record could not be decoded: {0}")]
    Undecodable(String),
    #[error("record has no record_type")]
    NoRecordType,
    #[error("record sets {0} record_type members; exactly one is allowed")]
    MultipleRecordTypes(usize),
    #[error("record has no version")]
    MissingVersion,
    #[error("record version {0:?} is not \"Major.Minor\"")]
    InvalidVersion(String),
    #[error("record has no to_id")]
    MissingToId,
    #[error("record to_id is invalid: {0}")]
    InvalidToId(String),
    #[error("record has no from_id")]
    MissingFromId,
    #[error("record from_id is invalid: {0}")]
    InvalidFromId(String),
    #[error("record payload_security {0} is not a known value")]
    UnknownPayloadSecurity(i32),
    #[error("record carries an empty payload")]
    EmptyPayload,
    #[error("connect record has no usable subscribed topic: {0}")]
    InvalidConnectRecord(String),
    #[error("msg could not be decoded: {0}")]
    MsgUndecodable(String),
    #[error("msg has no header")]
    MissingHeader,
    #[error("msg has no msg_id")]
    MissingMsgId,
    #[error("msg has no body")]
    MissingBody,
    #[error("msg body sets {0} members of a oneof; exactly one is allowed")]
    MultipleBodies(usize),
    #[error("msg body is empty")]
    EmptyBody,
    #[error("msg header says {header} but the body is {body}")]
    MsgTypeMismatch {
        header: &'static str,
        body: &'static str,
    },
    #[error("notify carries no notification")]
    EmptyNotify,
    #[error("from_id {claimed:?} is not the connection's endpoint {bound:?}")]
    FromIdMismatch { claimed: String, bound: String },
    #[error("to_id {to_id:?} does not match the destination topic's endpoint {topic_endpoint:?}")]
    ToIdMismatch {
        to_id: String,
        topic_endpoint: String,
    },
    #[error("content type {0:?} is not a USP content type")]
    WrongContentType(String),
    #[error("MQTT 3.1.1 publish to {0:?} carries no /reply-to= suffix")]
    MissingReplyTo(String),
    #[error("reply-to topic {0:?} is invalid")]
    InvalidReplyTo(String),
    #[error("endpoint id {id:?} is invalid: {why}")]
    InvalidEndpointId { id: String, why: &'static str },
    #[error("command is invalid: {0}")]
    InvalidCommand(String),
    #[error("reply topic {reply_to:?} is not the sender's own topic {own:?} or below it")]
    ForeignReplyTo { reply_to: String, own: String },
    #[error("sender is over its ingress rate limit: {0}")]
    RateLimited(String),
    #[error(
        "end-to-end protected (TLS12) record for an endpoint that has no secure session support"
    )]
    SecureSessionNotSupported,
    #[error("session context record for an endpoint that supports no session context")]
    SessionContextNotSupported,
}

/// The stable label of a rejection, for metrics and quarantine events.
///
/// The set is closed, so it is a safe metric label; never put an endpoint or msg id in one.
/// It deserializes from its snake_case name (and from its index, which [`Reason::iter`] uses).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Reason {
    TooLarge,
    Undecodable,
    NoRecordType,
    MultipleRecordTypes,
    MissingVersion,
    InvalidVersion,
    MissingToId,
    InvalidToId,
    MissingFromId,
    InvalidFromId,
    UnknownPayloadSecurity,
    EmptyPayload,
    InvalidConnectRecord,
    MsgUndecodable,
    MissingHeader,
    MissingMsgId,
    MissingBody,
    MultipleBodies,
    EmptyBody,
    MsgTypeMismatch,
    EmptyNotify,
    FromIdMismatch,
    ToIdMismatch,
    WrongContentType,
    MissingReplyTo,
    InvalidReplyTo,
    InvalidEndpointId,
    InvalidCommand,
    /// A Bulk Data report (Push! Data, MQTT or HTTP) that does not decode.
    BulkDataMalformed,
    /// A Bulk Data report over the byte or value limit.
    BulkDataTooLarge,
    /// A reply route (MQTT 5 Response Topic, 3.1.1 `/reply-to=`, MQTTConnect
    /// `subscribed_topic`) that is not the sender's own topic.
    ForeignReplyTo,
    /// The sender exceeded its ingress token bucket.
    RateLimited,
    /// `payload_security = TLS12` for an in-process endpoint (R-E2E.41: TLS12 only inside a
    /// session context, which the built-in controller does not implement).
    SecureSessionNotSupported,
    /// A session context Record for an in-process endpoint (no USP session context support).
    SessionContextNotSupported,
}

impl Reason {
    /// Every reason, for pre-registering metric series and for documentation.
    pub const ALL: [Reason; 34] = [
        Reason::TooLarge,
        Reason::Undecodable,
        Reason::NoRecordType,
        Reason::MultipleRecordTypes,
        Reason::MissingVersion,
        Reason::InvalidVersion,
        Reason::MissingToId,
        Reason::InvalidToId,
        Reason::MissingFromId,
        Reason::InvalidFromId,
        Reason::UnknownPayloadSecurity,
        Reason::EmptyPayload,
        Reason::InvalidConnectRecord,
        Reason::MsgUndecodable,
        Reason::MissingHeader,
        Reason::MissingMsgId,
        Reason::MissingBody,
        Reason::MultipleBodies,
        Reason::EmptyBody,
        Reason::MsgTypeMismatch,
        Reason::EmptyNotify,
        Reason::FromIdMismatch,
        Reason::ToIdMismatch,
        Reason::WrongContentType,
        Reason::MissingReplyTo,
        Reason::InvalidReplyTo,
        Reason::InvalidEndpointId,
        Reason::InvalidCommand,
        Reason::BulkDataMalformed,
        Reason::BulkDataTooLarge,
        Reason::ForeignReplyTo,
        Reason::RateLimited,
        Reason::SecureSessionNotSupported,
        Reason::SessionContextNotSupported,
    ];

    /// Stable snake_case name.
    pub fn as_str(self) -> &'static str {
        match self {
            Reason::TooLarge => "too_large",
            Reason::Undecodable => "undecodable",
            Reason::NoRecordType => "no_record_type",
            Reason::MultipleRecordTypes => "multiple_record_types",
            Reason::MissingVersion => "missing_version",
            Reason::InvalidVersion => "invalid_version",
            Reason::MissingToId => "missing_to_id",
            Reason::InvalidToId => "invalid_to_id",
            Reason::MissingFromId => "missing_from_id",
            Reason::InvalidFromId => "invalid_from_id",
            Reason::UnknownPayloadSecurity => "unknown_payload_security",
            Reason::EmptyPayload => "empty_payload",
            Reason::InvalidConnectRecord => "invalid_connect_record",
            Reason::MsgUndecodable => "msg_undecodable",
            Reason::MissingHeader => "missing_header",
            Reason::MissingMsgId => "missing_msg_id",
            Reason::MissingBody => "missing_body",
            Reason::MultipleBodies => "multiple_bodies",
            Reason::EmptyBody => "empty_body",
            Reason::MsgTypeMismatch => "msg_type_mismatch",
            Reason::EmptyNotify => "empty_notify",
            Reason::FromIdMismatch => "from_id_mismatch",
            Reason::ToIdMismatch => "to_id_mismatch",
            Reason::WrongContentType => "wrong_content_type",
            Reason::MissingReplyTo => "missing_reply_to",
            Reason::InvalidReplyTo => "invalid_reply_to",
            Reason::InvalidEndpointId => "invalid_endpoint_id",
            Reason::InvalidCommand => "invalid_command",
            Reason::BulkDataMalformed => "bulk_data_malformed",
            Reason::BulkDataTooLarge => "bulk_data_too_large",
            Reason::ForeignReplyTo => "foreign_reply_to",
            Reason::RateLimited => "rate_limited",
            Reason::SecureSessionNotSupported => "secure_session_not_supported",
            Reason::SessionContextNotSupported => "session_context_not_supported",
        }
    }

    /// The TR-369 error code that describes this reason, where one exists
    /// (71xx for Record problems, 70xx for Msg problems).
    pub fn usp_err_code(self) -> Option<u32> {
        match self {
            Reason::Undecodable | Reason::NoRecordType | Reason::MultipleRecordTypes => Some(7100),
            Reason::MissingVersion
            | Reason::InvalidVersion
            | Reason::MissingToId
            | Reason::InvalidToId
            | Reason::MissingFromId
            | Reason::InvalidFromId
            | Reason::UnknownPayloadSecurity
            | Reason::EmptyPayload
            | Reason::InvalidConnectRecord => Some(7104),
            Reason::MsgUndecodable => Some(7000),
            Reason::MissingHeader
            | Reason::MissingMsgId
            | Reason::MissingBody
            | Reason::MultipleBodies
            | Reason::EmptyBody
            | Reason::MsgTypeMismatch
            | Reason::EmptyNotify
            | Reason::InvalidCommand => Some(7004),
            Reason::TooLarge | Reason::RateLimited => Some(7005),
            Reason::FromIdMismatch | Reason::ToIdMismatch | Reason::ForeignReplyTo => Some(7006),
            Reason::SecureSessionNotSupported => Some(7102),
            Reason::SessionContextNotSupported => Some(7106),
            Reason::WrongContentType
            | Reason::MissingReplyTo
            | Reason::InvalidReplyTo
            | Reason::InvalidEndpointId
            | Reason::BulkDataMalformed
            | Reason::BulkDataTooLarge => None,
        }
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Error {
    /// The bounded label of this error.
    pub fn reason(&self) -> Reason {
        match self {
            Error::TooLarge { .. } => Reason::TooLarge,
            Error::Undecodable(_) => Reason::Undecodable,
            Error::NoRecordType => Reason::NoRecordType,
            Error::MultipleRecordTypes(_) => Reason::MultipleRecordTypes,
            Error::MissingVersion => Reason::MissingVersion,
            Error::InvalidVersion(_) => Reason::InvalidVersion,
            Error::MissingToId => Reason::MissingToId,
            Error::InvalidToId(_) => Reason::InvalidToId,
            Error::MissingFromId => Reason::MissingFromId,
            Error::InvalidFromId(_) => Reason::InvalidFromId,
            Error::UnknownPayloadSecurity(_) => Reason::UnknownPayloadSecurity,
            Error::EmptyPayload => Reason::EmptyPayload,
            Error::InvalidConnectRecord(_) => Reason::InvalidConnectRecord,
            Error::MsgUndecodable(_) => Reason::MsgUndecodable,
            Error::MissingHeader => Reason::MissingHeader,
            Error::MissingMsgId => Reason::MissingMsgId,
            Error::MissingBody => Reason::MissingBody,
            Error::MultipleBodies(_) => Reason::MultipleBodies,
            Error::EmptyBody => Reason::EmptyBody,
            Error::MsgTypeMismatch { .. } => Reason::MsgTypeMismatch,
            Error::EmptyNotify => Reason::EmptyNotify,
            Error::FromIdMismatch { .. } => Reason::FromIdMismatch,
            Error::ToIdMismatch { .. } => Reason::ToIdMismatch,
            Error::WrongContentType(_) => Reason::WrongContentType,
            Error::MissingReplyTo(_) => Reason::MissingReplyTo,
            Error::InvalidReplyTo(_) => Reason::InvalidReplyTo,
            Error::InvalidEndpointId { .. } => Reason::InvalidEndpointId,
            Error::InvalidCommand(_) => Reason::InvalidCommand,
            Error::ForeignReplyTo { .. } => Reason::ForeignReplyTo,
            Error::RateLimited(_) => Reason::RateLimited,
            Error::SecureSessionNotSupported => Reason::SecureSessionNotSupported,
            Error::SessionContextNotSupported => Reason::SessionContextNotSupported,
        }
    }
}

impl Reason {
    /// Every reason in declaration order, read from the enum's own definition (its derived
    /// variant index), so unlike a hand-kept list it cannot leave a new reason out.
    pub fn iter() -> impl Iterator<Item = Reason> {
        use serde::Deserialize as _;
        use serde::de::IntoDeserializer as _;
        use serde::de::value::{Error as ValueError, U32Deserializer};
        (0u32..).map_while(|i| {
            let index: U32Deserializer<ValueError> = i.into_deserializer();
            Reason::deserialize(index).ok()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_lists_every_reason_under_its_own_name() {
        assert!(Reason::iter().eq(Reason::ALL), "Reason::ALL is out of date");
        for r in Reason::iter() {
            let named: Reason = serde_json::from_value(serde_json::json!(r.as_str()))
                .unwrap_or_else(|e| panic!("{r:?}: {e}"));
            assert_eq!(named, r);
        }
    }

    #[test]
    fn reason_names_are_unique_snake_case() {
        let mut seen = std::collections::BTreeSet::new();
        for r in Reason::ALL {
            let s = r.as_str();
            assert!(s.chars().all(|c| c.is_ascii_lowercase() || c == '_'), "{s}");
            assert!(seen.insert(s), "duplicate {s}");
        }
    }
}
