//! [`Levels`]: one side of a book, its price levels best first, each with its checksum text
//! (`price:size`) built once when the level changes, so a checksum over the top N is one
//! CRC pass over stored bytes instead of N number formattings per update.

use std::collections::BTreeMap;
use std::collections::btree_map;

use rust_decimal::Decimal;

use super::{Level, Side, decimal};

/// One side's levels.
#[derive(Debug, Clone)]
pub(super) struct Levels {
    side: Side,
    levels: BTreeMap<Decimal, Entry>,
}

#[derive(Debug, Clone)]
struct Entry {
    size: Decimal,
    /// `price:size` in shortest exact form: this level's part of every checksum.
    text: Box<str>,
}

impl Levels {
    /// An empty side.
    pub(super) fn new(side: Side) -> Self {
        Self {
            side,
            levels: BTreeMap::new(),
        }
    }

    /// Sets `price` to `size` (0 removes it); returns the size it had (0: none).
    pub(super) fn set(&mut self, price: Decimal, size: Decimal) -> Decimal {
        if size.is_zero() {
            return self.levels.remove(&price).map_or(Decimal::ZERO, |e| e.size);
        }
        match self.levels.entry(price) {
            btree_map::Entry::Occupied(mut slot) => {
                let old = slot.get().size;
                if old != size {
                    *slot.get_mut() = Entry::new(price, size);
                }
                old
            }
            btree_map::Entry::Vacant(slot) => {
                slot.insert(Entry::new(price, size));
                Decimal::ZERO
            }
        }
    }

    /// The size at `price` (0: no level).
    pub(super) fn size(&self, price: &Decimal) -> Decimal {
        self.levels.get(price).map_or(Decimal::ZERO, |e| e.size)
    }

    /// How many levels the side holds.
    pub(super) fn len(&self) -> usize {
        self.levels.len()
    }

    /// The best price, if any.
    pub(super) fn best(&self) -> Option<Decimal> {
        match self.side {
            Side::Bids => self.levels.keys().next_back().copied(),
            Side::Asks => self.levels.keys().next().copied(),
        }
    }

    /// The levels best first.
    pub(super) fn best_first(&self) -> impl Iterator<Item = Level> + '_ {
        self.entries().map(|(price, entry)| Level {
            price: *price,
            size: entry.size,
        })
    }

    /// The checksum texts of the levels, best first.
    pub(super) fn texts(&self) -> impl Iterator<Item = &str> + '_ {
        self.entries().map(|(_, entry)| &*entry.text)
    }

    fn entries(&self) -> BestFirst<'_> {
        match self.side {
            Side::Bids => BestFirst::Descending(self.levels.iter().rev()),
            Side::Asks => BestFirst::Ascending(self.levels.iter()),
        }
    }
}

impl Entry {
    fn new(price: Decimal, size: Decimal) -> Self {
        let mut text = Vec::with_capacity(24);
        decimal::write(&mut text, &price);
        text.push(b':');
        decimal::write(&mut text, &size);
        let text = String::from_utf8(text).expect("decimal text is ASCII digits, '-' and '.'");
        Self {
            size,
            text: text.into_boxed_str(),
        }
    }
}

/// A side's entries in best-first order, whichever way its map is sorted.
enum BestFirst<'a> {
    Descending(std::iter::Rev<btree_map::Iter<'a, Decimal, Entry>>),
    Ascending(btree_map::Iter<'a, Decimal, Entry>),
}

impl<'a> Iterator for BestFirst<'a> {
    type Item = (&'a Decimal, &'a Entry);

    fn next(&mut self) -> Option<Self::Item> {
        match self {
            Self::Descending(iter) => iter.next(),
            Self::Ascending(iter) => iter.next(),
        }
    }
}
