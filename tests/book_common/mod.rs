//! Order-book test helpers: an independent model of a book (integer ticks, its own text
//! formatting and checksum), random update sequences that churn levels across the depth
//! boundary, and a client-side book built from the relay's JSON messages.
#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use rust_decimal::Decimal;
use serde_json::Value;

/// One publisher update: a whole book or changed levels (size 0 removes), in ticks:
/// prices in cents, sizes in thousandths.
#[derive(Debug, Clone)]
pub struct Update {
    pub snapshot: bool,
    pub bids: Vec<(i64, i64)>,
    pub asks: Vec<(i64, i64)>,
    /// How each number is written: as a JSON number, a string, or a string with trailing
    /// zeros (`"99.50"`): the relay must treat all three as the same level.
    pub spelling: u8,
}

/// The model: a book kept with integers and none of the relay's code.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Model {
    pub bids: BTreeMap<i64, i64>,
    pub asks: BTreeMap<i64, i64>,
}

impl Model {
    pub fn apply(&mut self, update: &Update) {
        if update.snapshot {
            self.bids.clear();
            self.asks.clear();
        }
        for (side, levels) in [
            (&mut self.bids, &update.bids),
            (&mut self.asks, &update.asks),
        ] {
            for (price, size) in levels {
                if *size == 0 {
                    side.remove(price);
                } else {
                    side.insert(*price, *size);
                }
            }
        }
    }

    /// The top `depth` levels of each side as `price:size` text, best first.
    pub fn top(&self, depth: usize) -> (Vec<String>, Vec<String>) {
        let text = |(p, s): (&i64, &i64)| format!("{}:{}", fixed(*p, 2), fixed(*s, 3));
        (
            self.bids.iter().rev().take(depth).map(text).collect(),
            self.asks.iter().take(depth).map(text).collect(),
        )
    }

    /// CRC32 of the top `depth` levels (the protocol's rule, written again here).
    pub fn checksum(&self, depth: usize) -> u32 {
        let (bids, asks) = self.top(depth);
        let joined: Vec<String> = bids.into_iter().chain(asks).collect();
        crc32fast::hash(joined.join("|").as_bytes())
    }
}

/// `value / 10^places` in shortest exact decimal text (no trailing zeros, no `.` alone).
pub fn fixed(value: i64, places: u32) -> String {
    let scale = 10i64.pow(places);
    let sign = if value < 0 { "-" } else { "" };
    let (int, frac) = (value.abs() / scale, value.abs() % scale);
    let frac = format!("{frac:0width$}", width = places as usize);
    let frac = frac.trim_end_matches('0');
    if frac.is_empty() {
        format!("{sign}{int}")
    } else {
        format!("{sign}{int}.{frac}")
    }
}

impl Update {
    /// The NDJSON line publishing this update for `symbol`.
    pub fn line(&self, symbol: &str) -> String {
        let number = |value: i64, places: u32, i: usize| {
            let text = fixed(value, places);
            match (self.spelling as usize + i) % 3 {
                0 => text,
                1 => format!("\"{text}\""),
                // Trailing zeros: the same level, spelled longer.
                _ if text.contains('.') => format!("\"{text}00\""),
                _ => format!("\"{text}.000\""),
            }
        };
        let levels = |levels: &[(i64, i64)]| {
            let items: Vec<String> = levels
                .iter()
                .enumerate()
                .map(|(i, (p, s))| format!("[{},{}]", number(*p, 2, i), number(*s, 3, i + 1)))
                .collect();
            format!("[{}]", items.join(","))
        };
        format!(
            r#"{{"type":"book","symbol":"{symbol}","snapshot":{},"bids":{},"asks":{},"ts_ns":1764000000000000000}}"#,
            self.snapshot,
            levels(&self.bids),
            levels(&self.asks)
        )
    }
}

/// Bids in 98.00..=99.99 and asks in 100.01..=102.00, so no update crosses the book; a
/// small price range so levels keep entering and leaving the top 2 and 5.
fn level(bid: bool) -> impl Strategy<Value = (i64, i64)> {
    let prices = if bid {
        9800i64..=9999
    } else {
        10001i64..=10200
    };
    (
        prices.prop_map(|p| p - p % 10),
        prop_oneof![1 => Just(0i64), 3 => 1i64..5000],
    )
}

