//! Pure NDJSON decoding: one line → a [`Tick`] (or, a line with `channel` and `data`, an
//! [`Event`]) or a [`DecodeError`] that names the reason.
//!
//! Lines are parsed in place with `simd_json::serde::from_slice_with_buffers` (it rewrites its
//! input, which is our own read buffer) and reusable parse buffers, so a steady stream of
//! ticks does not allocate for parsing.

use simd_json::Buffers;

use super::DecodeError;
use crate::book::input as book_input;
use crate::config::defaults::MAX_EVENT_BYTES;
use crate::event::{Event, Item};
use crate::tick::{RawTick, Tick, TickError};

/// Decodes NDJSON lines, keeping the parser's scratch buffers between lines.
pub struct LineDecoder {
    buffers: Buffers,
    /// The line as received: the parser rewrites its input, and a failure is explained
    /// from the original.
    original: Vec<u8>,
    /// Largest event `data`, in bytes (`--max-event-bytes`).
    max_event: usize,
}

impl LineDecoder {
    /// A decoder with empty scratch buffers and the default event size limit.
    pub fn new() -> Self {
        Self::with_event_limit(MAX_EVENT_BYTES)
    }

    /// A decoder refusing event `data` over `max_event` bytes.
    pub fn with_event_limit(max_event: usize) -> Self {
        Self {
            buffers: Buffers::new(1024),
            original: Vec::with_capacity(256),
            max_event,
        }
    }

    /// Decodes one line (without its `\n`): a tick, or an event when the line has a
    /// `channel` (and is not a valid tick); `None` for a blank line.
    ///
    /// The line is used as scratch space and is garbage afterwards.
    pub fn decode(&mut self, line: &mut [u8]) -> Option<Result<Item, DecodeError>> {
        let line = trim_ascii_mut(line);
        if line.is_empty() {
            return None;
        }
        // Only a book update has a `type` field (`"type":"book"`).
        if memchr::memmem::find(line, b"\"type\"").is_some() {
            return Some(self.decode_book(line));
        }
        // Ticks are the hot path: one substring scan keeps them on the simd-json parser.
        if memchr::memmem::find(line, b"\"channel\"").is_none() {
            return Some(self.decode_value(line).map(Item::Tick));
        }
        let event = Event::parse(line, self.max_event);
        match event {
            Ok(event) => Some(Ok(Item::Event(event))),
            // A tick may say "channel" in a string (a venue): it is a tick if it parses as one.
            Err(event_error) => {
                let has_symbol = memchr::memmem::find(line, b"\"symbol\"").is_some();
                match self.decode_value(line) {
                    Ok(tick) => Some(Ok(Item::Tick(tick))),
                    Err(tick_error) if has_symbol => Some(Err(tick_error)),
                    Err(_) => Some(Err(DecodeError::Event(event_error))),
                }
            }
        }
    }

    /// Decodes a `POST /api/events` body: one event object, a JSON array of them, or NDJSON
    /// lines. An error names its line (or array position), from 1.
    pub fn decode_events(&mut self, body: &mut [u8]) -> Result<Vec<Event>, (usize, DecodeError)> {
        let body = trim_ascii_mut(body);
        if body.first() == Some(&b'[') {
            let items: Vec<&serde_json::value::RawValue> =
                serde_json::from_slice(body).map_err(|e| {
                    (
                        1,
                        DecodeError::Json(format!("not a JSON array of events: {e}")),
                    )
                })?;
            items
                .iter()
                .enumerate()
                .map(|(i, raw)| {
                    Event::parse(raw.get().as_bytes(), self.max_event)
                        .map_err(|e| (i + 1, DecodeError::Event(e)))
                })
                .collect()
        } else {
            let mut events = Vec::new();
            for (i, line) in body.split_mut(|b| *b == b'\n').enumerate() {
                let line = trim_ascii_mut(line);
                if !line.is_empty() {
                    let event = Event::parse(line, self.max_event)
                        .map_err(|e| (i + 1, DecodeError::Event(e)))?;
                    events.push(event);
                }
            }
            Ok(events)
        }
    }

