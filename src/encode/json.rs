//! Ticks and server messages as JSON text.
//!
//! Ticks are written by hand (field order fixed: `type, symbol, seq, kind, ts_ns, recv_ns`,
//! then the optional fields) because this runs once per tick; floats go through `ryu`, the
//! shortest text that parses back to the same `f64`, so `43250.5` stays `43250.5`.
//! Other server messages are rare and go through serde.

use serde::Serialize;

use super::derived;
use crate::event::{Event, Item, TierItem};
use crate::tick::Tick;

/// Appends `{"type":<kind>,...tick fields...}` to `out`; `kind` is `tick` or `snapshot`.
pub fn write_tick(out: &mut Vec<u8>, message_type: &str, tick: &Tick) {
    let mut ints = itoa::Buffer::new();
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(message_type.as_bytes());
    // Symbols are validated to [A-Za-z0-9._:/-]: nothing to escape.
    out.extend_from_slice(b"\",\"symbol\":\"");
    out.extend_from_slice(tick.symbol.as_str().as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(ints.format(tick.seq.0).as_bytes());
    out.extend_from_slice(b",\"kind\":\"");
    out.extend_from_slice(tick.kind.as_str().as_bytes());
    out.extend_from_slice(b"\",\"ts_ns\":");
    out.extend_from_slice(ints.format(tick.ts_ns).as_bytes());
    out.extend_from_slice(b",\"recv_ns\":");
    out.extend_from_slice(ints.format(tick.recv_ns).as_bytes());
    let mut floats = ryu::Buffer::new();
    for (name, value) in [
        (&b",\"price\":"[..], tick.price),
        (b",\"size\":", tick.size),
        (b",\"bid\":", tick.bid),
        (b",\"ask\":", tick.ask),
        (b",\"bid_size\":", tick.bid_size),
        (b",\"ask_size\":", tick.ask_size),
    ] {
        if let Some(value) = value {
            out.extend_from_slice(name);
            // Finite by construction (Tick::try_from), so ryu never prints NaN/inf here.
            out.extend_from_slice(floats.format_finite(value).as_bytes());
        }
    }
    if let Some(venue) = &tick.venue {
        out.extend_from_slice(b",\"venue\":");
        write_string(out, venue);
    }
    out.push(b'}');
}

/// Appends `{"type":<kind>,"channel":..,"seq":..,"ts_ns":..,"data":<as published>}` to
/// `out`; `kind` is `event` or `snapshot`.
pub fn write_event(out: &mut Vec<u8>, message_type: &str, event: &Event) {
    let mut ints = itoa::Buffer::new();
    out.extend_from_slice(b"{\"type\":\"");
    out.extend_from_slice(message_type.as_bytes());
    // Channels use the symbol alphabet: nothing to escape.
    out.extend_from_slice(b"\",\"channel\":\"");
    out.extend_from_slice(event.channel.as_str().as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(ints.format(event.seq.0).as_bytes());
    out.extend_from_slice(b",\"ts_ns\":");
    out.extend_from_slice(ints.format(event.ts_ns).as_bytes());
    out.extend_from_slice(b",\"data\":");
    // Validated as one JSON value at ingest: spliced in as published.
    out.extend_from_slice(&event.data);
    out.push(b'}');
}

/// Appends a sequenced item (or a tier's frame) as its live message (`tick`, `event`) or,
/// with `snapshot`, as a `snapshot`.
pub fn write_item(out: &mut Vec<u8>, item: &Item, snapshot: bool) {
    match item {
        Item::Tick(tick) => write_tick(out, if snapshot { "snapshot" } else { "tick" }, tick),
        Item::Event(event) => {
            write_event(out, if snapshot { "snapshot" } else { "event" }, event);
        }
        Item::Bar(bar) if snapshot => derived::write_bar_snapshot(out, bar),
        Item::Bar(bar) => derived::write_bar(out, bar),
        Item::Ticker(ticker) => {
            let kind = if snapshot {
                "ticker_snapshot"
            } else {
                "ticker"
            };
            derived::write_ticker(out, kind, ticker);
        }
        Item::Tier(tier) => {
            write_item(out, &tier.newest, snapshot);
            write_tier_fields(out, tier);
        }
    }
}

/// Replaces the closing brace of the object just written with a tier frame's fields:
/// `"tier"`, `"from_seq"`, and for a symbol's tier `"trades"`, `"volume"`, `"high"`,
/// `"low"` (the last two only when the interval had a priced trade).
fn write_tier_fields(out: &mut Vec<u8>, tier: &TierItem) {
    let mut ints = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(b",\"tier\":\"");
    // Tier names are humantime's (`100ms`, `1s`): nothing to escape.
    out.extend_from_slice(tier.key.tier().map_or("", |t| t.name()).as_bytes());
    out.extend_from_slice(b"\",\"from_seq\":");
    out.extend_from_slice(ints.format(tier.from.0).as_bytes());
    if let Some(trades) = &tier.trades {
        out.extend_from_slice(b",\"trades\":");
        out.extend_from_slice(ints.format(trades.count).as_bytes());
        out.extend_from_slice(b",\"volume\":");
        // Sums of finite sizes: finite unless they overflow f64, which sizes never do.
        out.extend_from_slice(floats.format(trades.volume).as_bytes());
        for (name, value) in [
            (&b",\"high\":"[..], trades.high),
            (b",\"low\":", trades.low),
        ] {
            if let Some(value) = value {
                out.extend_from_slice(name);
                out.extend_from_slice(floats.format_finite(value).as_bytes());
            }
        }
    }
    out.push(b'}');
}

/// Serializes a server message (anything but a tick) to JSON bytes.
pub fn to_vec<T: Serialize>(message: &T) -> Vec<u8> {
    // Serializing our own plain structs into a Vec cannot fail.
    simd_json::serde::to_vec(message)
        .expect("server messages are plain structs of strings and integers")
}

fn write_string(out: &mut Vec<u8>, text: &str) {
    // serde's escaping is correct for every string; venue is rare enough for the detour.
    out.extend_from_slice(&to_vec(&text));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{RawTick, Seq};

    #[test]
    fn tick_json_is_exact_and_ordered() {
        let mut tick = Tick::try_from(RawTick {
            symbol: "BTC-USD".into(),
            price: Some(43250.5),
            size: Some(0.25),
            venue: Some("X\"Y".into()),
            ts_ns: 1_764_000_000_000_000_000,
            ..RawTick::default()
        })
        .unwrap();
        tick.seq = Seq(17);
        tick.recv_ns = 5;
        let mut out = Vec::new();
        write_tick(&mut out, "tick", &tick);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"tick","symbol":"BTC-USD","seq":17,"kind":"trade","ts_ns":1764000000000000000,"recv_ns":5,"price":43250.5,"size":0.25,"venue":"X\"Y"}"#
        );
    }
}
