//! Book ingest: `book::input::parse_json` (an NDJSON book line), the NDJSON line decoder
//! (which tells a book line from a tick or an event), and the protobuf port's
//! `decode_item` (an `IngestBook` or a `Tick`) on arbitrary bytes.
//!
//! Checks: no panic; every book update handed out is a publisher's (seq 0, the full-book
//! channel of a valid symbol) whose every price and size is a normalised decimal (its text
//! parses back to itself), every size 0 or more.
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickrelay::book::{BookUpdate, Depth, decimal, input};
use tickrelay::event::Item;
use tickrelay::ingest::ndjson::LineDecoder;
use tickrelay::ingest::protobuf::decode_item;

fuzz_target!(|data: &[u8]| {
    if let Ok(update) = input::parse_json(data) {
        valid(&update);
    }
    if let Some(Ok(Item::Book(update))) = LineDecoder::new().decode(&mut data.to_vec()) {
        valid(&update);
    }
    if let Ok(Item::Book(update)) = decode_item(data) {
        valid(&update);
    }
});

fn valid(update: &BookUpdate) {
    assert_eq!(update.seq.0, 0, "a publisher's update is unsequenced");
    assert_eq!(update.channel.depth(), Depth::Full);
    assert!(tickrelay::tick::Symbol::parse(update.channel.symbol().as_str()).is_ok());
    for level in update.bids.iter().chain(&update.asks) {
        assert!(
            !level.size.is_sign_negative() || level.size.is_zero(),
            "size {}",
            level.size
        );
        for value in [level.price, level.size] {
            let text = decimal::text(&value);
            assert_eq!(
                decimal::parse(&text),
                Ok(value),
                "{text} is its own shortest form"
            );
            assert!(
                !text.contains('e') && !(text.contains('.') && text.ends_with('0')),
                "{text}"
            );
        }
    }
}
