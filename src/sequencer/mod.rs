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
//!
//! The key table is bounded (`--max-symbols`). When it is full, a new key first makes the
//! sequencer evict (at most once per [`SWEEP_EVERY`]) every key nobody subscribes to by name
//! and that has been quiet for `--evict-idle`; an item that still finds no room is refused
//! and its publisher told ([`Refused`]). Eviction never misleads a client that held an
//! evicted key's seqs: a key that (re)appears after an eviction starts its seqs two above
//! the highest seq any evicted key had, so an old position is never taken for one in the
//! new run (a resume from it gets a `gap`, a live subscriber the shard's `gap` for the jump),
//! and each shard drops an evicted key's history, sending `reset` to whoever still follows it.

pub mod acks;
pub mod bars;
pub mod books;
pub mod derived;
mod deriving;
mod history;
pub mod interest;
pub mod queue;
pub mod record;
mod table;
pub mod ticker;

use std::cell::Cell;
use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::debug;

use crate::book::{BookError, BookUpdate, Depth};
use crate::config::BookConfig;
use crate::config::defaults::EVICT_IDLE;
use crate::config::parse_duration;
use crate::encode::Frames;
use crate::error::ErrorCode;
use crate::event::{Item, Key, Tag};
use crate::ingest::{Answer, InboxReceiver, Published, Refusal, Refused};
use crate::metrics::{self, Metrics};
use crate::shutdown::Shutdown;
use crate::tick::Seq;
use acks::{Acks, Admit};
use bars::FollowedBars;
pub use books::{Books, Cadence};
use derived::{Derived, Restored};
pub use interest::Interest;
use interest::SymbolInterest;
pub use queue::{Batch, Handed, TickQueue, TickSender, tick_queue};

/// Per-key sequencing state.
#[derive(Debug)]
struct SymbolSeq {
    next: Seq,
    interest: Arc<SymbolInterest>,
    /// When its last item was sequenced (or the key was created).
    last: Instant,
}

