//! NDJSON ingest: `LineDecoder::decode` (one TCP line) and `decode_document`
//! (`POST /api/publish` body) on arbitrary bytes.
//!
//! Checks: no panic; every tick handed out meets the tick contract; a document error names
//! a line/element number from 1 (never 0).
#![no_main]

use libfuzzer_sys::fuzz_target;
use tickrelay::ingest::ndjson::LineDecoder;

#[path = "check.rs"]
mod check;

fuzz_target!(|data: &[u8]| {
    // One decoder for both calls, as the relay reuses it: its scratch buffers carry over.
    let mut decoder = LineDecoder::new();
    if let Some(Ok(tick)) = decoder.decode(&mut data.to_vec()) {
        check::valid_tick(&tick);
    }
    match decoder.decode_document(&mut data.to_vec()) {
        Ok(ticks) => ticks.iter().for_each(check::valid_tick),
        Err((line, _)) => assert!(line >= 1, "error numbered {line}"),
    }
});
