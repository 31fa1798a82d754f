//! Bars and 24-hour tickers, the channels the relay computes from trades
//! (`bars:INTERVAL:SYMBOL`, `ticker:SYMBOL`; the relay's `docs/PROTOCOL.md`, "Bars and
//! tickers"): their typed items and their decoding from JSON and protobuf.
//!
//! They are channels like any other for the client: subscribed with
//! [`Options::channels`](crate::Options::channels), seq-checked per channel and resumed on
//! a reconnect, so a missed bar is a [`Gap`](crate::Gap), never a silent hole.

use serde::{Deserialize, Serialize};

use crate::proto;

/// One OHLCV bar.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct BarValues {
    /// The bar's start, ns since the Unix epoch (a multiple of its interval).
    pub start_ns: u64,
    /// The first trade's price.
    pub open: f64,
    /// The highest trade price.
    pub high: f64,
    /// The lowest trade price.
    pub low: f64,
    /// The last trade's price.
    pub close: f64,
    /// The sum of the trades' sizes.
    pub volume: f64,
    /// How many trades it holds.
    pub trades: u64,
    /// Final: this bar will not change again. An open bar (`false`) is updated at most once
    /// per the relay's `--derived-interval`; each bar ends with one closed message.
    pub closed: bool,
}

/// A message of a bars channel: the open bar as it is now, or a bar closed.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Bar {
    /// `bars:INTERVAL:SYMBOL`.
    pub channel: String,
    /// Per-channel sequence number.
    pub seq: u64,
    /// The bar.
    #[serde(flatten)]
    pub bar: BarValues,
}

/// A bars channel's snapshot (on subscribe, or after a gap): its last closed bars, oldest
/// first, then its open bar if there is one. It counts as `seq`: the next bar message of the
/// channel is `seq + 1`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct BarSnapshot {
    /// `bars:INTERVAL:SYMBOL`.
    pub channel: String,
    /// The seq of the channel's newest message.
    pub seq: u64,
    /// The bars, oldest first.
    pub bars: Vec<BarValues>,
}

/// A symbol's rolling 24-hour statistics (`ticker:SYMBOL`); the snapshot sent on subscribe
/// reads as the ticker it is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Ticker {
    /// `ticker:SYMBOL`.
    pub channel: String,
    /// Per-channel sequence number.
    pub seq: u64,
    /// The newest trade price.
    pub last: f64,
    /// The first trade price of the window.
    pub open: f64,
    /// The highest trade price in the window.
    pub high: f64,
    /// The lowest trade price in the window.
    pub low: f64,
    /// The traded volume in the window.
    pub volume: f64,
    /// `last - open`.
    pub change: f64,
    /// `change / open × 100` (0 when `open` is 0).
    pub change_percent: f64,
    /// The event time the window ends at (it covers the 24 hours before), ns since the
    /// Unix epoch.
    pub ts_ns: u64,
}

/// A JSON bar, bar snapshot or ticker message.
#[derive(Deserialize)]
pub(crate) struct RawDerived {
    #[serde(rename = "type")]
    kind: String,
    channel: String,
    seq: u64,
    #[serde(default)]
    bars: Vec<BarValues>,
    #[serde(flatten)]
    fields: serde_json::Map<String, serde_json::Value>,
}

/// What a derived message decodes to.
#[derive(Debug, PartialEq)]
pub(crate) enum Derived {
    Bar(Bar),
    BarSnapshot(BarSnapshot),
    Ticker(Ticker),
}

/// Whether a JSON message `type` is one of these.
pub(crate) fn is_derived(kind: &str) -> bool {
    matches!(kind, "bar" | "bar_snapshot" | "ticker" | "ticker_snapshot")
}

