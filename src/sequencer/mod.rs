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

pub mod books;
pub mod interest;
pub mod queue;
pub mod record;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::book::{BookUpdate, Depth};
use crate::config::BookConfig;
use crate::encode::{Frames, Wire};
use crate::error::ErrorCode;
use crate::event::{Item, Key};
use crate::metrics::{self, Metrics};
use crate::shutdown::Shutdown;
use crate::tick::Seq;
pub use books::{Books, Cadence};
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
    /// The order books and the messages their updates become.
    books: Books,
    /// Items to hand on before the first batch (checkpoints of books restored from the
    /// stream, so the shards' copies start from them).
    pending: Vec<Arc<Frames>>,
}

impl Sequencer {
    /// A sequencer feeding `shards`.
    pub fn new(
        shards: Vec<TickSender>,
        interest: Arc<Interest>,
        metrics: Arc<Metrics>,
        max_symbols: usize,
    ) -> Self {
        let books = Books::new(&BookConfig::default(), interest.clone(), metrics.clone());
        Self {
            symbols: HashMap::new(),
            shards,
            interest,
            metrics,
            max_symbols,
            follow: false,
            books,
            pending: Vec::new(),
        }
    }

    /// Keeps books with `config`'s depths and limits; `cadence`: checkpoints them into the
    /// stream at that cadence (a sequencer with `--nats`).
    pub fn books(mut self, config: &BookConfig, cadence: Option<Cadence>) -> Self {
        self.books = Books::new(config, self.interest.clone(), self.metrics.clone());
        if let Some(cadence) = cadence {
            self.books.checkpoint(cadence);
        }
        self
    }

    /// Rebuilds books from the stream (a restarted sequencer): each book's newest
    /// checkpoint, as a snapshot, then the updates after it; the seqs continue from them.
    pub fn restore_books(&mut self, updates: Vec<BookUpdate>) {
        self.books.restore(updates, &mut self.pending);
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
        let restored = std::mem::take(&mut self.pending);
        self.hand_on(restored).await;
        let mut timer = tokio::time::interval(CHECKPOINT_CHECK);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            let batch = tokio::select! {
                // Ticks first: a batch already accepted is always sequenced and delivered.
                biased;
                batch = inbox.recv() => batch,
                () = shutdown.wait() => None,
                // The one timer: checkpoints of books that changed and have waited long enough.
                _ = timer.tick() => {
                    let mut due = Vec::new();
                    self.books.due_checkpoints(Instant::now(), &mut due);
                    self.hand_on(due).await;
                    continue;
                }
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

    /// Sequences, encodes and hands on one batch (waiting while a shard queue is full).
    pub async fn sequence(&mut self, ticks: Vec<Item>) {
        let now = Instant::now();
        let mut out = Vec::with_capacity(ticks.len());
        for item in ticks {
            match item {
                Item::Book(update) => {
                    let room = self.symbols.len() + self.books.len() < self.max_symbols;
                    if self.follow {
                        self.books.follow(update, room, &mut out);
                    } else {
                        self.books.sequence(update, room, now, &mut out);
                    }
                }
                other => out.extend(self.prepare(other).map(Arc::new)),
            }
        }
        self.hand_on(out).await;
    }

    /// Hands every shard (and the other consumers) the same batch.
    async fn hand_on(&self, items: Vec<Arc<Frames>>) {
        if items.is_empty() {
            return;
        }
        let batch: Batch = items.into();
        for shard in &self.shards {
            shard.deliver(batch.clone()).await;
        }
        // What came in: a book update counts once (its full-depth message), not per view.
        let derived = |item: &Item| matches!(item, Item::Book(b) if b.channel.depth() != Depth::Full || !b.for_clients());
        let came_in = batch.iter().filter(|f| !derived(f.item())).count();
        metrics::add(&self.metrics.ticks_in, came_in as u64);
    }

    /// Assigns the item its seq and pre-encodes it; `None` if it is a new key beyond
    /// `--max-symbols` (symbols, channels and books together; counted as `symbol_limit`).
    fn prepare(&mut self, mut item: Item) -> Option<Frames> {
        let key = item.key();
        let known = self.symbols.contains_key(&key);
        if !known && self.symbols.len() + self.books.len() >= self.max_symbols {
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
/// How often the timer looks for book checkpoints that are due (`--book-checkpoint-interval`
/// is met within this).
const CHECKPOINT_CHECK: Duration = Duration::from_secs(1);

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
