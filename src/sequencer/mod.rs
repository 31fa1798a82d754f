//! The sequencer: the single owner of per-key sequence numbers.
//!
//! Receives validated ticks and events ([`Item`]s) from the [`Inbox`](crate::ingest::Inbox),
//! assigns each its [`Seq`] (1, 2, 3, ... per symbol or channel, never a gap), encodes it once into the encodings that
//! have subscribers ([`Frames`]), and hands every shard the same batch of `Arc<Frames>`
//! through its bounded crossbeam queue. A full queue makes the sequencer wait, which fills the
//! inbox, which stops ingest reads: backpressure all the way to the publisher, no drops.
//!
//! Its output is one stream of sequenced items, ticks and events interleaved in arrival
//! order. Each shard sees every item in seq order, so it keeps its own last value per key and
//! serves snapshots and `/price` from it without sharing a map across threads.
//!
//! It also derives bars and 24-hour tickers from the trades ([`derived`]): a bar a trade
//! closes follows that trade in the same batch (every shard sees a trade before the bar it
//! moved), and the timed updates go out from one timer branch of [`Sequencer::run`], each
//! sequenced on its own channel like any event. An edge's sequencer computes nothing: they
//! arrive from the stream, sequenced.

pub mod bars;
pub mod derived;
pub mod interest;
pub mod queue;
pub mod record;
pub mod ticker;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::config::DerivedConfig;
use crate::encode::{Frames, Wire};
use crate::error::ErrorCode;
use crate::event::{Item, Key};
use crate::metrics::{self, Metrics};
use crate::shutdown::Shutdown;
use crate::tick::{Seq, now_ns};
use bars::FollowedBars;
use derived::{Derived, Restored};
pub use interest::Interest;
use interest::SymbolInterest;
pub use queue::{Batch, TickQueue, TickSender, tick_queue};

/// Per-key sequencing state.
#[derive(Debug)]
struct SymbolSeq {
    next: Seq,
    interest: Arc<SymbolInterest>,
}

/// The sequencer's state; [`Sequencer::run`] consumes it on its own thread.
#[derive(Debug)]
pub struct Sequencer {
    symbols: HashMap<Key, SymbolSeq>,
    shards: Vec<TickSender>,
    interest: Arc<Interest>,
    metrics: Arc<Metrics>,
    max_symbols: usize,
    /// Follow mode (an edge): items arrive sequenced from the stream and keep their seq.
    follow: bool,
    /// Bars and tickers computed here (not on an edge, not with `--bar-intervals off`).
    derived: Option<Derived>,
    /// An edge's bars channels: the closed bars each arriving bar follows.
    followed: Option<FollowedBars>,
    /// `--derived-interval`: the timer of the derived updates.
    cadence: Duration,
    /// What a restarted sequencer found in the stream, applied before the first batch.
    restored: Option<Restored>,
    /// Derived items waiting to be sequenced (kept to reuse its allocation).
    scratch: Vec<Item>,
}

impl Sequencer {
    /// A sequencer feeding `shards`.
    pub fn new(
        shards: Vec<TickSender>,
        interest: Arc<Interest>,
        metrics: Arc<Metrics>,
        max_symbols: usize,
    ) -> Self {
        Self {
            symbols: HashMap::new(),
            shards,
            interest,
            metrics,
            max_symbols,
            follow: false,
            derived: None,
            followed: None,
            cadence: Duration::from_secs(1),
            restored: None,
            scratch: Vec::new(),
        }
    }

    /// Computes bars and tickers as `config` says (call after [`Sequencer::following`]: an
    /// edge computes none, it only keeps each bars channel's closed bars for snapshots).
    pub fn deriving(mut self, config: &DerivedConfig) -> Self {
        self.cadence = config.derived_interval;
        if self.follow {
            self.followed = Some(FollowedBars::new(config.bar_history));
        } else {
            self.derived = Derived::new(config, self.metrics.clone());
        }
        self
    }

    /// Continues the bars and tickers from what the stream held (a restarted sequencer).
    pub fn restore(&mut self, restored: Restored) {
        self.restored = Some(restored);
    }

