//! [`Book`]: one symbol's bids and asks, the rules an update must keep (never crossed, at
//! most `--book-max-levels` a side), and the checksum of its top N.

use rust_decimal::Decimal;

use super::side::Levels;
use super::{BookError, Level, Side};

/// An order book: price levels per side, each level's size exactly as published.
#[derive(Debug, Clone)]
pub struct Book {
    bids: Levels,
    asks: Levels,
}

/// The levels an update changed, per side, best first: each with its new size (0: removed).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Changes {
    /// Changed bids.
    pub bids: Vec<Level>,
    /// Changed asks.
    pub asks: Vec<Level>,
}

impl Book {
    /// An empty book.
    pub fn new() -> Self {
        Self {
            bids: Levels::new(Side::Bids),
            asks: Levels::new(Side::Asks),
        }
    }

    /// The book a snapshot describes: levels of size 0 are left out and a price given twice
    /// keeps its last size. Refused if crossed or deeper than `max_levels` a side.
    pub fn from_levels(
        bids: &[Level],
        asks: &[Level],
        max_levels: usize,
    ) -> Result<Self, BookError> {
        let mut book = Self::new();
        book.set_levels(bids, asks);
        book.check(max_levels)?;
        Ok(book)
    }

    /// Applies a publisher's delta (size 0 removes a level) and returns what changed. If the
    /// result would be crossed or deeper than `max_levels` a side, the book is left exactly
    /// as it was and the error says why.
    pub fn apply(
        &mut self,
        bids: &[Level],
        asks: &[Level],
        max_levels: usize,
    ) -> Result<Changes, BookError> {
        let mut undo = Vec::with_capacity(bids.len() + asks.len());
        for (side, levels) in [(Side::Bids, bids), (Side::Asks, asks)] {
            for level in levels {
                let old = self.side_mut(side).set(level.price, level.size);
                undo.push((side, level.price, old));
            }
        }
        if let Err(error) = self.check(max_levels) {
            for (side, price, old) in undo.into_iter().rev() {
                self.side_mut(side).set(price, old);
            }
            return Err(error);
        }
        Ok(Changes {
            bids: self.net(Side::Bids, &undo),
            asks: self.net(Side::Asks, &undo),
        })
    }

    /// Sets each level to its size (0 removes it), unchecked: for changes the sequencer has
    /// already applied and checked (a shard's copy, an edge rebuilding from the stream).
    pub fn set_levels(&mut self, bids: &[Level], asks: &[Level]) {
        for level in bids {
            self.bids.set(level.price, level.size);
        }
        for level in asks {
            self.asks.set(level.price, level.size);
        }
    }

    /// The levels of `side`, best first, at most `depth` of them.
    pub fn levels(&self, side: Side, depth: usize) -> impl Iterator<Item = Level> + '_ {
        self.side(side).best_first().take(depth)
    }

    /// The best `depth` levels of each side.
    pub fn top(&self, depth: usize) -> Changes {
        Changes {
            bids: self.levels(Side::Bids, depth).collect(),
            asks: self.levels(Side::Asks, depth).collect(),
        }
    }

    /// How many levels `side` holds.
    pub fn len(&self, side: Side) -> usize {
        self.side(side).len()
    }

    /// Whether both sides are empty.
    pub fn is_empty(&self) -> bool {
        self.bids.len() == 0 && self.asks.len() == 0
    }

    /// The checksum every message of a channel of `depth` carries: CRC32 (IEEE) of the top
    /// `depth` bids then the top `depth` asks, best first, each `price:size` in shortest
    /// exact form, joined by `|` (docs/PROTOCOL.md has test vectors).
    pub fn checksum(&self, depth: usize) -> u32 {
        let mut hasher = crc32fast::Hasher::new();
        let texts = self
            .bids
            .texts()
            .take(depth)
            .chain(self.asks.texts().take(depth));
        for (i, text) in texts.enumerate() {
            if i > 0 {
                hasher.update(b"|");
            }
            hasher.update(text.as_bytes());
        }
        hasher.finalize()
    }

    /// Refuses a crossed (or locked) book, and a side over `max_levels`.
    fn check(&self, max_levels: usize) -> Result<(), BookError> {
        if let (Some(bid), Some(ask)) = (self.bids.best(), self.asks.best())
            && bid >= ask
        {
            return Err(BookError::Crossed { bid, ask });
        }
        for side in [Side::Bids, Side::Asks] {
            let levels = self.len(side);
            if levels > max_levels {
                return Err(BookError::TooDeep {
                    side: side.as_str(),
                    levels,
                    limit: max_levels,
                });
            }
        }
        Ok(())
    }

    /// The net change to `side` of an applied delta: each price it touched whose size now
    /// differs from before the delta, best first.
    fn net(&self, side: Side, undo: &[(Side, Decimal, Decimal)]) -> Vec<Level> {
        // The size before the delta is the one recorded at a price's first touch.
        let mut before: Vec<(Decimal, usize, Decimal)> = undo
            .iter()
            .enumerate()
            .filter(|(_, (s, _, _))| *s == side)
            .map(|(i, (_, price, old))| (*price, i, *old))
            .collect();
        before.sort_by(|a, b| a.0.cmp(&b.0).then(a.1.cmp(&b.1)));
        before.dedup_by(|later, first| later.0 == first.0);
        let levels = self.side(side);
        let mut changed: Vec<Level> = before
            .into_iter()
            .map(|(price, _, old)| (price, old, levels.size(&price)))
            .filter(|(_, old, new)| old != new)
            .map(|(price, _, size)| Level { price, size })
            .collect();
        if side == Side::Bids {
            changed.reverse();
        }
        changed
    }

    fn side(&self, side: Side) -> &Levels {
        match side {
            Side::Bids => &self.bids,
            Side::Asks => &self.asks,
        }
    }

    fn side_mut(&mut self, side: Side) -> &mut Levels {
        match side {
            Side::Bids => &mut self.bids,
            Side::Asks => &mut self.asks,
        }
    }
}

