//! The heavy client profile's decode: the same fields read from a fully parsed `serde_json`
//! value, which is what a typical application client pays per message.

use super::{DecodeError, Message};

/// The fields the harness checks, from a fully parsed JSON message.
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
        "book" => {
            let symbol = super::json_scan::book_symbol(text("channel")?.as_bytes());
            let seq = number("seq")?;
            let snapshot = field("snapshot")?
                .as_bool()
                .ok_or(DecodeError::BadField("snapshot"))?;
            if snapshot {
                Ok(Message::Snapshot { symbol, seq })
            } else {
                Ok(Message::Tick {
                    symbol,
                    seq,
                    ts_ns: number("ts_ns")?,
                })
            }
        }
        "welcome" => Ok(Message::Welcome),
        "error" => Ok(Message::Error),
        _ => Ok(Message::Other),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::scan_json;

    #[test]
    fn a_full_parse_reads_what_the_scanner_reads() {
        let messages: [&[u8]; 7] = [
            br#"{"type":"tick","symbol":"SYM001","seq":17,"kind":"trade","ts_ns":42,"recv_ns":43,"price":1.5}"#,
            br#"{"type":"snapshot","symbol":"SYM002","seq":3,"kind":"trade","ts_ns":1}"#,
            br#"{"type":"gap","symbol":"SYM003","from":4,"to":9}"#,
            br#"{"type":"welcome","session":1,"symbols":["SYM001"]}"#,
            br#"{"type":"tick","symbol":"SYM001","seq":"x","ts_ns":1}"#,
            br#"{"type":"book","channel":"book:SYM004:10","seq":2,"snapshot":false,"bids":[["99.5","0"]],"asks":[],"checksum":1,"ts_ns":5}"#,
            br#"{"type":"book","channel":"book:SYM004","seq":1,"snapshot":true,"bids":[],"asks":[],"checksum":0,"ts_ns":5}"#,
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
}
