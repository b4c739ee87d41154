//! The crate's error type.

use std::path::PathBuf;

/// What went wrong in the rule engine.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration has one or more problems (all of them, one per line).
    #[error("invalid rules configuration:\n{0}")]
    Config(String),
    /// A file could not be read.
    #[error("cannot read {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    /// A rule test file or an events file is malformed.
    #[error("{path}: {message}")]
    Parse { path: PathBuf, message: String },
    /// DataFusion failed while building the engine's session or running a query.
    #[error("query engine: {0}")]
    DataFusion(#[from] datafusion::error::DataFusionError),
    /// A silence is malformed or unknown.
    #[error("silence: {0}")]
    Silence(String),
    /// Alertmanager refused or could not be reached (retryable).
    #[error("alertmanager: {0}")]
    Alertmanager(String),
    /// A command did not reach the device or was not answered in time (timeout, transport
    /// busy, shutting down); a later attempt may succeed.
    #[error("{0}")]
    CommandUndelivered(String),
    /// A command was refused, or the device answered that it failed; retrying does not help.
    #[error("{0}")]
    CommandFailed(String),
}

impl Error {
    /// Whether the same operation may succeed if tried again later.
    pub fn is_retryable(&self) -> bool {
        matches!(
            self,
            Error::Io { .. } | Error::Alertmanager(_) | Error::CommandUndelivered(_)
        )
    }
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
