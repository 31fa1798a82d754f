//! The key table: each key's next seq, and room for new keys within `--max-symbols`
//! (eviction of idle keys nobody subscribes to by name).

use std::time::Instant;

use tracing::debug;

use super::{SWEEP_EVERY, Sequencer, SymbolSeq};
use crate::encode::{Frames, Wire};
use crate::error::ErrorCode;
use crate::event::{Item, Key};
use crate::metrics;
use crate::tick::Seq;

impl Sequencer {
    /// Assigns the item its seq and pre-encodes it; `Ok(None)` for an edge's repeat, `Err`
    /// with its key if it is a new key and the table (symbols, channels and books together)
    /// stays full after a sweep (counted as `symbol_limit`).
    pub(super) fn prepare(&mut self, mut item: Item, now: Instant) -> Result<Option<Frames>, Key> {
        let key = item.key();
        let known = self.symbols.contains_key(&key);
        let full = |s: &Self| s.symbols.len() + s.books.len() >= s.max_symbols;
        // A derived key's symbol passed the limit already; its channels are bounded by it.
        if !known && !item.is_derived() && full(self) {
            self.sweep(now);
            if full(self) {
                self.metrics.count_error(ErrorCode::SymbolLimit);
                debug!(
                    key = key.as_str(),
                    limit = self.max_symbols,
                    "item of a new symbol or channel refused: --max-symbols reached"
                );
                return Err(key);
            }
        }
        let interest = &self.interest;
        // After an eviction, a new key starts two above every evicted seq: a client holding
        // seq N of an evicted key resumes into a gap (N+1 is never issued), never a run.
        let first = match self.evicted_high {
            0 => Seq::FIRST,
            high => Seq(high.saturating_add(2)),
        };
        let state = self
            .symbols
            .entry(key.clone())
            .or_insert_with(|| SymbolSeq {
                next: first,
                interest: interest.entry(&key),
                last: now,
            });
        state.last = now;
        if self.follow {
            let seq = item.seq();
            if known && seq < state.next {
                metrics::add(&self.metrics.nats.duplicates, 1);
                return Ok(None);
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
        Ok(Some(frames))
    }

    /// Evicts every key nobody subscribes to by name that has been quiet for
    /// `--evict-idle`, at most once per [`SWEEP_EVERY`] (a full table under a flood of new
    /// keys costs one pass a second). The shards learn of it through the interest map.
    pub(super) fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        let (symbols, idle, books) = (&mut self.symbols, self.evict_idle, &self.books);
        let mut high = self.evicted_high;
        let before = symbols.len();
        self.interest
            .retain(|key, subscribed| match symbols.get(key) {
                Some(state) if !subscribed && now.saturating_duration_since(state.last) >= idle => {
                    high = high.max(state.next.0.saturating_sub(1));
                    symbols.remove(key);
                    false
                }
                Some(_) => true,
                // A book's views are not in the table: kept while the book lives.
                None if books.holds_view(key) => true,
                // Counts of a key the table does not hold (subscribed before any item): kept
                // while someone subscribes.
                None => subscribed,
            });
        self.evicted_high = high;
        debug!(
            evicted = before - self.symbols.len(),
            kept = self.symbols.len(),
            "key table full: idle keys evicted"
        );
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;
    use crate::book::{BookChannel, BookKind, BookUpdate};
    use crate::encode::Encoding;
    use crate::event::Channel;
    use crate::event::derived::{Ticker, TickerValues};
    use crate::metrics::Metrics;
    use crate::sequencer::Interest;
    use crate::tick::{Symbol, sequenced};

    fn key(name: &str) -> Key {
        Key::Symbol(Symbol::parse(name).expect("a valid symbol"))
    }

    fn tick(symbol: &str) -> Item {
        Item::Tick(sequenced(symbol, 0))
    }

    /// An empty snapshot of `symbol`'s full book, as a publisher sends it.
    fn empty_book(symbol: &str) -> BookUpdate {
        let channel = BookChannel::full(Symbol::parse(symbol).unwrap());
        BookUpdate::input(channel, BookKind::Snapshot, Vec::new(), Vec::new(), 0)
    }

    fn ticker(symbol: &str) -> Item {
        let flat = TickerValues::flat(1.0);
        Item::Ticker(Box::new(Ticker {
            channel: Channel::parse(&format!("ticker:{symbol}")).expect("a valid channel"),
            seq: Seq(0),
            stats: flat,
            ts_ns: 0,
            recv_ns: 0,
        }))
    }

    /// A sequencer of a table of `max_symbols` keys, and its interest map and metrics.
    fn sequencer(max_symbols: usize) -> (Sequencer, Arc<Interest>, Arc<Metrics>) {
        let interest = Arc::new(Interest::default());
        let metrics = Arc::new(Metrics::new(1));
        let sequencer = Sequencer::new(Vec::new(), interest.clone(), metrics.clone(), max_symbols);
        (sequencer, interest, metrics)
    }

    /// The seq `item` is given, or the key it is refused with.
    fn seq_of(sequencer: &mut Sequencer, item: Item, now: Instant) -> Result<u64, Key> {
        let frames = sequencer.prepare(item, now)?;
        Ok(frames
            .expect("a leading sequencer never drops an item")
            .seq()
            .0)
    }

    fn symbol_limits(metrics: &Metrics) -> u64 {
        metrics
            .errors()
            .find(|(code, _)| *code == ErrorCode::SymbolLimit)
            .map_or(0, |(_, n)| n)
    }

    fn held(sequencer: &Sequencer) -> Vec<String> {
        let mut keys: Vec<String> = sequencer
            .symbols
            .keys()
            .map(|k| k.as_str().to_owned())
            .collect();
        keys.sort();
        keys
    }

    #[test]
    fn each_key_counts_its_own_seqs_from_one() {
        let (mut sequencer, _, _) = sequencer(100);
        let now = Instant::now();
        let seqs: Vec<_> = [tick("A"), tick("A"), tick("B"), ticker("A"), tick("A")]
            .into_iter()
            .map(|item| seq_of(&mut sequencer, item, now))
            .collect();
        assert_eq!(seqs, [Ok(1), Ok(2), Ok(1), Ok(1), Ok(3)]);
        let frames = sequencer.prepare(tick("B"), now).unwrap().unwrap();
        assert_eq!((frames.key(), frames.seq()), (&key("B"), Seq(2)));
    }

    #[test]
    fn a_book_takes_a_place_in_the_table_like_a_symbol() {
        let (mut sequencer, _, metrics) = sequencer(2);
        let now = Instant::now();
        let snapshot = empty_book("X");
        let mut out = Vec::new();
        sequencer
            .books
            .sequence(snapshot, true, now, &mut out)
            .expect("an empty book is a valid snapshot");
        assert_eq!(seq_of(&mut sequencer, tick("A"), now), Ok(1));
        assert_eq!(seq_of(&mut sequencer, tick("B"), now), Err(key("B")));
        assert_eq!(symbol_limits(&metrics), 1);
    }

    #[test]
    fn a_full_table_still_sequences_known_keys_and_derived_channels_but_refuses_new_symbols() {
        let (mut sequencer, _, metrics) = sequencer(1);
        let now = Instant::now();
        assert_eq!(seq_of(&mut sequencer, tick("A"), now), Ok(1));
        assert_eq!(seq_of(&mut sequencer, tick("A"), now), Ok(2), "known");
        assert_eq!(seq_of(&mut sequencer, ticker("A"), now), Ok(1), "derived");
        assert_eq!(seq_of(&mut sequencer, tick("B"), now), Err(key("B")));
        assert_eq!(symbol_limits(&metrics), 1);
        assert_eq!(held(&sequencer), ["A", "ticker:A"]);
    }

    #[test]
    fn a_table_with_room_takes_new_keys_without_a_sweep() {
        let (sequencer, interest, _) = sequencer(10);
        let mut sequencer = sequencer.evicting_after(Duration::ZERO);
        let now = Instant::now();
        assert_eq!(seq_of(&mut sequencer, tick("A"), now), Ok(1));
        let later = now + Duration::from_secs(5);
        assert_eq!(seq_of(&mut sequencer, tick("B"), later), Ok(1));
        assert_eq!(interest.evictions(), 0);
        assert!(sequencer.swept.is_none());
        assert_eq!(held(&sequencer), ["A", "B"]);
    }

    #[test]
    fn a_sweep_evicts_only_keys_quiet_for_the_idle_time_that_nobody_subscribes_to() {
        let (sequencer, interest, _) = sequencer(100);
        let mut sequencer = sequencer.evicting_after(Duration::from_secs(10));
        let t0 = Instant::now();
        let at = |secs| t0 + Duration::from_secs(secs);
        interest.add(Some(&key("S")), Encoding::Json);
        for (symbol, secs) in [("Q", 0), ("Q", 0), ("S", 0), ("E", 5), ("R", 6)] {
            seq_of(&mut sequencer, tick(symbol), at(secs)).expect("room");
        }
        sequencer.sweep(at(15));
        // Q quiet 15 s and E exactly 10 s: gone; S is subscribed, R quiet 9 s only.
        assert_eq!(held(&sequencer), ["R", "S"]);
        assert!(!interest.holds(&key("Q")) && !interest.holds(&key("E")));
        assert!(interest.holds(&key("R")) && interest.holds(&key("S")));
        assert_eq!(interest.evictions(), 1);
        // Q had seq 2, the highest evicted: a new key starts at 4.
        assert_eq!(seq_of(&mut sequencer, tick("N"), at(15)), Ok(4));
    }

    #[test]
    fn sweeps_are_at_least_a_second_apart() {
        let (sequencer, _, _) = sequencer(100);
        let mut sequencer = sequencer.evicting_after(Duration::ZERO);
        let t0 = Instant::now();
        seq_of(&mut sequencer, tick("A"), t0).expect("room");
        sequencer.sweep(t0);
        assert!(held(&sequencer).is_empty(), "A is idle at once");
        seq_of(&mut sequencer, tick("B"), t0).expect("room");
        sequencer.sweep(t0 + SWEEP_EVERY / 2);
        assert_eq!(held(&sequencer), ["B"], "too soon after the last sweep");
        sequencer.sweep(t0 + SWEEP_EVERY);
        assert!(held(&sequencer).is_empty(), "a second later");
    }

    #[test]
    fn a_sweep_keeps_the_interest_entries_of_live_books() {
        let (sequencer, interest, _) = sequencer(1);
        let mut sequencer = sequencer.evicting_after(Duration::ZERO);
        let now = Instant::now();
        let snapshot = empty_book("X");
        sequencer
            .books
            .sequence(snapshot, true, now, &mut Vec::new())
            .unwrap();
        let view = Key::Channel(Channel::parse("book:X").unwrap());
        assert!(interest.holds(&view));
        sequencer.sweep(now);
        assert!(interest.holds(&view), "book X is still the sequencer's");
        assert_eq!(interest.evictions(), 0, "no key was evicted");
        let other = Key::Channel(Channel::parse("book:Y").unwrap());
        assert!(!sequencer.books.holds_view(&other), "no book Y");
        assert!(
            !sequencer
                .books
                .holds_view(&Key::Symbol(Symbol::parse("X").unwrap()))
        );
        // A key subscribed before any item and given up again: its counts go.
        let early = Key::Symbol(Symbol::parse("EARLY").unwrap());
        interest.add(Some(&early), crate::encode::Encoding::Json);
        sequencer.sweep(now + SWEEP_EVERY);
        assert!(interest.holds(&early), "kept while subscribed");
        interest.remove(Some(&early), crate::encode::Encoding::Json);
        sequencer.sweep(now + SWEEP_EVERY * 2);
        assert!(!interest.holds(&early), "dropped once nobody subscribes");
        assert!(interest.holds(&view));
    }
}
