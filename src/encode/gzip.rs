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

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, FlushCompress, Status};

use super::ws_frame::{self, OpCode};

/// A client's gzip stream.
#[derive(Debug)]
pub struct GzipStream {
    deflate: Compress,
    scratch: Vec<u8>,
    arena: BytesMut,
}

impl GzipStream {
    /// A new stream; its first frame starts with the gzip header.
    pub fn new() -> Self {
        Self {
            deflate: Compress::new_gzip(Compression::new(LEVEL), WINDOW_BITS),
            scratch: Vec::with_capacity(512),
            arena: BytesMut::new(),
        }
    }

    /// Compresses `message` with a sync flush and returns it as one binary frame.
    pub fn frame(&mut self, message: &[u8]) -> Bytes {
        self.scratch.clear();
        let start_in = self.deflate.total_in();
        loop {
            // A sync flush is complete once deflate returns with output space left over.
            if self.scratch.capacity() - self.scratch.len() < 64 {
                self.scratch.reserve(message.len() / 2 + 64);
            }
            let consumed = usize::try_from(self.deflate.total_in() - start_in)
                .expect("consumed input never exceeds the message length");
            let status = self
                .deflate
                .compress_vec(&message[consumed..], &mut self.scratch, FlushCompress::Sync)
                .expect("deflate with a sync flush on a live stream cannot fail");
            let consumed = usize::try_from(self.deflate.total_in() - start_in)
                .expect("consumed input never exceeds the message length");
            let room_left = self.scratch.len() < self.scratch.capacity();
            if consumed == message.len() && room_left || status == Status::StreamEnd {
                break;
            }
        }
        let len = self.scratch.len();
        if self.arena.capacity() < ws_frame::MAX_HEADER_LEN + len {
            self.arena
                .reserve(ARENA_BLOCK.max(ws_frame::MAX_HEADER_LEN + len));
        }
        ws_frame::write_header(&mut self.arena, OpCode::Binary, len);
        self.arena.put_slice(&self.scratch);
        self.arena.split().freeze()
    }
}

impl Default for GzipStream {
    fn default() -> Self {
        Self::new()
    }
}

/// Deflate level 1. Measured with zlib-rs on 145-byte tick JSON, sync flush per message,
/// 4 KiB window, one stream: level 1 ≈ 2.0 µs and 32 B per message, level 6 ≈ 5.9 µs /
/// 31.5 B; on more varied ticks (benches/encode.rs) level 6 is 15% smaller for ~4x the CPU.
/// Per-client CPU is the scarcer resource (miniz_oxide: 14 µs / 47 B at level 1).
const LEVEL: u32 = 1;
/// 2^12 = 4 KiB window: ~25 recent ticks of context, plenty for repeated keys and symbols.
const WINDOW_BITS: u8 = 12;
/// Frames are carved from blocks of this size, so one allocation serves many deliveries.
const ARENA_BLOCK: usize = 16 * 1024;

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
