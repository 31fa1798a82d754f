//! The demo market's order books: for each simulated instrument, a book of
//! [`LEVELS`] levels a side around its walking mid, a snapshot first and then a delta with
//! every quote (the new best bid and ask, levels crossed by them removed, the far end
//! refilled, and a few sizes changed), so `--demo` shows `book:*` channels move.

use std::collections::BTreeMap;

use rand::Rng;
use rand::rngs::SmallRng;
use rust_decimal::Decimal;

use crate::book::{BookChannel, BookKind, BookUpdate, Level};
use crate::tick::Symbol;

/// One instrument's simulated book, in whole ticks (price) and thousandths (size).
#[derive(Debug)]
pub(super) struct DemoBook {
    channel: BookChannel,
    /// Decimal places of a price tick.
    scale: u32,
    bids: BTreeMap<i64, i64>,
    asks: BTreeMap<i64, i64>,
    started: bool,
}

impl DemoBook {
    /// An empty book of `symbol`, priced in ticks fine enough for `mid`.
    pub(super) fn new(symbol: Symbol, mid: f64) -> Self {
        // About five significant digits at the best price.
        let scale = (5 - mid.abs().max(1e-9).log10().floor() as i32 - 1).clamp(0, 8) as u32;
        Self {
            channel: BookChannel::full(symbol),
            scale,
            bids: BTreeMap::new(),
            asks: BTreeMap::new(),
            started: false,
        }
    }

    /// The next update for best prices around `bid` and `ask`: the first is a snapshot.
    pub(super) fn step(&mut self, bid: f64, ask: f64, rng: &mut SmallRng, now: u64) -> BookUpdate {
        let unit = 10f64.powi(self.scale as i32);
        let best_bid = (bid * unit).floor() as i64;
        let best_ask = ((ask * unit).ceil() as i64).max(best_bid + 1);
        let mut changes: (BTreeMap<i64, i64>, BTreeMap<i64, i64>) = Default::default();
        let lot = |rng: &mut SmallRng| rng.random_range(1..20_000i64);
        // Levels the new best prices cross go; the best levels are (re)set.
        for price in self
            .bids
            .range(best_ask..)
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
        {
            changes.0.insert(price, 0);
        }
        for price in self
            .asks
            .range(..=best_bid)
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
        {
            changes.1.insert(price, 0);
        }
        for i in 0..LEVELS {
            let (b, a) = (best_bid - i, best_ask + i);
            if i == 0 || !self.bids.contains_key(&b) || rng.random_bool(0.05) {
                changes.0.insert(b, lot(rng));
            }
            if i == 0 || !self.asks.contains_key(&a) || rng.random_bool(0.05) {
                changes.1.insert(a, lot(rng));
            }
        }
        for price in self
            .bids
            .range(..best_bid - LEVELS + 1)
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
        {
            changes.0.insert(price, 0);
        }
        for price in self
            .asks
            .range(best_ask + LEVELS..)
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
        {
            changes.1.insert(price, 0);
        }
        apply(&mut self.bids, &changes.0);
        apply(&mut self.asks, &changes.1);
        let (kind, bids, asks) = if self.started {
            (BookKind::Delta, &changes.0, &changes.1)
        } else {
            self.started = true;
            (BookKind::Snapshot, &self.bids, &self.asks)
        };
        let levels = |map: &BTreeMap<i64, i64>| -> Vec<Level> {
            map.iter()
                .map(|(price, size)| Level {
                    price: Decimal::new(*price, self.scale).normalize(),
                    size: Decimal::new(*size, 3).normalize(),
                })
                .collect()
        };
        let mut update =
            BookUpdate::input(self.channel.clone(), kind, levels(bids), levels(asks), now);
        update.recv_ns = now;
        update
    }
}

fn apply(side: &mut BTreeMap<i64, i64>, changes: &BTreeMap<i64, i64>) {
    for (price, size) in changes {
        if *size == 0 {
            side.remove(price);
        } else {
            side.insert(*price, *size);
        }
    }
}

/// Levels a side of a demo book.
const LEVELS: i64 = 20;