    /// An edge's sequencer: items come from the stream already sequenced. It keeps their
    /// seqs, drops a seq it has already handed on (two reads of the stream overlap), and
    /// counts the seqs skipped when the stream no longer held them (`nats.gaps`); the
    /// shards' rings restart after such a jump, so a resume across it gets a `gap`.
    pub fn following(mut self) -> Self {
        self.follow = true;
        self
    }

    /// Continues each key's seq after the given newest one (a restarted sequencer, from
    /// the stream).
    pub fn continue_from(&mut self, newest: impl IntoIterator<Item = (Key, Seq)>) {
        for (key, seq) in newest {
            let interest = self.interest.entry(&key);
            self.symbols.insert(
                key,
                SymbolSeq {
                    next: seq.next(),
                    interest,
                },
            );
        }
    }

    /// Sequences batches until the inbox closes or shutdown, then drains what is queued and
    /// closes the shard queues (which tells the shards no more ticks will come).
    pub async fn run(mut self, mut inbox: mpsc::Receiver<Vec<Item>>, shutdown: Shutdown) {
        if let (Some(derived), Some(restored)) = (&mut self.derived, self.restored.take()) {
            let mut out = Vec::new();
            derived.restore(restored, now_ns(), &mut out);
            let batch = self.prepare_derived(out);
            self.deliver(batch).await;
        }
        let mut timer = tokio::time::interval(self.cadence);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let batch = tokio::select! {
                // The timer first: it is ready once per --derived-interval, so it never
                // starves the inbox, and a busy inbox cannot hold back the bars' closes.
                biased;
                _ = timer.tick(), if self.derived.is_some() => {
                    self.timed().await;
                    continue;
                }
                // Then ticks: a batch already accepted is always sequenced and delivered.
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
            self.sequence(ticks).await;
        }
        inbox.close();
        while let Ok(rest) = inbox.try_recv() {
            self.sequence(rest).await;
        }
        debug!("sequencer stopped");
    }

    /// Sequences, encodes and hands on one batch (waiting while a shard queue is full), each
    /// trade followed by the bars it closed.
    pub async fn sequence(&mut self, ticks: Vec<Item>) {
        let mut batch = Vec::with_capacity(ticks.len());
        let mut sourced = 0;
        for item in ticks {
            let Some(frames) = self.prepare(item) else {
                continue;
            };
            if !frames.item().is_derived() {
                sourced += 1;
            }
            if let (Some(derived), Some(tick)) = (&mut self.derived, frames.tick()) {
                derived.trade(tick, &mut self.scratch);
            }
            batch.push(Arc::new(frames));
            if !self.scratch.is_empty() {
                let closed = std::mem::take(&mut self.scratch);
                batch.extend(self.prepare_derived(closed));
            }
        }
        self.deliver(batch).await;
        metrics::add(&self.metrics.ticks_in, sourced);
    }

    /// The derived updates due now (closes, open bars, tickers), as one batch.
    async fn timed(&mut self) {
        let Some(derived) = &mut self.derived else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        derived.on_timer(now_ns(), &mut out);
        let batch = self.prepare_derived(out);
        self.deliver(batch).await;
    }

    /// Sequences derived items (emptying `items`, whose allocation is kept for the next).
    fn prepare_derived(&mut self, mut items: Vec<Item>) -> Vec<Arc<Frames>> {
        metrics::add(&self.metrics.derived.messages, items.len() as u64);
        let batch = items
            .drain(..)
            .filter_map(|item| self.prepare(item))
            .map(Arc::new)
            .collect();
        self.scratch = items;
        batch
    }

    /// Hands `batch` to every shard (and the publisher, the recorder).
    async fn deliver(&mut self, batch: Vec<Arc<Frames>>) {
        if batch.is_empty() {
            return;
        }
        let batch: Batch = Arc::from(batch);
        for shard in &self.shards {
            shard.deliver(batch.clone()).await;
        }
    }

