//! A publisher's book update → a [`BookUpdate`] (seq 0) or a [`BookError`]: the NDJSON line
//! `{"type":"book","symbol":..,"snapshot":true|false,"bids":[[price,size],..],"asks":[..],"ts_ns":..}`
//! (prices and sizes as JSON numbers or decimal strings) and the protobuf `BookInput`.
//!
//! The only validation point for what a publisher sends about books: after it every level
//! is a finite decimal with a size of 0 or more, kept exactly (never through a float).

use serde::Deserialize;
use serde_json::value::RawValue;

use super::{BookChannel, BookError, BookKind, BookUpdate, Level, LevelError, decimal};
use crate::proto;
use crate::tick::Symbol;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBook<'a> {
    #[serde(rename = "type")]
    kind: Option<String>,
    symbol: Option<String>,
    snapshot: Option<bool>,
    #[serde(borrow)]
    bids: Option<Vec<&'a RawValue>>,
    #[serde(borrow)]
    asks: Option<Vec<&'a RawValue>>,
    ts_ns: Option<u64>,
}

/// Parses one NDJSON book line (its object, without the newline).
pub fn parse_json(line: &[u8]) -> Result<BookUpdate, BookError> {
    let raw: RawBook<'_> = serde_json::from_slice(line).map_err(|e| {
        let text = e.to_string();
        if text.contains("unknown field") {
            BookError::UnknownField(text)
        } else {
            BookError::Json(text)
        }
    })?;
    match raw.kind.as_deref() {
        Some("book") => {}
        Some(other) => return Err(BookError::Type(other.chars().take(40).collect())),
        None => return Err(BookError::MissingField("type")),
    }
    let symbol = raw.symbol.ok_or(BookError::MissingField("symbol"))?;
    let snapshot = raw.snapshot.ok_or(BookError::MissingField("snapshot"))?;
    let bids = json_levels("bids", raw.bids.unwrap_or_default())?;
    let asks = json_levels("asks", raw.asks.unwrap_or_default())?;
    build(&symbol, snapshot, bids, asks, raw.ts_ns.unwrap_or(0))
}

/// Validates a protobuf `BookInput` (from the protobuf ingest port).
pub fn from_proto(message: proto::BookInput) -> Result<BookUpdate, BookError> {
    let levels = |side, list: Vec<proto::BookLevel>| -> Result<Vec<Level>, BookError> {
        list.iter()
            .enumerate()
            .map(|(index, l)| {
                level(&l.price, &l.size).map_err(|error| BookError::Level { side, index, error })
            })
            .collect()
    };
    let bids = levels("bids", message.bids)?;
    let asks = levels("asks", message.asks)?;
    build(&message.symbol, message.snapshot, bids, asks, message.ts_ns)
}

fn build(
    symbol: &str,
    snapshot: bool,
    bids: Vec<Level>,
    asks: Vec<Level>,
    ts_ns: u64,
) -> Result<BookUpdate, BookError> {
    let symbol = Symbol::parse(symbol).map_err(BookError::Symbol)?;
    let kind = if snapshot {
        BookKind::Snapshot
    } else {
        BookKind::Delta
    };
    Ok(BookUpdate::input(
        BookChannel::full(symbol),
        kind,
        bids,
        asks,
        ts_ns,
    ))
}

fn json_levels(side: &'static str, raw: Vec<&RawValue>) -> Result<Vec<Level>, BookError> {
    raw.iter()
        .enumerate()
        .map(|(index, value)| {
            json_level(value).map_err(|error| BookError::Level { side, index, error })
        })
        .collect()
}

/// `[price, size]`, each a JSON number or a string holding a decimal.
fn json_level(value: &RawValue) -> Result<Level, LevelError> {
    let pair: Vec<&RawValue> = serde_json::from_str(value.get()).map_err(|_| LevelError::Shape)?;
    let [price, size] = pair[..] else {
        return Err(LevelError::Shape);
    };
    level(number_text(price)?, number_text(size)?)
}

/// The decimal text of a JSON number, or of a string's contents.
fn number_text(value: &RawValue) -> Result<&str, LevelError> {
    let text = value.get();
    if text.starts_with('"') {
        // A decimal has nothing to escape: a borrowed &str refuses any escape.
        serde_json::from_str::<&str>(text)
            .map_err(|_| LevelError::Malformed(text.chars().take(40).collect()))
    } else {
        Ok(text)
    }
}

/// A level from its price and size text: both finite decimals, the size 0 or more.
pub fn level(price: &str, size: &str) -> Result<Level, LevelError> {
    let price = decimal::parse(price)?;
    let size = decimal::parse(size)?;
    if size.is_sign_negative() {
        return Err(LevelError::Negative(decimal::text(&size)));
    }
    Ok(Level { price, size })
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn a_book_line_keeps_its_numbers_exactly() {
        let line = br#"{"type":"book","symbol":"BTC-USD","snapshot":true,"bids":[[43250.50,"1.250"],["43250.4",0.1]],"asks":[["43251","2"]],"ts_ns":7}"#;
        let update = parse_json(line).unwrap();
        assert_eq!(update.kind, BookKind::Snapshot);
        assert_eq!(&**update.channel.name(), "book:BTC-USD");
        let text: Vec<String> = update
            .bids
            .iter()
            .map(|l| format!("{}:{}", decimal::text(&l.price), decimal::text(&l.size)))
            .collect();
        assert_eq!(text, ["43250.5:1.25", "43250.4:0.1"]);
        assert_eq!(update.ts_ns, 7);
    }

    #[test]
    fn bad_updates_have_codes_and_fields() {
        let err = |t: &str| parse_json(t.as_bytes()).unwrap_err();
        let code = |t: &str| err(t).code().as_str();
        let ok = r#"{"type":"book","symbol":"A","snapshot":false,"bids":[[1,1]]}"#;
        assert!(parse_json(ok.as_bytes()).is_ok());
        assert_eq!(
            code(r#"{"type":"book","symbol":"A","snapshot":false,"bids":[[1,-1]]}"#),
            "negative_size"
        );
        assert_eq!(
            code(r#"{"type":"book","symbol":"A","snapshot":false,"asks":[["NaN",1]]}"#),
            "not_finite"
        );
        assert_eq!(
            code(r#"{"type":"book","symbol":"A","snapshot":false,"asks":[["1x",1]]}"#),
            "bad_decimal"
        );
        assert_eq!(
            code(r#"{"type":"book","symbol":"A","snapshot":false,"asks":[[1]]}"#),
            "bad_json"
        );
        assert_eq!(code(r#"{"type":"book","symbol":"A"}"#), "missing_field");
        assert_eq!(
            code(r#"{"type":"book","symbol":"a b","snapshot":true}"#),
            "invalid_symbol"
        );
        assert_eq!(
            code(r#"{"type":"book","symbol":"A","snapshot":true,"x":1}"#),
            "unknown_field"
        );
        assert_eq!(
            code(r#"{"type":"bok","symbol":"A","snapshot":true}"#),
            "bad_json"
        );
        let level =
            err(r#"{"type":"book","symbol":"A","snapshot":true,"asks":[[1,1],[2,"-0.5"]]}"#);
        assert_eq!(level.field(), Some("asks"));
        assert!(level.to_string().starts_with("asks[1]:"), "{level}");
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = parse_json(&bytes);
        }
    }
}
