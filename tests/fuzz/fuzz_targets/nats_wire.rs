//! What an edge (or a restarting sequencer) reads from NATS: `nats::wire::decode` on any
//! subject, headers and payload, bars and tickers above all (src/nats/wire.rs, subject.rs).
//!
//! Input: byte 0 picks the subject (0 a tick's, 1 an event's, 2 and 3 a bars channel's open
//! and closed subjects, 4 a ticker's, else the text up to the first `\n`); byte 1's bits
//! leave out the epoch, receive-time and tick-seq headers, or (bit 3) take their values from
//! the next three `\n`-separated texts; the rest is the payload.
//! Checks: no panic; `Subjects::parse` of any text gives a key whose subject is that text
//! again; a decoded item is what the relay could have written (a seq, finite numbers, a
//! bar's low ≤ open, close ≤ high, a trade, a start on its interval, its `closed` the
//! subject's part; a ticker's low ≤ high), and encodes back to the same subject and item.
#![no_main]

use async_nats::HeaderMap;
use libfuzzer_sys::fuzz_target;
use tickrelay::event::Item;
use tickrelay::event::derived::{BarInterval, DerivedName};
use tickrelay::nats::subject::{Carries, Subjects};
use tickrelay::nats::wire::{self, EPOCH, RECV_NS, TICK_SEQ};

const SUBJECTS: [&str; 5] = [
    "tickrelay.tick.BTC-USD",
    "tickrelay.event.news",
    "tickrelay.bar.bars:1m:BTC-USD.open",
    "tickrelay.bar.bars:1m:BTC-USD.closed",
    "tickrelay.ticker.ticker:BTC-USD",
];

fuzz_target!(|data: &[u8]| {
    let [pick, flags, rest @ ..] = data else {
        return;
    };
    let subjects = Subjects::new("tickrelay");
    let mut rest = rest;
    let mut text = || {
        let end = rest.iter().position(|b| *b == b'\n').unwrap_or(rest.len());
        let piece = String::from_utf8_lossy(&rest[..end]).into_owned();
        rest = rest.get(end + 1..).unwrap_or(&[]);
        piece
    };
    let subject = match SUBJECTS.get(usize::from(*pick)) {
        Some(subject) => (*subject).to_owned(),
        None => text(),
    };
    match subjects.parse(&subject) {
        // A checkpoint's subject is its symbol's, not its channel's (`of` gives the updates').
        Ok((Carries::BookCheckpoints, _)) | Err(_) => {}
        Ok((carries, key)) => {
            let mut again = subjects.of(&key);
            if let Carries::Bars { closed } = carries {
                again.truncate(again.len() - 1); // `….*` of the follower
                again.push_str(if closed { "closed" } else { "open" });
            }
            assert_eq!(again, subject, "one spelling per key");
        }
    }
    let mut headers = HeaderMap::new();
    for (bit, name, fixed) in [(1, EPOCH, "42"), (2, RECV_NS, "7"), (4, TICK_SEQ, "99")] {
        let mut value = if flags & 8 != 0 {
            text()
        } else {
            fixed.to_owned()
        };
        // A NATS header value holds no line break (async-nats refuses one with a panic; a
        // message read from the wire never has one).
        value.retain(|c| c != '\r' && c != '\n');
        if flags & bit == 0 {
            headers.insert(name, value.as_str());
        }
    }
    let Ok(incoming) = wire::decode(&subjects, &subject, Some(&headers), rest) else {
        return;
    };
    let item = incoming.item;
    assert!(item.seq().0 > 0, "an unsequenced item");
    match &item {
        Item::Bar(bar) => {
            let b = bar.bar;
            let numbers = [b.open, b.high, b.low, b.close, b.volume];
            assert!(numbers.iter().all(|n| n.is_finite()), "{b:?}");
            assert!(b.low <= b.open && b.open <= b.high && b.low <= b.close && b.close <= b.high);
            assert!(b.trades > 0 && bar.recent.through() == 0);
            let Some(DerivedName::Bars { interval, .. }) = DerivedName::parse(bar.channel.as_str())
            else {
                panic!("a bar of {:?}", bar.channel)
            };
            let interval =
                BarInterval::parse(interval).expect("a bar's channel names its interval");
            assert_eq!(interval.start_of(b.start_ns), b.start_ns);
            assert_eq!(subject.ends_with(".closed"), b.closed);
        }
        Item::Ticker(ticker) => {
            let s = ticker.stats;
            let numbers = [
                s.last,
                s.open,
                s.high,
                s.low,
                s.volume,
                s.change,
                s.change_percent,
            ];
            assert!(
                numbers.iter().all(|n| n.is_finite()) && s.low <= s.high,
                "{s:?}"
            );
        }
        Item::Tick(_) | Item::Event(_) | Item::Book(_) => {}
        Item::Tier(_) => panic!("the stream never holds a tier frame (a shard makes them)"),
    }
    let out = wire::encode(&subjects, &item, incoming.epoch, 1);
    assert_eq!(out.subject, subject);
    let back = wire::decode(&subjects, &out.subject, Some(&out.headers), &out.payload)
        .expect("what the relay writes, it reads");
    assert_eq!(back.item, item, "encodes back to the same item");
});
