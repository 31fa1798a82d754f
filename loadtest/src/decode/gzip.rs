//! The gzip encoding's inflater: a session is one gzip stream for the whole connection, each
//! frame ending at a sync flush, so each frame's payload inflates to exactly one JSON message.

use flate2::{Decompress, FlushDecompress, Status};

use super::DecodeError;

/// One connection's inflater.
pub struct GzipStream {
    inflater: Decompress,
}

impl std::fmt::Debug for GzipStream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GzipStream")
            .field("total_in", &self.inflater.total_in())
            .field("total_out", &self.inflater.total_out())
            .finish()
    }
}

impl Default for GzipStream {
    fn default() -> Self {
        Self::new()
    }
}

impl GzipStream {
    /// A fresh inflater expecting a gzip header in the first frame (RFC 1952, 32 KiB window).
    pub fn new() -> Self {
        Self {
            inflater: Decompress::new_gzip(15),
        }
    }

    /// Inflates one frame's payload into `out` (cleared first).
    pub fn inflate_frame(&mut self, input: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        out.clear();
        let mut consumed = 0usize;
        loop {
            if out.capacity() - out.len() < 1024 {
                out.reserve(out.capacity().max(4096));
            }
            let before_in = self.inflater.total_in();
            let before_out = self.inflater.total_out();
            let status = self
                .inflater
                .decompress_vec(&input[consumed..], out, FlushDecompress::Sync)
                .map_err(|e| DecodeError::Inflate(e.to_string()))?;
            let read = usize::try_from(self.inflater.total_in() - before_in)
                .expect("inflater cannot read more than the slice it was given");
            consumed += read;
            let wrote = self.inflater.total_out() - before_out;
            let output_full = out.len() == out.capacity();
            match status {
                Status::StreamEnd => return Ok(()),
                _ if consumed == input.len() && !output_full => return Ok(()),
                // No progress with room to spare: the input is exhausted mid-block.
                Status::BufError if read == 0 && wrote == 0 && !output_full => return Ok(()),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Message, scan_json};
    use flate2::{Compress, Compression, FlushCompress};

    /// Compresses each message into its own sync-flushed chunk of one gzip stream, as the relay
    /// frames it.
    fn gzip_frames(messages: &[&[u8]]) -> Vec<Vec<u8>> {
        let mut deflater = Compress::new_gzip(Compression::fast(), 15);
        messages
            .iter()
            .map(|m| {
                let mut out = Vec::with_capacity(m.len() + 64);
                let mut consumed = 0;
                loop {
                    out.reserve(64);
                    let before = deflater.total_in();
                    deflater
                        .compress_vec(&m[consumed..], &mut out, FlushCompress::Sync)
                        .expect("compression of a memory buffer cannot fail");
                    consumed += usize::try_from(deflater.total_in() - before).unwrap();
                    if consumed == m.len() && out.len() < out.capacity() {
                        break;
                    }
                }
                out
            })
            .collect()
    }

    #[test]
    fn gzip_stream_inflates_one_message_per_frame() {
        let big = format!(r#"{{"type":"welcome","pad":"{}"}}"#, "x".repeat(100_000));
        let messages: Vec<&[u8]> = vec![
            big.as_bytes(),
            br#"{"type":"tick","symbol":"SYM001","seq":1,"kind":"trade","ts_ns":5,"recv_ns":6}"#,
            br#"{"type":"tick","symbol":"SYM001","seq":2,"kind":"trade","ts_ns":7,"recv_ns":8}"#,
        ];
        let frames = gzip_frames(&messages);
        assert_eq!(
            &frames[0][..2],
            &[0x1f, 0x8b],
            "first frame carries the gzip header"
        );
        let mut stream = GzipStream::new();
        let mut out = Vec::new();
        for (frame, expected) in frames.iter().zip(&messages) {
            stream.inflate_frame(frame, &mut out).unwrap();
            assert_eq!(&out[..], *expected);
        }
        assert_eq!(
            scan_json(&out),
            Ok(Message::Tick {
                symbol: b"SYM001",
                seq: 2,
                ts_ns: 7
            })
        );
    }

    #[test]
    fn gzip_garbage_is_an_error() {
        let mut stream = GzipStream::new();
        let mut out = Vec::new();
        assert!(matches!(
            stream.inflate_frame(b"not gzip at all", &mut out),
            Err(DecodeError::Inflate(_))
        ));
    }
}
