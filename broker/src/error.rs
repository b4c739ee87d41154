//! The broker crate's error type.

use std::net::SocketAddr;
use std::path::PathBuf;

/// Result alias of this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// What can fail when starting the broker or using its in-process links. Problems caused by
/// network peers never surface here: they are answered on the wire, logged and counted.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The configuration is unusable; every problem is listed.
    #[error("invalid broker configuration: {}", .0.join("; "))]
    Config(Vec<String>),
    /// A listener could not bind its address.
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        source: std::io::Error,
    },
    /// A configured file could not be read.
    #[error("cannot read {path}: {source}")]
    ReadFile {
        path: PathBuf,
        source: std::io::Error,
    },
    /// The credentials file does not parse or holds invalid entries.
    #[error("credentials file {path} is invalid: {detail}")]
    Credentials { path: PathBuf, detail: String },
    /// The TLS certificate, key or CA could not be used.
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// The router refused or dropped an in-process link.
    #[error("router link failed: {0}")]
    Link(String),
    /// A local link's publish failed the controller ACL or the Record checks; nothing was
    /// sent.
    #[error("publish to {topic:?} refused: {reason}")]
    PublishRefused { topic: String, reason: String },
    /// A local link was used after the broker or the link went away.
    #[error("local link is closed")]
    LinkClosed,
    /// A local-link client id is not usable by the router.
    #[error("invalid local link client id {0:?}: it must be non-empty without + # / $")]
    InvalidClientId(String),
    /// Password hashing failed.
    #[error("password hashing failed: {0}")]
    Hash(String),
}
