//! Relay-wide counters: per-shard ones cache-padded and written only by their shard, error
//! counts by [`ErrorCode`], ingest gauges. Read by `/stats`, `/metrics` and `/health`;
//! never locked.

use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::time::Instant;

use crossbeam_utils::CachePadded;

use crate::error::ErrorCode;

/// Every counter the relay keeps.
#[derive(Debug)]
pub struct Metrics {
    /// When the relay started (for `uptime`).
    pub started: Instant,
    /// Ticks accepted by the sequencer (seq assigned).
    pub ticks_in: AtomicU64,
    /// Ingest TCP connections open now.
    pub ingest_connections: AtomicU64,
    /// Ingest TCP connections accepted since start.
    pub ingest_connections_total: AtomicU64,
    /// Connections refused by a connection limit.
    pub connections_refused: AtomicU64,
    errors: [AtomicU64; ErrorCode::COUNT],
    shards: Vec<CachePadded<ShardMetrics>>,
}

/// One shard's counters (written by that shard's thread only).
#[derive(Debug, Default)]
pub struct ShardMetrics {
    /// WebSocket sessions live on the shard now.
    pub sessions: AtomicU64,
    /// HTTP connections (including not yet upgraded ones) on the shard now.
    pub connections: AtomicU64,
    /// Ticks appended to client outboxes (one per client per tick).
    pub deliveries: AtomicU64,
    /// Bytes written to client sockets.
    pub bytes_out: AtomicU64,
    /// Clients disconnected by the slow-consumer policy.
    pub slow_disconnects: AtomicU64,
    /// Ticks replaced by a newer one for a lagging conflating client.
    pub conflated: AtomicU64,
}

impl Metrics {
    /// Counters for `shards` shards, all zero.
    pub fn new(shards: usize) -> Self {
        Self {
            started: Instant::now(),
            ticks_in: AtomicU64::new(0),
            ingest_connections: AtomicU64::new(0),
            ingest_connections_total: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            errors: std::array::from_fn(|_| AtomicU64::new(0)),
            shards: (0..shards)
                .map(|_| CachePadded::new(ShardMetrics::default()))
                .collect(),
        }
    }

    /// The counters of shard `id`.
    pub fn shard(&self, id: usize) -> &ShardMetrics {
        &self.shards[id]
    }

    /// All shards' counters, in shard order.
    pub fn shards(&self) -> impl Iterator<Item = &ShardMetrics> {
        self.shards.iter().map(|s| &**s)
    }

    /// Counts one error under its stable code.
    pub fn count_error(&self, code: ErrorCode) {
        self.errors[code as usize].fetch_add(1, Relaxed);
    }

    /// Error counts by code, leaving out zeros.
    pub fn errors(&self) -> impl Iterator<Item = (ErrorCode, u64)> + '_ {
        ErrorCode::ALL
            .iter()
            .map(|code| (*code, self.errors[*code as usize].load(Relaxed)))
            .filter(|(_, n)| *n > 0)
    }

    /// Live WebSocket sessions over all shards.
    pub fn sessions(&self) -> u64 {
        self.shards().map(|s| s.sessions.load(Relaxed)).sum()
    }

    /// Open client connections (HTTP or WebSocket) over all shards.
    pub fn connections(&self) -> u64 {
        self.shards().map(|s| s.connections.load(Relaxed)).sum()
    }
}

/// Adds `n` to a counter owned by one writer (a relaxed add is enough: readers only sample).
pub fn add(counter: &AtomicU64, n: u64) {
    counter.fetch_add(n, Relaxed);
}

/// Subtracts `n` from a gauge.
pub fn sub(counter: &AtomicU64, n: u64) {
    counter.fetch_sub(n, Relaxed);
}
