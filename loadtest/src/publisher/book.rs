//! Order-book updates on the relay's NDJSON ingest (docs/PROTOCOL.md "Ingest", book updates):
//! one snapshot per symbol, then deltas that each set one bid's and one ask's size.
//!
//! The book is a fixed grid around 100: bid level `i` (from 0, best first) at `99.99 - i·0.01`,
//! ask level `i` at `100.01 + i·0.01`. A delta never removes or adds a level and never sets a
//! size of 0, so it can never cross the book or make it deeper, and the relay accepts every
//! one; its levels lie among the top [`DELTA_LEVELS`] of each side, where a market's updates
//! mostly are, so a depth-10 channel carries levels for about three in four of them and an
//! empty message (seq only) for the rest. Deltas are a pure function of the symbol's update number.

use std::io::Write as _;

/// Appends the snapshot of a book `levels` deep on each side.
pub(super) fn snapshot_line(symbol: &str, levels: u32, ts_ns: u64, out: &mut Vec<u8>) {
    let side = |out: &mut Vec<u8>, price: fn(u32) -> String| {
        for i in 0..levels {
            if i > 0 {
                out.push(b',');
            }
            let _ = write!(out, r#"["{}","{}"]"#, price(i), snapshot_size(i));
        }
    };
    let _ = write!(
        out,
        r#"{{"type":"book","symbol":"{symbol}","snapshot":true,"bids":["#
    );
    side(out, bid_price);
    out.extend_from_slice(br#"],"asks":["#);
    side(out, ask_price);
    let _ = writeln!(out, r#"],"ts_ns":{ts_ns}}}"#);
}

/// Appends update `n` (from 1) of a book `levels` deep: one bid and one ask get a new size.
pub(super) fn delta_line(symbol: &str, n: u64, levels: u32, ts_ns: u64, out: &mut Vec<u8>) {
    let (bid, ask, size) = delta(n, levels);
    let _ = writeln!(
        out,
        r#"{{"type":"book","symbol":"{symbol}","snapshot":false,"bids":[["{}","{size}"]],"asks":[["{}","{size}"]],"ts_ns":{ts_ns}}}"#,
        bid_price(bid),
        ask_price(ask)
    );
}

/// Update `n`'s bid level, ask level and size (never 0).
fn delta(n: u64, levels: u32) -> (u32, u32, u64) {
    let top = u64::from(levels.clamp(1, DELTA_LEVELS));
    ((n % top) as u32, ((n * 7 + 3) % top) as u32, 1 + n % 50)
}

fn bid_price(level: u32) -> String {
    cents(GRID_MID_CENTS - 1 - level)
}

fn ask_price(level: u32) -> String {
    cents(GRID_MID_CENTS + 1 + level)
}

fn snapshot_size(level: u32) -> u32 {
    1 + level % 9
}

fn cents(c: u32) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

/// Deltas touch the top this many levels of each side.
pub const DELTA_LEVELS: u32 = 20;
/// Most levels a side the grid holds (bids stay above 0).
pub const MAX_LEVELS: u32 = 9_000;
/// The middle of the grid, 100.00, in cents.
const GRID_MID_CENTS: u32 = 10_000;

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    type Side = BTreeMap<u64, String>;

    /// Applies one ingest line to a book as the relay does: snapshot replaces, sizes set,
    /// "0" removes; prices in cents.
    fn apply(line: &[u8], bids: &mut Side, asks: &mut Side) {
        let v: serde_json::Value = serde_json::from_slice(line).unwrap();
        if v["snapshot"].as_bool().unwrap() {
            bids.clear();
            asks.clear();
        }
        for (key, side) in [("bids", &mut *bids), ("asks", &mut *asks)] {
            for level in v[key].as_array().unwrap() {
                let price: f64 = level[0].as_str().unwrap().parse().unwrap();
                let size = level[1].as_str().unwrap().to_owned();
                let cents = (price * 100.0).round() as u64;
                if size == "0" {
                    side.remove(&cents);
                } else {
                    side.insert(cents, size);
                }
            }
        }
    }

    #[test]
    fn deltas_keep_the_book_whole_and_uncrossed() {
        for levels in [1, 10, 100] {
            let (mut bids, mut asks) = (Side::new(), Side::new());
            let mut line = Vec::new();
            snapshot_line("SYM001", levels, 5, &mut line);
            apply(&line, &mut bids, &mut asks);
            assert_eq!((bids.len(), asks.len()), (levels as usize, levels as usize));
            assert_eq!(bids.keys().next_back(), Some(&9_999));
            assert_eq!(asks.keys().next(), Some(&10_001));
            let mut touched_bids = std::collections::BTreeSet::new();
            for n in 1..=500 {
                line.clear();
                delta_line("SYM001", n, levels, 5, &mut line);
                apply(&line, &mut bids, &mut asks);
                assert_eq!(bids.len(), levels as usize, "no level added or removed");
                assert_eq!(asks.len(), levels as usize);
                assert!(
                    bids.keys().next_back() < asks.keys().next(),
                    "crossed at {n}"
                );
                touched_bids.insert(delta(n, levels).0);
            }
            assert_eq!(touched_bids.len() as u32, levels.min(DELTA_LEVELS));
        }
    }

    #[test]
    fn a_delta_changes_sizes_within_the_top_levels() {
        let mut line = Vec::new();
        delta_line("SYM003", 12, 100, 7, &mut line);
        let v: serde_json::Value = serde_json::from_slice(&line).unwrap();
        assert_eq!(v["symbol"], "SYM003");
        assert_eq!(v["snapshot"], false);
        assert_eq!(v["bids"], serde_json::json!([["99.87", "13"]]));
        assert_eq!(v["asks"], serde_json::json!([["100.08", "13"]]));
        assert_eq!(v["ts_ns"], 7);
    }
}
