//! The permessage-deflate read path: `encode::deflate::inflate` (the shard thread's bounded
//! inflater, limit 1024) on its own, and a compressed client message through
//! `session::wire::FrameReader::with_deflate(1024)`, whole or fragmented, in reads of any
//! size.
//!
//! Input: byte 0 picks the message (bit 0: text or binary; bits 1-2: 1 to 4 fragments;
//! bits 3-7: the read size − 1, 1..=32); the rest is the compressed payload (raw deflate
//! without its `00 00 ff ff` tail, as RFC 7692 §7.2.1 sends it). Checks:
//! - no panic, no hang, whatever the payload (a bomb stops at the limit);
//! - `inflate` gives at most 1024 bytes, and the same answer again after a bomb and after
//!   corrupt data went through the shared inflater (no state leaks from one client's message
//!   to the next);
//! - what `inflate` gives, the relay's own compressor (`DeflateStream`, no context takeover)
//!   compresses back to a payload `inflate` restores exactly;
//! - the frame reader's verdict is `inflate`'s: the message it inflated (text only if UTF-8),
//!   or `inflated_too_big` / `bad_deflate` / `invalid_utf8`, or `message_too_big` for a
//!   payload over the limit before inflating.
#![no_main]

use bytes::BytesMut;
use libfuzzer_sys::fuzz_target;
use tickrelay::encode::deflate::{DeflateParams, DeflateStream, InflateError, inflate};
use tickrelay::encode::ws_frame::OpCode;
use tickrelay::session::wire::{FrameReader, Incoming, WireError, client_frame};

/// `--max-message-bytes` for this target.
const LIMIT: usize = 1024;
/// A deflate bomb: 1 MiB of zeros compressed by the relay's own compressor (~1 KiB).
fn bomb() -> &'static [u8] {
    static BOMB: std::sync::OnceLock<Vec<u8>> = std::sync::OnceLock::new();
    BOMB.get_or_init(|| compressed(&vec![0; 1 << 20]))
}

fuzz_target!(|data: &[u8]| {
    let Some((&shape, payload)) = data.split_first() else {
        return;
    };
    let inflated = inflate(payload, LIMIT);
    if let Ok(out) = &inflated {
        assert!(out.len() <= LIMIT, "inflated to {} bytes", out.len());
        round_trip(out);
    }
    // The shared inflater after a bomb and after garbage: the same answer.
    assert!(matches!(
        inflate(bomb(), LIMIT),
        Err(InflateError::TooBig { .. })
    ));
    assert_eq!(inflate(payload, LIMIT), inflated, "after a bomb");
    let _ = inflate(&[0xFF, 0xFF, 0xFF], LIMIT);
    assert_eq!(inflate(payload, LIMIT), inflated, "after corrupt data");

    let text = shape & 1 == 1;
    let fragments = usize::from((shape >> 1) & 3) + 1;
    let read_size = usize::from(shape >> 3) + 1;
    let verdict = read_message(payload, text, fragments, read_size);
    match (&inflated, verdict) {
        (_, verdict) if payload.len() > LIMIT => assert!(
            matches!(verdict, Err(WireError::TooBig { .. })),
            "a payload over the limit is refused before inflating: {verdict:?}"
        ),
        (Ok(out), Ok(Incoming::Text(got))) => {
            assert!(text, "a binary message came back as text");
            assert_eq!(&got[..], &out[..]);
        }
        (Ok(out), Ok(Incoming::Binary(got))) => {
            assert!(!text, "a text message came back as binary");
            assert_eq!(&got[..], &out[..]);
        }
        (Ok(out), Err(WireError::InvalidUtf8)) => {
            assert!(text && std::str::from_utf8(out).is_err(), "UTF-8 refused");
        }
        (Err(InflateError::TooBig { .. }), Err(WireError::InflatedTooBig { .. })) => {}
        (Err(InflateError::Corrupt), Err(WireError::BadDeflate)) => {}
        (inflated, verdict) => panic!("inflate says {inflated:?}, the reader {verdict:?}"),
    }
});

/// Compresses `message` as the relay does for a client without context takeover, and
/// checks that `inflate` restores it from the frame's payload.
fn round_trip(message: &[u8]) {
    let back = inflate(&compressed(message), LIMIT.max(message.len()));
    assert_eq!(back.as_deref(), Ok(message), "compress then inflate");
}

/// `message` as the relay compresses it (no context takeover): its frame's payload.
fn compressed(message: &[u8]) -> Vec<u8> {
    let params = DeflateParams {
        no_context_takeover: true,
        window_bits: 15,
    };
    let frame = DeflateStream::new(params, 0).frame(OpCode::Binary, message);
    assert_eq!(frame[0] & 0x40, 0x40, "a compressed frame has RSV1");
    let header = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    frame[header..].to_vec()
}

/// The first message (or error) of a client sending `payload` compressed (RSV1 on the first
/// frame only), in `fragments` frames, read `read_size` bytes at a time.
fn read_message(
    payload: &[u8],
    text: bool,
    fragments: usize,
    read_size: usize,
) -> Result<Incoming, WireError> {
    let mut stream = Vec::new();
    let step = payload.len().div_ceil(fragments).max(1);
    let mut pieces: Vec<&[u8]> = payload.chunks(step).collect();
    if pieces.is_empty() {
        pieces.push(&[]);
    }
    let last = pieces.len() - 1;
    for (i, piece) in pieces.iter().enumerate() {
        let opcode = match (i, text) {
            (0, true) => 0x1,
            (0, false) => 0x2,
            _ => 0x0,
        };
        let mut frame = client_frame(i == last, opcode, piece, [3, 1, 4, 1]);
        if i == 0 {
            frame[0] |= 0x40;
        }
        stream.extend(frame);
    }
    let mut reader = FrameReader::with_deflate(LIMIT);
    let mut buf = BytesMut::new();
    for chunk in stream.chunks(read_size) {
        buf.extend_from_slice(chunk);
        loop {
            match reader.next(&mut buf) {
                Ok(Some(message)) => return Ok(message),
                Ok(None) => break,
                Err(error) => return Err(error),
            }
        }
    }
    panic!("a whole message was sent and none came back");
}