/// The sequencer's state; [`Sequencer::run`] consumes it on its own thread.
#[derive(Debug)]
pub struct Sequencer {
    symbols: HashMap<Key, SymbolSeq>,
    shards: Vec<TickSender>,
    interest: Arc<Interest>,
    metrics: Arc<Metrics>,
    max_symbols: usize,
    /// `--evict-idle`: how long a key must be quiet before it may be evicted.
    evict_idle: Duration,
    /// The highest seq an evicted key had (0: none evicted): new keys start above it.
    evicted_high: u64,
    /// The last eviction sweep.
    swept: Option<Instant>,
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
    /// The order books and the messages their updates become.
    books: Books,
    /// Items to hand on before the first batch (checkpoints of books restored from the
    /// stream, so the shards' copies start from them).
    pending: Vec<Arc<Frames>>,
    /// Acknowledged ingest: publishers' highest stored pseqs, acks waiting to be durable.
    acks: Acks,
    /// Batches handed on so far.
    handed: Cell<u64>,
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
            evict_idle: parse_duration(EVICT_IDLE).expect("the default --evict-idle parses"),
            evicted_high: 0,
            swept: None,
            follow: false,
            derived: None,
            followed: None,
            cadence: Duration::from_secs(1),
            restored: None,
            scratch: Vec::new(),
            books,
            pending: Vec::new(),
            acks: Acks::default(),
            handed: Cell::new(0),
        }
    }

    /// Scaled out: acks wait until the NATS publisher has stored their batches (`durable`:
    /// how many batches it has).
    pub fn durable_after(mut self, durable: tokio::sync::watch::Receiver<u64>) -> Self {
        self.acks.durable_after(durable);
        self
    }

    /// What the stream holds of each acking publisher (a restarted or standby sequencer):
    /// their resends of it are duplicates.
    pub fn remember_publishers(&mut self, highs: impl IntoIterator<Item = (Arc<str>, u64)>) {
        self.acks.remember(highs);
    }

    /// Evicts keys quiet for `idle` when the table is full (`--evict-idle`).
    pub fn evicting_after(mut self, idle: Duration) -> Self {
        self.evict_idle = idle;
        self
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
        let now = Instant::now();
        for (key, seq) in newest {
            let interest = self.interest.entry(&key);
            self.symbols.insert(
                key,
                SymbolSeq {
                    next: seq.next(),
                    interest,
                    last: now,
                },
            );
        }
    }

    /// Sequences batches until the inbox closes or shutdown, then drains what is queued and
    /// closes the shard queues (which tells the shards no more ticks will come).
    pub async fn run(mut self, mut inbox: InboxReceiver, shutdown: Shutdown) {
        let restored = std::mem::take(&mut self.pending);
        self.hand_on(restored).await;
        self.restore_derived().await;
        let mut timer = tokio::time::interval(self.cadence);
        let mut checkpoints = tokio::time::interval(CHECKPOINT_CHECK);
        checkpoints.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        timer.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut durable = self.acks.durable();
        loop {
            let first = tokio::select! {
                // The timers first: each is ready once per interval, so neither starves the
                // inbox, and a busy inbox cannot hold back the bars' closes or checkpoints.
                biased;
                _ = timer.tick(), if self.derived.is_some() => {
                    self.timed().await;
                    continue;
                }
                // Checkpoints of books that changed and have waited long enough.
                _ = checkpoints.tick() => {
                    let mut due = Vec::new();
                    self.books.due_checkpoints(Instant::now(), &mut due);
                    self.hand_on(due).await;
                    continue;
                }
                // The stream stored more: the acks of what it holds go out.
                Ok(()) = stored(&mut durable), if self.acks.waiting() => {
                    self.acks.release(self.handed.get());
                    continue;
                }
                // Then ticks: a batch already accepted is always sequenced and delivered.
                first = inbox.recv() => first,
                () = shutdown.wait() => None,
            };
            let Some(first) = first else { break };
            let mut items = first.items.len();
            let mut batch = vec![first];
            // Coalesce what else is waiting into one hand-off per shard.
            while items < MAX_BATCH {
                match inbox.try_recv() {
                    Ok(more) => {
                        items += more.items.len();
                        batch.push(more);
                    }
                    Err(_) => break,
                }
            }
            self.sequence_published(batch).await;
        }
        inbox.close();
        while let Ok(rest) = inbox.try_recv() {
            self.sequence_published(vec![rest]).await;
        }
        // The NATS publisher drains what it holds (within --drain-timeout) and then ends:
        // the acks of what it stored meanwhile still go out.
        while self.acks.waiting() && durable.is_some() && stored(&mut durable).await.is_ok() {
            self.acks.release(self.handed.get());
        }
        debug!("sequencer stopped");
    }

    /// Sequences, encodes and hands on one batch (waiting while a shard queue is full).
    pub async fn sequence(&mut self, items: Vec<Item>) {
        self.sequence_published(vec![Published {
            items,
            publisher: None,
            history: None,
        }])
        .await;
    }

    /// Sequences the hand-offs in order as one batch to the shards, each trade followed by
    /// the bars it closed, telling each publisher what was refused; the hand-offs (and with
    /// them the publishers' senders) are dropped once the batch is with every shard.
    async fn sequence_published(&mut self, mut published: Vec<Published>) {
        let now = Instant::now();
        let mut batch = Vec::new();
        let mut duplicates = vec![0; published.len()];
        for (h, hand_off) in published.iter_mut().enumerate() {
            if let Some(epoch) = hand_off.history {
                self.hand_on(std::mem::take(&mut batch)).await;
                self.new_history(epoch).await;
            }
            let tagged = hand_off.publisher.as_ref().and_then(|p| p.tagged.as_ref());
            for (i, item) in hand_off.items.drain(..).enumerate() {
                let tag = tagged.map(|t| Tag {
                    publisher: t.publisher.clone(),
                    pseq: t.pseqs[i],
                });
                let reason = match tag.as_ref().map(|tag| self.acks.admit(tag)) {
                    Some(Admit::Duplicate) => {
                        duplicates[h] += 1;
                        metrics::add(&self.metrics.ingest_duplicates, 1);
                        continue;
                    }
                    Some(Admit::Full) => {
                        self.metrics.count_error(ErrorCode::PublisherLimit);
                        Some(Refusal::PublisherLimit {
                            limit: crate::limits::MAX_PUBLISHERS,
                        })
                    }
                    Some(Admit::New) | None => None,
                };
                let start = batch.len();
                let reason = match (reason, item) {
                    (Some(reason), _) => reason,
                    (None, Item::Book(update)) => {
                        match self.sequence_book(update, now, &mut batch) {
                            Ok(()) => {
                                for frames in tag.iter().flat_map(|_| &batch[start..]) {
                                    frames.set_tag(tag.clone().expect("iterated only if some"));
                                }
                                continue;
                            }
                            Err(refusal) => refusal,
                        }
                    }
                    (None, other) => match self.prepare(other, now) {
                        Ok(frames) => {
                            if let Some(frames) = frames {
                                if let Some(tag) = tag {
                                    frames.set_tag(tag);
                                }
                                self.push_sourced(frames, now, &mut batch);
                            }
                            continue;
                        }
                        Err(key) => Refusal::SymbolLimit {
                            key: key.as_str().to_owned(),
                            limit: self.max_symbols,
                        },
                    },
                };
                if let Some(publisher) = &hand_off.publisher {
                    let refused = Refused {
                        line: publisher.lines.get(i).copied().unwrap_or_default(),
                        reason,
                    };
                    // The publisher may have gone; the refusal is counted anyway.
                    let _ = publisher.answers.send(Answer::Refused(refused));
                }
            }
        }
        self.hand_on(batch).await;
        for (hand_off, duplicates) in published.iter().zip(duplicates) {
            let Some(publisher) = &hand_off.publisher else {
                continue;
            };
            if let Some(tagged) = &publisher.tagged {
                let handed = self.handed.get();
                self.acks
                    .settle(&publisher.answers, tagged.through, duplicates, handed);
            }
        }
        drop(published);
    }

    /// Applies a book update (a publisher's, or the stream's on an edge) to its book; why a
    /// publisher's is refused is returned: what its book says, or the table's limit for a
    /// new book, as a tick of a new symbol is told.
    fn sequence_book(
        &mut self,
        update: BookUpdate,
        now: Instant,
        out: &mut Vec<Arc<Frames>>,
    ) -> Result<(), Refusal> {
        let full = |s: &Self| s.symbols.len() + s.books.len() >= s.max_symbols;
        if full(self) {
            self.sweep(now);
        }
        let room = !full(self);
        if self.follow {
            self.books.follow(update, room, out);
            Ok(())
        } else {
            self.books
                .sequence(update, room, now, out)
                .map_err(|error| match error {
                    BookError::NoRoom(key) => Refusal::SymbolLimit {
                        key,
                        limit: self.max_symbols,
                    },
                    other => Refusal::Book(other),
                })
        }
    }

    /// Hands every shard (and the other consumers) the same batch.
    async fn hand_on(&self, items: Vec<Arc<Frames>>) {
        if items.is_empty() {
            return;
        }
        let batch: Batch = items.into();
        self.handed.set(self.handed.get() + 1);
        for shard in &self.shards {
            shard.deliver(batch.clone()).await;
        }
        // What came in: not what the relay computed (bars, tickers, a book's views and
        // checkpoints); a book update counts once (its full-depth message).
        let derived = |item: &Item| {
            item.is_derived()
                || matches!(item, Item::Book(b) if b.channel.depth() != Depth::Full || !b.for_clients())
        };
        let came_in = batch.iter().filter(|f| !derived(f.item())).count();
        metrics::add(&self.metrics.ticks_in, came_in as u64);
    }
}

