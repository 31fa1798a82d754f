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
