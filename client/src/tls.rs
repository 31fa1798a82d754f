//! TLS for `wss://` URLs: rustls (ring) trusting Mozilla's roots (webpki-roots) and every CA
//! certificate the application added with [`Options::ca_file`](crate::Options::ca_file).
//!
//! The configuration is built once per [`Client`](crate::Client), before the first
//! connection, so a missing or unreadable CA file is a [`ConnectError::Tls`] at connect and
//! never a reconnect loop.

use std::path::Path;
use std::sync::Arc;

use rustls::RootCertStore;
use rustls_pki_types::CertificateDer;
use rustls_pki_types::pem::PemObject;
use tokio_tungstenite::Connector;

use crate::error::ConnectError;

/// The connector for `wss://` connections: Mozilla's roots plus the certificates of
/// `ca_files` (PEM, one or more certificates each).
pub(crate) fn connector<P: AsRef<Path>>(ca_files: &[P]) -> Result<Connector, ConnectError> {
    let mut roots = RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    for file in ca_files {
        let file = file.as_ref();
        let failed = |why: String| ConnectError::Tls(format!("CA file {}: {why}", file.display()));
        let certs = CertificateDer::pem_file_iter(file)
            .map_err(|e| failed(e.to_string()))?
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| failed(e.to_string()))?;
        if certs.is_empty() {
            return Err(failed("no PEM certificate in it".into()));
        }
        for cert in certs {
            roots.add(cert).map_err(|e| failed(e.to_string()))?;
        }
    }
    // The provider is named, not taken from the process default: an application linking
    // another rustls provider must not make `builder()` panic here.
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ConnectError::Tls(e.to_string()))?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Ok(Connector::Rustls(Arc::new(config)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_or_empty_ca_file_is_named() {
        let missing = std::env::temp_dir().join("tickrelay-client-no-such-ca.pem");
        let Err(ConnectError::Tls(why)) = connector(&[&missing]) else {
            panic!("a missing CA file is refused");
        };
        assert!(why.contains("no-such-ca.pem"), "{why}");

        let empty =
            std::env::temp_dir().join(format!("tickrelay-client-empty-{}.pem", std::process::id()));
        std::fs::write(&empty, "not a certificate\n").unwrap();
        let Err(ConnectError::Tls(why)) = connector(&[&empty]) else {
            panic!("a CA file without a certificate is refused");
        };
        assert!(why.contains("no PEM certificate"), "{why}");
        let _ = std::fs::remove_file(empty);
    }

    #[test]
    fn without_ca_files_mozillas_roots_are_enough() {
        assert!(connector::<&Path>(&[]).is_ok());
    }
}
