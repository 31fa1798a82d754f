//! The sequencer: the single owner of per-symbol sequence numbers.
//!
//! Receives validated ticks from the [`Inbox`](crate::ingest::Inbox), assigns each its
//! [`Seq`] (1, 2, 3, ... per symbol, never a gap), encodes it once into the encodings that
//! have subscribers ([`Frames`]), and hands every shard the same batch of `Arc<Frames>`
//! through its bounded crossbeam queue. A full queue blocks the sequencer, which fills the
//! inbox, which stops ingest reads: backpressure all the way to the publisher, no drops.
//!
//! Each shard sees every tick in seq order, so it keeps its own last value per symbol and
//! serves snapshots and `/price` from it without sharing a map across threads.

pub mod interest;

use std::collections::HashMap;
use std::sync::Arc;

use tokio::sync::mpsc;
use tracing::debug;

use crate::encode::{Frames, Wire};
use crate::metrics::{self, Metrics};
use crate::shard::TickSender;
use crate::shutdown::Shutdown;
use crate::tick::{Seq, Symbol, Tick};
pub use interest::Interest;
use interest::SymbolInterest;

/// A batch of sequenced ticks, shared by every shard.
pub type Batch = Arc<[Arc<Frames>]>;

/// Per-symbol sequencing state.
#[derive(Debug)]
struct SymbolSeq {
    next: Seq,
    interest: Arc<SymbolInterest>,
}

/// The sequencer's state; [`Sequencer::run`] consumes it on its own thread.
#[derive(Debug)]
pub struct Sequencer {
    symbols: HashMap<Symbol, SymbolSeq>,
    shards: Vec<TickSender>,
    interest: Arc<Interest>,
    metrics: Arc<Metrics>,
}

impl Sequencer {
    /// A sequencer feeding `shards`.
    pub fn new(shards: Vec<TickSender>, interest: Arc<Interest>, metrics: Arc<Metrics>) -> Self {
        Self {
            symbols: HashMap::new(),
            shards,
            interest,
            metrics,
        }
    }

    /// Sequences batches until the inbox closes or shutdown, then drains what is queued and
    /// closes the shard queues (which tells the shards no more ticks will come).
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Vec<Tick>>, shutdown: Shutdown) {
        loop {
            let batch = tokio::select! {
                // Ticks first: a batch already accepted is always sequenced and delivered.
                biased;
                batch = inbox.recv() => batch,
                () = shutdown.wait() => None,
            };
            let Some(batch) = batch else { break };
            let mut ticks = batch;
            // Coalesce what else is waiting into one hand-off per shard.
            while ticks.len() < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(more) => ticks.extend(more),
                    Err(_) => break,
                }
            }
            self.sequence(ticks);
        }
        inbox.close();
        while let Ok(rest) = inbox.try_recv() {
            self.sequence(rest);
        }
        debug!("sequencer stopped");
    }

    /// Sequences, encodes and hands on one batch (blocking while a shard queue is full).
    pub fn sequence(&mut self, ticks: Vec<Tick>) {
        let count = ticks.len() as u64;
        let batch: Batch = ticks
            .into_iter()
            .map(|tick| Arc::new(self.prepare(tick)))
            .collect();
        for shard in &self.shards {
            shard.deliver(batch.clone());
        }
        metrics::add(&self.metrics.ticks_in, count);
    }

    fn prepare(&mut self, mut tick: Tick) -> Frames {
        let state = match self.symbols.get_mut(&tick.symbol) {
            Some(state) => state,
            None => self
                .symbols
                .entry(tick.symbol.clone())
                .or_insert_with(|| SymbolSeq {
                    next: Seq::FIRST,
                    interest: self.interest.entry(&tick.symbol),
                }),
        };
        tick.seq = state.next;
        state.next = state.next.next();
        let frames = Frames::new(tick);
        for wire in [Wire::Json, Wire::Protobuf] {
            if self.interest.wants(&state.interest, wire) {
                frames.frame(wire);
            }
        }
        frames
    }
}

/// Most ticks coalesced into one shard hand-off.
const MAX_BATCH: usize = 4096;
