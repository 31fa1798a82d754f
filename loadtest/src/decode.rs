//! Server message → the few fields the harness checks (type, symbol, seq, ts_ns).
//!
//! Receives one complete WebSocket message payload in the session's encoding and hands back a
//! borrowed [`Message`]; nothing is allocated per message. JSON is scanned by hand for the
//! fields the relay writes in a fixed order (`type, symbol, seq, kind, ts_ns, recv_ns, ...`), but
//! the scanner still finds them in any order and tolerates whitespace around `:`. Protobuf is a
//! minimal field walk over `tickrelay.v1.ServerMessage`. Gzip sessions are one deflate stream
//! for the whole connection, each frame ending at a sync flush: [`GzipStream`] inflates frame by
//! frame into a caller-owned buffer.

use std::sync::LazyLock;

use flate2::{Decompress, FlushDecompress, Status};
use memchr::memmem::Finder;

/// One decoded server message: only the fields the harness needs, borrowed from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A delivery: counted, seq-checked and timed.
    Tick {
        symbol: &'a [u8],
        seq: u64,
        ts_ns: u64,
    },
    /// Last known value on subscribe: not a delivery, but its seq is the baseline.
    Snapshot { symbol: &'a [u8], seq: u64 },
    /// The relay says ticks `from..=to` of `symbol` will not arrive.
    Gap {
        symbol: &'a [u8],
        from: u64,
        to: u64,
    },
    /// First message of every session.
    Welcome,
    /// A typed error from the relay.
    Error,
    /// subscribed / unsubscribed / pong / heartbeat / anything else: counted only.
    Other,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("JSON message has no `{0}` field")]
    MissingField(&'static str),
    #[error("JSON field `{0}` is not of the expected type")]
    BadField(&'static str),
    #[error("message is not JSON")]
    NotJson,
    #[error("protobuf message is truncated or malformed")]
    BadProtobuf,
    #[error("inflate failed: {0}")]
    Inflate(String),
}

/// Decodes one JSON server message (the `json` encoding, or a gzip frame once inflated).
pub fn scan_json(msg: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut scan = JsonScan { msg, pos: 0 };
    let ty = scan.string(&KEY_TYPE, "type")?;
    match ty {
        b"tick" => Ok(Message::Tick {
            symbol: scan.string(&KEY_SYMBOL, "symbol")?,
            seq: scan.number(&KEY_SEQ, "seq")?,
            ts_ns: scan.number(&KEY_TS_NS, "ts_ns")?,
        }),
        b"snapshot" => Ok(Message::Snapshot {
            symbol: scan.string(&KEY_SYMBOL, "symbol")?,
            seq: scan.number(&KEY_SEQ, "seq")?,
        }),
        b"gap" => Ok(Message::Gap {
            symbol: scan.string(&KEY_SYMBOL, "symbol")?,
            from: scan.number(&KEY_FROM, "from")?,
            to: scan.number(&KEY_TO, "to")?,
        }),
        b"welcome" => Ok(Message::Welcome),
        b"error" => Ok(Message::Error),
        _ => Ok(Message::Other),
    }
}

/// The same fields from a fully parsed JSON message (the heavy client profile's decode).
pub fn from_value(v: &serde_json::Value) -> Result<Message<'_>, DecodeError> {
    let field = |k: &'static str| v.get(k).ok_or(DecodeError::MissingField(k));
    let text = |k| field(k)?.as_str().ok_or(DecodeError::BadField(k));
    let number = |k| field(k)?.as_u64().ok_or(DecodeError::BadField(k));
    match text("type")? {
        "tick" => Ok(Message::Tick {
            symbol: text("symbol")?.as_bytes(),
            seq: number("seq")?,
            ts_ns: number("ts_ns")?,
        }),
        "snapshot" => Ok(Message::Snapshot {
            symbol: text("symbol")?.as_bytes(),
            seq: number("seq")?,
        }),
        "gap" => Ok(Message::Gap {
            symbol: text("symbol")?.as_bytes(),
            from: number("from")?,
            to: number("to")?,
        }),
        "welcome" => Ok(Message::Welcome),
        "error" => Ok(Message::Error),
        _ => Ok(Message::Other),
    }
}