/// Resolves when the stream has stored more batches; never without a stream.
async fn stored(
    durable: &mut Option<tokio::sync::watch::Receiver<u64>>,
) -> Result<(), tokio::sync::watch::error::RecvError> {
    match durable {
        Some(durable) => durable.changed().await,
        None => std::future::pending().await,
    }
}

/// Least time between two eviction sweeps.
pub const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// Most ticks coalesced into one shard hand-off.
const MAX_BATCH: usize = 4096;
/// How often the timer looks for book checkpoints that are due (`--book-checkpoint-interval`
/// is met within this).
const CHECKPOINT_CHECK: Duration = Duration::from_secs(1);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::sequenced;

    fn item(symbol: &str, seq: u64) -> Item {
        Item::Tick(sequenced(symbol, seq))
    }

    fn sequencer() -> (Sequencer, TickQueue, Arc<Metrics>) {
        sequencer_of(100)
    }

    /// A sequencer whose table holds `max_symbols` keys, one shard queue, its metrics.
    fn sequencer_of(max_symbols: usize) -> (Sequencer, TickQueue, Arc<Metrics>) {
        let (sender, queue) = tick_queue(16);
        let metrics = Arc::new(Metrics::new(1));
        let interest = Arc::new(Interest::default());
        let sequencer = Sequencer::new(vec![sender], interest, metrics.clone(), max_symbols);
        (sequencer, queue, metrics)
    }

    fn seqs(queue: &TickQueue) -> Vec<(String, u64)> {
        queue
            .drain()
            .flat_map(|batch| batch.to_vec())
            .map(|f| (f.key().as_str().to_owned(), f.seq().0))
            .collect()
    }

    /// Sequences `items` as one hand-off of an untagged publisher whose lines are `lines`,
    /// and returns every answer it got, as (line, reason): the channel ends once the
    /// hand-off is sequenced and dropped.
    async fn refusals(
        sequencer: &mut Sequencer,
        items: Vec<Item>,
        lines: Vec<u64>,
    ) -> Vec<(u64, Refusal)> {
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
        let publisher = crate::ingest::Publisher::new(lines, answers);
        sequencer
            .sequence_published(vec![Published {
                history: None,
                items,
                publisher: Some(publisher),
            }])
            .await;
        let mut out = Vec::new();
        while let Some(answer) = answered.recv().await {
            let Answer::Refused(refused) = answer else {
                panic!("an untagged hand-off is not acked: {answer:?}")
            };
            out.push((refused.line, refused.reason));
        }
        out
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
    async fn scaled_out_an_ack_goes_out_once_the_stream_stores_its_batch() {
        let (sender, queue) = tick_queue(16);
        let metrics = Arc::new(Metrics::new(1));
        let interest = Arc::new(Interest::default());
        let (stored, durable) = tokio::sync::watch::channel(0);
        let sequencer = Sequencer::new(vec![sender], interest, metrics, 100).durable_after(durable);
        let (inbox, received) = crate::ingest::Inbox::bounded(4);
        let shutdown = Shutdown::new();
        let drive = async {
            let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
            let mut publisher = crate::ingest::Publisher::new(vec![2], answers);
            publisher.tagged = Some(crate::ingest::Tagged {
                publisher: "p".into(),
                pseqs: vec![1],
                through: 1,
            });
            inbox
                .publish_from(vec![item("A", 0)], publisher)
                .await
                .expect("the sequencer runs");
            let mut handed = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while handed.is_empty() {
                assert!(tokio::time::Instant::now() < deadline, "nothing handed on");
                tokio::time::sleep(Duration::from_millis(5)).await;
                handed = seqs(&queue);
            }
            // Sequenced and handed on, not yet stored: no ack.
            tokio::time::sleep(Duration::from_millis(20)).await;
            assert!(
                answered.try_recv().is_err(),
                "acked before the stream stored it"
            );
            stored.send(1).expect("the sequencer watches");
            let ack = tokio::time::timeout(Duration::from_secs(10), answered.recv()).await;
            let want = Answer::Stored {
                pseq: 1,
                duplicates: 0,
            };
            assert_eq!(ack.expect("the ack comes"), Some(want));
            shutdown.trigger();
        };
        tokio::join!(sequencer.run(received, shutdown.clone()), drive);
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
    /// Sequences `pseqs` of publisher `p` (one tick of `A` each) as one hand-off, and
    /// returns its ack.
    async fn tagged(sequencer: &mut Sequencer, pseqs: &[u64]) -> Answer {
        let (answers, mut answered) = tokio::sync::mpsc::unbounded_channel();
        let lines = (1..=pseqs.len() as u64).collect();
        let mut publisher = crate::ingest::Publisher::new(lines, answers);
        publisher.tagged = Some(crate::ingest::Tagged {
            publisher: "p".into(),
            pseqs: pseqs.to_vec(),
            through: *pseqs.last().expect("some"),
        });
        let items = pseqs.iter().map(|_| item("A", 0)).collect();
        sequencer
            .sequence_published(vec![Published {
                history: None,
                items,
                publisher: Some(publisher),
            }])
            .await;
        answered.recv().await.expect("an answer")
    }

    #[tokio::test]
    async fn a_resend_is_acked_with_its_duplicates_counted_and_is_never_sequenced_again() {
        let (mut sequencer, queue, metrics) = sequencer();
        let ack = tagged(&mut sequencer, &[1, 2, 3]).await;
        assert_eq!(
            ack,
            Answer::Stored {
                pseq: 3,
                duplicates: 0
            }
        );
        let ack = tagged(&mut sequencer, &[2, 3, 4]).await;
        assert_eq!(
            ack,
            Answer::Stored {
                pseq: 4,
                duplicates: 2
            }
        );
        let seqs: Vec<u64> = seqs(&queue).into_iter().map(|(_, seq)| seq).collect();
        assert_eq!(seqs, [1, 2, 3, 4], "pseqs 2 and 3 once");
        assert_eq!(
            metrics
                .ingest_duplicates
                .load(std::sync::atomic::Ordering::Relaxed),
            2
        );
        assert_eq!(
            metrics.ticks_in.load(std::sync::atomic::Ordering::Relaxed),
            4
        );
    }

    #[tokio::test]
    async fn a_taken_over_history_knows_what_each_publisher_had_stored() {
        let (mut sequencer, queue, _) = sequencer();
        sequencer.remember_publishers([(Arc::from("p"), 5)]);
        let ack = tagged(&mut sequencer, &[4, 5, 6]).await;
        assert_eq!(
            ack,
            Answer::Stored {
                pseq: 6,
                duplicates: 2
            }
        );
        assert_eq!(seqs(&queue).len(), 1, "only pseq 6 is new");
    }

    /// Hands-offs of `sizes` items each, all waiting before the sequencer runs: the sizes
    /// of the batches it hands the shard (waiting up to 10 s for all of them).
    async fn coalesced(sizes: &[usize]) -> Vec<usize> {
        let (sequencer, queue, _) = sequencer();
        let (inbox, received) = crate::ingest::Inbox::bounded(sizes.len());
        for (i, size) in sizes.iter().enumerate() {
            let symbol = ["A", "B", "C"][i % 3];
            let items = (0..*size).map(|_| item(symbol, 0)).collect();
            inbox.publish_items(items).await.expect("room");
        }
        let shutdown = Shutdown::new();
        let total: usize = sizes.iter().sum();
        let drive = async {
            let mut handed = Vec::new();
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            while handed.iter().sum::<usize>() < total {
                assert!(tokio::time::Instant::now() < deadline, "not all handed on");
                tokio::time::sleep(Duration::from_millis(5)).await;
                handed.extend(queue.drain().map(|batch| batch.len()));
            }
            shutdown.trigger();
            handed
        };
        tokio::join!(sequencer.run(received, shutdown.clone()), drive).1
    }

    #[tokio::test]
    async fn hand_offs_waiting_together_reach_the_shards_as_one_batch() {
        assert_eq!(
            coalesced(&[1, 1, 1]).await,
            [3],
            "one hand-off per shard for all three"
        );
    }

    #[tokio::test]
    async fn a_coalesced_batch_stops_at_its_size_limit() {
        let half = MAX_BATCH / 2;
        let sizes = coalesced(&[half, half, half]).await;
        assert_eq!(sizes, [MAX_BATCH, half], "two hand-offs fill one batch");
    }

    #[tokio::test]
    async fn a_coalesced_batch_counts_every_hand_offs_items() {
        // Under the limit after 2,001 items, so the 3,000 join them; then the limit is past.
        let sizes = coalesced(&[1, 1000, 1000, 3000, 10]).await;
        assert_eq!(sizes, [5001, 10]);
    }

    #[tokio::test]
    async fn a_restarted_sequencer_goes_on_with_the_books_it_restores() {
        let book = |line: &str| {
            Item::Book(crate::book::input::parse_json(line.as_bytes()).expect("a book update"))
        };
        let (mut first, queue, _) = sequencer();
        let snapshot = book(
            r#"{"type":"book","symbol":"BTC-USD","snapshot":true,"bids":[["100","1"]],"asks":[["101","2"]],"ts_ns":7}"#,
        );
        assert!(
            refusals(&mut first, vec![snapshot], vec![1])
                .await
                .is_empty()
        );
        // What the stream holds of it: the full book's message.
        let stored: Vec<BookUpdate> = queue
            .drain()
            .flat_map(|batch| batch.to_vec())
            .filter_map(|f| match f.item() {
                Item::Book(b) if b.channel.depth() == Depth::Full => Some(b.clone()),
                _ => None,
            })
            .collect();
        assert_eq!(stored.len(), 1);
        let (mut restarted, queue, _) = sequencer();
        restarted.restore_books(stored);
        let delta = book(
            r#"{"type":"book","symbol":"BTC-USD","snapshot":false,"bids":[["100","3"]],"asks":[],"ts_ns":8}"#,
        );
        let answers = refusals(&mut restarted, vec![delta], vec![1]).await;
        assert!(answers.is_empty(), "the delta finds its book: {answers:?}");
        let handed = seqs(&queue);
        assert!(
            handed
                .iter()
                .any(|(key, seq)| key == "book:BTC-USD" && *seq == 2),
            "seqs go on from the restored book: {handed:?}"
        );
    }

    #[tokio::test]
    async fn a_publishers_book_updates_are_applied_and_the_one_its_book_refuses_is_answered() {
        let (mut sequencer, queue, metrics) = sequencer();
        let book = |line: &str| {
            Item::Book(crate::book::input::parse_json(line.as_bytes()).expect("a book update"))
        };
        let snapshot = book(
            r#"{"type":"book","symbol":"BTC-USD","snapshot":true,"bids":[["100","1"]],"asks":[["101","2"]],"ts_ns":7}"#,
        );
        let orphan = book(
            r#"{"type":"book","symbol":"ETH-USD","snapshot":false,"bids":[["10","1"]],"asks":[],"ts_ns":8}"#,
        );
        let answers = refusals(
            &mut sequencer,
            vec![snapshot, orphan, item("A", 0)],
            vec![1, 2, 3],
        )
        .await;
        let handed = seqs(&queue);
        assert!(
            handed
                .iter()
                .any(|(key, seq)| key.starts_with("book:BTC-USD") && *seq == 1),
            "the snapshot's book messages are handed on: {handed:?}"
        );
        assert!(
            !handed.iter().any(|(key, _)| key.contains("ETH-USD")),
            "nothing of the refused delta: {handed:?}"
        );
        assert_eq!(
            handed.last(),
            Some(&("A".to_owned(), 1)),
            "and the tick after them"
        );
        assert_eq!(
            answers,
            [(2, Refusal::Book(BookError::NoSnapshot("ETH-USD".into())))],
            "the delta without a snapshot is refused, and nothing else"
        );
        // What came in: the snapshot once (not each depth's view of it) and the tick.
        let came_in = metrics.ticks_in.load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(came_in, 2);
    }

    #[tokio::test]
    async fn a_new_book_over_the_symbol_limit_is_refused_to_its_publisher_as_a_new_symbol_is() {
        let (mut sequencer, queue, metrics) = sequencer_of(2);
        sequencer.sequence(vec![item("A", 0), item("B", 0)]).await;
        let snapshot = crate::book::input::parse_json(
            br#"{"type":"book","symbol":"BTC-USD","snapshot":true,"bids":[["100","1"]],"asks":[["101","2"]],"ts_ns":7}"#,
        )
        .expect("a book update");
        let answers = refusals(&mut sequencer, vec![Item::Book(snapshot)], vec![5]).await;
        let limit = Refusal::SymbolLimit {
            key: "BTC-USD".into(),
            limit: 2,
        };
        assert_eq!(answers, [(5, limit)], "refused, not dropped in silence");
        let handed = seqs(&queue);
        assert!(
            !handed.iter().any(|(key, _)| key.contains("BTC-USD")),
            "{handed:?}"
        );
        let limit = metrics
            .errors()
            .find(|(code, _)| *code == ErrorCode::SymbolLimit);
        assert_eq!(limit, Some((ErrorCode::SymbolLimit, 1)), "counted once");
    }

    #[tokio::test]
    async fn a_bar_a_trade_closes_is_handed_on_right_after_that_trade() {
        let (sequencer, queue, _) = sequencer();
        let mut sequencer = sequencer.deriving(&crate::config::Config::for_tests().derived);
        let now = crate::tick::now_ns();
        // The second trade is in the next second: it closes the first 1 s bar.
        sequencer
            .sequence(vec![trade(now), trade(now + 1_000_000_000)])
            .await;
        let handed = seqs(&queue);
        let keys: Vec<&str> = handed.iter().map(|(key, _)| key.as_str()).collect();
        // (Longer bars close too when the second was a minute's last.)
        assert_eq!(
            keys[..keys.len().min(3)],
            ["X", "X", "bars:1s:X"],
            "the closed bar in the same hand-off, after the trade that closed it"
        );
        assert!(
            keys[2..].iter().all(|key| key.starts_with("bars:")),
            "{keys:?}"
        );
    }

    /// A trade of X at 10.0, size 1, stamped and received at `ts_ns`.
    fn trade(ts_ns: u64) -> Item {
        let mut tick = crate::tick::Tick::try_from(crate::tick::RawTick {
            symbol: "X".into(),
            price: Some(10.0),
            size: Some(1.0),
            ts_ns,
            ..Default::default()
        })
        .expect("a trade");
        tick.recv_ns = ts_ns;
        Item::Tick(tick)
    }

    #[tokio::test]
    async fn the_timer_hands_on_the_open_bars_and_ticker_a_trade_changed() {
        let (sequencer, queue, _) = sequencer();
        let mut sequencer = sequencer.deriving(&crate::config::Config::for_tests().derived);
        sequencer.sequence(vec![trade(crate::tick::now_ns())]).await;
        assert_eq!(
            seqs(&queue).len(),
            1,
            "the trade alone: its bars wait for the timer"
        );
        sequencer.timed().await;
        let handed = seqs(&queue);
        let keys: Vec<&str> = handed.iter().map(|(key, _)| key.as_str()).collect();
        assert!(keys.contains(&"bars:1s:X"), "{keys:?}");
        assert!(keys.contains(&"ticker:X"), "{keys:?}");
    }

    #[tokio::test]
    async fn a_restarted_sequencer_hands_on_its_restored_bars_and_ticker_before_any_tick() {
        let (sequencer, queue, _) = sequencer();
        let mut sequencer = sequencer.deriving(&crate::config::Config::for_tests().derived);
        // The stream held two trades of X (a moment ago): the bars and the ticker continue
        // from them, and say where they stand before anything new comes in.
        let now = crate::tick::now_ns();
        let ticks = [(1, 10.0), (2, 12.0)].map(|(seq, price)| {
            let mut tick = crate::tick::Tick::try_from(crate::tick::RawTick {
                symbol: "X".into(),
                price: Some(price),
                size: Some(1.0),
                ts_ns: now,
                ..Default::default()
            })
            .expect("a trade");
            (tick.seq, tick.recv_ns) = (Seq(seq), now);
            tick
        });
        sequencer.restore(derived::Restored {
            ticks: ticks.to_vec(),
            ..Default::default()
        });
        let (_inbox, received) = crate::ingest::Inbox::bounded(4);
        let shutdown = Shutdown::new();
        let watch = async {
            let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
            let mut handed = Vec::new();
            while !handed
                .iter()
                .any(|item: &Item| matches!(item, Item::Ticker(_)))
            {
                assert!(
                    tokio::time::Instant::now() < deadline,
                    "nothing restored: {handed:?}"
                );
                tokio::time::sleep(Duration::from_millis(5)).await;
                handed.extend(
                    queue
                        .drain()
                        .flat_map(|batch| batch.to_vec())
                        .map(|f| f.item().clone()),
                );
            }
            shutdown.trigger();
            handed
        };
        let ((), handed) = tokio::join!(sequencer.run(received, shutdown.clone()), watch);
        let ticker = handed.iter().find_map(|item| match item {
            Item::Ticker(t) => Some(t.stats),
            _ => None,
        });
        let stats = ticker.expect("a ticker");
        assert_eq!((stats.open, stats.last, stats.volume), (10.0, 12.0, 2.0));
        let minute = handed.iter().find_map(|item| match item {
            Item::Bar(b) if b.channel.as_str() == "bars:1m:X" => Some(b.bar),
            _ => None,
        });
        assert_eq!(
            minute.map(|b| b.trades),
            Some(2),
            "the open minute holds both trades"
        );
    }

    #[tokio::test]
    async fn a_full_table_evicts_idle_unsubscribed_keys_and_new_keys_start_above_their_seqs() {
        let (sequencer, queue, metrics) = sequencer_of(2);
        let mut sequencer = sequencer.evicting_after(Duration::ZERO);
        let interest = sequencer.interest.clone();
        let key = |name| Key::Symbol(crate::tick::Symbol::parse(name).unwrap());
        interest.add(Some(&key("B")), crate::encode::Encoding::Json);
        sequencer
            .sequence(vec![item("A", 0), item("A", 0), item("B", 0)])
            .await;
        // The table is full: C evicts A (idle, nobody subscribes), never B (subscribed).
        sequencer.sequence(vec![item("C", 0)]).await;
        assert!(!interest.holds(&key("A")) && interest.holds(&key("B")));
        assert_eq!(interest.evictions(), 1);
        // Full again, and the next sweep is a second away: D is refused, its publisher told.
        let answers = refusals(&mut sequencer, vec![item("C", 0), item("D", 0)], vec![7, 8]).await;
        let limit = Refusal::SymbolLimit {
            key: "D".into(),
            limit: 2,
        };
        assert_eq!(answers, [(8, limit)], "D is refused, and nothing else");
        let limit = metrics
            .errors()
            .find(|(code, _)| *code == ErrorCode::SymbolLimit);
        assert_eq!(limit, Some((ErrorCode::SymbolLimit, 1)));
        // A comes back (a sweep is allowed again once SWEEP_EVERY has passed; it evicts C at
        // 5) above every evicted seq: a client holding A:2 is never handed A:3 of another run.
        sequencer.swept = None;
        sequencer.sequence(vec![item("A", 0)]).await;
        let want: Vec<(String, u64)> = [("A", 1), ("A", 2), ("B", 1), ("C", 4), ("C", 5), ("A", 7)]
            .iter()
            .map(|(k, s)| ((*k).into(), *s))
            .collect();
        assert_eq!(seqs(&queue), want);
    }
}
