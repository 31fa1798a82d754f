//! NDJSON ingest: `LineDecoder::decode` (one TCP line, a tick or an event),
//! `decode_document` (`POST /api/publish` body) and `decode_events` (`POST /api/events`
//! body) on arbitrary bytes.
//!
//! Checks: no panic; every tick handed out meets the tick contract and every event the event
//! contract; a document error names a line/element number from 1 (never 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickrelay::event::Item;
use tickrelay::ingest::ndjson::LineDecoder;

#[path = "check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    // One decoder for every call, as the relay reuses it: its scratch buffers carry over.
    let mut decoder = LineDecoder::with_event_limit(MAX_EVENT);
    match decoder.decode(&mut data.to_vec()) {
        Some(Ok(Item::Tick(tick))) => check::valid_tick(&tick),
        Some(Ok(Item::Event(event))) => check::valid_event(&event, MAX_EVENT),
        _ => {}
    }
    match decoder.decode_events(&mut data.to_vec()) {
        Ok(events) => events.iter().for_each(|e| check::valid_event(e, MAX_EVENT)),
        Err((line, _)) => assert!(line >= 1, "event error numbered {line}"),
    }
    match decoder.decode_document(&mut data.to_vec()) {
        Ok(ticks) => ticks.iter().for_each(check::valid_tick),
        Err((line, _)) => assert!(line >= 1, "error numbered {line}"),
    }
});

/// The event size limit the decoders enforce here.
const MAX_EVENT: usize = tickrelay::config::defaults::MAX_EVENT_BYTES;
