//! Order books kept by the client: one local book per `book:` channel subscribed
//! ([`Options::channels`](crate::Options::channels)), built from the relay's snapshot and
//! deltas, its checksum verified after every message.
//!
//! After each message the application gets [`Item::Book`](crate::Item::Book), the book as it
//! now is. A checksum that does not match the local book, or a message that does not follow
//! the last one (a `gap`, a skipped seq), means the local book cannot be trusted: the client
//! tells the application ([`Item::BookResync`](crate::Item::BookResync)), asks the relay
//! for a fresh snapshot (`{"op":"snapshot"}`, served from the relay's own book between two
//! fan-out turns, so it joins the live stream exactly), and delivers nothing for that
//! channel until the snapshot comes. On a reconnect every book starts again from the
//! snapshot its subscription brings.

use std::collections::{BTreeMap, HashMap};

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

use crate::item::Item;

/// One price level, as the relay sends it (decimal strings in shortest exact form).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Level {
    /// The price.
    pub price: String,
    /// The size at that price.
    pub size: String,
}

/// A book channel's book after a message: its top levels, best first.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Book {
    /// The channel, e.g. `book:BTC-USD:10`.
    pub channel: String,
    /// The book's seq (the same on every depth's channel).
    pub seq: u64,
    /// Bids, highest first.
    pub bids: Vec<Level>,
    /// Asks, lowest first.
    pub asks: Vec<Level>,
    /// The checksum the relay sent and the local book matched.
    pub checksum: u32,
}

/// The client dropped its local book and asked the relay for a fresh snapshot.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct BookResync {
    /// The channel.
    pub channel: String,
    /// Why.
    pub reason: ResyncReason,
}

/// Why a book is fetched again.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum ResyncReason {
    /// The local book's checksum is not the relay's.
    Checksum {
        /// The relay's.
        expected: u32,
        /// The local book's.
        actual: u32,
    },
    /// Messages are missing: the relay said so (`gap`), or a seq was skipped.
    Gap {
        /// The first seq not seen.
        from: u64,
        /// The last seq not seen.
        to: u64,
    },
}

/// A book message as the relay sends it.
#[derive(Clone, Debug, PartialEq, Eq, Deserialize)]
pub(crate) struct BookMessage {
    pub(crate) channel: String,
    pub(crate) seq: u64,
    #[serde(default)]
    pub(crate) from_seq: Option<u64>,
    pub(crate) snapshot: bool,
    pub(crate) bids: Vec<(String, String)>,
    pub(crate) asks: Vec<(String, String)>,
    pub(crate) checksum: u32,
}

/// Every book channel's local book.
#[derive(Debug, Default)]
pub(crate) struct Books {
    books: HashMap<String, LocalBook>,
    /// Control messages to send (snapshot requests), drained by the session.
    requests: Vec<String>,
}

#[derive(Debug, Default)]
struct LocalBook {
    bids: BTreeMap<Decimal, Level>,
    asks: BTreeMap<Decimal, Level>,
    seq: u64,
    /// Dropped; deltas are ignored until a snapshot comes.
    waiting: bool,
}

impl Books {
    /// A new connection: every book starts again from its subscription's snapshot.
    pub(crate) fn reconnected(&mut self) {
        self.books.clear();
        self.requests.clear();
    }

    /// Applies one book message and delivers the book, or a resync.
    pub(crate) fn accept(&mut self, message: BookMessage, out: &mut Vec<Item>) {
        let depth = depth_of(&message.channel);
        let book = self.books.entry(message.channel.clone()).or_default();
        if message.snapshot {
            book.bids.clear();
            book.asks.clear();
            book.waiting = false;
        } else if book.waiting {
            return;
        } else if message.from_seq.unwrap_or(message.seq) != book.seq + 1 {
            let (from, to) = (book.seq + 1, message.from_seq.unwrap_or(message.seq) - 1);
            return self.resync(message.channel, ResyncReason::Gap { from, to }, out);
        }
        for (side, levels) in [
            (&mut book.bids, &message.bids),
            (&mut book.asks, &message.asks),
        ] {
            for (price, size) in levels {
                let Ok(key) = price.parse::<Decimal>() else {
                    continue;
                };
                if size.parse::<Decimal>().is_ok_and(|s| s.is_zero()) {
                    side.remove(&key);
                } else {
                    side.insert(
                        key,
                        Level {
                            price: price.clone(),
                            size: size.clone(),
                        },
                    );
                }
            }
        }
        book.seq = message.seq;
        let actual = book.checksum(depth);
        if actual != message.checksum {
            let reason = ResyncReason::Checksum {
                expected: message.checksum,
                actual,
            };
            return self.resync(message.channel, reason, out);
        }
        out.push(Item::Book(Book {
            bids: book.bids.values().rev().take(depth).cloned().collect(),
            asks: book.asks.values().take(depth).cloned().collect(),
            channel: message.channel,
            seq: message.seq,
            checksum: actual,
        }));
    }

