//! Acknowledged ingest, the connection's side (docs/PROTOCOL.md, "Acknowledged ingest"): a
//! publisher's hello, first on its connection, names the publisher and the pseq of the
//! line after it; every line after it (blank and bad ones too) takes the next pseq.

use std::sync::Arc;

use prost::Message as _;

use super::DecodeError;
use crate::event::publisher_id;
use crate::proto;

/// A publisher's hello: who it is and the pseq of its next line.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Hello {
    /// The publisher's id.
    pub publisher: Arc<str>,
    /// The pseq of the line after the hello.
    pub pseq: u64,
}

/// Highest first pseq a hello may name: room for 2^63 lines after it.
pub const MAX_FIRST_PSEQ: u64 = 1 << 63;

impl Hello {
    /// A hello of `publisher` starting at `pseq`, validated.
    pub fn new(publisher: &str, pseq: u64) -> Result<Self, DecodeError> {
        let publisher = publisher_id(publisher).map_err(|e| DecodeError::Hello(e.into()))?;
        if !(1..=MAX_FIRST_PSEQ).contains(&pseq) {
            return Err(DecodeError::Hello(format!(
                "pseq {pseq}: a hello's pseq is from 1 to 2^63"
            )));
        }
        Ok(Self { publisher, pseq })
    }

    /// An NDJSON line that is a hello (`"type":"hello"`), parsed; `None` if it is not one.
    pub fn from_json(line: &[u8]) -> Option<Result<Self, DecodeError>> {
        let finder = memchr::memmem::find;
        if finder(line, b"\"type\"").is_none() || finder(line, b"\"hello\"").is_none() {
            return None;
        }
        let Ok(serde_json::Value::Object(fields)) = serde_json::from_slice(line) else {
            return None;
        };
        if fields.get("type").and_then(|t| t.as_str()) != Some("hello") {
            return None;
        }
        let bad = |what: &str| Some(Err(DecodeError::Hello(what.into())));
        if let Some(unknown) = fields
            .keys()
            .find(|k| !matches!(k.as_str(), "type" | "publisher" | "pseq"))
        {
            return bad(&format!("unknown field `{unknown}`"));
        }
        let Some(publisher) = fields.get("publisher").and_then(|p| p.as_str()) else {
            return bad("`publisher` (a string) is required");
        };
        let Some(pseq) = fields.get("pseq").and_then(|p| p.as_u64()) else {
            return bad("`pseq` (a whole number from 1) is required");
        };
        Some(Self::new(publisher, pseq))
    }

    /// A protobuf message body that is an `IngestHello` (first field 101), parsed; `None`
    /// if it is not one.
    pub fn from_protobuf(body: &[u8]) -> Option<Result<Self, DecodeError>> {
        if !body.starts_with(&HELLO_TAG) {
            return None;
        }
        let hello = proto::IngestHello::decode(body)
            .map_err(|e| DecodeError::Protobuf(e.to_string()))
            .and_then(|m| {
                m.hello
                    .ok_or_else(|| DecodeError::Hello("IngestHello without its hello".into()))
            });
        Some(hello.and_then(|h| Self::new(&h.publisher, h.pseq)))
    }
}

/// The key of `IngestHello.hello` (field 101, length-delimited) as a varint: (101 << 3) | 2.
const HELLO_TAG: [u8; 2] = [0xAA, 0x06];

/// A connection's tagging after its hello: the pseq of each line.
#[derive(Clone, Debug)]
pub struct Tagging {
    publisher: Arc<str>,
    first: u64,
    /// The hello's line on the connection.
    line: u64,
}

/// A hand-off's tags: the publisher, each item's pseq, and the pseq up to which the
/// connection's lines are all in this hand-off or before it (bad lines included).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tagged {
    /// The publisher's id.
    pub publisher: Arc<str>,
    /// Each item's pseq, in order.
    pub pseqs: Vec<u64>,
    /// Every line up to this pseq is settled once the hand-off is.
    pub through: u64,
}

impl Tagging {
    /// Tagging after `hello`, which came on line `line`.
    pub fn new(hello: Hello, line: u64) -> Self {
        Self {
            publisher: hello.publisher,
            first: hello.pseq,
            line,
        }
    }

    /// The pseq of line `line` (after the hello's).
    pub fn pseq(&self, line: u64) -> u64 {
        self.first + line.saturating_sub(self.line + 1)
    }

    /// The tags of items on `lines`, every line up to `last` read; `None` when no line
    /// after the hello was read yet.
    pub fn tagged(&self, lines: &[u64], last: u64) -> Option<Tagged> {
        (last > self.line).then(|| Tagged {
            publisher: self.publisher.clone(),
            pseqs: lines.iter().map(|&l| self.pseq(l)).collect(),
            through: self.pseq(last),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_hello_is_a_line_of_type_hello_with_an_id_and_a_pseq() {
        let hello = Hello::from_json(br#"{"type":"hello","publisher":"feed-1","pseq":7}"#);
        assert_eq!(hello, Some(Ok(Hello::new("feed-1", 7).unwrap())));
        // Not hellos: a tick, a book.
        assert_eq!(Hello::from_json(br#"{"symbol":"A","price":1}"#), None);
        assert_eq!(
            Hello::from_json(br#"{"type":"book","venue":"hello"}"#),
            None
        );
        for bad in [
            r#"{"type":"hello","publisher":"feed 1","pseq":7}"#,
            r#"{"type":"hello","publisher":"feed-1","pseq":0}"#,
            r#"{"type":"hello","publisher":"feed-1","pseq":-1}"#,
            r#"{"type":"hello","publisher":"feed-1"}"#,
            r#"{"type":"hello","pseq":3}"#,
            r#"{"type":"hello","publisher":"feed-1","pseq":1,"x":1}"#,
        ] {
            let parsed = Hello::from_json(bad.as_bytes());
            assert!(matches!(parsed, Some(Err(DecodeError::Hello(_)))), "{bad}");
        }
    }

    #[test]
    fn a_protobuf_hello_is_told_by_its_first_field() {
        let message = proto::IngestHello {
            hello: Some(proto::PublisherHello {
                publisher: "feed-1".into(),
                pseq: 9,
            }),
        };
        let body = message.encode_to_vec();
        assert_eq!(
            Hello::from_protobuf(&body),
            Some(Ok(Hello::new("feed-1", 9).unwrap()))
        );
        assert_eq!(Hello::from_protobuf(&[0x0A, 0x01, b'A']), None);
    }

    #[test]
    fn every_line_after_the_hello_takes_the_next_pseq() {
        let tagging = Tagging::new(Hello::new("p", 100).unwrap(), 1);
        assert_eq!(tagging.pseq(2), 100);
        assert_eq!(tagging.pseq(5), 103);
        let tagged = tagging.tagged(&[2, 4], 5).unwrap();
        assert_eq!((tagged.pseqs, tagged.through), (vec![100, 102], 103));
        assert_eq!(tagging.tagged(&[], 1), None, "nothing after the hello yet");
    }
}
