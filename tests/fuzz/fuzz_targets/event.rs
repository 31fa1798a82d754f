//! The event ingest path: `event::Event::parse` (one event object, limit 4096 bytes of
//! `data`) and an event line of the NDJSON port (`ingest::ndjson::LineDecoder::decode`), on
//! arbitrary bytes.
//!
//! Checks, besides no panic and the event contract of `check.rs`:
//! - accepted `data` nests at most `MAX_EVENT_DEPTH` deep, measured here independently (on
//!   serde_json's parse tree); `event_too_deep` only for data that nests deeper;
//! - an accepted channel in the `user:` space (in any case) is `user:<id>` or
//!   `user:<id>:<name>`: lowercase prefix, non-empty parts without `:`, and its owner is
//!   `<id>`; every other channel has no owner;
//! - the NDJSON port accepts an event exactly as `Event::parse` does on the trimmed line
//!   (the port may also read the line as a tick).
#![no_main]

use libfuzzer_sys::fuzz_target;
use serde_json::Value;
use tickrelay::event::{Event, EventError, Item, MAX_EVENT_DEPTH};
use tickrelay::ingest::ndjson::LineDecoder;

#[path = "check.rs"]
mod check;

/// `--max-event-bytes` for this target.
const MAX_DATA: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let parsed = Event::parse(data, MAX_DATA);
    match &parsed {
        Ok(event) => {
            check::valid_event(event, MAX_DATA);
            let value: Value = serde_json::from_slice(&event.data).expect("valid_event checked it");
            let depth = depth(&value);
            assert!(depth <= MAX_EVENT_DEPTH, "data {depth} deep accepted");
            private_name_rules(event);
        }
        Err(EventError::TooDeep {
            depth: reported, ..
        }) => {
            assert!(*reported > MAX_EVENT_DEPTH, "reported depth {reported}");
            // serde_json stops at 128 levels: deeper data is not a parse tree to measure.
            let raw: Value = serde_json::from_slice(data).unwrap_or(Value::Null);
            if let Some(value) = raw.get("data") {
                assert!(
                    depth(value) > MAX_EVENT_DEPTH,
                    "refused data {} deep",
                    depth(value)
                );
            }
        }
        Err(_) => {}
    }
    let mut decoder = LineDecoder::with_event_limit(MAX_DATA);
    match decoder.decode(&mut data.to_vec()) {
        Some(Ok(Item::Event(event))) => {
            // The port trims the line first (form feeds too, which JSON does not skip).
            let line = Event::parse(data.trim_ascii(), MAX_DATA);
            assert_eq!(line.ok(), Some(event), "the port and parse disagree");
        }
        Some(Ok(Item::Tick(tick))) => check::valid_tick(&tick),
        // Checked by the book_ingest target.
        Some(Ok(Item::Book(_))) => {}
        Some(Ok(other)) => panic!("a line decoded to an item no source sends: {other:?}"),
        Some(Err(_)) | None => {}
    }
});

/// How deep `value` nests arrays and objects (a scalar is 0).
fn depth(value: &Value) -> usize {
    match value {
        Value::Array(items) => 1 + items.iter().map(depth).max().unwrap_or(0),
        Value::Object(fields) => 1 + fields.values().map(depth).max().unwrap_or(0),
        _ => 0,
    }
}

/// The private channel rules of `event::Channel`.
fn private_name_rules(event: &Event) {
    let name = event.channel.as_str();
    let in_user_space = name
        .get(..5)
        .is_some_and(|prefix| prefix.eq_ignore_ascii_case("user:"));
    match event.channel.owner() {
        Some(owner) => {
            assert!(
                in_user_space && name.starts_with("user:"),
                "{name} has an owner"
            );
            let rest = &name[5..];
            let parts: Vec<&str> = rest.split(':').collect();
            assert!(
                (1..=2).contains(&parts.len()) && parts.iter().all(|p| !p.is_empty()),
                "{name} accepted as private"
            );
            assert_eq!(owner, parts[0]);
        }
        None => assert!(!in_user_space, "{name} in the user: space has no owner"),
    }
}
