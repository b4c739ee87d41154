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
    /// The Kafka client could not be created or refused a record.
    #[error("kafka: {0}")]
    Kafka(String),
    /// The inventory file could not be read or parsed.
    #[error("inventory file {path}: {detail}")]
    Inventory { path: PathBuf, detail: String },
    /// A command did not pass validation.
    #[error("invalid command: {0}")]
    InvalidCommand(String),
    /// The request could not be handed to the MQTT transport.
    #[error("publish to {endpoint_id} failed: {detail}")]
    Publish { endpoint_id: String, detail: String },
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
    /// The same msg_id is already waiting for a response.
    #[error("a request with msg_id {0} is already pending")]
    DuplicateRequest(String),
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
        matches!(
            self,
            Error::LogIo { .. }
                | Error::LogUnavailable(_)
                | Error::Kafka(_)
                | Error::Publish { .. }
                | Error::Timeout { .. }
                | Error::OperationTimeout { .. }
        )
    }

    pub(crate) fn log_io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::LogIo {
            path: path.into(),
            source,
        }
    }
}
