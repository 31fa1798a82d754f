//! The hand scanner for JSON server messages: reads `type` and the few fields the harness
//! checks without parsing the rest.
//!
//! The relay writes its fields in a fixed order (`type, symbol, seq, kind, ts_ns, recv_ns,
//! ...`), so each key is looked for after the previous one first; the scanner still finds
//! them in any order and tolerates whitespace around `:`.

use std::sync::LazyLock;

use memchr::memmem::Finder;

use super::{DecodeError, Message};

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
        // A book channel's message counts as its symbol's tick: one per book seq, gap-free.
        b"book" => {
            let symbol = book_symbol(scan.string(&KEY_CHANNEL, "channel")?);
            let seq = scan.number(&KEY_SEQ, "seq")?;
            if scan.boolean(&KEY_SNAPSHOT, "snapshot")? {
                Ok(Message::Snapshot { symbol, seq })
            } else {
                Ok(Message::Tick {
                    symbol,
                    seq,
                    ts_ns: scan.number(&KEY_TS_NS, "ts_ns")?,
                })
            }
        }
        b"welcome" => Ok(Message::Welcome),
        b"error" => Ok(Message::Error),
        _ => Ok(Message::Other),
    }
}

/// A tier frame's `from_seq` (docs/PROTOCOL.md "Rate tiers"), `None` when it has none.
pub fn from_seq(msg: &[u8]) -> Option<u64> {
    JsonScan { msg, pos: 0 }
        .number(&KEY_FROM_SEQ, "from_seq")
        .ok()
}

/// `book:SYM000:10` or `book:SYM000` → `SYM000` (a last `:`-part of digits is a depth).
pub(super) fn book_symbol(channel: &[u8]) -> &[u8] {
    let name = channel.strip_prefix(b"book:").unwrap_or(channel);
    match memchr::memrchr(b':', name) {
        Some(i) if i + 1 < name.len() && name[i + 1..].iter().all(u8::is_ascii_digit) => &name[..i],
        _ => name,
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

impl JsonScan<'_> {
    fn boolean(&mut self, key: &Finder<'static>, name: &'static str) -> Result<bool, DecodeError> {
        let start = self.value(key, name)?;
        let rest = &self.msg[start..];
        let (value, len) = if rest.starts_with(b"true") {
            (true, 4)
        } else if rest.starts_with(b"false") {
            (false, 5)
        } else {
            return Err(DecodeError::BadField(name));
        };
        self.pos = start + len;
        Ok(value)
    }
}

fn skip_ws(msg: &[u8], mut i: usize) -> usize {
    while matches!(msg.get(i), Some(b' ' | b'\t' | b'\n' | b'\r')) {
        i += 1;
    }
    i
}

static KEY_TYPE: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"type\""));
static KEY_SYMBOL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"symbol\""));
static KEY_SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"seq\""));
static KEY_TS_NS: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"ts_ns\""));
static KEY_CHANNEL: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"channel\""));
static KEY_SNAPSHOT: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"snapshot\""));
static KEY_FROM_SEQ: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"from_seq\""));
static KEY_FROM: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"from\""));
static KEY_TO: LazyLock<Finder<'static>> = LazyLock::new(|| Finder::new(b"\"to\""));

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn book_messages_count_as_their_symbols_ticks() {
        let delta = br#"{"type":"book","channel":"book:SYM007:10","seq":2,"snapshot":false,"bids":[["99.5","0"],["98","7"]],"asks":[],"checksum":153433628,"ts_ns":1764000000000000000}"#;
        assert_eq!(
            scan_json(delta),
            Ok(Message::Tick {
                symbol: b"SYM007",
                seq: 2,
                ts_ns: 1_764_000_000_000_000_000
            })
        );
        let full = br#"{"type":"book","channel":"book:SYM007","seq":1,"snapshot":true,"bids":[],"asks":[["100.5","2"]],"checksum":1,"ts_ns":0}"#;
        assert_eq!(
            scan_json(full),
            Ok(Message::Snapshot {
                symbol: b"SYM007",
                seq: 1
            })
        );
        assert_eq!(book_symbol(b"book:A:B:25"), b"A:B");
        assert_eq!(book_symbol(b"book:A:B"), b"A:B");
        assert_eq!(
            scan_json(br#"{"type":"book","channel":"book:X","seq":1,"snapshot":1}"#),
            Err(DecodeError::BadField("snapshot"))
        );
    }

    #[test]
    fn a_tier_frames_from_seq_is_read() {
        let frame = br#"{"type":"tick","symbol":"SYM001","seq":212,"kind":"trade","ts_ns":1,"recv_ns":2,"price":43251.0,"size":0.1,"tier":"1s","from_seq":187,"trades":9,"volume":1.35,"high":43260.5,"low":43240.0}"#;
        assert_eq!(from_seq(frame), Some(187));
        assert_eq!(from_seq(br#"{"type":"tick","symbol":"A","seq":3}"#), None);
    }
}
