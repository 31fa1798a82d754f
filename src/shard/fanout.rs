//! The shard's main loop: drain the tick queue, append each tick's shared frame to the
//! outbox of every local subscriber, then give each touched client one vectored write.
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
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tracing::{debug, warn};

use super::replay::{History, effective_depth};
use super::{SessionKey, ShardCore, ShardId, ShardInputs, Subscriptions};
use crate::encode::Frames;
use crate::metrics::{self, ShardMetrics};
use crate::relay::Shared;
use crate::sequencer::Batch;
use crate::session::feed::Feed;
use slab::Slab;

/// The body of a shard thread: admit sockets, fan out ticks until the sequencer stops, then
/// close every client with 1001 and wait (bounded) for them to go.
pub async fn run_shard(id: ShardId, shared: Arc<Shared>, inputs: ShardInputs) {
    let ShardInputs {
        ticks,
        wake,
        sockets,
    } = inputs;
    let core = Rc::new(RefCell::new(ShardCore::new(id, shared.clone())));
    let admitting = tokio::task::spawn_local(admit(core.clone(), sockets));
    fan_out(&core, &ticks, &wake).await;
    admitting.abort();

    let deadline = Instant::now() + shared.config.drain_timeout;
    let left = core.borrow().session_left.clone();
    {
        let mut core = core.borrow_mut();
        for (_, session) in &mut core.sessions {
            session.close(1001, "going away", deadline, false);
        }
        core.flush_all();
    }
    loop {
        let running = core.borrow().session_tasks.get();
        if running == 0 {
            break;
        }
        tokio::select! {
            () = left.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {
                debug!(shard = id, running, "drain deadline reached; dropping remaining clients");
                break;
            }
        }
    }
}

/// Starts serving each socket the acceptor hands over.
async fn admit(
    core: Rc<RefCell<ShardCore>>,
    mut sockets: mpsc::UnboundedReceiver<super::Admitted>,
) {
    while let Some(admitted) = sockets.recv().await {
        match TcpStream::from_std(admitted.stream) {
            Ok(stream) => {
                tokio::task::spawn_local(crate::http::serve(
                    core.clone(),
                    stream,
                    admitted.ip_slot,
                ));
            }
            Err(e) => warn!(error = %e, "could not register an accepted socket"),
        }
    }
}

async fn fan_out(
    core: &Rc<RefCell<ShardCore>>,
    ticks: &crossbeam_channel::Receiver<Batch>,
    wake: &Notify,
) {
    loop {
        let mut batches = 0;
        let mut closed = false;
        {
            let mut core = core.borrow_mut();
            let now = Instant::now();
            while batches < MAX_BATCHES_PER_TURN {
                match ticks.try_recv() {
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
            wake.notified().await;
        }
    }
}

impl ShardCore {
    /// Records every tick of `batch` as its symbol's newest (replay ring, last value), then
    /// appends it to its subscribers' outboxes.
    pub fn deliver(&mut self, batch: &Batch, now: Instant) {
        let Self {
            sessions,
            subscriptions,
            history,
            dirty,
            shared,
            id,
            ..
        } = self;
        let config = &shared.config;
        let depth = effective_depth(config.replay_depth, config.replay_budget, history.len());
        for frames in batch.iter() {
            let symbol = &frames.tick().symbol;
            match history.get_mut(symbol) {
                Some(history) => history.push(frames.clone(), depth),
                None => history
                    .entry(symbol.clone())
                    .or_insert_with(|| History::new(config.replay_depth))
                    .push(frames.clone(), depth),
            }
        }
        let metrics = shared.metrics.shard(*id);
        let delivered = fan_out_batch(batch, subscriptions, sessions, dirty, now, metrics);
        metrics::add(&metrics.deliveries, delivered);
    }

    /// Flushes every touched session, then applies the slow-consumer policy to those still
    /// over budget after the write.
    pub fn flush_dirty_and_enforce(&mut self, now: Instant) {
        let metrics = self.shared.metrics.clone();
        let metrics = metrics.shard(self.id);
        let config = &self.shared.config;
        for key in self.dirty.drain(..) {
            if let Some(session) = self.sessions.get_mut(key) {
                session.feed.dirty = false;
                session.flush(metrics, config);
                session.enforce_budget(config, metrics, now);
            }
        }
    }

    /// Flushes every session (shutdown).
    pub fn flush_all(&mut self) {
        let metrics = self.shared.metrics.clone();
        for (_, session) in &mut self.sessions {
            session.flush(metrics.shard(self.id), &self.shared.config);
        }
    }
}

/// The hot loop: appends each tick's shared frame to every subscriber's feed and lists the
/// touched sessions in `dirty` (once each). Returns the number of deliveries.
///
/// Generic over the session type so benchmarks run this exact code on in-memory feeds.
pub fn fan_out_batch<S: std::borrow::BorrowMut<Feed>>(
    batch: &[Arc<Frames>],
    subscriptions: &Subscriptions,
    sessions: &mut Slab<S>,
    dirty: &mut Vec<SessionKey>,
    now: Instant,
    metrics: &ShardMetrics,
) -> u64 {
    let mut delivered = 0u64;
    for frames in batch {
        for key in subscriptions.of(frames.tick().symbol.as_str()) {
            let feed: &mut Feed = std::borrow::BorrowMut::borrow_mut(&mut sessions[key]);
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
