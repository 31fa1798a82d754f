//! The client→server side of RFC 6455: a pure, strict frame reader with reassembly.
//!
//! Why not fastwebsockets' reader: in 0.10 it accepts unmasked client frames (the mask is
//! private and never checked), caps each frame but not a reassembled message, and wants to
//! own the socket, while our write side sends pre-framed shared bytes on the same socket.
//! This reader enforces the server MUSTs itself and is a pure function of its input, so it
//! is property-tested and fuzzed. (fastwebsockets still does the upgrade handshake, and its
//! `unmask` does the XOR.)
//!
//! With permessage-deflate negotiated (RFC 7692), RSV1 on the first frame of a data message
//! marks it compressed: the reassembled (compressed) message is bounded by the limit like any
//! other, then inflated with the limit on its output too (a deflate bomb closes 1009).

use bytes::{Buf, Bytes, BytesMut};

use crate::encode::deflate::{self, InflateError};
use crate::error::{CloseCode, ErrorCode};

/// A complete message or control frame from the client.
#[derive(Debug, PartialEq, Eq)]
pub enum Incoming {
    /// A text message, valid UTF-8.
    Text(Bytes),
    /// A binary message.
    Binary(Bytes),
    /// A ping; the payload goes back in the pong.
    Ping(Bytes),
    /// A pong.
    Pong,
    /// A close frame, with the client's code if it gave one.
    Close(Option<u16>),
}

/// A protocol violation; each maps to the close code RFC 6455 §7.4.1 prescribes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// §5.1: a client MUST mask every frame.
    #[error("client frame is not masked")]
    Unmasked,
    /// §5.2: RSV1-3 must be 0 unless an extension gives them a meaning (permessage-deflate:
    /// RSV1 on the first frame of a data message only, RFC 7692 §6.1).
    #[error("reserved bits set without an extension that defines them")]
    ReservedBits,
    /// §5.2: opcodes 3-7 and 0xB-0xF are reserved.
    #[error("reserved opcode {0:#x}")]
    ReservedOpcode(u8),
    /// §5.5: control frames are at most 125 bytes and never fragmented.
    #[error("control frame fragmented or longer than 125 bytes")]
    BadControlFrame,
    /// §5.4: a continuation with no message started, or a new message inside one.
    #[error("unexpected {0} frame in the fragment sequence")]
    Fragmentation(&'static str),
    /// A frame or reassembled message over the limit.
    #[error("message of {len} bytes, the limit is {limit}")]
    TooBig {
        /// Length announced or reassembled so far.
        len: u64,
        /// The limit.
        limit: usize,
    },
    /// A compressed message that inflates past the limit (a deflate bomb).
    #[error("compressed message inflates past {limit} bytes")]
    InflatedTooBig {
        /// The limit.
        limit: usize,
    },
    /// RFC 7692 §6.2: a compressed message that does not inflate.
    #[error("compressed message is not valid deflate data")]
    BadDeflate,
    /// §8.1: text must be valid UTF-8.
    #[error("text message is not valid UTF-8")]
    InvalidUtf8,
    /// §5.5.1 / §7.4: a malformed close payload or a code that may not be sent.
    #[error("invalid close frame")]
    BadClose,
}

impl WireError {
    /// The close code to answer with (its error code's, RFC 6455 §7.4.1).
    pub fn close_code(&self) -> CloseCode {
        self.code()
            .close()
            .expect("every wire error's code closes the session (the error table)")
    }

    /// Stable code for error messages and metrics.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooBig { .. } => ErrorCode::MessageTooBig,
            Self::InflatedTooBig { .. } => ErrorCode::InflatedTooBig,
            Self::BadDeflate => ErrorCode::BadDeflate,
            Self::InvalidUtf8 => ErrorCode::InvalidUtf8,
            Self::Unmasked
            | Self::ReservedBits
            | Self::ReservedOpcode(_)
            | Self::BadControlFrame
            | Self::Fragmentation(_)
            | Self::BadClose => ErrorCode::ProtocolError,
        }
    }
}

