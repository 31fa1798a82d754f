//! How a tick goes on the ingest connection: a JSON line (the relay's `--ingest-tcp`), a
//! length-delimited `tickrelay.v1.Tick` (`--ingest-tcp-protobuf`), or a NATS `PUB` on the
//! symbol's subject (nats-server).
//!
//! nats-server sequences nothing, so a PUB carries the tick as a relay client would receive
//! it, numbered by the publisher (`{"type":"tick","symbol":..,"seq":N,"kind":"trade",..}`):
//! every server's clients then parse the same message shape and check the same per-symbol seq.

use std::io::Write as _;

use prost::Message as _;
use serde::{Deserialize, Serialize};

use crate::client::nats_subject;
use crate::proto;

/// Wire format of the ingest connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum IngestFormat {
    /// Newline-delimited JSON on `--ingest-tcp`.
    Json,
    /// Varint-length-prefixed `tickrelay.v1.Tick` on `--ingest-tcp-protobuf`.
    Protobuf,
}

/// The encoding of the ingest connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Wire {
    /// Newline-delimited JSON.
    Json,
    /// Varint-length-prefixed `tickrelay.v1.Tick`.
    Protobuf,
    /// The NATS client protocol: `PUB ticks.SYM001 <len>` and the tick's JSON.
    NatsPub,
    /// Order-book deltas as NDJSON (`{"type":"book",..}`) on `--ingest-tcp`, one per tick
    /// slot, to books `levels` deep a side (`super::book`).
    BookJson { levels: u32 },
}

/// One tick to write.
#[derive(Clone, Copy, Debug)]
pub(super) struct Tick<'a> {
    pub(super) symbol: &'a str,
    /// Its number among the symbol's ticks from this publisher, from 1.
    pub(super) seq: u64,
    pub(super) price: f64,
    pub(super) size: f64,
    pub(super) ts_ns: u64,
}

impl From<IngestFormat> for Wire {
    fn from(format: IngestFormat) -> Self {
        match format {
            IngestFormat::Json => Self::Json,
            IngestFormat::Protobuf => Self::Protobuf,
        }
    }
}

impl Wire {
    /// What the connection starts with: NATS's CONNECT (no verbose `+OK` per PUB), else
    /// nothing.
    pub(super) fn greeting(self) -> &'static [u8] {
        match self {
            Self::NatsPub => CONNECT,
            Self::Json | Self::Protobuf | Self::BookJson { .. } => b"",
        }
    }

    /// Appends `tick` to `out`.
    pub(super) fn encode(self, tick: &Tick<'_>, out: &mut Vec<u8>) {
        let Tick {
            symbol,
            seq,
            price,
            size,
            ts_ns,
        } = *tick;
        // Writing to a Vec cannot fail.
        match self {
            Self::Json => {
                let _ = writeln!(
                    out,
                    r#"{{"symbol":"{symbol}","price":{price},"size":{size},"ts_ns":{ts_ns}}}"#
                );
            }
            Self::Protobuf => {
                let tick = proto::Tick {
                    symbol: symbol.to_owned(),
                    kind: proto::TickKind::Trade.into(),
                    price: Some(price),
                    size: Some(size),
                    ts_ns,
                    ..Default::default()
                };
                tick.encode_length_delimited(out)
                    .expect("encoding into a Vec cannot run out of space");
            }
            Self::BookJson { levels } => super::book::delta_line(symbol, seq, levels, ts_ns, out),
            Self::NatsPub => {
                let mut body = Vec::with_capacity(128);
                let _ = write!(
                    body,
                    r#"{{"type":"tick","symbol":"{symbol}","seq":{seq},"kind":"trade","ts_ns":{ts_ns},"price":{price},"size":{size}}}"#
                );
                let _ = write!(out, "PUB {} {}\r\n", nats_subject(symbol), body.len());
                out.extend_from_slice(&body);
                out.extend_from_slice(b"\r\n");
            }
        }
    }
}

const CONNECT: &[u8] = b"CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"loadtest\",\
                         \"version\":\"0.1.0\",\"protocol\":1,\"echo\":false,\"headers\":false}\r\n";

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decode::{Message, NatsOp, NatsStream, scan_json};

    #[test]
    fn a_nats_pub_carries_the_tick_a_relay_client_would_get() {
        let mut out = Vec::new();
        let tick = Tick {
            symbol: "SYM007",
            seq: 3,
            price: 100.25,
            size: 0.25,
            ts_ns: 42,
        };
        Wire::NatsPub.encode(&tick, &mut out);
        let text = String::from_utf8(out.clone()).unwrap();
        assert!(text.starts_with("PUB ticks.SYM007 "), "{text}");
        // What the server forwards is the PUB's payload: a MSG of the same bytes.
        let msg = text.replacen("PUB ticks.SYM007", "MSG ticks.SYM007 1", 1);
        let mut payloads = Vec::new();
        NatsStream::default().feed(msg.as_bytes(), |op| {
            if let Ok(NatsOp::Msg { payload, .. }) = op {
                payloads.push(payload.to_vec());
            }
        });
        assert_eq!(payloads.len(), 1, "{text}");
        assert_eq!(
            scan_json(&payloads[0]),
            Ok(Message::Tick {
                symbol: b"SYM007",
                seq: 3,
                ts_ns: 42
            })
        );
        let v: serde_json::Value = serde_json::from_slice(&payloads[0]).unwrap();
        assert_eq!(
            (v["price"].as_f64(), v["kind"].as_str()),
            (Some(100.25), Some("trade"))
        );
    }
}