    /// Decodes a JSON body holding one tick object or an array of them (`POST /api/publish`).
    pub fn decode_document(&mut self, body: &mut [u8]) -> Result<Vec<Tick>, (usize, DecodeError)> {
        let body = trim_ascii_mut(body);
        if body.first() == Some(&b'[') {
            let original = body.to_vec();
            let raws: Vec<RawTick> =
                simd_json::serde::from_slice_with_buffers(body, &mut self.buffers)
                    .map_err(|e| explain_array(&original, &e))?;
            raws.into_iter()
                .enumerate()
                .map(|(i, raw)| Tick::try_from(raw).map_err(|e| (i + 1, DecodeError::Tick(e))))
                .collect()
        } else {
            // One object, or NDJSON lines: numbered from 1.
            let mut ticks = Vec::new();
            for (i, line) in body.split_mut(|b| *b == b'\n').enumerate() {
                let line = trim_ascii_mut(line);
                if !line.is_empty() {
                    ticks.push(self.decode_value(line).map_err(|e| (i + 1, e))?);
                }
            }
            Ok(ticks)
        }
    }

    /// A line with a `type` field: a book update, or a tick whose venue says "type".
    fn decode_book(&mut self, line: &mut [u8]) -> Result<Item, DecodeError> {
        match book_input::parse_json(line) {
            Ok(update) => Ok(Item::Book(update)),
            Err(book_error) => match self.decode_value(line) {
                Ok(tick) => Ok(Item::Tick(tick)),
                Err(_) => Err(DecodeError::Book(book_error)),
            },
        }
    }

    /// Decodes a `POST /api/publish` body holding book updates among its ticks: NDJSON
    /// lines, one object, or a JSON array of objects. An error names its line (or array
    /// position), from 1.
    pub fn decode_mixed(
        &mut self,
        body: &mut [u8],
    ) -> Result<Vec<(usize, Item)>, (usize, DecodeError)> {
        let body = trim_ascii_mut(body);
        if body.first() == Some(&b'[') {
            let items: Vec<&serde_json::value::RawValue> = serde_json::from_slice(body)
                .map_err(|e| (1, DecodeError::Json(format!("not a JSON array: {e}"))))?;
            let mut scratch: Vec<Vec<u8>> = items
                .iter()
                .map(|raw| raw.get().as_bytes().to_vec())
                .collect();
            return scratch
                .iter_mut()
                .enumerate()
                .filter_map(|(i, text)| {
                    Some(
                        self.decode(text)?
                            .map(|item| (i + 1, item))
                            .map_err(|e| (i + 1, e)),
                    )
                })
                .collect();
        }
        body.split_mut(|b| *b == b'\n')
            .enumerate()
            .filter_map(|(i, line)| {
                Some(
                    self.decode(line)?
                        .map(|item| (i + 1, item))
                        .map_err(|e| (i + 1, e)),
                )
            })
            .collect()
    }

    fn decode_value(&mut self, line: &mut [u8]) -> Result<Tick, DecodeError> {
        self.original.clear();
        self.original.extend_from_slice(line);
        let raw: RawTick = simd_json::serde::from_slice_with_buffers(line, &mut self.buffers)
            .map_err(|e| explain(&self.original, &e))?;
        Tick::try_from(raw).map_err(DecodeError::Tick)
    }
}

impl std::fmt::Debug for LineDecoder {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LineDecoder").finish_non_exhaustive()
    }
}

impl Default for LineDecoder {
    fn default() -> Self {
        Self::new()
    }
}

/// Turns a parse failure into an error about the tick, naming the field to blame where
/// there is one; the parser's own wording (`Serde(..) at character 0`, `ExpectedNull`)
/// never reaches the publisher (cold path: the original bytes are parsed again,
/// generically).
fn explain(original: &[u8], error: &simd_json::Error) -> DecodeError {
    match simd_json::to_owned_value(&mut original.to_vec()) {
        Ok(value) => blame(&value)
            .unwrap_or_else(|| DecodeError::Json("a tick of an unexpected shape".into())),
        Err(_) => not_json(original, error),
    }
}

/// Like [`explain`] for an array body: finds the element to blame (position from 1).
fn explain_array(original: &[u8], error: &simd_json::Error) -> (usize, DecodeError) {
    match simd_json::to_owned_value(&mut original.to_vec()) {
        Ok(simd_json::OwnedValue::Array(items)) => items
            .iter()
            .enumerate()
            .find_map(|(i, item)| Some((i + 1, blame(item)?)))
            .unwrap_or_else(|| (1, DecodeError::Json("a tick of an unexpected shape".into()))),
        Ok(_) => (
            1,
            DecodeError::Json("expected an array of tick objects".into()),
        ),
        Err(_) => (1, not_json(original, error)),
    }
}