/// Decodes a JSON message whose `type` [`is_derived`].
pub(crate) fn json(bytes: &[u8]) -> Result<Derived, serde_json::Error> {
    let raw: RawDerived = serde_json::from_slice(bytes)?;
    let fields = serde_json::Value::Object(raw.fields);
    Ok(match raw.kind.as_str() {
        "bar" => Derived::Bar(Bar {
            channel: raw.channel,
            seq: raw.seq,
            bar: serde_json::from_value(fields)?,
        }),
        "bar_snapshot" => Derived::BarSnapshot(BarSnapshot {
            channel: raw.channel,
            seq: raw.seq,
            bars: raw.bars,
        }),
        _ => {
            let stats: Stats = serde_json::from_value(fields)?;
            Derived::Ticker(Ticker {
                channel: raw.channel,
                seq: raw.seq,
                last: stats.last,
                open: stats.open,
                high: stats.high,
                low: stats.low,
                volume: stats.volume,
                change: stats.change,
                change_percent: stats.change_percent,
                ts_ns: stats.ts_ns,
            })
        }
    })
}

#[derive(Deserialize)]
struct Stats {
    last: f64,
    open: f64,
    high: f64,
    low: f64,
    volume: f64,
    change: f64,
    change_percent: f64,
    ts_ns: u64,
}

/// A protobuf `Bar` (live) as a [`Bar`].
pub(crate) fn bar(b: proto::Bar) -> Bar {
    Bar {
        bar: values(&b),
        channel: b.channel,
        seq: b.seq,
    }
}

/// A protobuf `BarSnapshot` as a [`BarSnapshot`].
pub(crate) fn bar_snapshot(s: proto::BarSnapshot) -> BarSnapshot {
    BarSnapshot {
        bars: s.bars.iter().map(values).collect(),
        channel: s.channel,
        seq: s.seq,
    }
}

/// A protobuf `Ticker` as a [`Ticker`].
pub(crate) fn ticker(t: proto::Ticker) -> Ticker {
    Ticker {
        channel: t.channel,
        seq: t.seq,
        last: t.last,
        open: t.open,
        high: t.high,
        low: t.low,
        volume: t.volume,
        change: t.change,
        change_percent: t.change_percent,
        ts_ns: t.ts_ns,
    }
}

fn values(b: &proto::Bar) -> BarValues {
    BarValues {
        start_ns: b.start_ns,
        open: b.open,
        high: b.high,
        low: b.low,
        close: b.close,
        volume: b.volume,
        trades: b.trades,
        closed: b.closed,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_bars_snapshots_and_tickers_decode() {
        let bar = br#"{"type":"bar","channel":"bars:1m:X","seq":4,"start_ns":60000000000,"open":1.5,"high":2.0,"low":1.0,"close":1.25,"volume":3.0,"trades":4,"closed":false}"#;
        let Derived::Bar(b) = json(bar).unwrap() else {
            panic!("a bar")
        };
        assert_eq!(
            (b.seq, b.bar.start_ns, b.bar.close, b.bar.closed),
            (4, 60_000_000_000, 1.25, false)
        );
        let snapshot = br#"{"type":"bar_snapshot","channel":"bars:1m:X","seq":4,"bars":[{"start_ns":0,"open":1.0,"high":1.0,"low":1.0,"close":1.0,"volume":1.0,"trades":1,"closed":true}]}"#;
        let Derived::BarSnapshot(s) = json(snapshot).unwrap() else {
            panic!("a snapshot")
        };
        assert_eq!((s.seq, s.bars.len(), s.bars[0].closed), (4, 1, true));
        let ticker = br#"{"type":"ticker_snapshot","channel":"ticker:X","seq":2,"last":101.0,"open":100.0,"high":102.5,"low":99.0,"volume":12.0,"change":1.0,"change_percent":1.0,"ts_ns":5}"#;
        let Derived::Ticker(t) = json(ticker).unwrap() else {
            panic!("a ticker")
        };
        assert_eq!((t.seq, t.last, t.ts_ns), (2, 101.0, 5));
        assert!(json(br#"{"type":"bar","channel":"bars:1m:X","seq":1}"#).is_err());
    }
}
