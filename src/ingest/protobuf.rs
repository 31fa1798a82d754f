//! Pure decoding of length-delimited protobuf ingest: a varint length, then one `Tick`, or
//! one `IngestBook` (a book update: its first field is 100, which no `Tick` has).

use bytes::{Buf, BytesMut};
use prost::Message as _;

use super::DecodeError;
use crate::book::input;
use crate::event::Item;
use crate::proto;
use crate::tick::{RawTick, Tick};

/// Splits the next complete message off `buf` and decodes it as a tick.
///
/// `None`: more bytes needed. A length over `limit` or a prefix that is not a varint is an
/// error that consumes nothing, and the caller must drop the connection (a length-delimited
/// stream has no resynchronisation point).
pub fn next_message(buf: &mut BytesMut, limit: usize) -> Option<Result<Tick, DecodeError>> {
    next_body(buf, limit).map(|body| body.and_then(|body| decode_tick(&body)))
}

/// Decodes one message body: an `IngestBook` when its first field is the book's (100),
/// otherwise a `Tick` as ever.
pub fn decode_item(body: &[u8]) -> Result<Item, DecodeError> {
    if !body.starts_with(&BOOK_TAG) {
        return decode_tick(body).map(Item::Tick);
    }
    let message =
        proto::IngestBook::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    let book = message
        .book
        .ok_or_else(|| DecodeError::Protobuf("IngestBook without its book".into()))?;
    Ok(Item::Book(input::from_proto(book)?))
}

/// The next complete message body of `buf` (see [`next_message`]).
pub fn next_body(buf: &mut BytesMut, limit: usize) -> Option<Result<BytesMut, DecodeError>> {
    let (len, prefix) = match read_varint(buf) {
        Varint::Incomplete => return None,
        Varint::Invalid => return Some(Err(DecodeError::BadLengthPrefix)),
        Varint::Value(len, prefix) => (len, prefix),
    };
    let len = match usize::try_from(len) {
        Ok(len) if len <= limit => len,
        _ => {
            return Some(Err(DecodeError::TooLong {
                len: usize::try_from(len).unwrap_or(usize::MAX),
                limit,
            }));
        }
    };
    if buf.len() < prefix + len {
        return None;
    }
    buf.advance(prefix);
    Some(Ok(buf.split_to(len)))
}

/// The key of `IngestBook.book` (field 100, length-delimited) as a varint: (100 << 3) | 2.
const BOOK_TAG: [u8; 2] = [0xA2, 0x06];

/// Decodes one protobuf `Tick` body and validates it.
pub fn decode_tick(body: &[u8]) -> Result<Tick, DecodeError> {
    let message = proto::Tick::decode(body).map_err(|e| DecodeError::Protobuf(e.to_string()))?;
    validate(message)
}

/// Validates a decoded protobuf `Tick` (its `seq` and `recv_ns` are not kept: the relay
/// sets them).
pub fn validate(message: proto::Tick) -> Result<Tick, DecodeError> {
    let kind = match proto::TickKind::try_from(message.kind) {
        Ok(proto::TickKind::Trade) => Some("trade".to_owned()),
        Ok(proto::TickKind::Quote) => Some("quote".to_owned()),
        Ok(proto::TickKind::Unspecified) => None,
        Err(_) => {
            return Err(DecodeError::Protobuf(format!(
                "unknown kind {}",
                message.kind
            )));
        }
    };
    let raw = RawTick {
        symbol: message.symbol,
        kind,
        price: message.price,
        size: message.size,
        bid: message.bid,
        ask: message.ask,
        bid_size: message.bid_size,
        ask_size: message.ask_size,
        venue: message.venue,
        ts_ns: message.ts_ns,
    };
    Tick::try_from(raw).map_err(DecodeError::Tick)
}

enum Varint {
    Incomplete,
    Invalid,
    Value(u64, usize),
}