/// Decodes one `tickrelay.v1.ServerMessage` (the `protobuf` encoding) by walking its fields.
pub fn scan_protobuf(msg: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut fields = Fields(msg);
    let mut out = Message::Other;
    // A oneof: the last member on the wire wins (proto3 merge rule), so keep walking.
    while let Some((number, value)) = fields.next_field()? {
        out = match (number, value) {
            (SERVER_WELCOME, Value::Len(_)) => Message::Welcome,
            (SERVER_TICK, Value::Len(body)) => {
                let (symbol, seq, ts_ns) = scan_pb_tick(body)?;
                Message::Tick { symbol, seq, ts_ns }
            }
            (SERVER_SNAPSHOT, Value::Len(body)) => {
                let (symbol, seq, _) = scan_pb_tick(body)?;
                Message::Snapshot { symbol, seq }
            }
            (SERVER_ERROR, Value::Len(_)) => Message::Error,
            (SERVER_GAP, Value::Len(body)) => scan_pb_gap(body)?,
            _ => Message::Other,
        };
    }
    Ok(out)
}

/// Maps a symbol name `SYM042` to its index (42); names the harness did not make give `None`.
pub fn symbol_id(name: &[u8]) -> Option<u32> {
    let digits = name.strip_prefix(b"SYM")?;
    if digits.is_empty() || digits.len() > 9 {
        return None;
    }
    digits.iter().try_fold(0u32, |acc, &b| {
        b.is_ascii_digit().then(|| acc * 10 + u32::from(b - b'0'))
    })
}

/// The name of symbol `id` among `count` symbols: `SYM000`..`SYM099`, wider past 1000.
pub fn symbol_name(id: u32, count: u32) -> String {
    let width = count.saturating_sub(1).to_string().len().max(3);
    format!("SYM{id:0width$}")
}

/// One connection's inflater: the whole connection is one gzip stream, each frame ends at a
/// sync flush, so each frame's payload inflates to exactly one JSON message.
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

struct JsonScan<'a> {
    msg: &'a [u8],
    pos: usize,
}

impl<'a> JsonScan<'a> {
    /// Finds `key` (a quoted name) at or after the cursor, else anywhere; returns the bytes
    /// after its `:` with whitespace skipped, and moves the cursor there.
    fn value(&mut self, key: &Finder<'static>, name: &'static str) -> Result<usize, DecodeError> {
        let msg = self.msg;
        let found = key
            .find(&msg[self.pos..])
            .map(|i| i + self.pos)
            .or_else(|| key.find(msg))
            .ok_or(DecodeError::MissingField(name))?;
        let mut i = found + key.needle().len();
        i = skip_ws(msg, i);
        if msg.get(i) != Some(&b':') {
            return Err(DecodeError::BadField(name));
        }
        i = skip_ws(msg, i + 1);
        self.pos = i;
        Ok(i)
    }

    fn string(
        &mut self,
        key: &Finder<'static>,
        name: &'static str,
    ) -> Result<&'a [u8], DecodeError> {
        let start = self.value(key, name)?;
        let msg = self.msg;
        if msg.get(start) != Some(&b'"') {
            return Err(DecodeError::BadField(name));
        }
        let body = &msg[start + 1..];
        let end = memchr::memchr(b'"', body).ok_or(DecodeError::BadField(name))?;
        self.pos = start + 1 + end + 1;
        Ok(&body[..end])
    }

    fn number(&mut self, key: &Finder<'static>, name: &'static str) -> Result<u64, DecodeError> {
        let start = self.value(key, name)?;
        let mut value: u64 = 0;
        let mut i = start;
        while let Some(&b) = self.msg.get(i) {
            if !b.is_ascii_digit() {
                break;
            }
            value = value
                .checked_mul(10)
                .and_then(|v| v.checked_add(u64::from(b - b'0')))
                .ok_or(DecodeError::BadField(name))?;
            i += 1;
        }
        if i == start {
            return Err(DecodeError::BadField(name));
        }
        self.pos = i;
        Ok(value)
    }
}

