//! Several messages in one frame, for a client that asked for batches (`?batch=on`): the
//! messages pending at write time go out as one frame, built from their payloads without
//! re-encoding them.
//!
//! - json: one text frame, the messages separated by `\n` (NDJSON: a client splits on the
//!   newline without parsing, and a frame of one message is exactly today's frame);
//! - protobuf: one binary frame holding a `ServerBatch` (`repeated ServerMessage messages =
//!   1`): each message is preceded by its field tag and length, so the shared, encoded-once
//!   `ServerMessage` bytes are used as they are;
//! - gzip and permessage-deflate: the same payload compressed as one message, one sync flush
//!   per batch (compression is per client anyway).
//!
//! For the shared encodings a batch is a list of slices: a small header (the frame header,
//! and for protobuf every message's tag and length) built per batch, and the shared
//! payloads between its pieces, so queueing a batch copies no message.

use bytes::{BufMut, Bytes, BytesMut};

use super::ws_frame::{self, MAX_HEADER_LEN, Wire};

/// The pieces of one batch frame of `payloads` (in order) for the shared `wire`: the frame
/// header, then each payload with what separates it from the next.
pub fn pieces(wire: Wire, payloads: &[Bytes]) -> Vec<Bytes> {
    let body = body_len(wire, payloads);
    let mut pieces = Vec::with_capacity(payloads.len() * 2 + 1);
    match wire {
        Wire::Json => {
            let mut header = BytesMut::with_capacity(MAX_HEADER_LEN);
            ws_frame::write_header(&mut header, wire.opcode(), body);
            pieces.push(header.freeze());
            for (i, payload) in payloads.iter().enumerate() {
                if i > 0 {
                    pieces.push(Bytes::from_static(NEWLINE));
                }
                pieces.push(payload.clone());
            }
        }
        Wire::Protobuf => {
            // One buffer for the frame header and every entry's tag and length; the pieces
            // are slices of it (refcounts), between the shared payloads.
            let mut heads = BytesMut::with_capacity(MAX_HEADER_LEN + payloads.len() * ENTRY_HEAD);
            ws_frame::write_header(&mut heads, wire.opcode(), body);
            let mut cut = heads.split().freeze();
            pieces.push(cut);
            for payload in payloads {
                heads.put_u8(ENTRY_TAG);
                put_varint(&mut heads, payload.len() as u64);
                cut = heads.split().freeze();
                pieces.push(cut);
                pieces.push(payload.clone());
            }
        }
    }
    pieces
}

/// The payload of one batch as contiguous bytes (what a per-client compressor takes), into
/// `out` (cleared first).
pub fn join(wire: Wire, payloads: &[Bytes], out: &mut Vec<u8>) {
    out.clear();
    out.reserve(body_len(wire, payloads));
    for (i, payload) in payloads.iter().enumerate() {
        match wire {
            Wire::Json => {
                if i > 0 {
                    out.extend_from_slice(NEWLINE);
                }
            }
            Wire::Protobuf => {
                out.push(ENTRY_TAG);
                let mut head = BytesMut::with_capacity(ENTRY_HEAD);
                put_varint(&mut head, payload.len() as u64);
                out.extend_from_slice(&head);
            }
        }
        out.extend_from_slice(payload);
    }
}

/// The payload length of a batch of `payloads`: the separators or entry heads included.
pub fn body_len(wire: Wire, payloads: &[Bytes]) -> usize {
    let bytes: usize = payloads.iter().map(Bytes::len).sum();
    match wire {
        Wire::Json => bytes + payloads.len().saturating_sub(1),
        Wire::Protobuf => {
            bytes
                + payloads
                    .iter()
                    .map(|p| 1 + varint_len(p.len() as u64))
                    .sum::<usize>()
        }
    }
}

/// The bytes one more message of `len` payload bytes adds to a batch.
pub fn entry_len(wire: Wire, len: usize) -> usize {
    match wire {
        Wire::Json => len + NEWLINE.len(),
        Wire::Protobuf => len + 1 + varint_len(len as u64),
    }
}

