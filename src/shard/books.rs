//! [`BookCopies`]: a shard's own copy of every book, kept from the full-depth messages it
//! sees (every shard sees every item, in seq order), so snapshots of any depth — on
//! subscribe, on the `snapshot` op, when a resume reaches past the ring, and for
//! `GET /book/{symbol}` — come from the book itself, between two fan-out turns, with no lock
//! and no race against the live stream.
//!
//! What stays true: a copy is the book as of its `seq` (the last full-depth message applied)
//! or absent; a message that does not follow it (never, from one sequencer) drops the copy
//! rather than keep a wrong one.

use std::collections::HashMap;

use crate::book::{Book, BookChannel, BookKind, BookUpdate, Depth};
use crate::encode::Frames;
use crate::event::{Item, Key};
use crate::tick::{Seq, Symbol};

/// The shard's books.
#[derive(Debug, Default)]
pub(super) struct BookCopies {
    books: HashMap<Symbol, Copy>,
}

#[derive(Debug)]
struct Copy {
    book: Book,
    seq: Seq,
    ts_ns: u64,
}

impl BookCopies {
    /// Takes a sequenced item in: a full-depth book message updates the copy. Returns
    /// whether the item goes to clients (a checkpoint does not).
    pub(super) fn observe(&mut self, frames: &Frames) -> bool {
        let Item::Book(update) = frames.item() else {
            return true;
        };
        if update.channel.depth() != Depth::Full {
            return true;
        }
        let symbol = update.channel.symbol();
        let copy = self.books.get_mut(symbol);
        match (update.kind, copy) {
            (BookKind::Delta, Some(copy)) if update.seq == copy.seq.next() => {
                copy.book.set_levels(&update.bids, &update.asks);
                copy.seq = update.seq;
                copy.ts_ns = update.ts_ns;
            }
            (BookKind::Delta, Some(_)) => {
                self.books.remove(symbol);
            }
            (BookKind::Delta, None) => {}
            (BookKind::Checkpoint, Some(copy)) if copy.seq >= update.seq => {}
            (BookKind::Snapshot | BookKind::Checkpoint, _) => {
                let mut book = Book::new();
                book.set_levels(&update.bids, &update.asks);
                let copy = Copy {
                    book,
                    seq: update.seq,
                    ts_ns: update.ts_ns,
                };
                self.books.insert(symbol.clone(), copy);
            }
        }
        update.for_clients()
    }

    /// A snapshot of `channel` (its top levels and checksum at the copy's seq), if the
    /// shard has its book.
    pub(super) fn snapshot(&self, channel: &BookChannel) -> Option<BookUpdate> {
        let copy = self.books.get(channel.symbol())?;
        let depth = channel.depth().levels();
        let top = copy.book.top(depth);
        let mut snapshot = BookUpdate::input(
            channel.clone(),
            BookKind::Snapshot,
            top.bids,
            top.asks,
            copy.ts_ns,
        );
        snapshot.seq = copy.seq;
        snapshot.checksum = copy.book.checksum(depth);
        Some(snapshot)
    }

    /// How many books the shard holds.
    pub(super) fn len(&self) -> usize {
        self.books.len()
    }
}

/// Whether an item goes to clients (everything but a book checkpoint).
pub(super) fn for_clients(frames: &Frames) -> bool {
    !matches!(frames.item(), Item::Book(update) if !update.for_clients())
}

