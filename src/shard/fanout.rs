//! The shard's main loop: drain the tick queue, append each tick's shared frame to the
//! outbox of every local subscriber, then give each touched client one write (its frames
//! gathered into one buffer: `transport`).
//!
//! Per tick: one hash lookup (last value) and, per subscriber, a refcount bump and a queue
//! push. No lock, no allocation per client (gzip aside, see `encode::gzip`), no `.await`
//! inside the loop. Between turns the loop yields so session tasks (control messages,
//! writability) run on the same thread.

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::TryRecvError;
use slab::Slab;

use super::client::Client;
use super::{Feed, SessionKey, ShardCore, Subscriptions};
use crate::encode::{Frames, Message};
use crate::metrics::ShardMetrics;
use crate::sequencer::TickQueue;
use crate::tick::Seq;

/// Fans out batches until the sequencer closes the queue (shutdown).
pub async fn run(core: &Rc<RefCell<ShardCore>>, queue: &TickQueue) {
    loop {
        let mut batches = 0;
        let mut closed = false;
        {
            let mut core = core.borrow_mut();
            let now = Instant::now();
            while batches < MAX_BATCHES_PER_TURN {
                match queue.try_take() {
                    Ok(batch) => {
                        core.deliver(&batch, now);
                        batches += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if batches > 0 {
                core.flush_dirty_and_enforce(now);
                core.finish_turn();
            }
        }
        if closed {
            return;
        }
        if batches > 0 {
            // Let session tasks run between turns; the queue keeps filling meanwhile, so
            // the next turn batches more.
            tokio::task::yield_now().await;
        } else {
            queue.wake.notified().await;
        }
    }
}

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

/// Most sequencer batches handled per turn before yielding to the session tasks.
const MAX_BATCHES_PER_TURN: usize = 64;
