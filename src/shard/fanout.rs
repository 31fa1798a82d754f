//! The hot loop of a fan-out turn: append each tick's shared frame to the outbox of every
//! local subscriber ([`fan_out_batch`]), and the rare explicit `gap` before a tick an edge's
//! stream skipped to ([`announce_gap`]). The turn around it (drain the queue, then give
//! each touched client one write) is [`run`](super::run).
//!
//! Per tick: one hash lookup (last value) and, per subscriber, a refcount bump and a queue
//! push. No lock, no allocation per client (gzip aside, see `encode::gzip`), no `.await`
//! inside the loop.

use std::sync::Arc;
use std::time::Instant;

use slab::Slab;

use super::client::Client;
use super::feed::Feed;
use super::subscriptions::{SessionKey, Subscriptions};
use crate::encode::{Frames, Message};
use crate::metrics::ShardMetrics;
use crate::tick::Seq;

/// Tells every subscriber of `frames`' key that `from..=to` will never come (an edge's
/// stream no longer held them), just before `frames`, the tick after them: a client sees
/// an explicit `gap`, never a silent jump. Rare (a long NATS outage), so off the hot loop.
pub(super) fn announce_gap(
    frames: &Frames,
    (from, to): (Seq, Seq),
    subscriptions: &Subscriptions,
    clients: &mut Slab<Client>,
    now: Instant,
) {
    let key = frames.key();
    for session in subscriptions.of(key) {
        clients[session]
            .feed
            .send(&Message::Gap { key, from, to }, now);
    }
}

/// The hot loop: appends each tick's shared frame to every subscriber's feed and lists the
/// touched clients in `dirty` (once each). Returns the number of deliveries.
///
/// Generic over the client type so benchmarks run this exact code on in-memory feeds.
pub fn fan_out_batch<C: std::borrow::BorrowMut<Feed>>(
    batch: &[Arc<Frames>],
    subscriptions: &Subscriptions,
    clients: &mut Slab<C>,
    dirty: &mut Vec<SessionKey>,
    now: Instant,
    metrics: &ShardMetrics,
) -> u64 {
    let mut delivered = 0u64;
    for frames in batch {
        for key in subscriptions.of(frames.key()) {
            let feed: &mut Feed = std::borrow::BorrowMut::borrow_mut(&mut clients[key]);
            if feed.push_tick(frames, now, metrics) {
                delivered += 1;
                if !feed.dirty {
                    feed.dirty = true;
                    dirty.push(key);
                }
            }
        }
    }
    delivered
}
