//! The accept loop for client connections: applies the connection cap, then hands each
//! socket to the least-loaded shard.

use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{debug, warn};

use crate::relay::Shared;
use crate::shard::ShardHandle;

/// Accepts clients until shutdown.
pub async fn accept(listener: TcpListener, shards: Vec<ShardHandle>, shared: Arc<Shared>) {
    let metrics = &shared.metrics;
    loop {
        let accepted = tokio::select! {
            // Shutdown first: once it fires we accept nobody, even if a peer is waiting.
            biased;
            () = shared.shutdown.wait() => break,
            accepted = listener.accept() => accepted,
        };
        let (stream, peer) = match accepted {
            Ok(pair) => pair,
            Err(e) => {
                // EMFILE/ENFILE: out of descriptors. Back off instead of spinning; existing
                // clients keep being served.
                warn!(error = %e, "accept failed; backing off");
                tokio::time::sleep(ACCEPT_BACKOFF).await;
                continue;
            }
        };
        let held = metrics.connections() + metrics.sessions();
        if held >= shared.config.max_connections as u64 {
            metrics::refuse(metrics);
            debug!(%peer, held, "connection refused: --max-connections reached");
            // Best effort 503 so an HTTP client sees why; the socket is closed either way.
            let _ = stream.try_write(REFUSED);
            continue;
        }
        let target = shards
            .iter()
            .min_by_key(|s| {
                let m = metrics.shard(s.id);
                m.connections.load(std::sync::atomic::Ordering::Relaxed)
                    + m.sessions.load(std::sync::atomic::Ordering::Relaxed)
            })
            .expect("a relay has at least one shard");
        match stream.into_std() {
            Ok(socket) => {
                if !target.admit(socket) {
                    break;
                }
            }
            Err(e) => warn!(error = %e, "could not detach an accepted socket"),
        }
    }
}

mod metrics {
    use crate::metrics::Metrics;

    pub(super) fn refuse(metrics: &Metrics) {
        crate::metrics::add(&metrics.connections_refused, 1);
        metrics.count_error("too_many_connections");
    }
}

const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 83\r\n\r\n{\"type\":\"error\",\"code\":\"too_many_connections\",\"message\":\"connection limit reached\"}";
