//! TLS on `--listen`: the server configuration built from `--tls-cert` / `--tls-key` (PEM),
//! held so that a reload (SIGHUP, or either file changing) swaps it for new handshakes
//! without a restart; sessions already up keep the configuration they started with.
//!
//! The crypto provider is rustls's `ring` (named explicitly, so no process-wide default is
//! needed); ALPN offers `http/1.1`, the only protocol served.

use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use rustls::ServerConfig;
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::{CertificateDer, PrivateKeyDer};
use tracing::{info, warn};

use crate::shutdown::Shutdown;

/// The current TLS configuration, replaceable while the relay runs.
#[derive(Debug)]
pub struct Tls {
    cert: PathBuf,
    key: PathBuf,
    current: RwLock<Arc<ServerConfig>>,
}

impl Tls {
    /// Loads the certificate chain and key; an error names the file and the reason.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, TlsError> {
        Ok(Self {
            current: RwLock::new(Arc::new(server_config(cert, key)?)),
            cert: cert.to_owned(),
            key: key.to_owned(),
        })
    }

    /// The configuration new handshakes use.
    pub fn current(&self) -> Arc<ServerConfig> {
        self.current
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clone()
    }

    /// Reads the files again; on failure the configuration in use stays.
    pub fn reload(&self) -> Result<(), TlsError> {
        let config = server_config(&self.cert, &self.key)?;
        *self
            .current
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = Arc::new(config);
        Ok(())
    }

    /// Reloads on SIGHUP, or when either file's modification time changes, until shutdown.
    pub async fn watch(self: Arc<Self>, stop: Shutdown) {
        let mut hangup =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()).ok();
        let mut seen = self.stamps().await;
        loop {
            let hup = async {
                match &mut hangup {
                    Some(signal) => {
                        signal.recv().await;
                    }
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                // Shutdown first: no reload is worth delaying the drain.
                biased;
                () = stop.wait() => return,
                () = hup => {}
                () = tokio::time::sleep(POLL) => {
                    let now = self.stamps().await;
                    if now == seen {
                        continue;
                    }
                    seen = now;
                }
            }
            match self.reload() {
                Ok(()) => info!(cert = %self.cert.display(), "TLS certificate reloaded"),
                Err(e) => warn!(error = %e, "TLS reload failed; keeping the certificate in use"),
            }
        }
    }

    async fn stamps(&self) -> (Option<SystemTime>, Option<SystemTime>) {
        let modified =
            async |p: &Path| tokio::fs::metadata(p).await.and_then(|m| m.modified()).ok();
        (modified(&self.cert).await, modified(&self.key).await)
    }
}

/// Why the TLS files cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// A PEM file cannot be read or holds nothing usable.
    #[error("{flag} {path}: {reason}")]
    File {
        /// The flag.
        flag: &'static str,
        /// The path given.
        path: String,
        /// What is wrong.
        reason: String,
    },
    /// The key does not fit the certificate, or rustls refuses them.
    #[error("--tls-cert / --tls-key: {0}")]
    Config(String),
}

fn server_config(cert: &Path, key: &Path) -> Result<ServerConfig, TlsError> {
    let file_error = |flag, path: &Path, reason: String| TlsError::File {
        flag,
        path: path.display().to_string(),
        reason,
    };
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(cert)
        .map_err(|e| file_error("--tls-cert", cert, e.to_string()))?
        .collect::<Result<_, _>>()
        .map_err(|e| file_error("--tls-cert", cert, e.to_string()))?;
    if chain.is_empty() {
        return Err(file_error(
            "--tls-cert",
            cert,
            "no certificate in the file".into(),
        ));
    }
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| file_error("--tls-key", key, e.to_string()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| TlsError::Config(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| TlsError::Config(e.to_string()))?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// How often the certificate files are checked for a change (a stat each: nothing).
const POLL: Duration = Duration::from_secs(1);
