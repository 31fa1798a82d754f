//! One gzip stream per gzip client, a sync flush per message.
//!
//! Compressing a 150-byte tick on its own barely helps (no dictionary: ~145 B of gzip for
//! ~160 B of JSON) and costs a fresh compressor each time (14-24 µs, 260 KiB). Within one
//! stream each tick is compressed against the ticks before it (~54 B), and a
//! sync flush (`Z_SYNC_FLUSH`) ends every message on a byte boundary, so each WebSocket frame
//! holds exactly one message that a streaming inflater (`zlib.decompressobj(31)`,
//! `DecompressionStream('gzip')`) turns back into the same JSON a JSON client gets.
//!
//! Cost, per gzip client: the deflate state (~260 KiB allocated, ~210 KiB resident, fixed by
//! the library's hash table; measured in docs/ENCODINGS.md) and one compression per delivered
//! message (~2-3 µs, more when thousands of cold states compete for cache). Output frames are carved out of one growing arena,
//! so a delivery does not allocate on its own.

use bytes::Bytes;
use flate2::{Compress, Compression};

use super::deflate::{Compressor, LEVEL, WINDOW_BITS};
use super::ws_frame::OpCode;

/// A client's gzip stream.
///
/// The deflate state exists only while the client is receiving: [`GzipStream::release`]
/// drops it (idle clients would otherwise hold ~210 KiB each), and the next message starts a
/// fresh raw-deflate compressor that continues the same gzip stream. That is valid because
/// every message ends with a sync flush: the next block starts on a byte boundary, and a new
/// compressor never refers back to bytes it did not produce. The cost is one cold message
/// (no dictionary) after each idle period.
#[derive(Debug)]
pub struct GzipStream {
    /// The deflate state and frame buffers, while the client receives.
    state: Compressor,
    /// The gzip header has been written (by the stream's first compressor).
    header_written: bool,
}

impl GzipStream {
    /// A new stream; its first frame starts with the gzip header.
    pub fn new() -> Self {
        Self {
            state: Compressor::default(),
            header_written: false,
        }
    }

    /// Compresses `message` with a sync flush and returns it as one binary frame.
    pub fn frame(&mut self, message: &[u8]) -> Bytes {
        let header_written = std::mem::replace(&mut self.header_written, true);
        self.state.compress(
            || {
                if header_written {
                    Compress::new_with_window_bits(Compression::new(LEVEL), false, WINDOW_BITS)
                } else {
                    Compress::new_gzip(Compression::new(LEVEL), WINDOW_BITS)
                }
            },
            message,
        );
        let len = self.state.compressed().len();
        self.state.carve(0x80 | OpCode::Binary as u8, len)
    }

    /// Drops the deflate state and buffers (the stream itself goes on; see the type doc).
    pub fn release(&mut self) {
        self.state.release();
    }

    /// Releases the state if no message was compressed since the last call.
    pub fn release_if_idle(&mut self) {
        self.state.release_if_idle();
    }

    /// Whether the deflate state is held now.
    pub fn holds_state(&self) -> bool {
        self.state.holds_state()
    }
}

impl Default for GzipStream {
    fn default() -> Self {
        Self::new()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Decompress, FlushDecompress};

    fn payload(frame: &Bytes) -> &[u8] {
        let skip = match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        &frame[skip..]
    }

    #[test]
    fn released_state_continues_the_same_stream() {
        let mut stream = GzipStream::new();
        let mut inflate = Decompress::new_gzip(15);
        for seq in 0..60u64 {
            let msg =
                format!(r#"{{"type":"tick","symbol":"ETH-USD","seq":{seq},"price":2280.{seq}}}"#);
            if seq % 7 == 3 {
                stream.release();
                assert!(!stream.holds_state());
            }
            let frame = stream.frame(msg.as_bytes());
            let mut out = Vec::with_capacity(msg.len() + 64);
            inflate
                .decompress_vec(payload(&frame), &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(out, msg.as_bytes(), "message {seq} after releases");
        }
        stream.release_if_idle();
        assert!(stream.holds_state(), "used since the last check: kept");
        stream.release_if_idle();
        assert!(!stream.holds_state(), "idle for a whole period: released");
    }

    #[test]
    fn each_frame_inflates_to_its_message_and_shrinks() {
        let mut stream = GzipStream::new();
        let mut inflate = Decompress::new_gzip(15);
        let mut compressed = 0;
        let mut plain = 0;
        for seq in 1..=200u64 {
            let msg = format!(
                r#"{{"type":"tick","symbol":"BTC-USD","seq":{seq},"kind":"trade","ts_ns":17640000000{seq:08},"recv_ns":17640000000{seq:08},"price":{}.5,"size":0.25}}"#,
                43000 + seq
            );
            let frame = stream.frame(msg.as_bytes());
            assert_eq!(frame[0], 0x82, "FIN and binary");
            compressed += frame.len();
            plain += msg.len() + 2;
            let mut out = Vec::with_capacity(msg.len() + 64);
            inflate
                .decompress_vec(payload(&frame), &mut out, FlushDecompress::Sync)
                .unwrap();
            assert_eq!(
                out,
                msg.as_bytes(),
                "frame {seq} inflates to exactly its message"
            );
        }
        assert!(
            compressed * 2 < plain,
            "{compressed} bytes gzip vs {plain} plain"
        );
    }
}
