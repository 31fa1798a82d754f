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
        // Levels better than the new best prices go (crossed, or left behind by a wider
        // spread); the best levels are (re)set.
        for price in self
            .bids
            .range(best_bid + 1..)
            .map(|(p, _)| *p)
            .collect::<Vec<_>>()
        {
            changes.0.insert(price, 0);
        }
        for price in self
            .asks
            .range(..best_ask)
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

#[cfg(test)]
mod tests {
    use rand::SeedableRng;

    use super::*;

    type Side = BTreeMap<Decimal, Decimal>;

    /// What a client holds after `update`, from the update alone.
    fn follow(book: &mut (Side, Side), update: &BookUpdate) {
        if update.kind == BookKind::Snapshot {
            *book = Default::default();
        }
        for (side, levels) in [(&mut book.0, &update.bids), (&mut book.1, &update.asks)] {
            for level in levels {
                if level.size.is_zero() {
                    assert!(side.remove(&level.price).is_some(), "removes what is there");
                } else {
                    side.insert(level.price, level.size);
                }
            }
        }
    }

    #[test]
    fn the_book_keeps_its_levels_a_side_at_the_quoted_best_prices_as_the_mid_walks() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut book = DemoBook::new(Symbol::parse("AAPL").unwrap(), 187.5);
        let mut client = (Side::new(), Side::new());
        let mut mid = 187.5_f64;
        for step in 0..2_000_u64 {
            // A walk up and down, with the spread widening and narrowing.
            mid += rng.random_range(-0.05..0.05);
            let half = 0.01 * rng.random_range(1..6) as f64;
            let update = book.step(mid - half, mid + half, &mut rng, step);
            assert_eq!(update.kind == BookKind::Snapshot, step == 0);
            follow(&mut client, &update);
            let unit = 10f64.powi(book.scale as i32);
            let best_bid = ((mid - half) * unit).floor() as i64;
            let best_ask = (((mid + half) * unit).ceil() as i64).max(best_bid + 1);
            let bids: Vec<i64> = book.bids.keys().copied().collect();
            let asks: Vec<i64> = book.asks.keys().copied().collect();
            assert_eq!(bids, (best_bid - LEVELS + 1..=best_bid).collect::<Vec<_>>());
            assert_eq!(asks, (best_ask..best_ask + LEVELS).collect::<Vec<_>>());
            let price = |p: &i64| Decimal::new(*p, book.scale).normalize();
            // Every update sets the best levels again (new sizes at the quoted prices).
            let sets = |levels: &[crate::book::Level], p: i64| {
                levels
                    .iter()
                    .any(|l| l.price.normalize() == price(&p) && !l.size.is_zero())
            };
            assert!(
                sets(&update.bids, best_bid) && sets(&update.asks, best_ask),
                "{step}"
            );
            let held: Vec<Decimal> = client.0.keys().copied().collect();
            assert_eq!(held, bids.iter().map(price).collect::<Vec<_>>(), "{step}");
            let held: Vec<Decimal> = client.1.keys().copied().collect();
            assert_eq!(held, asks.iter().map(price).collect::<Vec<_>>(), "{step}");
        }
    }

    #[test]
    fn a_quote_without_a_spread_still_makes_a_book_one_tick_wide() {
        let mut rng = SmallRng::seed_from_u64(7);
        let mut book = DemoBook::new(Symbol::parse("AAPL").unwrap(), 187.5);
        for (bid, ask) in [(187.5, 187.5), (187.52, 187.5)] {
            book.step(bid, ask, &mut rng, 0);
            let best_bid = *book.bids.keys().next_back().unwrap();
            let best_ask = *book.asks.keys().next().unwrap();
            assert_eq!(
                best_ask,
                best_bid + 1,
                "{bid} / {ask}: never crossed nor locked"
            );
        }
    }
}
