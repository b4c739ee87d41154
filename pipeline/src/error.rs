//! The crate's error type.

use std::path::PathBuf;
use std::time::Duration;

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What went wrong in the pipeline.
///
/// [`Error::is_retryable`] tells a caller whether trying again later can succeed.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has one or more problems (all of them are listed).
    #[error("invalid pipeline configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// Reading or writing the embedded log failed.
    #[error("event log I/O on {path}: {source}")]
    LogIo {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// The embedded log stopped accepting records after an I/O error.
    #[error("event log unavailable: {0}")]
    LogUnavailable(String),
    /// A record too large for the embedded log's entry format; refused, never acknowledged.
    #[error("record of {bytes} bytes exceeds the event log's limit of {max} bytes")]
    RecordTooLarge { bytes: usize, max: usize },
    /// The Kafka client could not be created or refused a record.
    #[error("kafka: {0}")]
    Kafka(#[source] rdkafka::error::KafkaError),
    /// The inventory file could not be read or parsed.
    #[error("inventory file {path}: {detail}")]
    Inventory { path: PathBuf, detail: String },
    /// A command did not pass validation.
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// The request could not be handed to the MQTT transport; `source` says why (one of the
    /// transport errors below).
    #[error("publish to {endpoint_id} failed: {source}")]
    Publish {
        endpoint_id: String,
        #[source]
        source: Box<Error>,
    },
    /// The MQTT transport cannot take a publish right now (link busy or reconnecting).
    #[error("MQTT transport unavailable: {0}")]
    TransportUnavailable(String),
    /// The MQTT transport refused this publish for good (e.g. the topic is not allowed).
    #[error("publish refused: {0}")]
    PublishRefused(String),
    /// No response arrived in time.
    #[error("request {msg_id} to {endpoint_id} timed out after {after:?}")]
    Timeout {
        endpoint_id: String,
        msg_id: String,
        after: Duration,
    },
    /// An async Operate was accepted but its OperationComplete did not arrive in time.
    #[error("operation {command_key:?} on {endpoint_id} did not complete within {after:?}")]
    OperationTimeout {
        endpoint_id: String,
        command_key: String,
        after: Duration,
    },
    /// An Operate with this command_key is already waiting for its OperationComplete from
    /// this device; the two completions could not be told apart. Retry once it finished, or
    /// use another key.
    #[error("an Operate with command_key {command_key:?} is already in flight to {endpoint_id}")]
    DuplicateRequest {
        endpoint_id: String,
        command_key: String,
    },
    /// A Bulk Data report was refused (and quarantined); nothing of it was stored.
    #[error("Bulk Data report from {endpoint_id} refused: {source}")]
    BulkData {
        endpoint_id: String,
        #[source]
        source: uspwatch_bulkdata::Error,
    },
    /// A record could not be serialised.
    #[error("could not encode record: {0}")]
    Encode(String),
    /// The pipeline is shutting down (or a background task stopped).
    #[error("pipeline is shut down")]
    Closed,
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        match self {
            Error::Kafka(e) => crate::sink::kafka::retryable(e),
            Error::Publish { source, .. } => source.is_retryable(),
            Error::LogIo { .. }
            | Error::LogUnavailable(_)
            | Error::TransportUnavailable(_)
            | Error::Timeout { .. }
            | Error::OperationTimeout { .. }
            | Error::DuplicateRequest { .. } => true,
            Error::Config(_)
            | Error::RecordTooLarge { .. }
            | Error::Inventory { .. }
            | Error::InvalidCommand(_)
            | Error::BulkData { .. }
            | Error::PublishRefused(_)
            | Error::Encode(_)
            | Error::Closed => false,
        }
    }

    pub(crate) fn log_io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::LogIo {
            path: path.into(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use rdkafka::error::{KafkaError, RDKafkaErrorCode};

    use super::*;

    #[test]
    fn callers_can_tell_retryable_from_permanent() {
        let publish = |source| Error::Publish {
            endpoint_id: "os::1-2".into(),
            source: Box::new(source),
        };
        assert!(publish(Error::TransportUnavailable("busy".into())).is_retryable());
        assert!(!publish(Error::PublishRefused("acl".into())).is_retryable());
        assert!(!publish(Error::Closed).is_retryable());
        let kafka = |code| Error::Kafka(KafkaError::MessageProduction(code));
        assert!(kafka(RDKafkaErrorCode::BrokerTransportFailure).is_retryable());
        assert!(kafka(RDKafkaErrorCode::UnknownProducerId).is_retryable());
        assert!(!kafka(RDKafkaErrorCode::MessageSizeTooLarge).is_retryable());
        assert!(!kafka(RDKafkaErrorCode::TopicAuthorizationFailed).is_retryable());
        assert!(!Error::Kafka(KafkaError::ClientCreation("bad".into())).is_retryable());
        assert!(!Error::RecordTooLarge { bytes: 2, max: 1 }.is_retryable());
    }
}
