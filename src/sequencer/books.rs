//! [`Books`]: the sequencer's order books, one per symbol, and the messages each applied
//! update becomes.
//!
//! Receives publishers' book updates (seq 0) from [`Sequencer::prepare`](super::Sequencer),
//! applies each to its book ([`Book::apply`]: a delta before any snapshot, a crossed result
//! or a side past `--book-max-levels` is refused, counted and returned, for the sequencer to
//! answer its publisher like any refused item, and the book stays as it was), gives it the
//! book's next seq, and hands on one [`Frames`] per view: `book:SYMBOL:DEPTH` for each
//! `--book-depths` depth (the changes within the top DEPTH, [`views::diff`]) and
//! `book:SYMBOL` (every change), each with its own checksum and the same seq. With a stream
//! to feed (`--nats`), a [`BookKind::Checkpoint`] of the whole book follows every
//! `--book-checkpoint-updates` updates or `--book-checkpoint-interval`.
//!
//! An edge's (or a restarting sequencer's) books follow the stream instead
//! ([`Books::follow`]): they take the seqs as published, apply each full-depth update,
//! check the checksum it carries, and derive the same views. A missed update leaves the book
//! broken (nothing is sent for it) until a whole book (a snapshot or checkpoint) arrives.

use std::collections::HashMap;
use std::collections::hash_map::Entry;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tracing::{debug, warn};

mod messages;
mod state;

use super::interest::Interest;
use crate::book::{Book, BookChannel, BookError, BookKind, BookUpdate, Changes, Depth, Level};
use crate::config::BookConfig;
use crate::encode::Frames;
use crate::error::ErrorCode;
use crate::event::{Channel, Key};
use crate::metrics::{self, Metrics};
use crate::tick::{Seq, Symbol};
use messages::{emit_deltas, emit_snapshots, push_checkpoint, remember_top};
use state::{BookState, View};

/// Every book the sequencer keeps, and how their updates become messages.
#[derive(Debug)]
pub struct Books {
    books: HashMap<Symbol, BookState>,
    /// `--book-depths`, ascending.
    depths: Vec<u32>,
    max_levels: usize,
    /// When to checkpoint (`None`: no stream to feed).
    cadence: Option<Cadence>,
    interest: Arc<Interest>,
    metrics: Arc<Metrics>,
    /// The top levels before an update, per side (reused: no allocation per update).
    before: (Vec<Level>, Vec<Level>),
}

/// How often a book's whole state goes into the stream.
#[derive(Debug, Clone, Copy)]
pub struct Cadence {
    /// After this many updates.
    pub updates: u32,
    /// Or, for a book that changed, after this long.
    pub interval: Duration,
}

impl Books {
    /// No books yet; views at `config`'s depths.
    pub fn new(config: &BookConfig, interest: Arc<Interest>, metrics: Arc<Metrics>) -> Self {
        let mut depths = config.book_depths.clone();
        depths.sort_unstable();
        depths.dedup();
        Self {
            books: HashMap::new(),
            depths,
            max_levels: config.book_max_levels,
            cadence: None,
            interest,
            metrics,
            before: (Vec::new(), Vec::new()),
        }
    }

    /// Checkpoints every book at `cadence` (a sequencer feeding the stream).
    pub fn checkpoint(&mut self, cadence: Cadence) {
        self.cadence = Some(cadence);
    }

    /// Drops every book (an edge's stream started another history: its books arrive anew).
    pub fn forget(&mut self) {
        self.books.clear();
    }

    /// How many books there are.
    pub fn len(&self) -> usize {
        self.books.len()
    }

    /// Whether there is none.
    pub fn is_empty(&self) -> bool {
        self.books.is_empty()
    }

    /// Applies a publisher's update and appends its messages to `out`; a refused one is
    /// counted, changes nothing and is returned (for its publisher). `room`: a new book may
    /// be started (the `--max-symbols` limit).
    pub fn sequence(
        &mut self,
        update: BookUpdate,
        room: bool,
        now: Instant,
        out: &mut Vec<Arc<Frames>>,
    ) -> Result<(), BookError> {
        let result = match update.kind {
            BookKind::Snapshot => self.lead_snapshot(update, room, now, out),
            BookKind::Delta => self.lead_delta(update, now, out),
            // Publishers cannot send one (no parser makes it); nothing to apply.
            BookKind::Checkpoint => Ok(()),
        };
        if let Err(error) = &result {
            self.metrics.count_error(error.code());
            debug!(code = error.code().as_str(), %error, "book update refused");
        }
        result
    }