/// Reads client frames, reassembling fragmented messages up to `max_message` bytes.
#[derive(Debug)]
pub struct FrameReader {
    max_message: usize,
    /// permessage-deflate was negotiated: RSV1 marks a compressed message.
    deflate: bool,
    /// The opcode, data and compression of a fragmented message in progress.
    partial: Option<(u8, BytesMut, bool)>,
    /// Compressed bytes inflated and bytes they gave, not yet counted in metrics.
    inflated: (u64, u64),
    /// The client's close frame has been read.
    saw_close: bool,
}

impl FrameReader {
    /// A reader that refuses messages over `max_message` bytes.
    pub fn new(max_message: usize) -> Self {
        Self {
            max_message,
            deflate: false,
            partial: None,
            inflated: (0, 0),
            saw_close: false,
        }
    }

    /// A reader for a connection with permessage-deflate: compressed messages are inflated,
    /// to at most `max_message` bytes.
    pub fn with_deflate(max_message: usize) -> Self {
        Self {
            deflate: true,
            ..Self::new(max_message)
        }
    }

    /// Whether the client's close frame has been read (it started or answered the closing
    /// handshake).
    pub fn saw_close(&self) -> bool {
        self.saw_close
    }

    /// Compressed bytes inflated and the bytes they gave, since the last call.
    pub fn take_inflated(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.inflated)
    }

    /// Takes the next complete message or control frame off `buf`; `Ok(None)` when more
    /// bytes are needed. After an `Err` the connection must be closed.
    pub fn next(&mut self, buf: &mut BytesMut) -> Result<Option<Incoming>, WireError> {
        loop {
            let Some(frame) = self.next_frame(buf)? else {
                return Ok(None);
            };
            if let Some(message) = self.assemble(frame)? {
                return Ok(Some(message));
            }
        }
    }

    /// The next complete frame of `buf`, checked against RFC 6455 §5.2's MUSTs. Long, on
    /// purpose: the header is read in one pass, each check beside the byte it reads.
    fn next_frame(&mut self, buf: &mut BytesMut) -> Result<Option<Frame>, WireError> {
        if buf.len() < 2 {
            return Ok(None);
        }
        let (b0, b1) = (buf[0], buf[1]);
        let fin = b0 & 0x80 != 0;
        let rsv1 = b0 & 0x40 != 0;
        if b0 & 0x30 != 0 || (rsv1 && !self.deflate) {
            return Err(WireError::ReservedBits);
        }
        let opcode = b0 & 0x0F;
        if matches!(opcode, 3..=7 | 0xB..=0xF) {
            return Err(WireError::ReservedOpcode(opcode));
        }
        if b1 & 0x80 == 0 {
            return Err(WireError::Unmasked);
        }
        let (len, offset) = match b1 & 0x7F {
            126 => {
                if buf.len() < 4 {
                    return Ok(None);
                }
                (u64::from(u16::from_be_bytes([buf[2], buf[3]])), 4)
            }
            127 => {
                if buf.len() < 10 {
                    return Ok(None);
                }
                let mut be = [0u8; 8];
                be.copy_from_slice(&buf[2..10]);
                (u64::from_be_bytes(be), 10)
            }
            n => (u64::from(n), 2),
        };
        let control = opcode >= 0x8;
        if control && (!fin || len > 125) {
            return Err(WireError::BadControlFrame);
        }
        // RFC 7692 §6.1: RSV1 only on the first frame of a data message, never on a
        // continuation or a control frame.
        if rsv1 && (control || opcode == 0x0) {
            return Err(WireError::ReservedBits);
        }
        // Refuse on the announced length, before buffering it (no unbounded allocation).
        let so_far = self
            .partial
            .as_ref()
            .map_or(0, |(_, data, _)| data.len() as u64);
        // Saturating: a peer may announce 2^64 - 1 bytes, and a wrapped sum would pass the
        // limit check below (found by the ws_frames fuzz target).
        let total = if control {
            len
        } else {
            so_far.saturating_add(len)
        };
        if total > self.max_message as u64 {
            return Err(WireError::TooBig {
                len: total,
                limit: self.max_message,
            });
        }
        let len = len as usize;
        if buf.len() < offset + 4 + len {
            return Ok(None);
        }
        let mask = [
            buf[offset],
            buf[offset + 1],
            buf[offset + 2],
            buf[offset + 3],
        ];
        buf.advance(offset + 4);
        let mut payload = buf.split_to(len);
        fastwebsockets::unmask(&mut payload, mask);
        Ok(Some(Frame {
            fin,
            rsv1,
            opcode,
            payload,
        }))
    }

    fn assemble(&mut self, frame: Frame) -> Result<Option<Incoming>, WireError> {
        let Frame {
            fin,
            rsv1,
            opcode,
            payload,
        } = frame;
        match opcode {
            0x8 => {
                self.saw_close = true;
                close(&payload).map(Some)
            }
            0x9 => Ok(Some(Incoming::Ping(payload.freeze()))),
            0xA => Ok(Some(Incoming::Pong)),
            0x0 => {
                let Some((_, data, _)) = self.partial.as_mut() else {
                    return Err(WireError::Fragmentation("continuation"));
                };
                data.extend_from_slice(&payload);
                if !fin {
                    return Ok(None);
                }
                let (opcode, data, compressed) = self.partial.take().expect("checked above");
                self.message(opcode, data, compressed).map(Some)
            }
            _ => {
                if self.partial.is_some() {
                    return Err(WireError::Fragmentation("data"));
                }
                if fin {
                    self.message(opcode, payload, rsv1).map(Some)
                } else {
                    self.partial = Some((opcode, payload, rsv1));
                    Ok(None)
                }
            }
        }
    }

    /// A complete data message: inflated if compressed, then UTF-8 checked if text.
    fn message(
        &mut self,
        opcode: u8,
        data: BytesMut,
        compressed: bool,
    ) -> Result<Incoming, WireError> {
        let data = if compressed {
            let inflated = deflate::inflate(&data, self.max_message).map_err(|e| match e {
                InflateError::TooBig { limit } => WireError::InflatedTooBig { limit },
                InflateError::Corrupt => WireError::BadDeflate,
            })?;
            self.inflated.0 += data.len() as u64;
            self.inflated.1 += inflated.len() as u64;
            Bytes::from(inflated)
        } else {
            data.freeze()
        };
        if opcode == 0x1 {
            if std::str::from_utf8(&data).is_err() {
                return Err(WireError::InvalidUtf8);
            }
            Ok(Incoming::Text(data))
        } else {
            Ok(Incoming::Binary(data))
        }
    }
}

