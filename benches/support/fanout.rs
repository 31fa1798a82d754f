//! The fan-out bench's in-memory shard: 10,000 sessions of one symbol and the timed hot
//! loop. Shared by `benches/fanout.rs` (criterion) and `examples/fanout_instructions.rs`
//! (a fixed run for callgrind), so both measure the same code.

use std::sync::Arc;
use std::time::{Duration, Instant};

use slab::Slab;
use tickrelay::encode::{Encoding, Frames, Wire};
use tickrelay::event::Key;
use tickrelay::metrics::ShardMetrics;
use tickrelay::shard::Feed;
use tickrelay::shard::Subscriptions;
use tickrelay::shard::fanout::fan_out_batch;
use tickrelay::tick::{RawTick, Seq, Symbol, Tick};

pub(crate) const SESSIONS: usize = 10_000;

pub(crate) fn tick(seq: u64) -> Arc<Frames> {
    let mut tick = Tick::try_from(RawTick {
        symbol: "BTC-USD".into(),
        price: Some(43_250.5 + seq as f64 * 0.01),
        size: Some(0.25),
        ts_ns: 1_764_000_000_000_000_000 + seq,
        ..RawTick::default()
    })
    .expect("valid tick");
    tick.seq = Seq(seq);
    tick.recv_ns = tick.ts_ns + 1_000;
    let frames = Arc::new(Frames::new(tick));
    frames.frame(Wire::Json);
    frames.frame(Wire::Protobuf);
    frames
}

pub(crate) struct Shard {
    pub(crate) subscriptions: Subscriptions,
    pub(crate) sessions: Slab<Feed>,
    pub(crate) dirty: Vec<usize>,
    pub(crate) metrics: ShardMetrics,
}

pub(crate) fn shard(encodings: &[Encoding]) -> Shard {
    let symbol = Key::Symbol(Symbol::parse("BTC-USD").expect("valid symbol"));
    let mut subscriptions = Subscriptions::new();
    let mut sessions = Slab::with_capacity(SESSIONS);
    for i in 0..SESSIONS {
        let key = sessions.insert(Feed::new(encodings[i % encodings.len()]));
        subscriptions.insert(Some(&symbol), key);
    }
    Shard {
        subscriptions,
        sessions,
        dirty: Vec::with_capacity(SESSIONS),
        metrics: ShardMetrics::default(),
    }
}

/// Times `fan_out_batch` alone; the clients "write" everything between iterations.
pub(crate) fn fan_out(shard: &mut Shard, iters: u64) -> Duration {
    let mut total = Duration::ZERO;
    for i in 0..iters {
        let batch = [tick(i + 1)];
        let start = Instant::now();
        let n = fan_out_batch(
            &batch,
            &shard.subscriptions,
            &mut shard.sessions,
            &mut shard.dirty,
            start,
            &shard.metrics,
        );
        total += start.elapsed();
        assert_eq!(n as usize, SESSIONS);
        for key in shard.dirty.drain(..) {
            let feed = &mut shard.sessions[key];
            feed.dirty = false;
            feed.mark_written(feed.pending_bytes());
        }
    }
    total
}
