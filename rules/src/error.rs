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
}

/// `Result` with this crate's [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;