/// Why bytes that are not JSON are not a tick: a `NaN` or `Infinity` where a number
/// belongs is a non-finite number of that field; anything else is a syntax error at a byte.
fn not_json(original: &[u8], error: &simd_json::Error) -> DecodeError {
    if let Some(field) = non_finite_literal(original) {
        return DecodeError::Tick(TickError::NotFinite(field));
    }
    DecodeError::Json(format!("not JSON (syntax error at byte {})", error.index()))
}

/// The number field written as `NaN`, `Infinity` or `-Infinity` (no JSON number), if any.
fn non_finite_literal(original: &[u8]) -> Option<&'static str> {
    let text = std::str::from_utf8(original).ok()?;
    NUMBER_FIELDS.iter().copied().find(|field| {
        let key = format!("\"{field}\"");
        text.match_indices(&key).any(|(at, _)| {
            let rest = text[at + key.len()..].trim_start();
            rest.strip_prefix(':').is_some_and(|value| {
                let value = value.trim_start();
                [
                    "NaN",
                    "Infinity",
                    "-Infinity",
                    "+Infinity",
                    "nan",
                    "inf",
                    "-inf",
                ]
                .iter()
                .any(|literal| value.starts_with(literal))
            })
        })
    })
}

/// The tick's number fields.
const NUMBER_FIELDS: [&str; 6] = ["price", "size", "bid", "ask", "bid_size", "ask_size"];

/// The first field of a would-be tick that is missing, unknown or of the wrong type.
fn blame(value: &simd_json::OwnedValue) -> Option<DecodeError> {
    use simd_json::prelude::*;
    let field = |field: &str, reason| {
        Some(DecodeError::Field {
            field: field.to_owned(),
            reason,
        })
    };
    let Some(object) = value.as_object() else {
        return Some(DecodeError::Json("a tick is a JSON object".into()));
    };
    for required in ["symbol", "ts_ns"] {
        if !object.contains_key(required) {
            return field(required, "missing");
        }
    }
    for (name, v) in object.iter() {
        let (ok, reason) = match name.as_str() {
            "symbol" => (v.is_str(), "expected a string"),
            "kind" | "venue" => (v.is_str() || v.is_null(), "expected a string"),
            "ts_ns" => (
                v.is_u64(),
                "expected a non-negative integer (ns since the Unix epoch)",
            ),
            "price" | "size" | "bid" | "ask" | "bid_size" | "ask_size" => {
                (v.is_number() || v.is_null(), "expected a number")
            }
            other => return Some(DecodeError::UnknownField(other.to_owned())),
        };
        if !ok {
            return field(name, reason);
        }
    }
    None
}