impl Default for Book {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::decimal;

    fn levels(pairs: &[(&str, &str)]) -> Vec<Level> {
        pairs
            .iter()
            .map(|(p, s)| Level {
                price: decimal::parse(p).unwrap(),
                size: decimal::parse(s).unwrap(),
            })
            .collect()
    }

    #[test]
    fn the_protocol_test_vector_holds() {
        let book = Book::from_levels(
            &levels(&[("99", "0.5"), ("99.50", "1.25"), ("98", "7")]),
            &levels(&[("101", "3"), ("100.5", "2.0"), ("102", "1")]),
            100,
        )
        .unwrap();
        // 99.5:1.25|99:0.5|100.5:2|101:3
        assert_eq!(book.checksum(2), 438_061_936);
        // docs/PROTOCOL.md's other vectors: 99:0.5|98:7|100.5:2|101:3, and 0.61:5|0.6:1.5|0.62:2
        let mut after = book;
        after.apply(&levels(&[("99.5", "0")]), &[], 100).unwrap();
        assert_eq!(after.checksum(2), 153_433_628);
        let small = Book::from_levels(
            &levels(&[("0.61", "5"), ("0.6", "1.5")]),
            &levels(&[("0.62", "2")]),
            10,
        )
        .unwrap();
        assert_eq!(small.checksum(10), 4_103_420_218);
        let empty = Book::new();
        assert_eq!(empty.checksum(10), 0, "CRC32 of the empty string");
    }

    #[test]
    fn a_refused_delta_leaves_the_book_as_it_was() {
        let mut book =
            Book::from_levels(&levels(&[("99", "1")]), &levels(&[("100", "1")]), 2).unwrap();
        let before = (book.top(10), book.checksum(10));
        let crossed = book.apply(&levels(&[("99", "0"), ("100.5", "2")]), &[], 2);
        assert!(
            matches!(crossed, Err(BookError::Crossed { .. })),
            "{crossed:?}"
        );
        let deep = book.apply(&levels(&[("98", "1"), ("97", "1")]), &[], 2);
        assert!(
            matches!(
                deep,
                Err(BookError::TooDeep {
                    levels: 3,
                    limit: 2,
                    ..
                })
            ),
            "{deep:?}"
        );
        assert_eq!((book.top(10), book.checksum(10)), before);
    }

    #[test]
    fn a_delta_reports_its_net_changes_best_first() {
        let mut book = Book::from_levels(
            &levels(&[("99", "1"), ("98", "1")]),
            &levels(&[("100", "1")]),
            100,
        )
        .unwrap();
        let changes = book
            .apply(
                &levels(&[
                    ("97", "2"),
                    ("99", "5"),
                    ("98", "0"),
                    ("99", "1"),
                    ("96", "0"),
                ]),
                &levels(&[("101", "4"), ("100", "1.0")]),
                100,
            )
            .unwrap();
        // 99 went 1 → 5 → 1 (no net change); 96 was never there.
        assert_eq!(changes.bids, levels(&[("98", "0"), ("97", "2")]));
        assert_eq!(changes.asks, levels(&[("101", "4")]));
        assert_eq!(book.len(Side::Bids), 2);
    }
}
