//! Frames that carry several messages (a relay client that asked for `batch=on`): a JSON text
//! frame (or an inflated gzip frame) of newline-separated messages, and a protobuf binary frame
//! holding one `tickrelay.v1.ServerBatch`.

use super::DecodeError;
use super::protobuf::{Fields, Value};

/// The messages of an NDJSON frame, in order: lines separated by `\n`, a lone message without
/// one (empty lines, which no message is, are skipped).
pub fn ndjson_lines(frame: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut start = 0;
    let mut ends = memchr::memchr_iter(b'\n', frame).chain(std::iter::once(frame.len()));
    std::iter::from_fn(move || {
        loop {
            let end = ends.next()?;
            let line = &frame[start..end];
            start = end + 1;
            if !line.is_empty() {
                return Some(line);
            }
        }
    })
}

/// Calls `on` with each `ServerMessage` of a `ServerBatch` frame, in order.
pub fn server_batch(frame: &[u8], mut on: impl FnMut(&[u8])) -> Result<(), DecodeError> {
    let mut fields = Fields::new(frame);
    while let Some((number, value)) = fields.next_field()? {
        // A field this harness does not know is skipped, as proto3 readers do.
        if let (BATCH_MESSAGES, Value::Len(msg)) = (number, value) {
            on(msg);
        }
    }
    Ok(())
}

/// `ServerBatch.messages` in proto/tickrelay.proto.
const BATCH_MESSAGES: u64 = 1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Message, scan_protobuf};
    use crate::proto;
    use prost::Message as _;

    #[test]
    fn ndjson_frames_split_into_their_messages() {
        let lines = |f: &'static [u8]| ndjson_lines(f).collect::<Vec<_>>();
        assert_eq!(lines(b"{\"a\":1}"), [b"{\"a\":1}".as_slice()]);
        assert_eq!(
            lines(b"{\"a\":1}\n{\"b\":2}\n{\"c\":3}"),
            [b"{\"a\":1}".as_slice(), b"{\"b\":2}", b"{\"c\":3}"]
        );
        assert_eq!(lines(b"{}\n"), [b"{}".as_slice()], "a trailing newline");
        assert!(lines(b"").is_empty());
    }

    #[test]
    fn a_server_batch_yields_its_messages_in_order() {
        let tick = |seq| proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Tick(proto::Tick {
                symbol: "SYM001".into(),
                seq,
                ts_ns: 7,
                ..Default::default()
            })),
        };
        let batch = proto::ServerBatch {
            messages: vec![tick(4), tick(5), tick(6)],
        }
        .encode_to_vec();
        let mut seqs = Vec::new();
        server_batch(&batch, |m| match scan_protobuf(m) {
            Ok(Message::Tick { seq, .. }) => seqs.push(seq),
            other => panic!("{other:?}"),
        })
        .unwrap();
        assert_eq!(seqs, [4, 5, 6]);
        assert_eq!(
            server_batch(&batch[..batch.len() - 1], |_| {}),
            Err(DecodeError::BadProtobuf)
        );
    }
}