fn update(snapshot: bool) -> impl Strategy<Value = Update> {
    (
        proptest::collection::vec(level(true), 0..12),
        proptest::collection::vec(level(false), 0..12),
        any::<u8>(),
    )
        .prop_map(move |(bids, asks, spelling)| Update {
            snapshot,
            bids,
            asks,
            spelling,
        })
}

/// A snapshot, then deltas with the occasional new snapshot.
pub fn updates(count: std::ops::Range<usize>) -> impl Strategy<Value = Vec<Update>> {
    (
        update(true),
        proptest::collection::vec(prop_oneof![12 => update(false), 1 => update(true)], count),
    )
        .prop_map(|(first, rest)| std::iter::once(first).chain(rest).collect())
}

/// A book as a client holds it, built from the relay's JSON book messages of one channel.
#[derive(Debug, Clone, Default)]
pub struct ClientBook {
    pub bids: BTreeMap<Decimal, Decimal>,
    pub asks: BTreeMap<Decimal, Decimal>,
    pub seq: u64,
}

impl ClientBook {
    /// Applies one `{"type":"book",..}` message and checks the checksum it carries; returns
    /// the message's seq.
    pub fn apply(&mut self, message: &Value, depth: usize) -> u64 {
        assert_eq!(message["type"], "book", "{message}");
        if message["snapshot"] == true {
            self.bids.clear();
            self.asks.clear();
        }
        for (side, name) in [(&mut self.bids, "bids"), (&mut self.asks, "asks")] {
            for level in message[name].as_array().expect("levels") {
                let price: Decimal = level[0].as_str().expect("price text").parse().unwrap();
                let size: Decimal = level[1].as_str().expect("size text").parse().unwrap();
                assert_eq!(
                    level[0].as_str().unwrap(),
                    price.normalize().to_string(),
                    "shortest form"
                );
                if size.is_zero() {
                    side.remove(&price);
                } else {
                    side.insert(price, size);
                }
            }
        }
        self.seq = message["seq"].as_u64().expect("seq");
        assert_eq!(
            message["checksum"].as_u64().map(|c| c as u32),
            Some(self.checksum(depth)),
            "the checksum of the client's book after {message}"
        );
        self.seq
    }

    /// The top `depth` levels as `price:size` text.
    pub fn top(&self, depth: usize) -> (Vec<String>, Vec<String>) {
        let text = |(p, s): (&Decimal, &Decimal)| format!("{}:{}", p.normalize(), s.normalize());
        (
            self.bids.iter().rev().take(depth).map(text).collect(),
            self.asks.iter().take(depth).map(text).collect(),
        )
    }

    pub fn checksum(&self, depth: usize) -> u32 {
        let (bids, asks) = self.top(depth);
        let joined: Vec<String> = bids.into_iter().chain(asks).collect();
        crc32fast::hash(joined.join("|").as_bytes())
    }

    /// Levels held per side (a depth-N client holds at most N).
    pub fn len(&self) -> (usize, usize) {
        (self.bids.len(), self.asks.len())
    }
}

/// Deterministic updates (a small LCG): a snapshot of eight levels a side around 10,000,
/// then `count` one-level deltas a side, each within `spread` ticks of the touch (size 0,
/// one time in four, removes the level).
pub fn scripted(count: usize, seed: u64, spread: i64) -> Vec<Update> {
    let mut state = seed;
    let mut next = move |n: i64| {
        state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        ((state >> 33) as i64).rem_euclid(n)
    };
    let mut all = vec![Update {
        snapshot: true,
        bids: (0..8).map(|i| (9990 - i * 10, 1000)).collect(),
        asks: (0..8).map(|i| (10010 + i * 10, 1000)).collect(),
        spelling: 0,
    }];
    for i in 0..count {
        let bids = vec![(
            10000 - spread * 10 + next(spread) * 10,
            if next(4) == 0 { 0 } else { 1 + next(5000) },
        )];
        let asks = vec![(
            10010 + next(spread) * 10,
            if next(4) == 0 { 0 } else { 1 + next(5000) },
        )];
        all.push(Update {
            snapshot: false,
            bids,
            asks,
            spelling: i as u8,
        });
    }
    all
}

/// The model's book after each update: `states[seq - 1]`.
pub fn model_states(updates: &[Update]) -> Vec<Model> {
    let mut model = Model::default();
    updates
        .iter()
        .map(|u| {
            model.apply(u);
            model.clone()
        })
        .collect()
}
