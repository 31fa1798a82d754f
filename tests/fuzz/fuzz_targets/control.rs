//! Client control messages: `ControlParser::json` (text frames) and `::protobuf` (binary
//! frames from protobuf clients) on arbitrary bytes.
//!
//! Checks: no panic; a parsed selection holds at most the limit, valid symbols and channels,
//! no duplicates; a resume list is sorted, deduplicated and within the limit.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickrelay::event::{Channel, Key, Tiers};
use tickrelay::session::control::{Control, ControlParser, KeyRules, Selection};
use tickrelay::tick::Symbol;

/// The `--max-symbols-per-client` the parser enforces here.
const LIMIT: usize = 64;

fuzz_target!(|data: &[u8]| {
    let rules = KeyRules {
        limit: LIMIT,
        tiers: Tiers::new(&[std::time::Duration::from_secs(1)]),
    };
    let mut parser = ControlParser::new(rules);
    if let Ok(control) = parser.protobuf(data) {
        check(&control);
    }
    if let Ok(control) = parser.json(&mut data.to_vec()) {
        check(&control);
    }
});

fn check(control: &Control) {
    match control {
        Control::Subscribe(s) | Control::Unsubscribe(s) | Control::Snapshot(s) => selection(s),
        Control::Resume(from) => {
            assert!(from.len() <= LIMIT, "{} resume positions", from.len());
            assert!(
                from.windows(2).all(|w| w[0].0 < w[1].0),
                "resume list not sorted and deduplicated"
            );
            from.iter().for_each(|(k, _)| key(k));
        }
        Control::Ping { .. }
        | Control::Heartbeat { .. }
        | Control::Auth(_)
        | Control::Refresh(_) => {}
    }
}

fn selection(s: &Selection) {
    assert!(
        s.len() <= LIMIT,
        "{} symbols and channels selected",
        s.len()
    );
    for (i, a) in s.symbols.iter().enumerate() {
        assert!(a.is_symbol(), "a channel among symbols: {a:?}");
        key(a);
        assert!(!s.symbols[..i].contains(a), "duplicate symbol {a:?}");
    }
    for (i, c) in s.channels.iter().enumerate() {
        assert!(!c.is_symbol(), "a symbol among channels: {c:?}");
        key(c);
        assert!(!s.channels[..i].contains(c), "duplicate channel {c:?}");
    }
}

fn key(k: &Key) {
    // A tier's base is a symbol or a channel, never another tier.
    match k.base() {
        Key::Symbol(s) => symbol(s),
        Key::Channel(c) => assert!(Channel::parse(c.as_str()).is_ok(), "invalid channel {c:?}"),
        Key::Tiered(_) => panic!("a tier of a tier: {k:?}"),
    }
}

fn symbol(s: &Symbol) {
    assert!(Symbol::parse(s.as_str()).is_ok(), "invalid symbol {s:?}");
}