/// The book channel `key` names (`None`: not a book channel, or a depth not offered).
pub(super) fn channel_of(key: &Key, depths: &[u32]) -> Option<BookChannel> {
    match key {
        Key::Channel(channel) => BookChannel::parse(channel.as_str(), depths)?.ok(),
        // A book's tier is the throttle's (shard/tiers.rs): its base is the book channel.
        Key::Symbol(_) | Key::Tiered(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::{Level, decimal, input::level};
    use crate::event::Channel;
    use crate::tick::sequenced;

    fn levels(pairs: &[(&str, &str)]) -> Vec<Level> {
        pairs.iter().map(|(p, s)| level(p, s).unwrap()).collect()
    }

    fn symbol() -> Symbol {
        Symbol::parse("BTC-USD").unwrap()
    }

    /// A sequenced message of `channel` at `seq`, its time `seq * 10`.
    fn message_of(
        channel: BookChannel,
        kind: BookKind,
        seq: u64,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
    ) -> Frames {
        let mut update = BookUpdate::input(channel, kind, levels(bids), levels(asks), seq * 10);
        update.seq = Seq(seq);
        Frames::of(Item::Book(update))
    }

    fn full(kind: BookKind, seq: u64, bids: &[(&str, &str)], asks: &[(&str, &str)]) -> Frames {
        message_of(BookChannel::full(symbol()), kind, seq, bids, asks)
    }

    /// The copy as the full-book snapshot shows it: seq, time, and `price:size` a side.
    fn shown(books: &BookCopies) -> Option<(u64, u64, Vec<String>, Vec<String>)> {
        let snapshot = books.snapshot(&BookChannel::full(symbol()))?;
        let text = |levels: &[Level]| -> Vec<String> {
            levels
                .iter()
                .map(|l| format!("{}:{}", decimal::text(&l.price), decimal::text(&l.size)))
                .collect()
        };
        Some((
            snapshot.seq.0,
            snapshot.ts_ns,
            text(&snapshot.bids),
            text(&snapshot.asks),
        ))
    }

    fn strings(texts: &[&str]) -> Vec<String> {
        texts.iter().map(|t| (*t).to_owned()).collect()
    }

    #[test]
    fn a_snapshot_starts_the_copy_and_the_next_delta_moves_it() {
        let mut books = BookCopies::default();
        let snapshot = full(BookKind::Snapshot, 5, &[("100", "1")], &[("101", "2")]);
        assert!(books.observe(&snapshot), "a snapshot goes to clients");
        assert_eq!(
            shown(&books),
            Some((5, 50, strings(&["100:1"]), strings(&["101:2"])))
        );
        let delta = full(BookKind::Delta, 6, &[("100", "0"), ("99", "3")], &[]);
        assert!(books.observe(&delta), "a delta goes to clients");
        assert_eq!(
            shown(&books),
            Some((6, 60, strings(&["99:3"]), strings(&["101:2"])))
        );
        assert_eq!(books.len(), 1);
    }

    #[test]
    fn a_delta_that_does_not_follow_drops_the_copy() {
        for gapped in [7, 5] {
            let mut fresh = BookCopies::default();
            fresh.observe(&full(BookKind::Snapshot, 5, &[("100", "1")], &[]));
            assert!(fresh.observe(&full(BookKind::Delta, gapped, &[("98", "1")], &[])));
            assert_eq!(shown(&fresh), None, "seq {gapped} after 5: no copy");
            assert_eq!(fresh.len(), 0);
        }
        let mut none = BookCopies::default();
        assert!(none.observe(&full(BookKind::Delta, 1, &[("98", "1")], &[])));
        assert_eq!(none.len(), 0, "a delta starts no copy");
    }

    #[test]
    fn a_checkpoint_replaces_only_an_older_copy_and_is_not_for_clients() {
        let mut books = BookCopies::default();
        assert!(
            !books.observe(&full(BookKind::Checkpoint, 5, &[("100", "1")], &[])),
            "a checkpoint stays in the shard"
        );
        assert_eq!(shown(&books), Some((5, 50, strings(&["100:1"]), vec![])));
        for stale in [5, 4] {
            assert!(!books.observe(&full(BookKind::Checkpoint, stale, &[("1", "1")], &[])));
            assert_eq!(
                shown(&books),
                Some((5, 50, strings(&["100:1"]), vec![])),
                "checkpoint {stale} is not newer than the copy"
            );
        }
        assert!(!books.observe(&full(BookKind::Checkpoint, 9, &[("97", "2")], &[])));
        assert_eq!(shown(&books), Some((9, 90, strings(&["97:2"]), vec![])));
    }

    #[test]
    fn only_full_depth_messages_update_the_copy() {
        let mut books = BookCopies::default();
        let top = BookChannel::new(symbol(), Depth::Top(10));
        let view = message_of(top, BookKind::Snapshot, 5, &[("100", "1")], &[]);
        assert!(books.observe(&view));
        assert_eq!(books.len(), 0, "a depth view is not the book");
        let tick = Frames::new(sequenced("BTC-USD", 1));
        assert!(books.observe(&tick), "a tick goes to clients");
        assert_eq!(books.len(), 0);
    }

    #[test]
    fn each_symbol_has_its_own_copy() {
        let mut books = BookCopies::default();
        for name in ["A", "B"] {
            let channel = BookChannel::full(Symbol::parse(name).unwrap());
            books.observe(&message_of(channel, BookKind::Snapshot, 1, &[], &[]));
        }
        assert_eq!(books.len(), 2);
    }

    #[test]
    fn a_depth_snapshot_holds_the_top_levels_and_their_checksum() {
        let mut books = BookCopies::default();
        // docs/PROTOCOL.md's test vector: the top 2 a side checksum to 438061936.
        books.observe(&full(
            BookKind::Snapshot,
            3,
            &[("99", "0.5"), ("99.50", "1.25"), ("98", "7")],
            &[("101", "3"), ("100.5", "2.0"), ("102", "1")],
        ));
        let channel = BookChannel::new(symbol(), Depth::Top(2));
        let snapshot = books.snapshot(&channel).expect("the shard has the book");
        assert_eq!(snapshot.channel, channel);
        assert_eq!(snapshot.kind, BookKind::Snapshot);
        assert_eq!((snapshot.seq, snapshot.ts_ns), (Seq(3), 30));
        assert_eq!(snapshot.bids, levels(&[("99.5", "1.25"), ("99", "0.5")]));
        assert_eq!(snapshot.asks, levels(&[("100.5", "2"), ("101", "3")]));
        assert_eq!(snapshot.checksum, 438_061_936);
        let other = BookChannel::full(Symbol::parse("ETH-USD").unwrap());
        assert_eq!(books.snapshot(&other), None, "no copy of ETH-USD");
    }

    #[test]
    fn only_a_checkpoint_is_kept_from_clients() {
        let book = |kind| full(kind, 1, &[], &[]);
        assert!(!for_clients(&book(BookKind::Checkpoint)));
        assert!(for_clients(&book(BookKind::Snapshot)));
        assert!(for_clients(&book(BookKind::Delta)));
        assert!(for_clients(&Frames::new(sequenced("BTC-USD", 1))));
    }

    #[test]
    fn only_a_book_channel_of_an_offered_depth_is_a_book() {
        let key = |name: &str| Key::Channel(Channel::parse(name).unwrap());
        assert_eq!(
            channel_of(&key("book:BTC-USD:10"), &[10]),
            Some(BookChannel::new(symbol(), Depth::Top(10)))
        );
        assert_eq!(
            channel_of(&key("book:BTC-USD"), &[]),
            Some(BookChannel::full(symbol()))
        );
        assert_eq!(channel_of(&key("book:BTC-USD:25"), &[10]), None);
        assert_eq!(channel_of(&key("news"), &[10]), None);
        assert_eq!(channel_of(&Key::Symbol(symbol()), &[10]), None);
    }
}
