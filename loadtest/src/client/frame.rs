//! The RFC 6455 frame codec, client side: server frame headers parsed (and checked unmasked),
//! the frames we send (pong, close) encoded masked.

use std::hash::{BuildHasher, RandomState};
use std::time::Instant;

/// A malformed frame from the relay.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("server frame is masked (RFC 6455 §5.1 forbids it)")]
    Masked,
    #[error("RSV bits set without a negotiated extension")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("control frame longer than 125 bytes or fragmented")]
    BadControl,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(u64),
    #[error("continuation frame without a started message, or a new message inside one")]
    Fragmentation,
}

/// The parsed header of one WebSocket frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

impl FrameHeader {
    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a server frame header at the start of `buf`; `None` until the header is complete.
pub fn parse_frame_header(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    // RFC 6455 §5.1: server frames are never masked.
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let (header_len, len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (
                10,
                u64::from_be_bytes(b.try_into().expect("a 2..10 slice is 8 bytes")),
            ),
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG if fin && len <= 125 => {}
        OP_CLOSE | OP_PING | OP_PONG => return Err(FrameError::BadControl),
        other => return Err(FrameError::Opcode(other)),
    }
    if len > MAX_MESSAGE as u64 {
        return Err(FrameError::TooLong(len));
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        header_len,
        payload_len: len as usize,
    }))
}

/// Appends one masked client frame (RFC 6455 §5.3: client frames are always masked).
pub fn encode_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
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
}

/// Unpredictable bits for keys and masks, from the std hasher's per-process random seed.
pub(super) fn random_u128() -> u128 {
    let a = RandomState::new().hash_one(Instant::now());
    let b = RandomState::new().hash_one(a);
    (u128::from(a) << 64) | u128::from(b)
}

pub(super) fn random_mask() -> [u8; 4] {
    (random_u128() as u32).to_ne_bytes()
}

pub(super) const OP_CONT: u8 = 0x0;
pub(super) const OP_TEXT: u8 = 0x1;
pub(super) const OP_BINARY: u8 = 0x2;
pub(super) const OP_CLOSE: u8 = 0x8;
pub(super) const OP_PING: u8 = 0x9;
pub(super) const OP_PONG: u8 = 0xa;
/// Largest message accepted; the relay's biggest is a welcome or snapshot burst.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_lengths_7_16_and_64_bit() {
        for len in [0usize, 5, 125, 126, 200, 65535, 65536, 70_000] {
            let payload = vec![b'x'; len];
            let frame = server_frame(OP_BINARY, true, &payload);
            let h = parse_frame_header(&frame).unwrap().unwrap();
            assert_eq!(h.payload_len, len);
            assert_eq!(h.frame_len(), frame.len());
            assert!(h.fin);
            assert_eq!(h.opcode, OP_BINARY);
        }
    }

    #[test]
    fn incomplete_headers_wait_for_more() {
        let frame = server_frame(OP_TEXT, true, &[b'y'; 70_000]);
        for cut in 0..10 {
            assert_eq!(parse_frame_header(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_frame_header(&frame[..10]).unwrap().is_some());
    }

    #[test]
    fn protocol_violations_are_errors() {
        assert_eq!(parse_frame_header(&[0x81, 0x85]), Err(FrameError::Masked));
        assert_eq!(parse_frame_header(&[0xc1, 0x05]), Err(FrameError::Reserved));
        assert_eq!(
            parse_frame_header(&[0x83, 0x00]),
            Err(FrameError::Opcode(3))
        );
        assert_eq!(
            parse_frame_header(&[0x09, 0x00]),
            Err(FrameError::BadControl)
        );
        assert_eq!(
            parse_frame_header(&[0x89, 126, 0, 200]),
            Err(FrameError::BadControl)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            parse_frame_header(&huge),
            Err(FrameError::TooLong(_))
        ));
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        let mut out = Vec::new();
        encode_client_frame(OP_PONG, b"abcde", mask, &mut out);
        assert_eq!(&out[..2], &[0x8a, 0x85]);
        assert_eq!(&out[2..6], &mask);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"abcde");
        let mut long = Vec::new();
        encode_client_frame(OP_BINARY, &[0; 300], mask, &mut long);
        assert_eq!(&long[..4], &[0x82, 0x80 | 126, 1, 44]);
    }
}