fn skip_ws(msg: &[u8], mut i: usize) -> usize {
    while matches!(msg.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

/// Symbol, seq and ts_ns of a `tickrelay.v1.Tick`.
fn scan_pb_tick(body: &[u8]) -> Result<(&[u8], u64, u64), DecodeError> {
    let (mut symbol, mut seq, mut ts_ns) = (&b""[..], 0, 0);
    let mut fields = Fields(body);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (TICK_SYMBOL, Value::Len(s)) => symbol = s,
            (TICK_TS_NS, Value::Fixed64(v)) => ts_ns = v,
            (TICK_SEQ, Value::Varint(v)) => seq = v,
            _ => {}
        }
    }
    Ok((symbol, seq, ts_ns))
}

fn scan_pb_gap(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let (mut symbol, mut from, mut to) = (&b""[..], 0, 0);
    let mut fields = Fields(body);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Len(s)) => symbol = s,
            (2, Value::Varint(v)) => from = v,
            (3, Value::Varint(v)) => to = v,
            _ => {}
        }
    }
    Ok(Message::Gap { symbol, from, to })
}

/// A protobuf field value, by wire type.
#[derive(Clone, Copy)]
enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

/// Walks the fields of one protobuf message.
struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("take(8) returns 8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::BadProtobuf)?;
                Value::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            _ => return Err(DecodeError::BadProtobuf),
        };
        Ok(Some((key >> 3, value)))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(DecodeError::BadProtobuf)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::BadProtobuf);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

// Field numbers from proto/tickrelay.proto.
const SERVER_WELCOME: u64 = 1;
const SERVER_TICK: u64 = 2;
const SERVER_SNAPSHOT: u64 = 3;
const SERVER_ERROR: u64 = 5;
const SERVER_GAP: u64 = 7;
const TICK_SYMBOL: u64 = 1;
const TICK_TS_NS: u64 = 10;
const TICK_SEQ: u64 = 11;