    /// Assigns the item its seq and pre-encodes it; `None` if it is a new key beyond
    /// `--max-symbols` (symbols and channels together; counted as `symbol_limit`).
    fn prepare(&mut self, mut item: Item) -> Option<Frames> {
        let key = item.key();
        let known = self.symbols.contains_key(&key);
        // A derived key's symbol passed the limit already; its channels are bounded by it.
        if !known && !item.is_derived() && self.symbols.len() >= self.max_symbols {
            self.metrics.count_error(ErrorCode::SymbolLimit);
            warn!(
                key = key.as_str(),
                limit = self.max_symbols,
                "item of a new symbol or channel refused: --max-symbols reached"
            );
            return None;
        }
        let interest = &self.interest;
        let state = self
            .symbols
            .entry(key.clone())
            .or_insert_with(|| SymbolSeq {
                next: Seq::FIRST,
                interest: interest.entry(&key),
            });
        if self.follow {
            let seq = item.seq();
            if known && seq < state.next {
                metrics::add(&self.metrics.nats.duplicates, 1);
                return None;
            }
            if known && seq > state.next {
                metrics::add(&self.metrics.nats.gaps, seq.0 - state.next.0);
            }
            state.next = seq.next();
            if let (Item::Bar(bar), Some(followed)) = (&mut item, &mut self.followed) {
                followed.attach(bar);
            }
        } else {
            item.set_seq(state.next);
            state.next = state.next.next();
        }
        let wildcard = key.in_wildcard();
        let frames = Frames::of(item);
        for wire in [Wire::Json, Wire::Protobuf] {
            if self.interest.wants(&state.interest, wildcard, wire) {
                frames.frame(wire);
            }
        }
        Some(frames)
    }
}

/// Most ticks coalesced into one shard hand-off.
const MAX_BATCH: usize = 4096;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{RawTick, Tick};

    fn item(symbol: &str, seq: u64) -> Item {
        let mut tick = Tick::try_from(RawTick {
            symbol: symbol.into(),
            price: Some(1.0),
            ..RawTick::default()
        })
        .unwrap();
        tick.seq = Seq(seq);
        Item::Tick(tick)
    }

    fn sequencer() -> (Sequencer, TickQueue, Arc<Metrics>) {
        let (sender, queue) = tick_queue(16);
        let metrics = Arc::new(Metrics::new(1));
        let interest = Arc::new(Interest::default());
        let sequencer = Sequencer::new(vec![sender], interest, metrics.clone(), 100);
        (sequencer, queue, metrics)
    }

    fn seqs(queue: &TickQueue) -> Vec<(String, u64)> {
        queue
            .drain()
            .flat_map(|batch| batch.to_vec())
            .map(|f| (f.key().as_str().to_owned(), f.seq().0))
            .collect()
    }

    #[tokio::test]
    async fn follow_mode_keeps_seqs_drops_repeats_and_counts_what_was_skipped() {
        let (sequencer, queue, metrics) = sequencer();
        let mut sequencer = sequencer.following();
        sequencer
            .sequence(vec![item("A", 7), item("A", 8), item("B", 1), item("A", 8)])
            .await;
        sequencer
            .sequence(vec![item("A", 6), item("A", 12), item("B", 2)])
            .await;
        let want = [("A", 7), ("A", 8), ("B", 1), ("A", 12), ("B", 2)];
        let want: Vec<(String, u64)> = want.iter().map(|(k, s)| ((*k).into(), *s)).collect();
        assert_eq!(seqs(&queue), want, "a key starts where the stream is");
        assert_eq!(
            metrics
                .nats
                .duplicates
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(
            metrics.nats.gaps.load(std::sync::atomic::Ordering::Relaxed),
            3
        );
    }

    #[tokio::test]
    async fn a_continued_sequencer_assigns_the_seq_after_the_streams_newest() {
        let (mut sequencer, queue, _) = sequencer();
        let a = Key::Symbol(crate::tick::Symbol::parse("A").unwrap());
        sequencer.continue_from([(a, Seq(41))]);
        sequencer
            .sequence(vec![item("A", 0), item("B", 0), item("A", 0)])
            .await;
        let want: Vec<(String, u64)> = [("A", 42), ("B", 1), ("A", 43)]
            .iter()
            .map(|(k, s)| ((*k).into(), *s))
            .collect();
        assert_eq!(seqs(&queue), want);
    }
}
