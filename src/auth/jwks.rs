//! JWKS: a JSON Web Key Set from a file or a URL, parsed into keys pinned to one algorithm
//! each, and reloaded on an interval so a rotated key (a new `kid`) is picked up without a
//! restart.
//!
//! The URL is fetched over plain HTTP with hyper's client (an identity provider's JWKS is
//! usually reached through a local sidecar or a trusted network; `https://` is refused at
//! startup rather than fetched insecurely). A failed reload keeps the keys already loaded.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty, Limited};
use tracing::{debug, warn};

use super::key::PinnedKey;
pub use super::key::parse;
use super::verifier::Verifier;
use crate::shutdown::Shutdown;

/// Where the JWKS comes from.
#[derive(Debug, Clone)]
pub enum Source {
    /// A file, read again on every reload.
    File(std::path::PathBuf),
    /// An `http://host:port/path` URL.
    Url(hyper::Uri),
}

/// Reloads the JWKS into `verifier` every `every`, and early (at most once per
/// [`MIN_EARLY_RELOAD`]) when a token names an unknown `kid`, until shutdown.
pub async fn refresh(verifier: Arc<Verifier>, source: Source, every: Duration, stop: Shutdown) {
    let mut last = tokio::time::Instant::now();
    loop {
        match load(&source).await {
            Ok(keys) => {
                debug!(keys = keys.len(), "JWKS loaded");
                verifier.set_jwks(keys);
            }
            Err(reason) => warn!(%reason, "JWKS reload failed; keeping the keys loaded before"),
        }
        let next = last + every;
        tokio::select! {
            // Shutdown first: nothing is worth a reload once the relay stops.
            biased;
            () = stop.wait() => return,
            () = tokio::time::sleep_until(next) => {}
            () = verifier.unknown_kid() => {
                // A stream of tokens with made-up kids must not become a fetch loop.
                let early = last + MIN_EARLY_RELOAD;
                if tokio::time::Instant::now() < early {
                    tokio::select! {
                        biased;
                        () = stop.wait() => return,
                        () = tokio::time::sleep_until(early.min(next)) => {}
                    }
                }
            }
        }
        last = tokio::time::Instant::now();
    }
}

/// Shortest time between two reloads triggered by unknown `kid`s: one fetch per 2 s at
/// most is nothing for an identity provider, and a rotated key works within 2 s.
pub const MIN_EARLY_RELOAD: Duration = Duration::from_secs(2);

/// Reads or fetches the JWKS once.
pub async fn load(source: &Source) -> Result<Vec<PinnedKey>, String> {
    let bytes = match source {
        Source::File(path) => tokio::fs::read(path)
            .await
            .map_err(|e| format!("{}: {e}", path.display()))?,
        Source::Url(uri) => fetch(uri).await?.to_vec(),
    };
    parse(&bytes)
}

/// Checks a `--jwks-url` value: plain `http://` with a host.
pub fn parse_url(text: &str) -> Result<hyper::Uri, String> {
    let uri: hyper::Uri = text.parse().map_err(|e| format!("not a URL: {e}"))?;
    if uri.scheme_str() != Some("http") || uri.host().is_none() {
        return Err("expected http://HOST[:PORT]/PATH (https is not fetched by the relay)".into());
    }
    Ok(uri)
}

async fn fetch(uri: &hyper::Uri) -> Result<Bytes, String> {
    let host = uri.host().ok_or("no host")?;
    let port = uri.port_u16().unwrap_or(80);
    let work = async {
        let stream = tokio::net::TcpStream::connect((host, port))
            .await
            .map_err(|e| format!("connect {host}:{port}: {e}"))?;
        let (mut sender, connection) =
            hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream))
                .await
                .map_err(|e| format!("handshake: {e}"))?;
        tokio::spawn(async move {
            let _ = connection.await;
        });
        let path = uri.path_and_query().map_or("/", |p| p.as_str());
        let request = hyper::Request::get(path)
            .header(hyper::header::HOST, host)
            .body(Empty::<Bytes>::new())
            .map_err(|e| format!("request: {e}"))?;
        let response = sender
            .send_request(request)
            .await
            .map_err(|e| format!("GET: {e}"))?;
        if !response.status().is_success() {
            return Err(format!("GET answered {}", response.status()));
        }
        Limited::new(response.into_body(), MAX_JWKS_BYTES)
            .collect()
            .await
            .map(|body| body.to_bytes())
            .map_err(|e| format!("body: {e}"))
    };
    tokio::time::timeout(FETCH_TIMEOUT, work)
        .await
        .map_err(|_| format!("no answer within {FETCH_TIMEOUT:?}"))?
}

/// Largest JWKS accepted, in bytes (a set of a few keys is a few KiB).
const MAX_JWKS_BYTES: usize = 256 * 1024;
/// How long one fetch may take.
const FETCH_TIMEOUT: Duration = Duration::from_secs(5);