static KEY_TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\""));
static KEY_SYMBOL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"symbol\""));
static KEY_SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\""));
static KEY_TS_NS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ts_ns\""));
static KEY_FROM: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"from\""));
static KEY_TO: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"to\""));

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use flate2::{Compress, Compression, FlushCompress};
    use prost::Message as _;

    #[test]
    fn json_tick_in_relay_field_order() {
        let msg = br#"{"type":"tick","symbol":"SYM042","seq":17,"kind":"trade","ts_ns":1764000000000000000,"recv_ns":1764000000000001000,"price":43250.5,"size":0.25}"#;
        assert_eq!(
            scan_json(msg),
            Ok(Message::Tick {
                symbol: b"SYM042",
                seq: 17,
                ts_ns: 1_764_000_000_000_000_000
            })
        );
    }

    #[test]
    fn json_fields_in_any_order_with_whitespace() {
        let msg = br#"{ "ts_ns" : 5, "seq": 9 , "symbol" :"X", "type" : "tick" }"#;
        assert_eq!(
            scan_json(msg),
            Ok(Message::Tick {
                symbol: b"X",
                seq: 9,
                ts_ns: 5
            })
        );
    }

    #[test]
    fn json_seq_key_is_not_confused_with_recv_ns_or_other_numbers() {
        let msg = br#"{"type":"snapshot","symbol":"SYM001","recv_ns":3,"seq":4}"#;
        assert_eq!(
            scan_json(msg),
            Ok(Message::Snapshot {
                symbol: b"SYM001",
                seq: 4
            })
        );
    }

    #[test]
    fn json_other_types() {
        assert_eq!(
            scan_json(br#"{"type":"welcome","session":1}"#),
            Ok(Message::Welcome)
        );
        assert_eq!(
            scan_json(br#"{"type":"error","code":"x"}"#),
            Ok(Message::Error)
        );
        assert_eq!(scan_json(br#"{"type":"heartbeat"}"#), Ok(Message::Other));
        assert_eq!(
            scan_json(br#"{"type":"gap","symbol":"SYM002","from":5,"to":9}"#),
            Ok(Message::Gap {
                symbol: b"SYM002",
                from: 5,
                to: 9
            })
        );
    }

    #[test]
    fn a_full_parse_reads_what_the_scanner_reads() {
        let messages: [&[u8]; 5] = [
            br#"{"type":"tick","symbol":"SYM001","seq":17,"kind":"trade","ts_ns":42,"recv_ns":43,"price":1.5}"#,
            br#"{"type":"snapshot","symbol":"SYM002","seq":3,"kind":"trade","ts_ns":1}"#,
            br#"{"type":"gap","symbol":"SYM003","from":4,"to":9}"#,
            br#"{"type":"welcome","session":1,"symbols":["SYM001"]}"#,
            br#"{"type":"tick","symbol":"SYM001","seq":"x","ts_ns":1}"#,
        ];
        for m in messages {
            let v: serde_json::Value = serde_json::from_slice(m).unwrap();
            assert_eq!(
                from_value(&v),
                scan_json(m),
                "{}",
                String::from_utf8_lossy(m)
            );
        }
    }

    #[test]
    fn json_errors_are_values() {
        assert_eq!(
            scan_json(br#"{"symbol":"A"}"#),
            Err(DecodeError::MissingField("type"))
        );
        assert_eq!(
            scan_json(br#"{"type":"tick","symbol":"A","seq":"x","ts_ns":1}"#),
            Err(DecodeError::BadField("seq"))
        );
        assert_eq!(
            scan_json(br#"{"type":"tick","symbol":"A","seq":99999999999999999999999,"ts_ns":1}"#),
            Err(DecodeError::BadField("seq"))
        );
        assert_eq!(
            scan_json(br#"{"type":"tick","symbol":"A","seq":1}"#),
            Err(DecodeError::MissingField("ts_ns"))
        );
    }

    fn pb_tick(symbol: &str, seq: u64, ts_ns: u64) -> proto::Tick {
        proto::Tick {
            symbol: symbol.into(),
            kind: proto::TickKind::Trade.into(),
            price: Some(43250.5),
            size: Some(0.25),
            venue: Some("X".into()),
            ts_ns,
            seq,
            recv_ns: ts_ns + 1000,
            ..Default::default()
        }
    }

    fn pb(msg: proto::server_message::Msg) -> Vec<u8> {
        proto::ServerMessage { msg: Some(msg) }.encode_to_vec()
    }

    #[test]
    fn protobuf_messages_from_prost() {
        use proto::server_message::Msg;
        let tick = pb(Msg::Tick(pb_tick("SYM007", 300, 1_764_000_000_123_456_789)));
        assert_eq!(
            scan_protobuf(&tick),
            Ok(Message::Tick {
                symbol: b"SYM007",
                seq: 300,
                ts_ns: 1_764_000_000_123_456_789
            })
        );
        let snap = pb(Msg::Snapshot(pb_tick("SYM001", 12, 1)));
        assert_eq!(
            scan_protobuf(&snap),
            Ok(Message::Snapshot {
                symbol: b"SYM001",
                seq: 12
            })
        );
        let gap = pb(Msg::Gap(proto::Gap {
            symbol: "SYM003".into(),
            from: 4,
            to: 8,
            ..proto::Gap::default()
        }));
        assert_eq!(
            scan_protobuf(&gap),
            Ok(Message::Gap {
                symbol: b"SYM003",
                from: 4,
                to: 8
            })
        );
        let welcome = pb(Msg::Welcome(proto::Welcome {
            session: 1,
            shard: 0,
            encoding: "protobuf".into(),
            symbols: vec!["SYM001".into()],
            server: "tickrelay".into(),
            ..proto::Welcome::default()
        }));
        assert_eq!(scan_protobuf(&welcome), Ok(Message::Welcome));
        let hb = pb(Msg::Heartbeat(proto::Heartbeat { ts_ns: 1 }));
        assert_eq!(scan_protobuf(&hb), Ok(Message::Other));
        assert_eq!(
            scan_protobuf(&tick[..tick.len() - 1]),
            Err(DecodeError::BadProtobuf)
        );
    }

    #[test]
    fn symbol_names_round_trip() {
        assert_eq!(symbol_name(42, 100), "SYM042");
        assert_eq!(symbol_name(7, 5000), "SYM0007");
        assert_eq!(symbol_id(b"SYM042"), Some(42));
        assert_eq!(symbol_id(b"SYM0007"), Some(7));
        assert_eq!(symbol_id(b"BTC-USD"), None);
        assert_eq!(symbol_id(b"SYM"), None);
        assert_eq!(symbol_id(b"SYM4x"), None);
    }

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
