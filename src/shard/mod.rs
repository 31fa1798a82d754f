//! Shards: one pinned OS thread per core, each with its own current-thread runtime and the
//! sessions it owns outright.
//!
//! Other threads reach a shard only through its queues: [`TickSender`] (the sequencer's
//! batches, a bounded crossbeam queue plus a wake-up) and [`ShardHandle`] (accepted sockets).
//! Inside, [`ShardCore`] holds the sessions, the subscription index and the last value per
//! symbol; the fan-out loop and the session tasks share it through an `Rc<RefCell<_>>`,
//! never across an `.await`.

pub mod fanout;
pub mod outbox;
pub mod replay;
pub mod subscriptions;
pub mod thread;

use std::cell::Cell;
use std::collections::HashMap;
use std::net::TcpStream as StdTcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use slab::Slab;
use tokio::sync::{Notify, mpsc};

use crate::encode::Frames;
use crate::limits::IpSlot;
use crate::relay::Shared;
use crate::sequencer::Batch;
use crate::session::Session;
use crate::session::control::ControlParser;
use crate::tick::Symbol;
use replay::History;
pub use subscriptions::{SessionKey, Subscriptions};

/// A shard's index, `0..shards`.
pub type ShardId = usize;

/// The sequencer's end of a shard's tick queue.
#[derive(Debug)]
pub struct TickSender {
    /// `None` once dropping: the queue must be closed before the final wake-up.
    tx: Option<crossbeam_channel::Sender<Batch>>,
    wake: Arc<Notify>,
}

impl TickSender {
    /// Queues `batch` for the shard, blocking while its queue is full (backpressure).
    pub fn deliver(&self, batch: Batch) {
        if let Some(tx) = &self.tx {
            // Err: the shard has stopped (shutdown); nobody is left to deliver to.
            let _ = tx.send(batch);
        }
        self.wake.notify_one();
    }
}

impl Drop for TickSender {
    fn drop(&mut self) {
        // Close the queue first, then wake the shard: woken before the close, it would find
        // the queue empty (not closed), wait again, and never wake (a hang on shutdown).
        drop(self.tx.take());
        self.wake.notify_one();
    }
}

/// The acceptor's end of a shard: hands it accepted sockets.
#[derive(Clone, Debug)]
pub struct ShardHandle {
    /// Which shard.
    pub id: ShardId,
    sockets: mpsc::UnboundedSender<Admitted>,
}

impl ShardHandle {
    /// Gives an accepted connection to the shard; false if the shard has stopped.
    pub fn admit(&self, connection: Admitted) -> bool {
        self.sockets.send(connection).is_ok()
    }
}

/// An accepted client connection on its way to a shard.
#[derive(Debug)]
pub struct Admitted {
    /// The socket (non-blocking).
    pub stream: StdTcpStream,
    /// Its place in the per-IP connection count, held for the connection's life.
    pub ip_slot: Option<IpSlot>,
}

/// What a shard receives on its thread: ticks, sockets and its wake-up.
#[derive(Debug)]
pub struct ShardInputs {
    /// Batches from the sequencer.
    pub ticks: crossbeam_channel::Receiver<Batch>,
    /// Notified after every batch (and when the sequencer stops).
    pub wake: Arc<Notify>,
    /// Accepted sockets.
    pub sockets: mpsc::UnboundedReceiver<Admitted>,
}

/// Creates the queues of shard `id`: the sequencer's sender, the acceptor's handle, and
/// the shard's inputs.
pub fn channels(id: ShardId) -> (TickSender, ShardHandle, ShardInputs) {
    let (tx, ticks) = crossbeam_channel::bounded(QUEUE_BATCHES);
    let wake = Arc::new(Notify::new());
    let (sockets_tx, sockets) = mpsc::unbounded_channel();
    (
        TickSender {
            tx: Some(tx),
            wake: wake.clone(),
        },
        ShardHandle {
            id,
            sockets: sockets_tx,
        },
        ShardInputs {
            ticks,
            wake,
            sockets,
        },
    )
}

/// Everything a shard owns, on its own thread.
#[derive(Debug)]
pub struct ShardCore {
    /// This shard's index.
    pub id: ShardId,
    /// Relay-wide shared state (config, metrics, interest, inbox, shutdown).
    pub shared: Arc<Shared>,
    /// Live sessions.
    pub sessions: Slab<Session>,
    /// Who wants which symbol.
    pub subscriptions: Subscriptions,
    /// Per symbol seen: the replay ring, whose newest entry is the last value (snapshots,
    /// `/price`, resume).
    pub history: HashMap<Symbol, History>,
    /// The shard's control-message parser (its scratch buffers are reused by every session).
    pub control_parser: ControlParser,
    /// Sessions with frames queued since the last flush.
    dirty: Vec<SessionKey>,
    /// Session tasks still running (a closing one lingers after leaving `sessions`).
    pub session_tasks: Rc<Cell<usize>>,
    /// Notified whenever a session task ends (shutdown waits on it).
    pub session_left: Rc<Notify>,
}

impl ShardCore {
    /// An empty shard.
    pub fn new(id: ShardId, shared: Arc<Shared>) -> Self {
        Self {
            control_parser: ControlParser::new(shared.config.max_symbols_per_client),
            id,
            shared,
            sessions: Slab::new(),
            subscriptions: Subscriptions::new(),
            history: HashMap::new(),
            dirty: Vec::new(),
            session_tasks: Rc::new(Cell::new(0)),
            session_left: Rc::new(Notify::new()),
        }
    }

    /// Marks `key` for the next flush.
    pub fn mark_dirty(&mut self, key: SessionKey) {
        let session = &mut self.sessions[key];
        if !session.feed.dirty {
            session.feed.dirty = true;
            self.dirty.push(key);
        }
    }

    /// Writes what every marked session has pending (one vectored write each).
    pub fn flush_dirty(&mut self) {
        self.flush_dirty_and_enforce(Instant::now());
    }

    /// The last tick of `symbol` this shard has seen.
    pub fn last(&self, symbol: &str) -> Option<&Arc<Frames>> {
        self.history.get(symbol).and_then(History::last)
    }
}

/// Batches a shard queue holds before the sequencer waits (~4 s of 1,000 batches/s).
const QUEUE_BATCHES: usize = 4096;