fn read_varint(buf: &[u8]) -> Varint {
    let mut value = 0u64;
    for (i, byte) in buf.iter().take(10).enumerate() {
        value |= u64::from(byte & 0x7F) << (7 * i);
        if byte & 0x80 == 0 {
            return Varint::Value(value, i + 1);
        }
    }
    if buf.len() >= 10 {
        Varint::Invalid
    } else {
        Varint::Incomplete
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn encoded(tick: &proto::Tick) -> BytesMut {
        BytesMut::from(&tick.encode_length_delimited_to_vec()[..])
    }

    fn sample() -> proto::Tick {
        proto::Tick {
            symbol: "BTC-USD".into(),
            price: Some(43250.5),
            size: Some(0.25),
            ts_ns: 1_764_000_000_000_000_000,
            ..Default::default()
        }
    }

    #[test]
    fn a_book_is_told_from_a_tick_by_its_first_field() {
        let book = proto::IngestBook {
            book: Some(proto::BookInput {
                symbol: "BTC-USD".into(),
                snapshot: true,
                bids: vec![proto::BookLevel {
                    price: "43250.50".into(),
                    size: "1".into(),
                }],
                asks: vec![],
                ts_ns: 5,
            }),
        };
        let bytes = book.encode_to_vec();
        assert_eq!(bytes[..2], BOOK_TAG, "the tag prost writes");
        match decode_item(&bytes).unwrap() {
            Item::Book(update) => assert_eq!(update.bids[0].price.to_string(), "43250.5"),
            other => panic!("expected a book, got {other:?}"),
        }
        let tick = decode_item(&sample().encode_to_vec()).unwrap();
        assert!(matches!(tick, Item::Tick(_)), "a tick stays a tick");
    }

    #[test]
    fn messages_split_at_their_length() {
        let mut buf = encoded(&sample());
        buf.extend_from_slice(&encoded(&sample()));
        let total = buf.len();
        let mut partial = buf.split_to(total - 3);
        assert!(next_message(&mut partial, 1024).unwrap().is_ok());
        assert!(
            next_message(&mut partial, 1024).is_none(),
            "needs 3 more bytes"
        );
        partial.extend_from_slice(&buf);
        let tick = next_message(&mut partial, 1024).unwrap().unwrap();
        assert_eq!(tick.price, Some(43250.5));
        assert!(partial.is_empty());
    }

    #[test]
    fn a_length_prefix_of_several_bytes_is_read_whole() {
        let body = vec![7u8; 300];
        // 300 as a varint: the low seven bits first, with the "more" bit, then the rest.
        let mut buf = BytesMut::from(&[0xAC, 0x02][..]);
        buf.extend_from_slice(&body);
        buf.extend_from_slice(&[1, 9]);
        assert_eq!(&next_body(&mut buf, 1024).unwrap().unwrap()[..], &body[..]);
        assert_eq!(&buf[..], &[1, 9], "the next message's bytes stay");
        // Ten bytes that all say "more": no length; nine may still end.
        let mut endless = BytesMut::from(&[0xFF; 10][..]);
        assert!(matches!(
            next_body(&mut endless, 1024),
            Some(Err(DecodeError::BadLengthPrefix))
        ));
        assert!(next_body(&mut BytesMut::from(&[0xFF; 9][..]), 1024).is_none());
    }

    #[test]
    fn oversized_and_invalid_messages_are_errors() {
        let mut buf = encoded(&sample());
        assert!(matches!(
            next_message(&mut buf, 4),
            Some(Err(DecodeError::TooLong { .. }))
        ));
        let mut junk = BytesMut::from(&[3u8, 0xFF, 0xFF, 0xFF][..]);
        assert!(matches!(
            next_message(&mut junk, 1024),
            Some(Err(DecodeError::Protobuf(_)))
        ));
        let mut no_symbol = encoded(&proto::Tick {
            symbol: String::new(),
            ..sample()
        });
        assert!(matches!(
            next_message(&mut no_symbol, 1024),
            Some(Err(DecodeError::Tick(_)))
        ));
    }

    proptest! {
        #[test]
        fn every_error_consumes_its_message_or_ends_the_stream(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            // A recoverable error that consumed nothing would make the reader spin forever.
            let mut buf = BytesMut::from(&bytes[..]);
            loop {
                let before = buf.len();
                let Some(result) = next_message(&mut buf, 1024) else { break };
                match result {
                    Err(e) if e.ends_stream() => break,
                    _ => prop_assert!(buf.len() < before, "a result that does not end the stream consumes bytes"),
                }
            }
        }
    }
}
