//! [`StartError`]: why the relay could not start, naming the flag at fault.

use std::net::SocketAddr;

use crate::auth::AuthConfigError;
use crate::config::ConfigError;
use crate::roles::NatsStartError;

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// An auth flag names a key that cannot be used.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// A listener could not bind.
    #[error("{flag} {addr}: {source}")]
    Bind {
        /// The flag naming the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--record` or `--replay` file could not be opened.
    #[error("{flag} {}: {source}", .path.display())]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// NATS could not be reached, or the stream could not be opened.
    #[error(transparent)]
    Nats(#[from] NatsStartError),
    /// A thread or runtime could not start.
    #[error("could not start {what}: {source}")]
    Spawn {
        /// Which part.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}
