//! Ticks and server messages as JSON text.
//!
//! Ticks are written by hand (field order fixed: `type, symbol, seq, kind, ts_ns, recv_ns`,
//! then the optional fields) because this runs once per tick; floats go through `ryu`, the
//! shortest text that parses back to the same `f64`, so `43250.5` stays `43250.5`.
//! Other server messages are rare and go through serde.

use serde::Serialize;

use super::derived;
use crate::book::{BookKind, BookUpdate, Level, decimal};
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
        // A book message says whether it is a whole book itself (`"snapshot":true`).
        Item::Book(book) => write_book(out, book),
        Item::Tier(tier) => {
            write_item(out, &tier.newest, snapshot);
            write_tier_fields(out, tier);
        }
    }
}

/// Replaces the closing brace of the object just written with a tier frame's fields:
/// `"tier"`, `"from_seq"` (a book has its own), and for a symbol's tier `"trades"`,
/// `"volume"`, `"high"`, `"low"` (the last two only when the interval had a priced trade).
fn write_tier_fields(out: &mut Vec<u8>, tier: &TierItem) {
    let mut ints = itoa::Buffer::new();
    let mut floats = ryu::Buffer::new();
    debug_assert_eq!(out.last(), Some(&b'}'));
    out.pop();
    out.extend_from_slice(b",\"tier\":\"");
    // Tier names are humantime's (`100ms`, `1s`): nothing to escape.
    out.extend_from_slice(tier.key.tier().map_or("", |t| t.name()).as_bytes());
    out.push(b'"');
    if matches!(tier.newest, Item::Book(_)) {
        // A book carries its `from_seq` itself.
        out.push(b'}');
        return;
    }
    out.extend_from_slice(b",\"from_seq\":");
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

/// Appends `{"type":"book","channel":..,"seq":..,("from_seq":..,)"snapshot":..,"bids":[["p","s"],..],"asks":[..],"checksum":..,"ts_ns":..}`
/// to `out`: prices and sizes as strings of their shortest exact decimal (a JSON number
/// would reach a JavaScript client as a float, and the checksum is over the exact text).
pub fn write_book(out: &mut Vec<u8>, book: &BookUpdate) {
    let mut ints = itoa::Buffer::new();
    // Book channels use the symbol alphabet: nothing to escape.
    out.extend_from_slice(b"{\"type\":\"book\",\"channel\":\"");
    out.extend_from_slice(book.channel.name().as_bytes());
    out.extend_from_slice(b"\",\"seq\":");
    out.extend_from_slice(ints.format(book.seq.0).as_bytes());
    if let Some(from) = book.from_seq {
        out.extend_from_slice(b",\"from_seq\":");
        out.extend_from_slice(ints.format(from.0).as_bytes());
    }
    out.extend_from_slice(if book.kind == BookKind::Delta {
        b",\"snapshot\":false,\"bids\":"
    } else {
        b",\"snapshot\":true,\"bids\":"
    });
    write_levels(out, &book.bids);
    out.extend_from_slice(b",\"asks\":");
    write_levels(out, &book.asks);
    out.extend_from_slice(b",\"checksum\":");
    out.extend_from_slice(ints.format(book.checksum).as_bytes());
    out.extend_from_slice(b",\"ts_ns\":");
    out.extend_from_slice(ints.format(book.ts_ns).as_bytes());
    out.push(b'}');
}

fn write_levels(out: &mut Vec<u8>, levels: &[Level]) {
    out.push(b'[');
    for (i, level) in levels.iter().enumerate() {
        if i > 0 {
            out.push(b',');
        }
        out.extend_from_slice(b"[\"");
        decimal::write(out, &level.price);
        out.extend_from_slice(b"\",\"");
        decimal::write(out, &level.size);
        out.extend_from_slice(b"\"]");
    }
    out.push(b']');
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
    use crate::book::BookChannel;
    use crate::tick::{RawTick, Seq, Symbol};

    #[test]
    fn each_item_has_its_live_and_its_snapshot_message() {
        use crate::encode::protobuf::tests::{bar, book_update, full_quote, news, ticker};
        let cases = [
            (Item::Tick(full_quote()), "tick", "snapshot"),
            (Item::Event(news(1)), "event", "snapshot"),
            (Item::Bar(Box::new(bar())), "bar", "bar_snapshot"),
            (
                Item::Ticker(Box::new(ticker())),
                "ticker",
                "ticker_snapshot",
            ),
            (
                Item::Book(book_update(BookKind::Delta, None)),
                "book",
                "book",
            ),
        ];
        for (item, live, snapshot) in cases {
            for (as_snapshot, name) in [(false, live), (true, snapshot)] {
                let mut out = Vec::new();
                write_item(&mut out, &item, as_snapshot);
                let message: serde_json::Value = serde_json::from_slice(&out).unwrap();
                assert_eq!(message["type"], name, "{item:?}, snapshot {as_snapshot}");
            }
        }
    }

    #[test]
    fn book_json_is_exact_and_ordered() {
        let level = |p: &str, s: &str| Level {
            price: decimal::parse(p).unwrap(),
            size: decimal::parse(s).unwrap(),
        };
        let channel = BookChannel::new(
            Symbol::parse("BTC-USD").unwrap(),
            crate::book::Depth::Top(2),
        );
        let mut book = BookUpdate::input(
            channel,
            BookKind::Delta,
            vec![level("43250.50", "0")],
            vec![level("43251", "1.250"), level("43252", "2")],
            9,
        );
        book.seq = Seq(4);
        book.checksum = 438_061_936;
        book.from_seq = Some(Seq(2));
        let mut out = Vec::new();
        write_book(&mut out, &book);
        assert_eq!(
            String::from_utf8(out).unwrap(),
            r#"{"type":"book","channel":"book:BTC-USD:2","seq":4,"from_seq":2,"snapshot":false,"bids":[["43250.5","0"]],"asks":[["43251","1.25"],["43252","2"]],"checksum":438061936,"ts_ns":9}"#
        );
    }

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