    /// The relay announced missing messages of `channel`.
    pub(crate) fn gap(&mut self, channel: String, from: u64, to: u64, out: &mut Vec<Item>) {
        self.resync(channel, ResyncReason::Gap { from, to }, out);
    }

    /// Control messages to send now.
    pub(crate) fn take_requests(&mut self) -> Vec<String> {
        std::mem::take(&mut self.requests)
    }

    fn resync(&mut self, channel: String, reason: ResyncReason, out: &mut Vec<Item>) {
        let book = self.books.entry(channel.clone()).or_default();
        book.bids.clear();
        book.asks.clear();
        book.waiting = true;
        let op = serde_json::json!({"op": "snapshot", "channels": [channel]});
        self.requests.push(op.to_string());
        out.push(Item::BookResync(BookResync { channel, reason }));
    }
}

impl LocalBook {
    /// CRC32 of the top `depth` bids then asks, `price:size` joined by `|`.
    fn checksum(&self, depth: usize) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        let levels = self
            .bids
            .values()
            .rev()
            .take(depth)
            .chain(self.asks.values().take(depth));
        for (i, level) in levels.enumerate() {
            if i > 0 {
                hasher.update(b"|");
            }
            hasher.update(level.price.as_bytes());
            hasher.update(b":");
            hasher.update(level.size.as_bytes());
        }
        hasher.finalize()
    }
}

/// Whether `channel` is a book's (`book:SYMBOL` or `book:SYMBOL:DEPTH`).
pub(crate) fn is_book(channel: &str) -> bool {
    channel.starts_with("book:")
}

/// The levels a side `channel` carries: its `:DEPTH`, or every level.
fn depth_of(channel: &str) -> usize {
    channel
        .rsplit_once(':')
        .filter(|(rest, _)| rest.contains(':'))
        .and_then(|(_, digits)| digits.parse().ok())
        .unwrap_or(usize::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn message(
        seq: u64,
        snapshot: bool,
        bids: &[(&str, &str)],
        asks: &[(&str, &str)],
        checksum: u32,
    ) -> BookMessage {
        let own = |l: &[(&str, &str)]| {
            l.iter()
                .map(|(p, s)| ((*p).to_owned(), (*s).to_owned()))
                .collect()
        };
        BookMessage {
            channel: "book:BTC-USD:2".into(),
            seq,
            from_seq: None,
            snapshot,
            bids: own(bids),
            asks: own(asks),
            checksum,
        }
    }

    #[test]
    fn the_protocol_test_vector_holds_and_a_bad_checksum_asks_for_a_snapshot() {
        let mut books = Books::default();
        let mut out = Vec::new();
        let bids = [("99.5", "1.25"), ("99", "0.5"), ("98", "7")];
        books.accept(
            message(1, true, &bids, &[("100.5", "2"), ("101", "3")], 438_061_936),
            &mut out,
        );
        assert!(
            matches!(&out[0], Item::Book(b) if b.bids.len() == 2 && b.checksum == 438_061_936),
            "{out:?}"
        );
        books.accept(message(2, false, &[("99.5", "0")], &[], 1), &mut out);
        assert!(
            matches!(&out[1], Item::BookResync(r) if matches!(r.reason, ResyncReason::Checksum { expected: 1, .. }))
        );
        assert_eq!(
            books.take_requests(),
            [r#"{"channels":["book:BTC-USD:2"],"op":"snapshot"}"#]
        );
        books.accept(message(3, false, &[], &[], 0), &mut out);
        assert_eq!(out.len(), 2, "nothing until the snapshot");
        books.accept(
            message(5, true, &[("1", "1")], &[], crc32fast::hash(b"1:1")),
            &mut out,
        );
        assert!(matches!(&out[2], Item::Book(b) if b.seq == 5));
        books.accept(
            message(7, false, &[], &[], crc32fast::hash(b"1:1")),
            &mut out,
        );
        assert!(
            matches!(&out[3], Item::BookResync(r) if r.reason == ResyncReason::Gap { from: 6, to: 6 })
        );
        assert_eq!(depth_of("book:A:B"), usize::MAX);
        assert_eq!(depth_of("book:A:B:25"), 25);
    }
}
