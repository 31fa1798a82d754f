//! Bars and tickers in JSON and protobuf, live and as snapshots.
//!
//! JSON is written by hand in a fixed field order (docs/PROTOCOL.md): a bar
//! `type, channel, seq, start_ns, open, high, low, close, volume, trades, closed`; a ticker
//! `type, channel, seq, last, open, high, low, volume, change, change_percent, ts_ns`.
//! Numbers go through `ryu` like ticks' (every value is finite by construction).

use crate::event::derived::{Bar, BarValues, Ticker};
use crate::proto;

/// Appends `{"type":"bar",...}`.
pub fn write_bar(out: &mut Vec<u8>, bar: &Bar) {
    head(out, "bar", bar.channel.as_str(), bar.seq.0);
    out.push(b',');
    values(out, &bar.bar);
    out.push(b'}');
}

/// Appends `{"type":"bar_snapshot","channel":..,"seq":..,"bars":[{..},..]}`: the closed
/// bars `bar` follows, then `bar` itself if it is the open one.
pub fn write_bar_snapshot(out: &mut Vec<u8>, bar: &Bar) {
    head(out, "bar_snapshot", bar.channel.as_str(), bar.seq.0);
    out.extend_from_slice(b",\"bars\":[");
    for (i, values_of) in snapshot_bars(bar).iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.push(b'{');
        values(out, values_of);
        out.push(b'}');
    }
    out.extend_from_slice(b"]}");
}

/// Appends `{"type":<kind>,...ticker fields...}`; `kind` is `ticker` or `ticker_snapshot`.
pub fn write_ticker(out: &mut Vec<u8>, kind: &str, ticker: &Ticker) {
    head(out, kind, ticker.channel.as_str(), ticker.seq.0);
    let s = &ticker.stats;
    numbers(
        out,
        [
            (&b",\"last\":"[..], s.last),
            (b",\"open\":", s.open),
            (b",\"high\":", s.high),
            (b",\"low\":", s.low),
            (b",\"volume\":", s.volume),
            (b",\"change\":", s.change),
            (b",\"change_percent\":", s.change_percent),
        ],
    );
    out.extend_from_slice(b",\"ts_ns\":");
    out.extend_from_slice(itoa::Buffer::new().format(ticker.ts_ns).as_bytes());
    out.push(b'}');
}

/// The protobuf `Bar` of a bar message.
pub fn bar_message(bar: &Bar) -> proto::Bar {
    proto::Bar {
        channel: bar.channel.as_str().to_owned(),
        seq: bar.seq.0,
        ..bar_values(&bar.bar)
    }
}

/// The protobuf `BarSnapshot` of a bars channel whose newest message is `bar`.
pub fn bar_snapshot(bar: &Bar) -> proto::BarSnapshot {
    proto::BarSnapshot {
        channel: bar.channel.as_str().to_owned(),
        seq: bar.seq.0,
        bars: snapshot_bars(bar).iter().map(bar_values).collect(),
    }
}

/// The protobuf `Ticker` of a ticker message.
pub fn ticker_message(ticker: &Ticker) -> proto::Ticker {
    let s = &ticker.stats;
    proto::Ticker {
        channel: ticker.channel.as_str().to_owned(),
        seq: ticker.seq.0,
        last: s.last,
        open: s.open,
        high: s.high,
        low: s.low,
        volume: s.volume,
        change: s.change,
        change_percent: s.change_percent,
        ts_ns: ticker.ts_ns,
    }
}

/// A protobuf `Bar` holding only a bar's values (`channel` and `seq` unset).
pub fn bar_values(values: &BarValues) -> proto::Bar {
    proto::Bar {
        channel: String::new(),
        seq: 0,
        start_ns: values.start_ns,
        open: values.open,
        high: values.high,
        low: values.low,
        close: values.close,
        volume: values.volume,
        trades: values.trades,
        closed: values.closed,
    }
}

