//! What a client at depth N is sent: the difference between its top N before and after an
//! update ([`diff`]). A level pushed out of the top N is sent as removed (size 0) in the same
//! message as the level that takes its place, so a client holding only its top N always holds
//! exactly the book's top N.

use rust_decimal::Decimal;

use super::{Level, Side};

/// Appends to `out` the changes that turn `old` into `new` (both one side's top levels, best
/// first): each new or resized level with its size, each level gone with size 0, best first.
pub fn diff(side: Side, old: &[Level], new: &[Level], out: &mut Vec<Level>) {
    let (mut i, mut j) = (0, 0);
    while i < old.len() && j < new.len() {
        let (before, after) = (old[i], new[j]);
        if before.price == after.price {
            if before.size != after.size {
                out.push(after);
            }
            i += 1;
            j += 1;
        } else if side.better(before.price, after.price) {
            out.push(removed(before.price));
            i += 1;
        } else {
            out.push(after);
            j += 1;
        }
    }
    out.extend(old[i..].iter().map(|level| removed(level.price)));
    out.extend_from_slice(&new[j..]);
}

/// A level to remove.
fn removed(price: Decimal) -> Level {
    Level {
        price,
        size: Decimal::ZERO,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::book::decimal;
    use proptest::prelude::*;
    use std::collections::BTreeMap;

    fn level(price: i64, size: i64) -> Level {
        Level {
            price: Decimal::from(price),
            size: Decimal::from(size),
        }
    }

    #[test]
    fn a_level_leaving_the_top_comes_with_the_one_entering() {
        // Top 2 bids: 100, 99 → the 100 level is removed, so 98 enters.
        let old = [level(100, 1), level(99, 1)];
        let new = [level(99, 1), level(98, 3)];
        let mut out = Vec::new();
        diff(Side::Bids, &old, &new, &mut out);
        assert_eq!(out, vec![level(100, 0), level(98, 3)]);
        assert_eq!(decimal::text(&out[0].size), "0");
    }

    proptest! {
        /// Applying the diff to the old top gives the new top, on either side.
        #[test]
        fn applying_the_diff_gives_the_new_top(
            old in proptest::collection::btree_map(0i64..40, 1i64..5, 0..12),
            new in proptest::collection::btree_map(0i64..40, 1i64..5, 0..12),
            bids in any::<bool>(),
        ) {
            let side = if bids { Side::Bids } else { Side::Asks };
            let best_first = |m: &BTreeMap<i64, i64>| -> Vec<Level> {
                let mut v: Vec<Level> = m.iter().map(|(p, s)| level(*p, *s)).collect();
                if bids { v.reverse(); }
                v
            };
            let (old_top, new_top) = (best_first(&old), best_first(&new));
            let mut changes = Vec::new();
            diff(side, &old_top, &new_top, &mut changes);
            let mut applied: BTreeMap<Decimal, Decimal> = old_top.iter().map(|l| (l.price, l.size)).collect();
            for change in &changes {
                if change.size.is_zero() { applied.remove(&change.price); } else { applied.insert(change.price, change.size); }
            }
            let want: BTreeMap<Decimal, Decimal> = new_top.iter().map(|l| (l.price, l.size)).collect();
            prop_assert_eq!(applied, want);
            let prices: Vec<Decimal> = changes.iter().map(|l| l.price).collect();
            prop_assert!(prices.windows(2).all(|w| side.better(w[0], w[1])), "best first: {:?}", prices);
        }
    }
}
