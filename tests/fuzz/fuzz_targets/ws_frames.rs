//! The client→server WebSocket frame reader (`session::wire::FrameReader`), limit 1024.
//!
//! Input: bytes 0..4 are a cycle of socket read sizes (each 1..=64 bytes); the rest is what
//! the client sends after the handshake. Checks:
//! - no panic, whatever the frames announce;
//! - a Text message is valid UTF-8; no Text or Binary message is over the limit; a Ping
//!   payload is at most 125 bytes; a Close code is one a peer may send;
//! - while waiting for more bytes the reader holds at most one frame (header ≤ 14 bytes +
//!   payload ≤ limit): no unbounded buffering;
//! - reads of any size give the same messages and the same error as one read of everything.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tickrelay::session::wire::{FrameReader, Incoming, WireError};

/// `--max-message-bytes` for this target.
const LIMIT: usize = 1024;
/// The longest frame header: 2 bytes, an 8-byte length, a 4-byte mask.
const MAX_HEADER: usize = 14;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (sizes, stream) = data.split_at(4);
    let reads: Vec<usize> = sizes.iter().map(|b| usize::from(b % 64) + 1).collect();
    let chunked = read(stream, &reads);
    let whole = read(stream, &[stream.len().max(1)]);
    assert_eq!(
        chunked, whole,
        "reads of {reads:?} bytes differ from one read"
    );
});

/// Feeds `stream` to a fresh reader in reads cycling through `reads` sizes, taking every
/// message after each read; stops at the first error, as the session closes the socket.
fn read(stream: &[u8], reads: &[usize]) -> (Vec<Incoming>, Option<WireError>) {
    let mut reader = FrameReader::new(LIMIT);
    let mut buf = BytesMut::new();
    let mut messages = Vec::new();
    let mut rest = stream;
    for &size in reads.iter().cycle() {
        if rest.is_empty() {
            break;
        }
        let (chunk, tail) = rest.split_at(size.min(rest.len()));
        rest = tail;
        buf.extend_from_slice(chunk);
        loop {
            match reader.next(&mut buf) {
                Ok(Some(message)) => {
                    check(&message);
                    messages.push(message);
                }
                Ok(None) => {
                    assert!(
                        buf.len() < MAX_HEADER + LIMIT,
                        "{} bytes buffered",
                        buf.len()
                    );
                    break;
                }
                Err(error) => return (messages, Some(error)),
            }
        }
    }
    (messages, None)
}

fn check(message: &Incoming) {
    match message {
        Incoming::Text(text) => {
            assert!(std::str::from_utf8(text).is_ok(), "Text is not UTF-8");
            assert!(text.len() <= LIMIT, "Text of {} bytes", text.len());
        }
        Incoming::Binary(data) => assert!(data.len() <= LIMIT, "Binary of {} bytes", data.len()),
        Incoming::Ping(data) => assert!(data.len() <= 125, "Ping of {} bytes", data.len()),
        Incoming::Close(Some(code)) => assert!(
            matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999),
            "Close code {code}"
        ),
        Incoming::Pong | Incoming::Close(None) => {}
    }
}
