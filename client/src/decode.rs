//! [`Decoder`]: one connection's server frames → [`Message`]s, in any of the three encodings.
//!
//! A message that does not decode becomes [`Message::Undecodable`] and the next one is read:
//! one bad message never ends a connection (reconnecting would bring it back as a
//! snapshot). Only a broken gzip stream does, since nothing after it can be inflated.
//!
//! A frame holds one message, or with batches (`?batch=on`) several: JSON text separated by
//! `\n`, or in protobuf one `ServerBatch` (every binary frame, even of one message).
//!
//! A gzip connection is one gzip stream: the decoder keeps one inflater for the connection
//! and feeds it every binary frame in order; each frame ends with a sync flush, so it inflates
//! to whole JSON messages. A new connection needs a new decoder.

use bytes::Bytes;
use flate2::{Decompress, FlushDecompress, Status};

use crate::message::Message;
use crate::options::Encoding;
use crate::{json, protobuf};

/// The gzip stream cannot be inflated any further: the connection must start over.
#[derive(Debug, thiserror::Error)]
#[error("invalid gzip stream: {0}")]
pub(crate) struct GzipError(String);

/// Decodes one connection's frames (see the module doc).
#[derive(Debug)]
pub(crate) struct Decoder {
    encoding: Encoding,
    /// Several messages per frame: a protobuf frame is a `ServerBatch`.
    batch: bool,
    inflate: Option<Decompress>,
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder for a new connection, which asked for batches or not.
    pub(crate) fn new(encoding: Encoding, batch: bool) -> Self {
        Self {
            encoding,
            batch,
            // 15: any window up to 32 KiB (the relay uses 4 KiB).
            inflate: (encoding == Encoding::Gzip).then(|| Decompress::new_gzip(15)),
            scratch: Vec::new(),
        }
    }

    /// A text frame (JSON, whatever the encoding: the relay answers some HTTP-level errors
    /// so), appended to `out`.
    pub(crate) fn text(&mut self, text: &str, out: &mut Vec<Message>) {
        lines(text.as_bytes(), out);
    }

    /// A binary frame, appended to `out`.
    pub(crate) fn binary(&mut self, frame: Bytes, out: &mut Vec<Message>) -> Result<(), GzipError> {
        match self.encoding {
            Encoding::Protobuf if self.batch => protobuf::batch(frame, out),
            Encoding::Protobuf => out.push(protobuf::message(&frame)),
            Encoding::Gzip => {
                let inflate = self
                    .inflate
                    .as_mut()
                    .expect("a gzip decoder has an inflater");
                inflate_frame(inflate, &frame, &mut self.scratch)?;
                lines(&self.scratch, out);
            }
            Encoding::Json => out.push(Message::undecodable("a binary frame on a json connection")),
        }
        Ok(())
    }
}

/// The JSON messages of a frame's text, separated by `\n` (a compact JSON message never
/// holds one).
fn lines(text: &[u8], out: &mut Vec<Message>) {
    out.extend(
        text.split(|&b| b == b'\n')
            .filter(|line| !line.is_empty())
            .map(json::message),
    );
}

/// Inflates all of `frame` into `out` (replacing its contents).
fn inflate_frame(
    inflate: &mut Decompress,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), GzipError> {
    out.clear();
    let mut input = frame;
    loop {
        if out.capacity() - out.len() < 1024 {
            out.reserve(out.capacity().max(4096));
        }
        let before_in = inflate.total_in();
        let before_out = inflate.total_out();
        let status = inflate
            .decompress_vec(input, out, FlushDecompress::Sync)
            .map_err(|e| GzipError(e.to_string()))?;
        let consumed = usize::try_from(inflate.total_in() - before_in).expect("fits the frame");
        input = &input[consumed..];
        let produced = inflate.total_out() - before_out;
        match status {
            Status::StreamEnd => return Ok(()),
            // Done when the input is used up and the output buffer was not the limit.
            _ if input.is_empty() && out.len() < out.capacity() => return Ok(()),
            Status::BufError if consumed == 0 && produced == 0 && input.is_empty() => {
                return Ok(());
            }
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    const TICK: &str = r#"{"type":"tick","symbol":"BTC-USD","seq":17,"kind":"trade","ts_ns":1764000000000000001,"recv_ns":1764000000000041000,"price":43250.5,"size":0.25}"#;

    #[test]
    fn one_gzip_stream_decodes_frame_by_frame() {
        // As the relay writes it: one deflate stream, a sync flush after each message.
        let mut deflate = Compress::new_gzip(Compression::fast(), 12);
        let mut decoder = Decoder::new(Encoding::Gzip, false);
        for i in 0..200 {
            let text = TICK.replace("\"seq\":17", &format!("\"seq\":{i}"));
            let mut frame = Vec::with_capacity(text.len() + 64);
            deflate
                .compress_vec(text.as_bytes(), &mut frame, FlushCompress::Sync)
                .unwrap();
            assert!(frame.ends_with(&[0, 0, 0xff, 0xff]));
            let mut out = Vec::new();
            decoder.binary(frame.into(), &mut out).unwrap();
            let [Message::Tick(t)] = &out[..] else {
                panic!("a tick, got {out:?}")
            };
            assert_eq!(t.seq, i);
        }
    }

    fn seqs(out: &[Message]) -> Vec<u64> {
        out.iter()
            .map(|m| match m {
                Message::Tick(t) => t.seq,
                other => panic!("a tick, got {other:?}"),
            })
            .collect()
    }

    #[test]
    fn a_batched_text_frame_is_its_lines_in_order() {
        let frame = [1, 2, 3].map(|i| TICK.replace("\"seq\":17", &format!("\"seq\":{i}")));
        let mut out = Vec::new();
        Decoder::new(Encoding::Json, true).text(&frame.join("\n"), &mut out);
        assert_eq!(seqs(&out), [1, 2, 3]);
    }

    #[test]
    fn batched_gzip_frames_inflate_to_their_lines_in_order() {
        let mut deflate = Compress::new_gzip(Compression::fast(), 12);
        let mut decoder = Decoder::new(Encoding::Gzip, true);
        let mut out = Vec::new();
        for batch in [1..=3, 4..=4, 5..=9] {
            let text: Vec<String> = batch
                .map(|i| TICK.replace("\"seq\":17", &format!("\"seq\":{i}")))
                .collect();
            let text = text.join("\n");
            // compress_vec writes into the spare capacity only.
            let mut frame = Vec::with_capacity(text.len() + 64);
            deflate
                .compress_vec(text.as_bytes(), &mut frame, FlushCompress::Sync)
                .unwrap();
            decoder.binary(frame.into(), &mut out).unwrap();
        }
        assert_eq!(seqs(&out), (1..=9).collect::<Vec<_>>());
    }

    #[test]
    fn a_binary_frame_on_a_json_connection_is_one_undecodable_message() {
        let mut out = Vec::new();
        Decoder::new(Encoding::Json, false)
            .binary(Bytes::from_static(b"\x01\x02"), &mut out)
            .unwrap();
        assert!(
            matches!(&out[..], [Message::Undecodable(u)] if u.key.is_none()),
            "{out:?}"
        );
    }
}
