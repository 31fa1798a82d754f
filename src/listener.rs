//! The accept loop for client connections: applies the connection cap, then hands each
//! socket to the least-loaded shard.

use std::sync::Arc;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tracing::{info, warn};

use crate::limits::PerIpLimit;
use crate::metrics::CountedConnection;
use crate::shard_thread::{Admitted, ShardHandle};
use crate::shared::Shared;

/// Accepts clients until shutdown; `admin_port`: this is the `--admin-listen` listener.
pub async fn accept(
    listener: TcpListener,
    shards: Vec<ShardHandle>,
    shared: Arc<Shared>,
    admin_port: bool,
) {
    let metrics = &shared.metrics;
    let per_ip = PerIpLimit::new(shared.config.max_connections_per_ip);
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
        let Ok(ip_slot) = per_ip.acquire(&peer.ip()) else {
            metrics::refuse(metrics);
            if let Some(suppressed) = shared.lifecycle_log.refuse.admit(std::time::Instant::now()) {
                info!(%peer, suppressed, "connection refused: --max-connections-per-ip reached");
            }
            tokio::task::spawn_local(refuse(stream));
            continue;
        };
        let held = metrics.connections() + metrics.sessions();
        if held >= shared.live.max_connections() as u64 {
            metrics::refuse(metrics);
            if let Some(suppressed) = shared.lifecycle_log.refuse.admit(std::time::Instant::now()) {
                info!(%peer, held, suppressed, "connection refused: --max-connections reached");
            }
            tokio::task::spawn_local(refuse(stream));
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
            Ok(stream) => {
                if !target.admit(Admitted {
                    stream,
                    ip_slot,
                    counted: CountedConnection::new(&shared.metrics, target.id),
                    admin_port,
                }) {
                    break;
                }
            }
            Err(e) => warn!(error = %e, "could not detach an accepted socket"),
        }
    }
}

/// Answers 503 and closes: half-close, then read what the client sent (bounded), so the
/// answer is not destroyed by a reset over unread request bytes.
async fn refuse(stream: tokio::net::TcpStream) {
    let _ = tokio::time::timeout(REFUSE_LINGER, async {
        let mut stream = stream;
        if stream.write_all(REFUSED).await.is_ok() && stream.shutdown().await.is_ok() {
            let mut sink = [0u8; 1024];
            while matches!(stream.read(&mut sink).await, Ok(n) if n > 0) {}
        }
    })
    .await;
}

mod metrics {
    use crate::error::ErrorCode;
    use crate::metrics::Metrics;

    pub(super) fn refuse(metrics: &Metrics) {
        crate::metrics::add(&metrics.connections_refused, 1);
        metrics.count_error(ErrorCode::TooManyConnections);
    }
}

/// How long a refused connection may take to read its 503 (bounded: refusals happen
/// under pressure, and each holds a descriptor).
const REFUSE_LINGER: Duration = Duration::from_millis(250);
const ACCEPT_BACKOFF: Duration = Duration::from_millis(50);
const REFUSED: &[u8] = b"HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\nconnection: close\r\ncontent-length: 83\r\n\r\n{\"type\":\"error\",\"code\":\"too_many_connections\",\"message\":\"connection limit reached\"}";