    /// Applies an update read from the stream (seq as published) and appends its messages.
    pub fn follow(&mut self, update: BookUpdate, room: bool, out: &mut Vec<Arc<Frames>>) {
        let symbol = update.channel.symbol().clone();
        let Some(state) = self.books.get_mut(&symbol) else {
            // Nothing to apply a delta to until a whole book comes.
            if update.kind != BookKind::Delta {
                self.follow_whole(symbol, update, room, out);
            }
            return;
        };
        match update.kind {
            // A steady book keeps the newest checkpoint ahead of it for a gap to come (its
            // updates and its checkpoints are read by two consumers, in no common order).
            BookKind::Checkpoint if !state.broken => {
                if update.seq > state.seq {
                    state.checkpoint = Some(update);
                }
            }
            BookKind::Snapshot | BookKind::Checkpoint if state.broken || update.seq > state.seq => {
                self.follow_whole(symbol, update, room, out);
            }
            BookKind::Snapshot | BookKind::Checkpoint => {
                metrics::add(&self.metrics.nats.duplicates, 1);
            }
            BookKind::Delta if !state.broken && update.seq <= state.seq => {
                metrics::add(&self.metrics.nats.duplicates, 1);
            }
            BookKind::Delta if state.broken || update.seq > state.seq.next() => {
                // A checkpoint kept from before covers the seqs missing: the book restarts
                // from it and the update applies (or is older) as usual.
                let covers = |c: &BookUpdate| c.seq.next() >= update.seq;
                if let Some(checkpoint) = state.checkpoint.take().filter(covers) {
                    self.follow_whole(symbol, checkpoint, room, out);
                    return self.follow(update, room, out);
                }
                // Kept for the whole book to come: it may arrive after updates it precedes.
                if state.behind.len() == MAX_BEHIND {
                    state.behind.remove(0);
                }
                if !state.broken {
                    metrics::add(&self.metrics.nats.gaps, update.seq.0 - state.seq.next().0);
                    warn!(
                        symbol = symbol.as_str(),
                        from = state.seq.next().0,
                        to = update.seq.0 - 1,
                        "book updates missing from the stream; the book waits for a checkpoint"
                    );
                    state.broken = true;
                }
                state.behind.push(update);
            }
            BookKind::Delta => self.follow_delta(symbol, update, out),
        }
    }

    /// Appends a checkpoint of every book that changed since its last and whose interval
    /// has passed (the sequencer's timer).
    pub fn due_checkpoints(&mut self, now: Instant, out: &mut Vec<Arc<Frames>>) {
        let Some(cadence) = self.cadence else { return };
        for state in self.books.values_mut() {
            if state.since_checkpoint > 0
                && now.duration_since(state.checkpointed_at) >= cadence.interval
            {
                push_checkpoint(state, now, out);
            }
        }
    }

    /// Rebuilds books from the stream (a restarted sequencer: each book's newest checkpoint
    /// as a snapshot, then the updates after it) and appends a checkpoint of each, so the
    /// shards' copies start from it.
    pub fn restore(&mut self, updates: Vec<BookUpdate>, out: &mut Vec<Arc<Frames>>) {
        let mut ignored = Vec::new();
        for update in updates {
            self.follow(update, true, &mut ignored);
        }
        let now = Instant::now();
        for state in self.books.values_mut().filter(|s| !s.broken) {
            push_checkpoint(state, now, out);
        }
    }

    fn lead_snapshot(
        &mut self,
        update: BookUpdate,
        room: bool,
        now: Instant,
        out: &mut Vec<Arc<Frames>>,
    ) -> Result<(), BookError> {
        let book = Book::from_levels(&update.bids, &update.asks, self.max_levels)?;
        let symbol = update.channel.symbol().clone();
        // A snapshot is rare beside deltas: a refcount for the borrow is nothing.
        let interest = self.interest.clone();
        let Some(state) = self.state(symbol, room, now) else {
            return Ok(());
        };
        state.book = book;
        state.seq = state.seq.next();
        emit_snapshots(&interest, state, &update, out);
        self.count_update(update.channel.symbol(), now, out);
        Ok(())
    }

