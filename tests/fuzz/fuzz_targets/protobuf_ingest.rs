//! Protobuf ingest and the TCP stream decoder.
//!
//! Input: byte 0 picks the TCP read size (1..=256 bytes per read); the rest is the stream.
//! Checks:
//! - `decode_tick` and the `next_message` loop never panic, hand out only valid ticks, and a
//!   result either consumes bytes or ends the stream (else `drain` would spin forever);
//! - `tcp::Decoder::drain`, for both formats and two limits, fed in reads of that size: no
//!   panic, valid ticks, reject line numbers strictly increasing from 1, buffered bytes
//!   bounded by the limit (no unbounded growth), and the same ticks and rejections as when
//!   the whole stream arrives in one read; after a publisher's hello, one pseq per item,
//!   rising, never past the settled mark, and the same pseqs and final mark however read.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tickrelay::config::defaults::MAX_EVENT_BYTES;
use tickrelay::event::Item;
use tickrelay::ingest::protobuf::{decode_tick, next_message};
use tickrelay::ingest::tcp::{Decoder, Format};

#[path = "check.rs"]
mod check;

/// A realistic limit, and a small one so over-long messages are reached.
const LIMITS: [usize; 2] = [4096, 48];

fuzz_target!(|data: &[u8]| {
    let Some((&split, stream)) = data.split_first() else {
        return;
    };
    if let Ok(tick) = decode_tick(stream) {
        check::valid_tick(&tick);
    }
    for limit in LIMITS {
        let mut buf = BytesMut::from(stream);
        loop {
            let before = buf.len();
            match next_message(&mut buf, limit) {
                None => break,
                // `Decoder::drain` calls `next_message` until `None` or an error that ends
                // the stream: anything else that consumes nothing would repeat forever.
                Some(Err(error)) => {
                    assert!(
                        buf.len() < before || error.ends_stream(),
                        "{error:?} consumed nothing and does not end the stream"
                    );
                    break;
                }
                Some(Ok(tick)) => {
                    check::valid_tick(&tick);
                    assert!(buf.len() < before, "a tick consumed no bytes");
                }
            }
        }
    }
    let read = usize::from(split) + 1;
    for format in [Format::Ndjson, Format::Protobuf] {
        for limit in LIMITS {
            let chunked = run(format, limit, stream, read);
            let whole = run(format, limit, stream, stream.len().max(1));
            assert_eq!(
                chunked, whole,
                "{format:?} limit {limit}: reads of {read} bytes differ from one read"
            );
        }
    }
});

/// What a connection saw: the ticks (without `recv_ns`) and the `(line, code)` rejections.
#[derive(Debug, PartialEq)]
struct Outcome {
    ticks: Vec<Item>,
    rejected: Vec<(u64, &'static str)>,
    fatal: bool,
    /// After a publisher's hello: each item's pseq, and how far each read settled.
    pseqs: Vec<u64>,
    through: Vec<u64>,
}

/// Feeds `stream` to a fresh decoder `read` bytes at a time, as `tcp::Connection::run` does.
fn run(format: Format, limit: usize, stream: &[u8], read: usize) -> Outcome {
    let mut decoder = Decoder::new(format, limit);
    let mut buf = BytesMut::new();
    let mut outcome = Outcome {
        ticks: Vec::new(),
        rejected: Vec::new(),
        fatal: false,
        pseqs: Vec::new(),
        through: Vec::new(),
    };
    for chunk in stream.chunks(read) {
        buf.extend_from_slice(chunk);
        let (ticks, lines, fatal) = decoder.drain_numbered(&mut buf, |line, error| {
            outcome.rejected.push((line, error.code().as_str()));
        });
        // A hello's tags: one pseq per item, rising, and the settled mark never behind them.
        if let Some(tagged) = decoder.tagged(&lines) {
            assert_eq!(tagged.pseqs.len(), ticks.len(), "a pseq per item");
            assert!(tagged.pseqs.windows(2).all(|w| w[0] < w[1]), "pseqs rise");
            assert!(tagged.pseqs.last().is_none_or(|&p| p <= tagged.through));
            outcome.pseqs.extend(&tagged.pseqs);
            // Only the last mark is the same however the bytes were read.
            outcome.through.clear();
            outcome.through.push(tagged.through);
        }
        for item in ticks {
            // Received-at stamps differ between runs; everything else must not.
            match item {
                Item::Tick(mut tick) => {
                    check::valid_tick(&tick);
                    tick.recv_ns = 0;
                    outcome.ticks.push(Item::Tick(tick));
                }
                Item::Event(mut event) => {
                    check::valid_event(&event, MAX_EVENT_BYTES);
                    // An event without ts_ns takes the receive time as its ts_ns.
                    event.recv_ns = 0;
                    event.ts_ns = 0;
                    outcome.ticks.push(Item::Event(event));
                }
                Item::Book(mut book) => {
                    // Checked by the book_ingest target; a book without ts_ns takes the
                    // receive time as its ts_ns.
                    book.recv_ns = 0;
                    book.ts_ns = 0;
                    outcome.ticks.push(Item::Book(book));
                }
                other => panic!("ingest decoded an item only the relay builds: {other:?}"),
            }
        }
        if fatal {
            outcome.fatal = true;
            break;
        }
        match format {
            Format::Ndjson => {
                assert!(!buf.contains(&b'\n'), "a complete line was left undecoded");
                assert!(
                    buf.len() <= limit,
                    "{} bytes buffered, limit {limit}",
                    buf.len()
                );
            }
            // A pending message: a varint prefix (at most 10 bytes) and at most `limit` bytes.
            Format::Protobuf => {
                assert!(
                    buf.len() < limit + 10,
                    "{} bytes buffered, limit {limit}",
                    buf.len()
                );
            }
        }
    }
    let lines: Vec<u64> = outcome.rejected.iter().map(|(line, _)| *line).collect();
    assert!(
        lines.first().is_none_or(|&l| l >= 1) && lines.windows(2).all(|w| w[0] < w[1]),
        "reject line numbers {lines:?}"
    );
    outcome
}