fn put_varint(out: &mut BytesMut, mut value: u64) {
    while value >= 0x80 {
        out.put_u8((value as u8) | 0x80);
        value >>= 7;
    }
    out.put_u8(value as u8);
}

fn varint_len(value: u64) -> usize {
    (64 - value.max(1).leading_zeros() as usize).div_ceil(7)
}

/// What separates two JSON messages of a batch.
const NEWLINE: &[u8] = b"\n";
/// `ServerBatch.messages` is field 1, length-delimited: (1 << 3) | 2.
const ENTRY_TAG: u8 = 0x0A;
/// Longest entry head: the tag and a 10-byte varint.
const ENTRY_HEAD: usize = 11;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message as _;

    fn concat(pieces: &[Bytes]) -> Vec<u8> {
        pieces.iter().flat_map(|p| p.iter().copied()).collect()
    }

    fn payload_of(frame: &[u8]) -> &[u8] {
        let skip = match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &frame[skip..]
    }

    #[test]
    fn a_json_batch_is_one_text_frame_of_newline_separated_messages() {
        let payloads = [
            Bytes::from_static(b"{\"a\":1}"),
            Bytes::from_static(b"{\"b\":2}"),
        ];
        let frame = concat(&pieces(Wire::Json, &payloads));
        assert_eq!(frame[0], 0x81, "FIN + text");
        assert_eq!(payload_of(&frame), b"{\"a\":1}\n{\"b\":2}");
        let mut joined = Vec::new();
        join(Wire::Json, &payloads, &mut joined);
        assert_eq!(joined, payload_of(&frame), "join gives the same body");
        let one = concat(&pieces(Wire::Json, &payloads[..1]));
        assert_eq!(
            one,
            ws_frame::frame(ws_frame::OpCode::Text, b"{\"a\":1}").to_vec(),
            "one message: exactly the unbatched frame"
        );
    }

    #[test]
    fn a_protobuf_batch_decodes_as_a_server_batch_of_the_same_messages() {
        let messages: Vec<proto::ServerMessage> = (0..300u64)
            .map(|id| proto::ServerMessage {
                msg: Some(proto::server_message::Msg::Pong(proto::Pong { id })),
            })
            .collect();
        // One long message too, so a length takes a two-byte varint.
        let mut long = messages;
        long.push(proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Error(proto::Error {
                code: "x".into(),
                message: "y".repeat(300),
            })),
        });
        // And one whose length's low byte has its top bit set (199), which a varint byte
        // must keep under the continuation bit.
        long.push(proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Error(proto::Error {
                code: "x".into(),
                message: "z".repeat(190),
            })),
        });
        let payloads: Vec<Bytes> = long
            .iter()
            .map(|m| Bytes::from(m.encode_to_vec()))
            .collect();
        assert_eq!(payloads.last().map(Bytes::len), Some(199));
        let frame = concat(&pieces(Wire::Protobuf, &payloads));
        assert_eq!(frame[0], 0x82, "FIN + binary");
        let batch = proto::ServerBatch::decode(payload_of(&frame)).unwrap();
        assert_eq!(batch.messages, long);
        let mut joined = Vec::new();
        join(Wire::Protobuf, &payloads, &mut joined);
        assert_eq!(joined, payload_of(&frame), "join gives the same body");
        assert_eq!(body_len(Wire::Protobuf, &payloads), joined.len());
    }

    #[test]
    fn lengths_add_up() {
        let payloads = [Bytes::from(vec![b'x'; 127]), Bytes::from(vec![b'y'; 128])];
        for wire in [Wire::Json, Wire::Protobuf] {
            let mut joined = Vec::new();
            join(wire, &payloads, &mut joined);
            assert_eq!(body_len(wire, &payloads), joined.len());
            let first = entry_len(wire, 127);
            let second = entry_len(wire, 128);
            let separators = if wire == Wire::Json { 1 } else { 0 };
            assert_eq!(first + second - separators, joined.len(), "{wire:?}");
        }
        assert_eq!((varint_len(0), varint_len(127), varint_len(128)), (1, 1, 2));
    }
}