    fn lead_delta(
        &mut self,
        update: BookUpdate,
        now: Instant,
        out: &mut Vec<Arc<Frames>>,
    ) -> Result<(), BookError> {
        let symbol = update.channel.symbol();
        let state = self
            .books
            .get_mut(symbol)
            .ok_or_else(|| BookError::NoSnapshot(symbol.as_str().to_owned()))?;
        let deepest = self.depths.last().map_or(0, |d| *d as usize);
        remember_top(&state.book, deepest, &mut self.before);
        let changes = state
            .book
            .apply(&update.bids, &update.asks, self.max_levels)?;
        state.seq = state.seq.next();
        emit_deltas(
            &self.interest,
            state,
            &changes,
            (&self.before, deepest),
            &update,
            out,
        );
        self.count_update(update.channel.symbol(), now, out);
        Ok(())
    }

    fn follow_whole(
        &mut self,
        symbol: Symbol,
        update: BookUpdate,
        room: bool,
        out: &mut Vec<Arc<Frames>>,
    ) {
        let Ok(book) = Book::from_levels(&update.bids, &update.asks, usize::MAX) else {
            return self.bad_stream_book(&symbol, "a crossed book");
        };
        if book.checksum(usize::MAX) != update.checksum {
            return self.bad_stream_book(&symbol, "a checksum that is not its levels'");
        }
        let interest = self.interest.clone();
        let Some(state) = self.state(symbol, room, Instant::now()) else {
            return;
        };
        state.book = book;
        state.seq = update.seq;
        state.broken = false;
        state.checkpoint = None;
        emit_snapshots(&interest, state, &update, out);
        let mut behind = std::mem::take(&mut state.behind);
        behind.sort_by_key(|u| u.seq);
        for update in behind {
            self.follow(update, room, out);
        }
    }

    fn follow_delta(&mut self, symbol: Symbol, update: BookUpdate, out: &mut Vec<Arc<Frames>>) {
        let deepest = self.depths.last().map_or(0, |d| *d as usize);
        let state = self.books.get_mut(&symbol).expect("the caller found it");
        remember_top(&state.book, deepest, &mut self.before);
        state.book.set_levels(&update.bids, &update.asks);
        state.seq = update.seq;
        if state.book.checksum(usize::MAX) != update.checksum {
            state.broken = true;
            return self
                .bad_stream_book(&symbol, "a checksum that does not match the rebuilt book");
        }
        let changes = Changes {
            bids: update.bids.clone(),
            asks: update.asks.clone(),
        };
        emit_deltas(
            &self.interest,
            state,
            &changes,
            (&self.before, deepest),
            &update,
            out,
        );
    }

    fn bad_stream_book(&self, symbol: &Symbol, what: &str) {
        self.metrics.count_error(ErrorCode::BadNatsMessage);
        warn!(
            symbol = symbol.as_str(),
            "book message from the stream with {what}; skipped"
        );
    }

    /// The state of `symbol`'s book, started empty if `room` allows.
    fn state(&mut self, symbol: Symbol, room: bool, now: Instant) -> Option<&mut BookState> {
        match self.books.entry(symbol) {
            Entry::Occupied(slot) => Some(slot.into_mut()),
            Entry::Vacant(slot) if room => {
                let views = self
                    .depths
                    .iter()
                    .map(|d| Depth::Top(*d))
                    .chain([Depth::Full])
                    .map(|depth| {
                        let channel = BookChannel::new(slot.key().clone(), depth);
                        let key = Key::Channel(Channel::of_book(&channel));
                        View {
                            interest: self.interest.entry(&key),
                            channel,
                        }
                    })
                    .collect();
                Some(slot.insert(BookState {
                    book: Book::new(),
                    seq: Seq(0),
                    broken: false,
                    views,
                    since_checkpoint: 0,
                    checkpointed_at: now,
                    checkpoint: None,
                    behind: Vec::new(),
                }))
            }
            Entry::Vacant(slot) => {
                self.metrics.count_error(ErrorCode::SymbolLimit);
                warn!(
                    symbol = slot.key().as_str(),
                    "book of a new symbol refused: --max-symbols reached"
                );
                None
            }
        }
    }

    /// Counts an applied update towards the next checkpoint, and appends it when due.
    fn count_update(&mut self, symbol: &Symbol, now: Instant, out: &mut Vec<Arc<Frames>>) {
        let Some(cadence) = self.cadence else { return };
        let state = self.books.get_mut(symbol).expect("just updated");
        state.since_checkpoint += 1;
        if state.since_checkpoint >= cadence.updates {
            push_checkpoint(state, now, out);
        }
    }
}

/// Most updates a broken book keeps for the whole book to come (a checkpoint comes every
/// `--book-checkpoint-updates`, at most `--replay-depth`, which is rarely above this).
const MAX_BEHIND: usize = 4096;