/// A snapshot's bars: the channel's closed bars up to `bar` (itself among them when it is
/// closed), then the open bar.
fn snapshot_bars(bar: &Bar) -> Vec<BarValues> {
    let mut bars = bar.recent.bars();
    if !bar.bar.closed {
        bars.push(bar.bar);
    }
    bars
}

fn head(out: &mut Vec<u8>, kind: &str, channel: &str, seq: u64) {
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(kind.as_bytes());
    // Channels use the symbol alphabet: nothing to escape.
    out.extend_from_slice(b"\",\"channel\":\"");
    out.extend_from_slice(channel.as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(itoa::Buffer::new().format(seq).as_bytes());
}

/// `"start_ns":..,"open":..,...,"closed":..` (no braces).
fn values(out: &mut Vec<u8>, bar: &BarValues) {
    let mut ints = itoa::Buffer::new();
    out.extend_from_slice(b"\"start_ns\":");
    out.extend_from_slice(ints.format(bar.start_ns).as_bytes());
    numbers(
        out,
        [
            (&b",\"open\":"[..], bar.open),
            (b",\"high\":", bar.high),
            (b",\"low\":", bar.low),
            (b",\"close\":", bar.close),
            (b",\"volume\":", bar.volume),
        ],
    );
    out.extend_from_slice(b",\"trades\":");
    out.extend_from_slice(ints.format(bar.trades).as_bytes());
    out.extend_from_slice(if bar.closed {
        b",\"closed\":true"
    } else {
        b",\"closed\":false"
    });
}

fn numbers<const N: usize>(out: &mut Vec<u8>, fields: [(&[u8], f64); N]) {
    let mut floats = ryu::Buffer::new();
    for (name, value) in fields {
        out.extend_from_slice(name);
        // Finite by construction (trade prices, and sums clamped to the finite range).
        out.extend_from_slice(floats.format_finite(value).as_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Channel;
    use crate::event::derived::{BarHistory, TickerValues};
    use crate::tick::Seq;

    #[test]
    fn bar_json_is_exact_and_ordered() {
        let message = Bar {
            channel: Channel::parse("bars:1m:BTC-USD").unwrap(),
            seq: Seq(7),
            bar: BarValues::sample(60_000_000_000, false),
            recent: {
                let history = BarHistory::new(60);
                history.push(BarValues::sample(0, true));
                history.now()
            },
            tick_seq: Seq(99),
            recv_ns: 1,
        };
        let mut out = Vec::new();
        write_bar(&mut out, &message);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"bar","channel":"bars:1m:BTC-USD","seq":7,"start_ns":60000000000,"open":1.5,"high":2.0,"low":1.0,"close":1.25,"volume":3.0,"trades":4,"closed":false}"#
        );
        let mut out = Vec::new();
        write_bar_snapshot(&mut out, &message);
        let snapshot: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(snapshot["type"], "bar_snapshot");
        assert_eq!(snapshot["seq"], 7);
        let starts: Vec<u64> = snapshot["bars"]
            .as_array()
            .unwrap()
            .iter()
            .map(|b| b["start_ns"].as_u64().unwrap())
            .collect();
        assert_eq!(
            starts,
            [0, 60_000_000_000],
            "closed ones, then the open one"
        );
        assert_eq!(bar_snapshot(&message).bars.len(), 2);
    }

    #[test]
    fn ticker_json_is_exact_and_ordered() {
        let ticker = Ticker {
            channel: Channel::parse("ticker:ETH-USD").unwrap(),
            seq: Seq(3),
            stats: TickerValues::sample(),
            ts_ns: 5,
            recv_ns: 6,
        };
        let mut out = Vec::new();
        write_ticker(&mut out, "ticker", &ticker);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"ticker","channel":"ticker:ETH-USD","seq":3,"last":101.0,"open":100.0,"high":102.5,"low":99.0,"volume":12.0,"change":1.0,"change_percent":1.0,"ts_ns":5}"#
        );
    }
}
