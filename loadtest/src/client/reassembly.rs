//! Bytes as they come off the socket → whole WebSocket messages and control frames.
//!
//! A read may end anywhere: inside a header, inside a payload, between the fragments of one
//! message. The [`Reassembler`] keeps the incomplete tail and the fragments assembled so far,
//! and hands every complete frame to its caller, with the message it completes if any. When
//! nothing is pending, frames are handed straight out of the read buffer, never copied.

use std::ops::ControlFlow;

use super::frame::{
    FrameError, FrameHeader, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_TEXT, parse_frame_header,
};

/// What one complete frame brings.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Piece<'a> {
    /// A whole text or binary message (one final frame, or the last of its fragments).
    Message(&'a [u8]),
    /// A fragment of a message still incomplete.
    Fragment,
    /// A ping, to be answered with a pong carrying `payload`.
    Ping(&'a [u8]),
    /// A close frame and its payload (status code and reason).
    Close(&'a [u8]),
    /// A pong: nothing to do.
    Pong,
}

/// One connection's unparsed bytes and the message being assembled from fragments.
#[derive(Debug, Default)]
pub(super) struct Reassembler {
    /// Bytes of a frame not yet complete.
    pending: Vec<u8>,
    /// Payload of a fragmented message being assembled.
    fragments: Vec<u8>,
    /// Whether a fragmented message is in progress.
    in_message: bool,
}

impl Reassembler {
    /// Parses every complete frame of the pending bytes followed by `data`, calling `on` with
    /// each frame's length on the wire and what it brings; keeps the incomplete tail. Stops
    /// early when `on` breaks (after a close) or at a malformed frame, whose error it returns.
    pub(super) fn feed(
        &mut self,
        data: &[u8],
        mut on: impl FnMut(usize, Piece<'_>) -> ControlFlow<()>,
    ) -> Result<(), FrameError> {
        let mut pending = std::mem::take(&mut self.pending);
        let from_pending = !pending.is_empty();
        if from_pending {
            pending.extend_from_slice(data);
        }
        let src: &[u8] = if from_pending { &pending } else { data };
        let mut off = 0;
        let mut result = Ok(());
        loop {
            let header = match parse_frame_header(&src[off..]) {
                Ok(Some(h)) if src.len() - off >= h.frame_len() => h,
                Ok(_) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            };
            let payload = &src[off + header.header_len..off + header.frame_len()];
            off += header.frame_len();
            match self.piece(header, payload, &mut on) {
                Ok(ControlFlow::Continue(())) => {}
                Ok(ControlFlow::Break(())) => break,
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        if from_pending {
            pending.drain(..off);
        } else {
            pending.extend_from_slice(&data[off..]);
        }
        self.pending = pending;
        result
    }

    /// How many bytes the next read should ask for to bring the frame in progress to its end
    /// plus the first [`LOOK_AHEAD`] bytes of the next one (at most `buf_len`): the read
    /// pattern of a client that reads one frame at a time.
    pub(super) fn frame_at_a_time(&self, buf_len: usize) -> usize {
        let p = &self.pending;
        let need = match parse_frame_header(p) {
            Ok(Some(h)) => h.frame_len().saturating_sub(p.len()) + LOOK_AHEAD,
            Ok(None) if p.len() < LOOK_AHEAD => LOOK_AHEAD - p.len(),
            // The 16- or 64-bit length follows the first 2 bytes.
            Ok(None) => (if p[1] & 0x7f == 126 { 4 } else { 10 }) - p.len(),
            Err(_) => buf_len,
        };
        need.clamp(1, buf_len)
    }

    /// One complete frame: a message, a fragment, or a control frame.
    fn piece(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        on: &mut impl FnMut(usize, Piece<'_>) -> ControlFlow<()>,
    ) -> Result<ControlFlow<()>, FrameError> {
        let len = header.frame_len();
        Ok(match header.opcode {
            OP_TEXT | OP_BINARY if self.in_message => return Err(FrameError::Fragmentation),
            OP_TEXT | OP_BINARY if header.fin => on(len, Piece::Message(payload)),
            OP_TEXT | OP_BINARY => {
                self.in_message = true;
                self.fragments.clear();
                self.fragments.extend_from_slice(payload);
                on(len, Piece::Fragment)
            }
            OP_CONT if !self.in_message => return Err(FrameError::Fragmentation),
            OP_CONT => {
                self.fragments.extend_from_slice(payload);
                if header.fin {
                    self.in_message = false;
                    on(len, Piece::Message(&self.fragments))
                } else {
                    on(len, Piece::Fragment)
                }
            }
            OP_PING => on(len, Piece::Ping(payload)),
            OP_CLOSE => on(len, Piece::Close(payload)),
            _ => on(len, Piece::Pong),
        })
    }
}

/// Bytes of the next frame a frame-at-a-time read asks for beyond the frame in progress: the
/// whole header of any frame under 64 KiB (2 bytes, or 4 with the 16-bit length that
/// payloads of 126 bytes or more carry), so one read per frame in a stream whatever its size.
const LOOK_AHEAD: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    /// A server frame of `payload` bytes: 2-byte header under 126, 4-byte from 126.
    fn frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        if payload.len() < 126 {
            f.push(payload.len() as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload.len() as u16).to_be_bytes());
        }
        f.extend_from_slice(payload);
        f
    }

    /// Feeds `stream` in reads of `chunk` bytes; every piece as owned bytes, with its length.
    fn pieces(stream: &[u8], chunk: usize) -> (Vec<(usize, String)>, Result<(), FrameError>) {
        let mut r = Reassembler::default();
        let mut seen = Vec::new();
        for part in stream.chunks(chunk) {
            let result = r.feed(part, |len, piece| {
                let text = match piece {
                    Piece::Message(m) => format!("msg {}", String::from_utf8_lossy(m)),
                    Piece::Fragment => "fragment".into(),
                    Piece::Ping(p) => format!("ping {}", String::from_utf8_lossy(p)),
                    Piece::Close(_) => "close".into(),
                    Piece::Pong => "pong".into(),
                };
                let stop = text == "close";
                seen.push((len, text));
                if stop {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            });
            if result.is_err() {
                return (seen, result);
            }
        }
        (seen, Ok(()))
    }

    #[test]
    fn frames_split_anywhere_come_out_whole_and_fragments_join() {
        let big = vec![b'y'; 300];
        let stream = [
            frame(OP_TEXT, true, b"one"),
            frame(OP_PING, true, b"p"),
            frame(OP_BINARY, false, b"tw"),
            frame(OP_CONT, false, b"o"),
            frame(OP_CONT, true, &big),
            frame(OP_TEXT, true, b"three"),
        ]
        .concat();
        let expected = vec![
            (5, "msg one".to_owned()),
            (3, "ping p".into()),
            (4, "fragment".into()),
            (3, "fragment".into()),
            (304, format!("msg two{}", "y".repeat(300))),
            (7, "msg three".into()),
        ];
        for chunk in [1, 2, 3, 7, 64, stream.len()] {
            let (seen, result) = pieces(&stream, chunk);
            assert_eq!(result, Ok(()), "reads of {chunk}");
            assert_eq!(seen, expected, "reads of {chunk}");
        }
    }

    #[test]
    fn a_close_stops_the_read_and_bad_fragmentation_is_an_error() {
        let stream = [
            frame(OP_CLOSE, true, &[3, 232]),
            frame(OP_TEXT, true, b"after"),
        ]
        .concat();
        let (seen, result) = pieces(&stream, stream.len());
        assert_eq!((seen.len(), result), (1, Ok(())), "{seen:?}");

        let stray = frame(OP_CONT, true, b"x");
        assert_eq!(pieces(&stray, 64).1, Err(FrameError::Fragmentation));
        let nested = [frame(OP_TEXT, false, b"a"), frame(OP_TEXT, true, b"b")].concat();
        assert_eq!(pieces(&nested, 64).1, Err(FrameError::Fragmentation));
    }

    /// Reads a stream of back-to-back frames a frame at a time; returns how many reads it took.
    fn reads_for(frames: usize, payload: usize) -> usize {
        let mut r = Reassembler::default();
        let stream: Vec<u8> = (0..frames)
            .flat_map(|_| frame(OP_TEXT, true, &vec![b'x'; payload]))
            .collect();
        let (mut at, mut reads, mut messages) = (0, 0, 0);
        while at < stream.len() {
            let want = r.frame_at_a_time(64 * 1024).min(stream.len() - at);
            r.feed(&stream[at..at + want], |_, _| {
                messages += 1;
                ControlFlow::Continue(())
            })
            .unwrap();
            at += want;
            reads += 1;
        }
        assert_eq!(messages, frames);
        reads
    }

    #[test]
    fn frame_at_a_time_reads_cost_one_per_frame_whatever_the_header_size() {
        // 99-byte and 146-byte frames (a 2-byte and a 4-byte header): the same reads.
        let small = reads_for(100, 97);
        let large = reads_for(100, 142);
        assert_eq!(small, large, "reads for 100 small frames vs 100 large ones");
        assert!(
            small <= 101,
            "one read per frame in a stream, plus the first header: {small}"
        );
    }
}
