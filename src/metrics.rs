//! Relay-wide counters: per-shard ones cache-padded and written only by their shard, error
//! counts by [`ErrorCode`], ingest gauges. Read by `/stats`, `/metrics` and `/health`;
//! never locked.

use std::sync::Arc;
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
    /// Tagged items a publisher sent again that were stored before: acked, not stored.
    pub ingest_duplicates: AtomicU64,
    /// Tasks serving an accepted HTTP connection, alive now (each ends when its connection
    /// is answered, closed or handed to a WebSocket session).
    pub http_tasks: AtomicU64,
    /// Tasks running a WebSocket session, alive now: equal to `sessions` but for a session
    /// just starting or ending. A gap that grows would be tasks outliving their sessions.
    pub session_tasks: AtomicU64,
    /// Connections refused by a connection limit.
    pub connections_refused: AtomicU64,
    /// `--record`: what the recorder wrote, and what it could not.
    pub record: RecordMetrics,
    /// The NATS hop (zero with `--role all` and no `--nats`).
    pub nats: NatsMetrics,
    /// Bars and tickers (zero with `--bar-intervals off` and on an edge).
    pub derived: DerivedMetrics,
    errors: [AtomicU64; ErrorCode::COUNT],
    shards: Vec<CachePadded<ShardMetrics>>,
}

/// The NATS hop's counters: the sequencer's publishes, an edge's deliveries and repairs.
#[derive(Debug, Default)]
pub struct NatsMetrics {
    /// 1 while the NATS connection is up, 0 while it is down or not used.
    pub connected: AtomicU64,
    /// Connections re-established after a loss.
    pub reconnects: AtomicU64,
    /// Ticks and events sent to the stream (each retry counts again).
    pub published: AtomicU64,
    /// Publishes the stream acknowledged (stored once: a retried duplicate is acked too).
    pub acked: AtomicU64,
    /// Publishes retried after a failure or a missing ack.
    pub retried: AtomicU64,
    /// Messages an edge took from the stream.
    pub received: AtomicU64,
    /// Messages an edge dropped because it already had their seq (overlapping reads).
    pub duplicates: AtomicU64,
    /// Messages an edge read back from the stream to fill a gap in its live feed.
    pub backfilled: AtomicU64,
    /// Seqs that could not be back-filled (no longer in the stream): sent as `gap`.
    pub gaps: AtomicU64,
    /// Subjects an edge follows now.
    pub following: AtomicU64,
}

/// The sequencer's bars and tickers.
#[derive(Debug, Default)]
pub struct DerivedMetrics {
    /// Bar and ticker messages built.
    pub messages: AtomicU64,
    /// Trades left out of a bar because its interval was closed or older than the open
    /// bar's (counted once per interval the trade missed).
    pub late_trades: AtomicU64,
    /// Trades stamped more than `--bar-max-skew` ahead of the relay's clock, left out.
    pub future_trades: AtomicU64,
}

/// `--record`'s counters, written by the recorder thread only.
#[derive(Debug, Default)]
pub struct RecordMetrics {
    /// Ticks written to the recording and flushed.
    pub written: AtomicU64,
    /// Writes that failed (a full disk, a removed device): the recording stops at the first.
    pub write_errors: AtomicU64,
    /// Ticks the recording may lack because a write failed (the clients still got them):
    /// those not yet flushed when it failed, and every tick after.
    pub not_recorded: AtomicU64,
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
    /// Writes to client sockets that took bytes (one vectored write each).
    pub socket_writes: AtomicU64,
    /// Clients disconnected by the slow-consumer policy.
    pub slow_disconnects: AtomicU64,
    /// Ticks replaced by a newer one for a lagging conflating client.
    pub conflated: AtomicU64,
    /// permessage-deflate: payload bytes compressed for clients.
    pub deflate_in: AtomicU64,
    /// permessage-deflate: compressed bytes those payloads became.
    pub deflate_out: AtomicU64,
    /// permessage-deflate: compressed bytes received from clients and inflated.
    pub inflate_in: AtomicU64,
    /// permessage-deflate: bytes those client messages inflated to.
    pub inflate_out: AtomicU64,
    /// Ingest → socket-write latency of the ticks this shard delivered, one sample per
    /// delivery.
    pub latency: LatencyHistogram,
}

/// A latency histogram written by one thread and sampled by others without a lock:
/// log-linear buckets, [`SUB_BUCKETS`] per power of two of microseconds, from 1 µs to
/// about 2^[`OCTAVES`] µs (~68 s); a value falls in the bucket whose upper bound is the
/// first one at or above it, so a percentile read from it errs by at most one bucket
/// (~19 %) upward.
#[derive(Debug)]
pub struct LatencyHistogram {
    buckets: [AtomicU64; BUCKETS],
    sum_us: AtomicU64,
}

impl Default for LatencyHistogram {
    fn default() -> Self {
        Self {
            buckets: std::array::from_fn(|_| AtomicU64::new(0)),
            sum_us: AtomicU64::new(0),
        }
    }
}

impl LatencyHistogram {
    /// Records `count` samples of `latency_us` microseconds.
    pub fn record(&self, latency_us: u64, count: u64) {
        self.buckets[bucket_of(latency_us)].fetch_add(count, Relaxed);
        self.sum_us
            .fetch_add(latency_us.saturating_mul(count), Relaxed);
    }

