//! The bars and ticker model the derived-stream tests compare the relay with, written
//! independently of the relay's code (docs/PROTOCOL.md, "Bars and tickers").

use std::time::{SystemTime, UNIX_EPOCH};

use serde_json::Value;

/// A second, a minute and a day in ns.
pub const S: u64 = 1_000_000_000;
pub const MINUTE: u64 = 60 * S;
pub const DAY: u64 = 86_400 * S;

/// One bar, as the relay sends it and as [`model`] computes it.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Bar {
    pub start_ns: u64,
    pub open: f64,
    pub high: f64,
    pub low: f64,
    pub close: f64,
    pub volume: f64,
    pub trades: u64,
    pub closed: bool,
}

/// A trade as published: (ts_ns, price, size).
pub type Trade = (u64, f64, f64);

/// The independent computation: each trade goes to the bar of its interval; a trade of a
/// later interval closes the open bar; one of an earlier or closed interval is late.
/// Returns the closed bars, the open bar and the number of late trades.
pub fn model(trades: &[Trade], interval: u64) -> (Vec<Bar>, Option<Bar>, u64) {
    let (mut closed, mut open, mut late, mut floor) = (Vec::new(), None::<Bar>, 0, 0);
    for &(ts, price, size) in trades {
        let start = ts / interval * interval;
        match &mut open {
            Some(bar) if bar.start_ns == start => {
                bar.high = bar.high.max(price);
                bar.low = bar.low.min(price);
                bar.close = price;
                bar.volume += size;
                bar.trades += 1;
                continue;
            }
            Some(bar) if start < bar.start_ns => {
                late += 1;
                continue;
            }
            Some(bar) => {
                closed.push(Bar {
                    closed: true,
                    ..*bar
                });
                floor = bar.start_ns + interval;
            }
            None if start < floor => {
                late += 1;
                continue;
            }
            None => {}
        }
        open = Some(Bar {
            start_ns: start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: size,
            trades: 1,
            closed: false,
        });
    }
    (closed, open, late)
}

/// The 24-hour statistics at event time `t`, from the 1-minute bars of the window.
pub fn ticker_model(trades: &[Trade], t: u64) -> [f64; 6] {
    let (mut bars, open, _) = model(trades, MINUTE);
    bars.extend(open);
    let first = (t / MINUTE * MINUTE + MINUTE).saturating_sub(DAY);
    let window: Vec<&Bar> = bars.iter().filter(|b| b.start_ns >= first).collect();
    let open = window[0].open;
    let last = window[window.len() - 1].close;
    let volume = window.iter().fold(0.0, |sum, b| sum + b.volume);
    let high = window.iter().map(|b| b.high).fold(f64::MIN, f64::max);
    let low = window.iter().map(|b| b.low).fold(f64::MAX, f64::min);
    [last, open, high, low, volume, last - open]
}

pub fn bar_of(m: &Value) -> Bar {
    let f = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k} in {m}"));
    Bar {
        start_ns: m["start_ns"].as_u64().expect("start_ns"),
        open: f("open"),
        high: f("high"),
        low: f("low"),
        close: f("close"),
        volume: f("volume"),
        trades: m["trades"].as_u64().expect("trades"),
        closed: m["closed"].as_bool().expect("closed"),
    }
}

pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// A price no generated trade has (they are multiples of 0.25): the last trade carries it,
/// so a message showing it has seen every trade.
pub const MARKER: f64 = 0.125;

/// `trades` and, after the newest, one more at [`MARKER`].
pub fn with_marker(mut trades: Vec<Trade>) -> Vec<Trade> {
    let newest = trades
        .iter()
        .map(|t| t.0)
        .max()
        .expect("at least one trade");
    trades.push((newest + 1_000_000, MARKER, 1.0));
    trades
}

/// The NDJSON ingest line of a trade.
pub fn line(symbol: &str, (ts, price, size): Trade) -> String {
    format!(r#"{{"symbol":"{symbol}","price":{price},"size":{size},"ts_ns":{ts}}}"#)
}