struct Frame {
    fin: bool,
    rsv1: bool,
    opcode: u8,
    payload: BytesMut,
}

fn close(payload: &[u8]) -> Result<Incoming, WireError> {
    match payload.len() {
        0 => Ok(Incoming::Close(None)),
        1 => Err(WireError::BadClose),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            // §7.4.1/§7.4.2: codes a peer may send.
            let allowed = matches!(code, 1000..=1003 | 1007..=1011 | 3000..=4999);
            if !allowed {
                return Err(WireError::BadClose);
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(WireError::InvalidUtf8);
            }
            Ok(Incoming::Close(Some(code)))
        }
    }
}

/// Builds a masked client frame (for tests, fuzzing and the load harness's own checks).
pub fn client_frame(fin: bool, opcode: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![(u8::from(fin) << 7) | opcode];
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xFFFF => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const MASK: [u8; 4] = [1, 2, 3, 4];

    fn read_all(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, WireError> {
        let mut reader = FrameReader::new(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = reader.next(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    /// Reads `bytes` fed in pieces of the sizes in `chunks` (cycled), draining after each.
    fn read_in_chunks(
        bytes: &[u8],
        chunks: &[usize],
        max: usize,
    ) -> Result<Vec<Incoming>, WireError> {
        let mut reader = FrameReader::new(max);
        let mut buf = BytesMut::new();
        let mut out = Vec::new();
        let mut rest = bytes;
        for size in chunks.iter().cycle() {
            if rest.is_empty() {
                break;
            }
            let (piece, after) = rest.split_at((*size).min(rest.len()));
            rest = after;
            buf.extend_from_slice(piece);
            while let Some(m) = reader.next(&mut buf)? {
                out.push(m);
            }
        }
        assert!(
            buf.is_empty(),
            "every byte of a complete stream is consumed"
        );
        Ok(out)
    }

    /// The frames of one data message cut at `cuts` (positions modulo its length), with
    /// `ping` sent between the first and second fragment when there are several; and
    /// whether the ping was sent.
    fn fragments(
        opcode: u8,
        payload: &[u8],
        cuts: &[usize],
        mask: [u8; 4],
        ping: Option<&[u8]>,
    ) -> (Vec<u8>, bool) {
        let mut cuts: Vec<usize> = cuts.iter().map(|c| c % (payload.len() + 1)).collect();
        cuts.push(payload.len());
        cuts.sort_unstable();
        cuts.dedup();
        let mut out = Vec::new();
        let mut pinged = false;
        let mut start = 0;
        for (i, end) in cuts.iter().enumerate() {
            let fin = i + 1 == cuts.len();
            let code = if i == 0 { opcode } else { 0 };
            out.extend(client_frame(fin, code, &payload[start..*end], mask));
            if i == 0
                && !fin
                && let Some(ping) = ping
            {
                out.extend(client_frame(true, 9, ping, mask));
                pinged = true;
            }
            start = *end;
        }
        (out, pinged)
    }

    /// One item of a client stream: its bytes and the messages the reader must return.
    fn item() -> impl Strategy<Value = (Vec<u8>, Vec<Incoming>)> {
        let data = (
            prop_oneof![
                ".{0,80}".prop_map(|t: String| (1u8, t.into_bytes())),
                proptest::collection::vec(any::<u8>(), 0..300).prop_map(|b| (2u8, b)),
            ],
            proptest::collection::vec(any::<usize>(), 0..4),
            any::<[u8; 4]>(),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..126)),
        )
            .prop_map(|((opcode, payload), cuts, mask, ping)| {
                let (bytes, pinged) = fragments(opcode, &payload, &cuts, mask, ping.as_deref());
                let mut expected = Vec::new();
                if let Some(ping) = ping.filter(|_| pinged) {
                    expected.push(Incoming::Ping(Bytes::from(ping)));
                }
                let payload = Bytes::from(payload);
                expected.push(if opcode == 1 {
                    Incoming::Text(payload)
                } else {
                    Incoming::Binary(payload)
                });
                (bytes, expected)
            });
        prop_oneof![
            4 => data,
            1 => (proptest::collection::vec(any::<u8>(), 0..126), any::<[u8; 4]>())
                .prop_map(|(p, mask)| (client_frame(true, 9, &p, mask), vec![Incoming::Ping(Bytes::from(p))])),
            1 => any::<[u8; 4]>().prop_map(|mask| (client_frame(true, 10, b"", mask), vec![Incoming::Pong])),
        ]
    }

    #[test]
    fn masked_text_is_read() {
        let frame = client_frame(true, 1, b"{\"op\":\"ping\"}", MASK);
        assert_eq!(
            read_all(&frame, 1024).unwrap(),
            vec![Incoming::Text(Bytes::from_static(b"{\"op\":\"ping\"}"))]
        );
    }

    #[test]
    fn unmasked_frames_are_refused_with_1002() {
        let mut frame = client_frame(true, 1, b"hi", MASK);
        frame[1] &= 0x7F;
        frame.drain(2..6);
        let err = read_all(&frame, 1024).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code().value()),
            (WireError::Unmasked, 1002)
        );
        // An empty one is two bytes in all: refused from those, without waiting for more.
        let err = read_all(&[0x81, 0x00], 1024).unwrap_err();
        assert_eq!(err, WireError::Unmasked);
    }

    #[test]
    fn fragments_reassemble_within_the_limit() {
        let mut bytes = client_frame(false, 1, b"hel", MASK);
        bytes.extend(client_frame(true, 0x9, b"p", MASK));
        bytes.extend(client_frame(true, 0, b"lo", MASK));
        let got = read_all(&bytes, 5).unwrap();
        assert_eq!(got[0], Incoming::Ping(Bytes::from_static(b"p")));
        assert_eq!(got[1], Incoming::Text(Bytes::from_static(b"hello")));
        let err = read_all(&bytes, 4).unwrap_err();
        assert_eq!(
            err.close_code().value(),
            1009,
            "the limit applies to the reassembled message"
        );
    }

    #[test]
    fn a_huge_announced_length_is_refused_before_buffering() {
        let mut header = vec![0x82, 0x80 | 127];
        header.extend_from_slice(&(1u64 << 40).to_be_bytes());
        header.extend_from_slice(&MASK);
        let err = read_all(&header, 1024).unwrap_err();
        assert!(matches!(err, WireError::TooBig { .. }));
    }

    #[test]
    fn a_16_or_64_bit_length_is_read_whole_wherever_its_header_is_cut() {
        for len in [300, 70_000] {
            let payload = vec![7u8; len];
            let frame = client_frame(true, 2, &payload, MASK);
            let header = if len > 0xFFFF { 2 + 8 + 4 } else { 2 + 2 + 4 };
            for cut in 1..=header {
                let mut reader = FrameReader::new(100_000);
                let mut buf = BytesMut::from(&frame[..cut]);
                assert_eq!(reader.next(&mut buf), Ok(None), "{len}: {cut} bytes");
                buf.extend_from_slice(&frame[cut..]);
                let whole = Incoming::Binary(Bytes::from(payload.clone()));
                assert_eq!(
                    reader.next(&mut buf),
                    Ok(Some(whole)),
                    "{len}: cut at {cut}"
                );
            }
            // Too big is known from the length alone, before the mask arrives.
            let mut reader = FrameReader::new(len - 1);
            let mut buf = BytesMut::from(&frame[..header - 4]);
            let error = reader.next(&mut buf);
            assert!(
                matches!(error, Err(WireError::TooBig { .. })),
                "{len}: {error:?}"
            );
        }
    }

    #[test]
    fn a_continuation_announcing_u64_max_is_too_big_not_a_panic() {
        // Regression (fuzz): 3 bytes of a fragmented message, then a continuation frame
        // announcing 2^64 - 1 bytes; the running total overflowed.
        let mut bytes = client_frame(false, 2, b"abc", MASK);
        bytes.extend_from_slice(&[0x80, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF]);
        bytes.extend_from_slice(&MASK);
        let err = read_all(&bytes, 1024).unwrap_err();
        assert!(matches!(err, WireError::TooBig { .. }), "{err:?}");
    }

    #[test]
    fn invalid_utf8_closes_with_1007() {
        let err = read_all(&client_frame(true, 1, &[0xC3, 0x28], MASK), 64).unwrap_err();
        assert_eq!(err.close_code().value(), 1007);
    }

    #[test]
    fn protocol_violations_close_with_1002() {
        for bytes in [
            client_frame(true, 0, b"x", MASK),
            client_frame(true, 3, b"x", MASK),
            client_frame(false, 9, b"x", MASK),
            client_frame(true, 8, &[0x03], MASK),
            client_frame(true, 8, &[0x03, 0xED], MASK),
            [
                client_frame(false, 1, b"a", MASK),
                client_frame(true, 1, b"b", MASK),
            ]
            .concat(),
        ] {
            assert_eq!(
                read_all(&bytes, 64).unwrap_err().close_code().value(),
                1002,
                "{bytes:?}"
            );
        }
    }

    /// A raw deflate message with its sync-flush tail cut, as a permessage-deflate client
    /// sends it.
    fn deflated(bytes: &[u8]) -> Vec<u8> {
        let mut deflate = flate2::Compress::new(flate2::Compression::best(), false);
        let mut out = Vec::with_capacity(bytes.len() + 64);
        deflate
            .compress_vec(bytes, &mut out, flate2::FlushCompress::Sync)
            .unwrap();
        out.truncate(out.len() - 4);
        out
    }

    fn read_deflate(bytes: &[u8], max: usize) -> Result<Vec<Incoming>, WireError> {
        let mut reader = FrameReader::with_deflate(max);
        let mut buf = BytesMut::from(bytes);
        let mut out = Vec::new();
        while let Some(m) = reader.next(&mut buf)? {
            out.push(m);
        }
        Ok(out)
    }

    #[test]
    fn rsv1_marks_a_compressed_message_only_with_deflate() {
        let text = b"{\"op\":\"ping\",\"id\":1}";
        let compressed = deflated(text);
        let frame = client_frame(true, 0x41, &compressed, MASK);
        assert_eq!(
            read_deflate(&frame, 1024).unwrap(),
            vec![Incoming::Text(Bytes::from_static(text))]
        );
        assert_eq!(read_all(&frame, 1024), Err(WireError::ReservedBits));
        // Fragmented: RSV1 on the first frame, the continuation plain.
        let (a, b) = compressed.split_at(3);
        let mut bytes = client_frame(false, 0x42, a, MASK);
        bytes.extend(client_frame(true, 0x9, b"p", MASK));
        bytes.extend(client_frame(true, 0x0, b, MASK));
        let got = read_deflate(&bytes, 1024).unwrap();
        assert_eq!(got[1], Incoming::Binary(Bytes::from_static(text)));
        // Uncompressed messages still pass on a deflate connection.
        let plain = client_frame(true, 0x1, b"hi", MASK);
        assert_eq!(
            read_deflate(&plain, 1024).unwrap(),
            vec![Incoming::Text(Bytes::from_static(b"hi"))]
        );
    }

    #[test]
    fn a_close_may_be_empty_or_carry_a_code_a_peer_may_send() {
        let read = |payload: &[u8]| read_all(&client_frame(true, 0x8, payload, MASK), 125);
        assert_eq!(read(b""), Ok(vec![Incoming::Close(None)]));
        assert_eq!(read(b"\x03\xe8bye"), Ok(vec![Incoming::Close(Some(1000))]));
        assert_eq!(read(b"\x03"), Err(WireError::BadClose));
        assert_eq!(
            read(b"\x03\xed"),
            Err(WireError::BadClose),
            "1005 is never sent"
        );
        assert_eq!(read(b"\x03\xe8\xff"), Err(WireError::InvalidUtf8));
    }

    #[test]
    fn inflated_bytes_are_counted_once_and_plain_messages_not_at_all() {
        let text = br#"{"op":"subscribe","symbols":["AAPL","AAPL","AAPL","AAPL","AAPL"]}"#;
        let compressed = deflated(text);
        let mut reader = FrameReader::with_deflate(1024);
        assert_eq!(reader.take_inflated(), (0, 0));
        let mut buf = BytesMut::from(&client_frame(true, 0x1, b"plain", MASK)[..]);
        buf.extend(client_frame(true, 0x41, &compressed, MASK));
        buf.extend(client_frame(true, 0x41, &compressed, MASK));
        while reader.next(&mut buf).unwrap().is_some() {}
        let expected = (2 * compressed.len() as u64, 2 * text.len() as u64);
        assert_eq!(reader.take_inflated(), expected);
        assert_eq!(reader.take_inflated(), (0, 0), "taken means counted");
    }

    #[test]
    fn rsv1_on_control_or_continuation_frames_and_rsv2_rsv3_are_refused() {
        for bytes in [
            client_frame(true, 0x49, b"", MASK),
            [
                client_frame(false, 0x1, b"a", MASK),
                client_frame(true, 0x40, b"b", MASK),
            ]
            .concat(),
            client_frame(true, 0x21, b"x", MASK),
            client_frame(true, 0x11, b"x", MASK),
        ] {
            let err = read_deflate(&bytes, 64).unwrap_err();
            assert_eq!(
                (err.clone(), err.close_code().value()),
                (WireError::ReservedBits, 1002)
            );
        }
    }

    #[test]
    fn a_message_inflating_past_the_limit_closes_1009_and_bad_data_1007() {
        let bomb = deflated(&vec![b' '; 1 << 20]);
        assert!(bomb.len() < 4096);
        let err = read_deflate(&client_frame(true, 0x42, &bomb, MASK), 4096).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code().value(), err.code()),
            (
                WireError::InflatedTooBig { limit: 4096 },
                1009,
                ErrorCode::InflatedTooBig
            )
        );
        let err = read_deflate(&client_frame(true, 0x42, &[0xff; 8], MASK), 4096).unwrap_err();
        assert_eq!(
            (err.clone(), err.close_code().value()),
            (WireError::BadDeflate, 1007)
        );
        // Invalid UTF-8 is found after inflating.
        let err = read_deflate(
            &client_frame(true, 0x41, &deflated(&[0xC3, 0x28]), MASK),
            64,
        )
        .unwrap_err();
        assert_eq!(err, WireError::InvalidUtf8);
    }

    proptest! {
        /// Whatever a client compresses comes back exactly, however it is fragmented.
        #[test]
        fn compressed_messages_round_trip(
            payload in proptest::collection::vec(any::<u8>(), 0..2000),
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
        ) {
            let compressed = deflated(&payload);
            let (mut bytes, _) = fragments(2, &compressed, &cuts, MASK, None);
            bytes[0] |= 0x40;
            prop_assert_eq!(
                read_deflate(&bytes, 4096),
                Ok(vec![Incoming::Binary(Bytes::from(payload))])
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic_with_deflate(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_deflate(&bytes, 128);
        }
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let _ = read_all(&bytes, 128);
        }

        /// Any valid client stream (messages fragmented anywhere, pings between fragments,
        /// any masks) read in any chunk sizes gives exactly the messages sent, in order.
        #[test]
        fn valid_streams_read_in_any_chunks_give_exactly_what_was_sent(
            items in proptest::collection::vec(item(), 0..12),
            chunks in proptest::collection::vec(1usize..64, 1..8),
            close in proptest::option::of(prop_oneof![Just(1000u16), Just(1001), Just(1011), Just(3000), Just(4999)]),
        ) {
            let mut bytes = Vec::new();
            let mut expected = Vec::new();
            for (frames, incoming) in items {
                bytes.extend(frames);
                expected.extend(incoming);
            }
            if let Some(code) = close {
                bytes.extend(client_frame(true, 8, &code.to_be_bytes(), MASK));
                expected.push(Incoming::Close(Some(code)));
            }
            prop_assert_eq!(read_in_chunks(&bytes, &chunks, 1024), Ok(expected));
        }

        /// A message over the limit, however fragmented, is refused as too big after the
        /// messages before it.
        #[test]
        fn a_message_over_the_limit_is_refused_however_fragmented(
            before in proptest::collection::vec(any::<u8>(), 0..64),
            len in 65usize..300,
            cuts in proptest::collection::vec(any::<usize>(), 0..4),
            chunks in proptest::collection::vec(1usize..64, 1..8),
        ) {
            let mut bytes = client_frame(true, 2, &before, MASK);
            bytes.extend(fragments(2, &vec![7u8; len], &cuts, [5, 6, 7, 8], None).0);
            let mut reader = FrameReader::new(64);
            let mut buf = BytesMut::new();
            let mut got = Vec::new();
            let mut error = None;
            'read: for piece in bytes.chunks(chunks[0]) {
                buf.extend_from_slice(piece);
                loop {
                    match reader.next(&mut buf) {
                        Ok(Some(m)) => got.push(m),
                        Ok(None) => break,
                        Err(e) => { error = Some(e); break 'read; }
                    }
                }
            }
            prop_assert_eq!(got, vec![Incoming::Binary(Bytes::from(before))]);
            prop_assert!(matches!(error, Some(WireError::TooBig { limit: 64, .. })), "{:?}", error);
        }

        #[test]
        fn any_split_point_gives_the_same_messages(payload in proptest::collection::vec(any::<u8>(), 0..400), split in 0usize..420) {
            let frame = client_frame(true, 2, &payload, MASK);
            let split = split.min(frame.len());
            let mut reader = FrameReader::new(1024);
            let mut buf = BytesMut::from(&frame[..split]);
            let first = reader.next(&mut buf).unwrap();
            buf.extend_from_slice(&frame[split..]);
            let got = match first { Some(m) => m, None => reader.next(&mut buf).unwrap().unwrap() };
            prop_assert_eq!(got, Incoming::Binary(Bytes::from(payload)));
        }
    }
}