fn trim_ascii_mut(bytes: &mut [u8]) -> &mut [u8] {
    let start = bytes
        .iter()
        .position(|b| !b.is_ascii_whitespace())
        .unwrap_or(bytes.len());
    let end = bytes
        .iter()
        .rposition(|b| !b.is_ascii_whitespace())
        .map_or(start, |i| i + 1);
    &mut bytes[start..end]
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn decode(line: &str) -> Option<Result<Tick, DecodeError>> {
        LineDecoder::new()
            .decode(&mut line.as_bytes().to_vec())
            .map(|r| {
                r.map(|item| match item {
                    Item::Tick(tick) => tick,
                    other => panic!("expected a tick, got {other:?}"),
                })
            })
    }

    #[test]
    fn a_line_decoder_debugs_as_itself() {
        assert_eq!(
            format!("{:?}", LineDecoder::default()),
            "LineDecoder { .. }"
        );
    }

    #[test]
    fn a_line_with_type_is_a_book_update_and_a_venue_named_type_a_tick() {
        let mut d = LineDecoder::new();
        let book = d
            .decode(
                &mut br#"{"type":"book","symbol":"A","snapshot":true,"bids":[["1.50",2]]}"#
                    .to_vec(),
            )
            .unwrap()
            .unwrap();
        assert!(matches!(book, Item::Book(b) if b.bids.len() == 1));
        let tick = d
            .decode(&mut br#"{"symbol":"A","price":1,"ts_ns":1,"venue":"\"type\""}"#.to_vec())
            .unwrap()
            .unwrap();
        assert!(matches!(tick, Item::Tick(_)));
        let bad = d
            .decode(
                &mut br#"{"type":"book","symbol":"A","snapshot":false,"asks":[[1,-2]]}"#.to_vec(),
            )
            .unwrap()
            .unwrap_err();
        assert_eq!(bad.code(), "negative_size");
        assert_eq!(bad.field(), Some("asks"));
    }

    #[test]
    fn a_line_with_channel_is_an_event_and_a_venue_named_channel_a_tick() {
        let mut d = LineDecoder::new();
        let event = d
            .decode(&mut br#"{"channel":"news","data":{"symbol":"X"}}"#.to_vec())
            .unwrap()
            .unwrap();
        assert!(matches!(event, Item::Event(e) if &e.data[..] == br#"{"symbol":"X"}"#));
        let tick = d
            .decode(&mut br#"{"symbol":"A","price":1,"ts_ns":1,"venue":"channel"}"#.to_vec())
            .unwrap()
            .unwrap();
        assert!(matches!(tick, Item::Tick(_)));
        let bad = d
            .decode(&mut br#"{"channel":"news"}"#.to_vec())
            .unwrap()
            .unwrap_err();
        assert_eq!(bad.code(), "missing_field");
        let events = d
            .decode_events(
                &mut b"{\"channel\":\"a\",\"data\":1}\n\n{\"channel\":\"b\",\"data\":[2]}".to_vec(),
            )
            .unwrap();
        assert_eq!(events.len(), 2);
        let err = d
            .decode_events(&mut br#"[{"channel":"a","data":1},{"channel":"b"}]"#.to_vec())
            .unwrap_err();
        assert_eq!(err.0, 2);
        // NDJSON lines are numbered from 1 too, blank lines counted.
        let err = d
            .decode_events(&mut b"{\"channel\":\"a\",\"data\":1}\n\n{\"channel\":\"b\"}".to_vec())
            .unwrap_err();
        assert_eq!(err.0, 3);
        // Neither a valid event nor a valid tick: a line naming a symbol was meant as a
        // tick, and its publisher is told what is wrong with the tick.
        let meant_a_tick = d
            .decode(&mut br#"{"symbol":"A","price":"1","ts_ns":1,"channel":"x"}"#.to_vec())
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(&meant_a_tick, DecodeError::Field { field, .. } if field == "price"),
            "{meant_a_tick:?}"
        );
        let meant_an_event = d
            .decode(&mut br#"{"channel":"news","data":1,"extra":2}"#.to_vec())
            .unwrap()
            .unwrap_err();
        assert!(
            matches!(meant_an_event, DecodeError::Event(_)),
            "{meant_an_event:?}"
        );
    }

    #[test]
    fn a_mixed_body_is_lines_or_an_array_and_an_error_names_its_line() {
        let mut d = LineDecoder::new();
        let tick = r#"{"symbol":"A","price":1,"ts_ns":1}"#;
        let book = r#"{"type":"book","symbol":"A","snapshot":true,"bids":[["1.50",2]]}"#;
        let kinds = |items: Vec<(usize, Item)>| -> Vec<(usize, &'static str)> {
            items
                .into_iter()
                .map(|(n, item)| {
                    (
                        n,
                        if matches!(item, Item::Book(_)) {
                            "book"
                        } else {
                            "tick"
                        },
                    )
                })
                .collect()
        };
        let lines = d
            .decode_mixed(&mut format!("{tick}\n\n{book}\n").into_bytes())
            .unwrap();
        assert_eq!(
            kinds(lines),
            vec![(1, "tick"), (3, "book")],
            "numbered from 1"
        );
        let array = d
            .decode_mixed(&mut format!(" [{book},{tick}]").into_bytes())
            .unwrap();
        assert_eq!(kinds(array), vec![(1, "book"), (2, "tick")]);
        let bad_line = d
            .decode_mixed(&mut format!("{tick}\n{{\"symbol\":\"B\"}}").into_bytes())
            .unwrap_err();
        assert_eq!(bad_line.0, 2);
        let bad_item = d
            .decode_mixed(&mut format!("[{tick},{tick},{{\"symbol\":\"B\"}}]").into_bytes())
            .unwrap_err();
        assert_eq!(bad_item.0, 3);
    }

    #[test]
    fn the_simplest_line_decodes_exactly() {
        let tick = decode(
            r#"{"symbol":"BTC-USD","price":43250.5,"size":0.25,"ts_ns":1764000000000000000}"#,
        )
        .unwrap()
        .unwrap();
        assert_eq!(tick.symbol.as_str(), "BTC-USD");
        assert_eq!(tick.price, Some(43250.5));
        assert_eq!(tick.size, Some(0.25));
        assert_eq!(tick.ts_ns, 1_764_000_000_000_000_000);
    }

    #[test]
    fn blank_lines_are_skipped() {
        assert!(decode("  \r").is_none());
    }

    #[test]
    fn errors_name_their_reason() {
        assert!(matches!(decode("{nope"), Some(Err(DecodeError::Json(_)))));
        assert!(matches!(
            decode(r#"{"symbol":"A","prce":1,"ts_ns":1}"#),
            Some(Err(DecodeError::UnknownField(m))) if m == "prce"
        ));
        assert!(matches!(
            decode(r#"{"symbol":"A","price":"1","ts_ns":1}"#),
            Some(Err(DecodeError::Field { field, .. })) if field == "price"
        ));
        assert!(matches!(
            decode(r#"{"symbol":"A","venue":"X","kind":null,"price":"1","ts_ns":1}"#),
            Some(Err(DecodeError::Field { field, .. })) if field == "price"
        ));
        assert!(matches!(
            decode(r#"{"symbol":"A","price":1,"ts_ns":-5}"#),
            Some(Err(DecodeError::Field { field, .. })) if field == "ts_ns"
        ));
        assert!(matches!(
            decode(r#"{"symbol":"","price":1,"ts_ns":1}"#),
            Some(Err(DecodeError::Tick(TickError::EmptySymbol)))
        ));
        assert!(matches!(
            decode(r#"{"symbol":"A","price":1}"#),
            Some(Err(DecodeError::Field { field, reason: "missing" })) if field == "ts_ns"
        ));
    }

    /// The publisher reads these: they must speak of the tick, never of the parser.
    #[test]
    fn messages_speak_of_the_tick_not_the_parser() {
        let message = |line: &str| decode(line).unwrap().unwrap_err().to_string();
        let unknown = decode(r#"{"symbol":"A","prce":1,"ts_ns":1}"#)
            .unwrap()
            .unwrap_err();
        assert_eq!(unknown.field(), Some("prce"));
        assert_eq!(unknown.to_string(), "unknown field `prce`");
        let nan = decode(r#"{"symbol":"A","price":NaN,"ts_ns":1}"#)
            .unwrap()
            .unwrap_err();
        assert_eq!(nan, DecodeError::Tick(TickError::NotFinite("price")));
        assert_eq!(nan.to_string(), "field `price` is not a finite number");
        assert_eq!(
            message(r#"{"symbol":"A","price":1,"ts_ns":1,"venue":nul}"#),
            "invalid JSON tick: not JSON (syntax error at byte 42)"
        );
        for line in [
            r#"{"symbol":"A","prce":1,"ts_ns":1}"#,
            r#"{"symbol":"A","price":NaN,"ts_ns":1}"#,
            r#"{"symbol":"A","price":1,"ts_ns":1,"venue":nul}"#,
            "{nope",
            "[1,2]",
        ] {
            let text = message(line);
            for internal in ["Serde", "character", "Expected", "InternalError", "Syntax"] {
                assert!(!text.contains(internal), "{line} → {text}");
            }
        }
    }

    #[test]
    fn documents_are_objects_arrays_or_lines() {
        let mut d = LineDecoder::new();
        let one = d
            .decode_document(&mut br#"{"symbol":"A","price":1,"ts_ns":1}"#.to_vec())
            .unwrap();
        assert_eq!(one.len(), 1);
        let many = d
            .decode_document(
                &mut br#"[{"symbol":"A","price":1,"ts_ns":1},{"symbol":"B","bid":2,"ts_ns":2}]"#
                    .to_vec(),
            )
            .unwrap();
        assert_eq!(many.len(), 2);
        let bad = d
            .decode_document(
                &mut br#"[{"symbol":"A","price":1,"ts_ns":1},{"symbol":"B","ts_ns":2}]"#.to_vec(),
            )
            .unwrap_err();
        assert_eq!(bad.0, 2);
        // An element the parser cannot even read as a tick is named as well.
        let unreadable = d
            .decode_document(
                &mut br#"[{"symbol":"A","price":1,"ts_ns":1},{"symbol":"B","price":"x","ts_ns":2}]"#
                    .to_vec(),
            )
            .unwrap_err();
        assert_eq!(unreadable.0, 2, "{:?}", unreadable.1);
    }

    /// A valid tick's fields as a publisher would write them, in any order, as JSON
    /// object members; and the tick they must decode to.
    fn valid_line() -> impl Strategy<Value = (String, Tick)> {
        let number = proptest::option::of(prop_oneof![
            proptest::num::f64::NORMAL,
            proptest::num::f64::ZERO,
            (-1_000_000i64..1_000_000).prop_map(|i| i as f64 / 100.0),
        ]);
        (
            "[A-Za-z0-9._:/-]{1,64}",
            prop_oneof![Just(None), Just(Some("trade")), Just(Some("quote"))],
            [
                number.clone(),
                number.clone(),
                number.clone(),
                number.clone(),
                number.clone(),
                number,
            ],
            proptest::option::of("[ -~]{0,64}"),
            any::<u64>(),
        )
            .prop_filter_map(
                "not a valid tick",
                |(symbol, kind, numbers, venue, ts_ns)| {
                    let [price, size, bid, ask, bid_size, ask_size] = numbers;
                    let raw = || RawTick {
                        symbol: symbol.clone(),
                        kind: kind.map(str::to_owned),
                        price,
                        size,
                        bid,
                        ask,
                        bid_size,
                        ask_size,
                        venue: venue.clone(),
                        ts_ns,
                    };
                    let tick = Tick::try_from(raw()).ok()?;
                    let mut members = vec![
                        format!("\"symbol\":{}", serde_json::to_string(&symbol).unwrap()),
                        format!("\"ts_ns\":{ts_ns}"),
                    ];
                    if let Some(kind) = kind {
                        members.push(format!("\"kind\":\"{kind}\""));
                    }
                    for (name, value) in ["price", "size", "bid", "ask", "bid_size", "ask_size"]
                        .iter()
                        .zip(numbers)
                    {
                        if let Some(v) = value {
                            members.push(format!(
                                "\"{name}\":{}",
                                ryu::Buffer::new().format_finite(v)
                            ));
                        }
                    }
                    if let Some(venue) = &venue {
                        members.push(format!(
                            "\"venue\":{}",
                            serde_json::to_string(venue).unwrap()
                        ));
                    }
                    Some((members, tick))
                },
            )
            .prop_flat_map(|(members, tick)| {
                (Just(members).prop_shuffle(), Just(tick), "[ \t]{0,2}")
            })
            .prop_map(|(members, tick, space)| {
                (
                    format!("{space}{{{}}}{space}", members.join(&format!(",{space}"))),
                    tick,
                )
            })
    }

    proptest! {
        /// Every valid line, fields in any order, decodes to exactly the tick it describes.
        #[test]
        fn valid_lines_decode_to_exactly_their_tick((line, tick) in valid_line()) {
            prop_assert_eq!(decode(&line), Some(Ok(tick)), "{}", line);
        }

        /// The same ticks as NDJSON lines (blank lines between) and as a JSON array give
        /// the same ticks; a bad line is blamed with its line number, from 1.
        #[test]
        fn documents_decode_line_by_line_and_name_the_bad_line(
            lines in proptest::collection::vec(valid_line(), 1..6),
            bad in any::<prop::sample::Index>(),
        ) {
            let (texts, ticks): (Vec<String>, Vec<Tick>) = lines.into_iter().unzip();
            let mut d = LineDecoder::new();
            let ndjson = texts.join("\n\n");
            prop_assert_eq!(d.decode_document(&mut ndjson.into_bytes()), Ok(ticks.clone()));
            let array = format!("[{}]", texts.join(","));
            prop_assert_eq!(d.decode_document(&mut array.into_bytes()), Ok(ticks));

            let at = bad.index(texts.len());
            let mut broken = texts;
            broken[at] = r#"{"symbol":"B","kind":"trade","ts_ns":1}"#.to_owned();
            let ndjson = broken.join("\n");
            let (line, _) = d.decode_document(&mut ndjson.into_bytes()).unwrap_err();
            prop_assert_eq!(line, at + 1, "NDJSON lines count from 1");
            let array = format!("[{}]", broken.join(","));
            let (position, _) = d.decode_document(&mut array.into_bytes()).unwrap_err();
            prop_assert_eq!(position, at + 1, "array positions count from 1");
        }

        #[test]
        fn arbitrary_bytes_never_panic(mut bytes in proptest::collection::vec(any::<u8>(), 0..512)) {
            let _ = LineDecoder::new().decode(&mut bytes);
        }

        #[test]
        fn finite_prices_round_trip(price in proptest::num::f64::NORMAL | proptest::num::f64::SUBNORMAL | proptest::num::f64::ZERO, ts in any::<u64>()) {
            let line = format!(r#"{{"symbol":"P","price":{},"ts_ns":{ts}}}"#, ryu::Buffer::new().format_finite(price));
            let tick = decode(&line).unwrap().unwrap();
            prop_assert_eq!(tick.price.unwrap().to_bits(), price.to_bits());
            prop_assert_eq!(tick.ts_ns, ts);
        }
    }
}
