//! RFC 6455 server frames: a header written once in front of a payload, so one frame's bytes
//! can be shared by every client of an encoding.
//!
//! RFC 6455 §5.1: a server never masks its frames, so the header is all there is to add.

use bytes::{BufMut, Bytes, BytesMut};

use crate::error::CloseCode;

/// WebSocket opcodes the relay sends.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum OpCode {
    /// UTF-8 text (JSON messages).
    Text = 0x1,
    /// Binary (protobuf, gzip).
    Binary = 0x2,
    /// Close, with a code and a reason.
    Close = 0x8,
    /// Ping (liveness).
    Ping = 0x9,
    /// Pong (answer to a client ping).
    Pong = 0xA,
}

/// Appends a complete unmasked, final frame (`opcode`, `payload`) to `out`.
pub fn write_frame(out: &mut BytesMut, opcode: OpCode, payload: &[u8]) {
    write_header(out, opcode, payload.len());
    out.put_slice(payload);
}

/// Appends the header of an unmasked final frame of `len` payload bytes.
pub fn write_header(out: &mut BytesMut, opcode: OpCode, len: usize) {
    write_head(out, 0x80 | opcode as u8, len);
}

/// Appends a frame header whose first byte (FIN, RSV1-3, opcode) is `first`, for `len`
/// payload bytes (permessage-deflate sets RSV1).
pub fn write_head(out: &mut BytesMut, first: u8, len: usize) {
    out.reserve(MAX_HEADER_LEN + len);
    out.put_u8(first);
    // RFC 6455 §5.2: 7-bit length, or 126 + u16, or 127 + u64 (network byte order).
    match len {
        0..=125 => out.put_u8(len as u8),
        126..=0xFFFF => {
            out.put_u8(126);
            out.put_u16(len as u16);
        }
        _ => {
            out.put_u8(127);
            out.put_u64(len as u64);
        }
    }
}

/// A complete frame as shareable bytes.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut out = BytesMut::with_capacity(MAX_HEADER_LEN + payload.len());
    write_frame(&mut out, opcode, payload);
    out.freeze()
}

/// A close frame: RFC 6455 §5.5.1, a 2-byte code then a UTF-8 reason (≤ 123 bytes).
pub fn close_frame(code: CloseCode, reason: &str) -> Bytes {
    let reason = truncate_utf8(reason, 123);
    let mut payload = Vec::with_capacity(2 + reason.len());
    payload.extend_from_slice(&code.value().to_be_bytes());
    payload.extend_from_slice(reason.as_bytes());
    frame(OpCode::Close, &payload)
}

/// The length of the header `write_header` writes for a payload of `len` bytes.
pub fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

fn truncate_utf8(text: &str, max: usize) -> &str {
    if text.len() <= max {
        return text;
    }
    let mut end = max;
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    &text[..end]
}

/// The longest server frame header (no mask): 2 + 8 bytes.
pub const MAX_HEADER_LEN: usize = 10;

/// A shared, pre-framed representation of a tick.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// A JSON text frame (also the source of gzip frames).
    Json,
    /// A protobuf binary frame.
    Protobuf,
}

impl Wire {
    /// The opcode of its frames.
    pub fn opcode(self) -> OpCode {
        match self {
            Self::Json => OpCode::Text,
            Self::Protobuf => OpCode::Binary,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lengths_use_the_shortest_form() {
        for (len, head) in [(0, 2), (125, 2), (126, 4), (65_535, 4), (65_536, 10)] {
            let frame = frame(OpCode::Binary, &vec![7; len]);
            assert_eq!(frame.len(), head + len);
            assert_eq!(header_len(len), head);
            assert_eq!(frame[0], 0x82, "FIN + binary");
            assert_eq!(frame[1] & 0x80, 0, "server frames are never masked");
        }
        let f = frame(OpCode::Text, &[b'a'; 300]);
        assert_eq!(&f[1..4], &[126, 1, 44]);
    }

    #[test]
    fn close_frame_carries_code_and_bounded_reason() {
        let f = close_frame(CloseCode::GOING_AWAY, "going away");
        assert_eq!(&f[..4], &[0x88, 12, 0x03, 0xE9]);
        assert_eq!(&f[4..], b"going away");
        let long = close_frame(CloseCode::SLOW_CONSUMER, &"é".repeat(100));
        assert!(long.len() <= 2 + 125);
        assert!(std::str::from_utf8(&long[4..]).is_ok());
    }
}
