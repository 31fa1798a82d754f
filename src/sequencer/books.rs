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

    /// Whether `key` is a view (any depth) of a book the sequencer holds.
    pub fn holds_view(&self, key: &Key) -> bool {
        let Key::Channel(channel) = key else {
            return false;
        };
        crate::book::channel::symbol_of(channel.as_str())
            .and_then(|symbol| Symbol::parse(symbol).ok())
            .is_some_and(|symbol| self.books.contains_key(&symbol))
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
        let Some(state) = self.state(symbol.clone(), room, now) else {
            return Err(BookError::NoRoom(symbol.as_str().to_owned()));
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
        let Some(state) = self.state(symbol.clone(), room, Instant::now()) else {
            self.metrics.count_error(ErrorCode::SymbolLimit);
            warn!(
                symbol = symbol.as_str(),
                "book of a new symbol not followed: --max-symbols reached"
            );
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
            Entry::Vacant(_) => None,
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

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::book::input::level;
    use crate::event::Item;

    /// The one `--book-depths` depth of these tests, and `--book-max-levels`.
    const DEPTH: u32 = 2;
    const MAX_LEVELS: usize = 4;
    const HOUR: Duration = Duration::from_secs(3600);

    fn books(metrics: &Arc<Metrics>) -> Books {
        let config = BookConfig {
            book_depths: vec![DEPTH],
            book_max_levels: MAX_LEVELS,
            ..BookConfig::default()
        };
        Books::new(&config, Arc::new(Interest::default()), metrics.clone())
    }

    fn metrics() -> Arc<Metrics> {
        Arc::new(Metrics::new(1))
    }

    fn errors(metrics: &Metrics, code: ErrorCode) -> u64 {
        metrics
            .errors()
            .find(|(c, _)| *c == code)
            .map_or(0, |(_, n)| n)
    }

    fn levels(pairs: &[(&str, &str)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|(price, size)| level(price, size).expect("a valid level"))
            .collect()
    }

    fn symbol(name: &str) -> Symbol {
        Symbol::parse(name).expect("a valid symbol")
    }

    /// A publisher's update of `name`'s book.
    fn input(
        name: &str,
        kind: BookKind,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
    ) -> BookUpdate {
        let channel = BookChannel::full(symbol(name));
        BookUpdate::input(channel, kind, levels(bids), levels(asks), 7)
    }

    fn snapshot(name: &str, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> BookUpdate {
        input(name, BookKind::Snapshot, bids, asks)
    }

    fn delta(name: &str, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> BookUpdate {
        input(name, BookKind::Delta, bids, asks)
    }

    fn messages(out: &[Arc<Frames>]) -> Vec<BookUpdate> {
        out.iter()
            .map(|frames| match frames.item() {
                Item::Book(update) => update.clone(),
                other => panic!("not a book message: {other:?}"),
            })
            .collect()
    }

    /// Each message's channel, seq and kind.
    fn shapes(out: &[Arc<Frames>]) -> Vec<(String, u64, BookKind)> {
        messages(out)
            .into_iter()
            .map(|m| (m.channel.name().to_string(), m.seq.0, m.kind))
            .collect()
    }

    fn shape(name: &str, seq: u64, kind: BookKind) -> (String, u64, BookKind) {
        (name.to_owned(), seq, kind)
    }

    /// Applies `update` as a publisher's and returns the result and the messages.
    fn lead(books: &mut Books, update: BookUpdate) -> (Result<(), BookError>, Vec<Arc<Frames>>) {
        let mut out = Vec::new();
        let result = books.sequence(update, true, Instant::now(), &mut out);
        (result, out)
    }

    /// Applies `update` read from the stream and returns the messages.
    fn follow(books: &mut Books, update: BookUpdate) -> Vec<BookUpdate> {
        let mut out = Vec::new();
        books.follow(update, true, &mut out);
        messages(&out)
    }

    /// What a leader made of a run of updates of one book: per seq (from 1), the message
    /// of each view, the full-depth one the stream carries, and the checkpoint after it.
    struct Led {
        views: Vec<Vec<BookUpdate>>,
        checkpoints: Vec<BookUpdate>,
    }

    impl Led {
        fn new(updates: Vec<BookUpdate>) -> Self {
            let mut books = books(&metrics());
            books.checkpoint(Cadence {
                updates: 1,
                interval: HOUR,
            });
            let mut led = Self {
                views: Vec::new(),
                checkpoints: Vec::new(),
            };
            for update in updates {
                let (result, out) = lead(&mut books, update);
                result.expect("the leader applies it");
                let mut out = messages(&out);
                let checkpoint = out.pop().expect("a checkpoint after every update");
                assert_eq!(checkpoint.kind, BookKind::Checkpoint);
                led.checkpoints.push(checkpoint);
                led.views.push(out);
            }
            led
        }

        fn views(&self, seq: usize) -> Vec<BookUpdate> {
            self.views[seq - 1].clone()
        }

        /// The stream's message of `seq` (the full book's).
        fn update(&self, seq: usize) -> BookUpdate {
            let full = self.views[seq - 1].last().expect("a full view").clone();
            assert_eq!(full.channel.depth(), Depth::Full);
            full
        }

        fn checkpoint(&self, seq: usize) -> BookUpdate {
            self.checkpoints[seq - 1].clone()
        }
    }

    /// A's snapshot (seq 1) and six deltas, each changing the full book's checksum.
    fn book_a() -> Led {
        Led::new(vec![
            snapshot(
                "A",
                &[("100", "1"), ("99", "1")],
                &[("101", "1"), ("102", "1")],
            ),
            delta("A", &[("100", "2")], &[]),
            delta("A", &[], &[("101", "3")]),
            delta("A", &[("98", "1")], &[]),
            delta("A", &[], &[("103", "1")]),
            delta("A", &[("99", "0")], &[]),
            delta("A", &[], &[("101", "0")]),
        ])
    }

    /// The snapshot messages of seq `seq` of book A (its depth's, then the full book's).
    fn snapshots_at(seq: u64) -> Vec<(String, u64, BookKind)> {
        vec![
            shape("book:A:2", seq, BookKind::Snapshot),
            shape("book:A", seq, BookKind::Snapshot),
        ]
    }

    fn shapes_of(messages: &[BookUpdate]) -> Vec<(String, u64, BookKind)> {
        messages
            .iter()
            .map(|m| (m.channel.name().to_string(), m.seq.0, m.kind))
            .collect()
    }

    #[test]
    fn a_delta_before_any_snapshot_is_refused_and_counted() {
        let metrics = metrics();
        let mut books = books(&metrics);
        let (result, out) = lead(&mut books, delta("A", &[("100", "1")], &[]));
        assert_eq!(result, Err(BookError::NoSnapshot("A".into())));
        assert!(out.is_empty());
        assert!(books.is_empty());
        assert_eq!(errors(&metrics, ErrorCode::BookNoSnapshot), 1);
    }

    #[test]
    fn a_snapshot_starts_a_book_and_every_view_gets_it_at_seq_one() {
        let mut books = books(&metrics());
        let bids = [("100", "1"), ("99", "2"), ("98", "3")];
        let asks = [("101", "1")];
        let (result, out) = lead(&mut books, snapshot("A", &bids, &asks));
        assert_eq!(result, Ok(()));
        let book = Book::from_levels(&levels(&bids), &levels(&asks), MAX_LEVELS).unwrap();
        let message = |depth, bids: &[(&str, &str)], checksum| BookUpdate {
            channel: BookChannel::new(symbol("A"), depth),
            seq: Seq(1),
            kind: BookKind::Snapshot,
            bids: levels(bids),
            asks: levels(&asks),
            checksum,
            ts_ns: 7,
            recv_ns: 0,
            from_seq: None,
        };
        let want = vec![
            message(Depth::Top(DEPTH), &bids[..2], book.checksum(2)),
            message(Depth::Full, &bids, book.checksum(usize::MAX)),
        ];
        assert_eq!(messages(&out), want);
        assert_eq!((books.len(), books.is_empty()), (1, false));
    }

    #[test]
    fn each_applied_delta_takes_the_next_seq_and_each_view_its_changes() {
        let mut books = books(&metrics());
        let bids = [("100", "1"), ("99", "1"), ("98", "1")];
        lead(&mut books, snapshot("A", &bids, &[("101", "1")]))
            .0
            .unwrap();
        let (result, out) = lead(&mut books, delta("A", &[("100", "0")], &[]));
        assert_eq!(result, Ok(()));
        let out = messages(&out);
        assert_eq!(
            shapes_of(&out),
            [
                shape("book:A:2", 2, BookKind::Delta),
                shape("book:A", 2, BookKind::Delta)
            ]
        );
        // The top 2 lost 100 and gained 98; the full book only lost 100.
        assert_eq!(out[0].bids, levels(&[("100", "0"), ("98", "1")]));
        assert_eq!(out[1].bids, levels(&[("100", "0")]));
        assert!(out[0].asks.is_empty() && out[1].asks.is_empty());
        let (_, out) = lead(&mut books, delta("A", &[], &[("101", "2")]));
        assert_eq!(
            shapes(&out),
            [
                shape("book:A:2", 3, BookKind::Delta),
                shape("book:A", 3, BookKind::Delta)
            ]
        );
    }

    #[test]
    fn a_crossed_or_too_deep_update_is_refused_counted_and_changes_nothing() {
        let metrics = metrics();
        let mut books = books(&metrics);
        let (result, out) = lead(&mut books, snapshot("A", &[("101", "1")], &[("100", "1")]));
        let crossed = BookError::Crossed {
            bid: level("101", "1").unwrap().price,
            ask: level("100", "1").unwrap().price,
        };
        assert_eq!(result, Err(crossed));
        assert!(out.is_empty() && books.is_empty());
        let bids = [("100", "1"), ("99", "1"), ("98", "1")];
        lead(&mut books, snapshot("A", &bids, &[("101", "1")]))
            .0
            .unwrap();
        let (result, out) = lead(&mut books, delta("A", &[("101.5", "1")], &[]));
        let locked = BookError::Crossed {
            bid: level("101.5", "1").unwrap().price,
            ask: level("101", "1").unwrap().price,
        };
        assert_eq!(result, Err(locked));
        assert!(out.is_empty());
        let (result, out) = lead(&mut books, delta("A", &[("97", "1"), ("96", "1")], &[]));
        let deep = BookError::TooDeep {
            side: "bids",
            levels: 5,
            limit: MAX_LEVELS,
        };
        assert_eq!(result, Err(deep));
        assert!(out.is_empty());
        // The book is as before: the next update is seq 2 and removes 100 from a top of 3.
        let (_, out) = lead(&mut books, delta("A", &[("100", "0")], &[]));
        let out = messages(&out);
        assert_eq!(out[1].seq, Seq(2));
        let book = Book::from_levels(&levels(&bids[1..]), &levels(&[("101", "1")]), 9).unwrap();
        assert_eq!(out[1].checksum, book.checksum(usize::MAX));
        assert_eq!(errors(&metrics, ErrorCode::BookCrossed), 2);
        assert_eq!(errors(&metrics, ErrorCode::BookTooDeep), 1);
    }

    #[test]
    fn a_new_book_without_room_is_refused_and_counted_and_a_known_one_still_updates() {
        let metrics = metrics();
        let mut books = books(&metrics);
        let now = Instant::now();
        let mut out = Vec::new();
        let a = || snapshot("A", &[("1", "1")], &[("2", "1")]);
        assert_eq!(
            books.sequence(a(), false, now, &mut out),
            Err(BookError::NoRoom("A".into()))
        );
        assert!(out.is_empty() && books.is_empty());
        assert_eq!(errors(&metrics, ErrorCode::SymbolLimit), 1);
        books.sequence(a(), true, now, &mut out).unwrap();
        books.sequence(a(), false, now, &mut out).unwrap();
        let d = delta("A", &[("1", "2")], &[]);
        books.sequence(d, false, now, &mut out).unwrap();
        let seqs: Vec<u64> = shapes(&out).iter().map(|s| s.1).collect();
        assert_eq!(seqs, [1, 1, 2, 2, 3, 3]);
        assert_eq!(errors(&metrics, ErrorCode::SymbolLimit), 1);
    }

    #[test]
    fn forget_drops_every_book() {
        let mut books = books(&metrics());
        lead(&mut books, snapshot("A", &[], &[])).0.unwrap();
        lead(&mut books, snapshot("B", &[], &[])).0.unwrap();
        assert_eq!((books.len(), books.is_empty()), (2, false));
        books.forget();
        assert_eq!((books.len(), books.is_empty()), (0, true));
        let (result, _) = lead(&mut books, delta("A", &[("1", "1")], &[]));
        assert_eq!(result, Err(BookError::NoSnapshot("A".into())));
    }

    #[test]
    fn with_a_cadence_a_checkpoint_of_the_whole_book_follows_every_nth_update() {
        let mut books = books(&metrics());
        books.checkpoint(Cadence {
            updates: 2,
            interval: HOUR,
        });
        let mut out = Vec::new();
        let now = Instant::now();
        let updates = [
            snapshot(
                "A",
                &[("100", "1"), ("99", "1"), ("98", "1")],
                &[("101", "1")],
            ),
            snapshot("B", &[("1", "1")], &[]),
            delta("A", &[("97", "1")], &[]),
            delta("A", &[], &[("101", "0")]),
            delta("A", &[], &[("102", "4")]),
        ];
        for update in updates {
            books.sequence(update, true, now, &mut out).unwrap();
        }
        let checkpoints: Vec<BookUpdate> = messages(&out)
            .into_iter()
            .filter(|m| m.kind == BookKind::Checkpoint)
            .collect();
        assert_eq!(
            shapes_of(&checkpoints),
            [
                shape("book:A", 2, BookKind::Checkpoint),
                shape("book:A", 4, BookKind::Checkpoint)
            ]
        );
        let whole = [("100", "1"), ("99", "1"), ("98", "1"), ("97", "1")];
        assert_eq!(checkpoints[1].bids, levels(&whole));
        assert_eq!(checkpoints[1].asks, levels(&[("102", "4")]));
        let book = Book::from_levels(&levels(&whole), &levels(&[("102", "4")]), 9).unwrap();
        assert_eq!(checkpoints[1].checksum, book.checksum(usize::MAX));
        let kinds: Vec<BookKind> = messages(&out).iter().map(|m| m.kind).collect();
        assert_eq!(kinds.len(), 12, "two views an update, and two checkpoints");
        assert_eq!(kinds[6], BookKind::Checkpoint, "right after the update");
    }

    #[test]
    fn a_changed_book_is_checkpointed_once_its_interval_passes() {
        let mut books = books(&metrics());
        books.checkpoint(Cadence {
            updates: 100,
            interval: Duration::from_secs(10),
        });
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        let due = |books: &mut Books, secs| {
            let mut out = Vec::new();
            books.due_checkpoints(at(secs), &mut out);
            shapes(&out)
        };
        let mut out = Vec::new();
        let a = snapshot("A", &[("1", "1")], &[("2", "1")]);
        books.sequence(a, true, at(0), &mut out).unwrap();
        assert_eq!(due(&mut books, 5), []);
        assert_eq!(
            due(&mut books, 10),
            [shape("book:A", 1, BookKind::Checkpoint)]
        );
        let d = delta("A", &[("1", "2")], &[]);
        books.sequence(d, true, at(12), &mut out).unwrap();
        assert_eq!(due(&mut books, 15), [], "10 s since the last checkpoint");
        assert_eq!(
            due(&mut books, 20),
            [shape("book:A", 2, BookKind::Checkpoint)]
        );
        assert_eq!(due(&mut books, 40), [], "unchanged since");
        let mut quiet = self::books(&metrics());
        let b = snapshot("B", &[("1", "1")], &[]);
        quiet.sequence(b, true, at(0), &mut out).unwrap();
        assert_eq!(due(&mut quiet, 40), [], "no stream to checkpoint into");
    }

    #[test]
    fn a_follower_sends_what_the_leader_sent() {
        let led = book_a();
        let mut books = books(&metrics());
        for seq in 1..=7 {
            assert_eq!(
                follow(&mut books, led.update(seq)),
                led.views(seq),
                "seq {seq}"
            );
        }
        assert_eq!(books.len(), 1);
    }

    #[test]
    fn a_follower_ignores_deltas_until_a_whole_book_comes() {
        let led = book_a();
        let mut books = books(&metrics());
        assert_eq!(follow(&mut books, led.update(2)), []);
        assert!(books.is_empty());
        assert_eq!(follow(&mut books, led.update(1)), led.views(1));
        assert_eq!(follow(&mut books, led.update(2)), led.views(2));
    }

    #[test]
    fn a_repeated_update_from_the_stream_is_a_duplicate_and_not_sent_again() {
        let led = book_a();
        let metrics = metrics();
        let mut books = books(&metrics);
        for seq in 1..=3 {
            follow(&mut books, led.update(seq));
        }
        for seq in [3, 2, 1] {
            assert_eq!(follow(&mut books, led.update(seq)), [], "seq {seq}");
        }
        assert_eq!(metrics.nats.duplicates.load(Relaxed), 3);
        assert_eq!(follow(&mut books, led.update(4)), led.views(4));
    }

    #[test]
    fn a_newer_snapshot_in_the_stream_replaces_a_steady_book() {
        let led = Led::new(vec![
            snapshot("A", &[("100", "1")], &[("101", "1")]),
            delta("A", &[("99", "1")], &[]),
            snapshot("A", &[("50", "1")], &[("60", "1")]),
        ]);
        let metrics = metrics();
        let mut books = books(&metrics);
        follow(&mut books, led.update(1));
        follow(&mut books, led.update(2));
        assert_eq!(follow(&mut books, led.update(3)), led.views(3));
        assert_eq!(follow(&mut books, led.update(3)), [], "once");
        assert_eq!(metrics.nats.duplicates.load(Relaxed), 1);
    }

    #[test]
    fn a_missed_update_breaks_the_book_until_a_checkpoint_brings_it_back() {
        let led = book_a();
        let metrics = metrics();
        let mut books = books(&metrics);
        follow(&mut books, led.update(1));
        follow(&mut books, led.update(2));
        // 3 and 4 never come: nothing is sent for what follows them.
        assert_eq!(follow(&mut books, led.update(5)), []);
        assert_eq!(follow(&mut books, led.update(6)), []);
        assert_eq!(metrics.nats.gaps.load(Relaxed), 2);
        // The checkpoint of 4: the book restarts from it, and 5 and 6 apply after it.
        let restarted = follow(&mut books, led.checkpoint(4));
        assert_eq!(shapes_of(&restarted[..2]), snapshots_at(4));
        assert_eq!(restarted[1].bids, led.checkpoint(4).bids);
        assert_eq!(restarted[1].asks, led.checkpoint(4).asks);
        assert_eq!(restarted[2..], [led.views(5), led.views(6)].concat());
        assert_eq!(follow(&mut books, led.update(7)), led.views(7));
        assert_eq!(metrics.nats.gaps.load(Relaxed), 2);
        assert_eq!(metrics.nats.duplicates.load(Relaxed), 0);
        assert_eq!(errors(&metrics, ErrorCode::BadNatsMessage), 0);
    }

    #[test]
    fn a_steady_book_keeps_the_newest_checkpoint_ahead_and_restarts_from_it_after_a_gap() {
        let led = book_a();
        let metrics = metrics();
        let mut books = books(&metrics);
        follow(&mut books, led.update(1));
        follow(&mut books, led.update(2));
        assert_eq!(follow(&mut books, led.checkpoint(4)), [], "kept, not sent");
        assert_eq!(
            follow(&mut books, led.checkpoint(2)),
            [],
            "not newer than the book"
        );
        // 3 and 4 are missed; the checkpoint of 4 covers them.
        let restarted = follow(&mut books, led.update(5));
        assert_eq!(shapes_of(&restarted[..2]), snapshots_at(4));
        assert_eq!(restarted[2..], led.views(5));
        assert_eq!(metrics.nats.gaps.load(Relaxed), 0);
        assert_eq!(metrics.nats.duplicates.load(Relaxed), 0);
    }

    #[test]
    fn a_whole_book_from_the_stream_that_is_crossed_or_misses_its_checksum_is_skipped() {
        let led = book_a();
        let metrics = metrics();
        let mut books = books(&metrics);
        let mut wrong = led.update(1);
        wrong.checksum ^= 1;
        assert_eq!(follow(&mut books, wrong), []);
        let mut crossed = snapshot("A", &[("101", "1")], &[("100", "1")]);
        crossed.seq = Seq(1);
        assert_eq!(follow(&mut books, crossed), []);
        assert!(books.is_empty());
        assert_eq!(errors(&metrics, ErrorCode::BadNatsMessage), 2);
        assert_eq!(follow(&mut books, led.update(1)), led.views(1));
    }

    #[test]
    fn a_delta_from_the_stream_that_misses_its_checksum_breaks_the_book() {
        let led = book_a();
        let metrics = metrics();
        let mut books = books(&metrics);
        follow(&mut books, led.update(1));
        let mut wrong = led.update(2);
        wrong.checksum ^= 1;
        assert_eq!(follow(&mut books, wrong), []);
        assert_eq!(errors(&metrics, ErrorCode::BadNatsMessage), 1);
        assert_eq!(follow(&mut books, led.update(3)), [], "broken");
        assert_eq!(metrics.nats.gaps.load(Relaxed), 0, "no seq was missed");
        let restarted = follow(&mut books, led.checkpoint(3));
        assert_eq!(shapes_of(&restarted), snapshots_at(3));
        assert_eq!(follow(&mut books, led.update(4)), led.views(4));
    }

    #[test]
    fn a_restore_rebuilds_each_book_and_checkpoints_the_whole_ones() {
        let led = book_a();
        let of_b = |mut update: BookUpdate| {
            update.channel = BookChannel::full(symbol("B"));
            update
        };
        let mut books = books(&metrics());
        let mut out = Vec::new();
        let stream = vec![
            led.update(1),
            led.update(2),
            led.update(3),
            of_b(led.update(1)),
            of_b(led.update(3)),
        ];
        books.restore(stream, &mut out);
        assert_eq!(books.len(), 2);
        let checkpoints = messages(&out);
        assert_eq!(
            shapes_of(&checkpoints),
            [shape("book:A", 3, BookKind::Checkpoint)],
            "B misses 2: no checkpoint of it"
        );
        let want = led.checkpoint(3);
        assert_eq!(
            (
                &checkpoints[0].bids,
                &checkpoints[0].asks,
                checkpoints[0].checksum
            ),
            (&want.bids, &want.asks, want.checksum)
        );
    }
}