    /// The counts now, bucket by bucket (see [`upper_bound_us`]).
    pub fn counts(&self) -> [u64; BUCKETS] {
        std::array::from_fn(|i| self.buckets[i].load(Relaxed))
    }

    /// The sum of every sample, in microseconds.
    pub fn sum_us(&self) -> u64 {
        self.sum_us.load(Relaxed)
    }
}

/// Buckets per power of two.
pub const SUB_BUCKETS: usize = 4;
/// Powers of two of microseconds covered (2^26 µs ≈ 67 s).
pub const OCTAVES: usize = 26;
/// Buckets in a [`LatencyHistogram`]; the last one also takes everything larger.
pub const BUCKETS: usize = SUB_BUCKETS * OCTAVES + 1;

/// The upper bound of bucket `i`, in microseconds: 2^(i/4), rounded up.
pub fn upper_bound_us(i: usize) -> f64 {
    2f64.powf(i as f64 / SUB_BUCKETS as f64)
}

fn bucket_of(latency_us: u64) -> usize {
    if latency_us <= 1 {
        return 0;
    }
    // The smallest i with 2^(i/4) >= latency.
    let exact = (latency_us as f64).log2() * SUB_BUCKETS as f64;
    (exact.ceil() as usize).min(BUCKETS - 1)
}

/// The `q`-quantile (0..=1) of histogram `counts`, in microseconds: the upper bound of the
/// bucket holding it; `None` with no samples.
pub fn quantile_us(counts: &[u64; BUCKETS], q: f64) -> Option<f64> {
    let total: u64 = counts.iter().sum();
    if total == 0 {
        return None;
    }
    let rank = ((q * total as f64).ceil() as u64).clamp(1, total);
    let mut seen = 0;
    for (i, n) in counts.iter().enumerate() {
        seen += n;
        if seen >= rank {
            return Some(upper_bound_us(i));
        }
    }
    Some(upper_bound_us(BUCKETS - 1))
}

impl Metrics {
    /// Counters for `shards` shards, all zero.
    pub fn new(shards: usize) -> Self {
        Self {
            started: Instant::now(),
            ticks_in: AtomicU64::new(0),
            ingest_connections: AtomicU64::new(0),
            ingest_connections_total: AtomicU64::new(0),
            ingest_duplicates: AtomicU64::new(0),
            http_tasks: AtomicU64::new(0),
            session_tasks: AtomicU64::new(0),
            connections_refused: AtomicU64::new(0),
            record: RecordMetrics::default(),
            nats: NatsMetrics::default(),
            derived: DerivedMetrics::default(),
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

/// One connection counted on its shard's `connections` from the moment it is accepted
/// until it ends (drop). The acceptor takes it before handing the socket over, so a burst
/// of connects cannot slip past `--max-connections` while the shard is too busy to count.
#[derive(Debug)]
pub struct CountedConnection {
    metrics: Arc<Metrics>,
    shard: usize,
}

impl CountedConnection {
    /// Counts a connection on `shard`.
    pub fn new(metrics: &Arc<Metrics>, shard: usize) -> Self {
        add(&metrics.shard(shard).connections, 1);
        Self {
            metrics: metrics.clone(),
            shard,
        }
    }
}

impl Drop for CountedConnection {
    fn drop(&mut self) {
        sub(&self.metrics.shard(self.shard).connections, 1);
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

/// One live thing on a gauge, counted until dropped (whichever way its owner ends).
#[derive(Debug)]
pub struct Live<'a>(&'a AtomicU64);

impl<'a> Live<'a> {
    /// Counts one more on `gauge`.
    pub fn new(gauge: &'a AtomicU64) -> Self {
        add(gauge, 1);
        Self(gauge)
    }
}

impl Drop for Live<'_> {
    fn drop(&mut self) {
        sub(self.0, 1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_land_in_the_first_bucket_whose_bound_covers_them() {
        for us in [0, 1, 2, 3, 100, 1_000, 12_345, 50_000, 1_000_000] {
            let i = bucket_of(us);
            assert!(
                upper_bound_us(i) >= us as f64 - 1e-9,
                "{us} µs in bucket {i}"
            );
            if i > 0 {
                assert!(
                    upper_bound_us(i - 1) < us as f64,
                    "{us} µs not in bucket {}",
                    i - 1
                );
            }
        }
        assert_eq!(bucket_of(u64::MAX), BUCKETS - 1);
    }

    #[test]
    fn quantiles_err_by_at_most_one_bucket_upward() {
        let h = LatencyHistogram::default();
        h.record(100, 989);
        h.record(5_000, 9);
        h.record(80_000, 1);
        let counts = h.counts();
        let p50 = quantile_us(&counts, 0.5).unwrap();
        assert!((100.0..=100.0 * 1.19).contains(&p50), "{p50}");
        let p99 = quantile_us(&counts, 0.99).unwrap();
        assert!((5_000.0..=5_000.0 * 1.19).contains(&p99), "{p99}");
        let p999 = quantile_us(&counts, 0.999).unwrap();
        assert!((80_000.0..=80_000.0 * 1.19).contains(&p999), "{p999}");
        assert_eq!(h.sum_us(), 100 * 989 + 5_000 * 9 + 80_000);
        assert_eq!(quantile_us(&[0; BUCKETS], 0.5), None);
    }
}
