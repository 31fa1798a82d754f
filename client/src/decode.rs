//! [`Decoder`]: one connection's server frames → [`Message`]s, in any of the three encodings.
//!
//! A gzip connection is one gzip stream: the decoder keeps one inflater for the connection
//! and feeds it every binary frame in order; each frame ends with a sync flush, so it inflates
//! to exactly one JSON message. A new connection needs a new decoder.

use flate2::{Decompress, FlushDecompress, Status};
use prost::Message as _;
use serde::Deserialize;

use crate::derived::{self, Derived};
use crate::item::{Event, Kind, ServerError, Tick};
use crate::options::Encoding;
use crate::proto;

/// A decoded server message.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    Welcome {
        session: u64,
        epoch: Option<String>,
    },
    Tick(Tick),
    Snapshot(Tick),
    Event(Event),
    /// A bar, a bars snapshot or a ticker.
    Derived(Derived),
    Gap {
        symbol: Option<String>,
        channel: Option<String>,
        from: u64,
        to: u64,
    },
    Error(ServerError),
    /// Acks, pongs, heartbeats: signs of life with nothing to deliver.
    Other,
}

/// A frame that could not be decoded.
#[derive(Debug, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("invalid JSON message: {0}")]
    Json(#[from] serde_json::Error),
    #[error("invalid protobuf message: {0}")]
    Protobuf(#[from] prost::DecodeError),
    #[error("invalid gzip stream: {0}")]
    Gzip(String),
    #[error("a {0} frame in encoding {1}")]
    UnexpectedFrame(&'static str, &'static str),
}

/// Decodes one connection's frames (see the module doc).
#[derive(Debug)]
pub(crate) struct Decoder {
    encoding: Encoding,
    inflate: Option<Decompress>,
    scratch: Vec<u8>,
}

impl Decoder {
    /// A decoder for a new connection.
    pub(crate) fn new(encoding: Encoding) -> Self {
        Self {
            encoding,
            // 15: any window up to 32 KiB (the relay uses 4 KiB).
            inflate: (encoding == Encoding::Gzip).then(|| Decompress::new_gzip(15)),
            scratch: Vec::new(),
        }
    }

    /// A text frame (JSON, whatever the encoding: the relay answers some HTTP-level errors so).
    pub(crate) fn text(&mut self, text: &str) -> Result<Message, DecodeError> {
        json(text.as_bytes())
    }

    /// A binary frame.
    pub(crate) fn binary(&mut self, frame: &[u8]) -> Result<Message, DecodeError> {
        match self.encoding {
            Encoding::Protobuf => protobuf(frame),
            Encoding::Gzip => {
                let inflate = self
                    .inflate
                    .as_mut()
                    .expect("a gzip decoder has an inflater");
                inflate_frame(inflate, frame, &mut self.scratch)?;
                json(&self.scratch)
            }
            Encoding::Json => Err(DecodeError::UnexpectedFrame("binary", "json")),
        }
    }
}

/// Inflates all of `frame` into `out` (replacing its contents).
fn inflate_frame(
    inflate: &mut Decompress,
    frame: &[u8],
    out: &mut Vec<u8>,
) -> Result<(), DecodeError> {
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
            .map_err(|e| DecodeError::Gzip(e.to_string()))?;
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

/// Every field any JSON server message has; `type` says which apply.
#[derive(Deserialize)]
struct Raw {
    #[serde(rename = "type")]
    kind: String,
    session: Option<u64>,
    epoch: Option<serde_json::Value>,
    symbol: Option<String>,
    channel: Option<String>,
    seq: Option<u64>,
    #[serde(rename = "kind")]
    tick_kind: Option<String>,
    ts_ns: Option<u64>,
    recv_ns: Option<u64>,
    price: Option<f64>,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
    bid_size: Option<f64>,
    ask_size: Option<f64>,
    venue: Option<String>,
    from: Option<u64>,
    to: Option<u64>,
    code: Option<String>,
    message: Option<String>,
    data: Option<serde_json::Value>,
}

fn json(bytes: &[u8]) -> Result<Message, DecodeError> {
    let raw: Raw = serde_json::from_slice(bytes)?;
    if derived::is_derived(&raw.kind) {
        return Ok(Message::Derived(derived::json(bytes)?));
    }
    let missing = |field: &str| {
        DecodeError::Json(serde::de::Error::custom(format!(
            "`{}` message without `{field}`",
            raw.kind
        )))
    };
    Ok(match raw.kind.as_str() {
        "welcome" => Message::Welcome {
            session: raw.session.unwrap_or(0),
            epoch: raw.epoch.as_ref().map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        },
        // `{"type":"snapshot","symbols":[...]}` without a seq is the ack of a snapshot op.
        "snapshot" if raw.seq.is_none() => Message::Other,
        // A channel's last event (on subscribe) reads as the event it is, as in protobuf.
        "event" | "snapshot" if raw.kind == "event" || raw.channel.is_some() => {
            Message::Event(Event {
                channel: raw.channel.clone().ok_or_else(|| missing("channel"))?,
                seq: raw.seq.ok_or_else(|| missing("seq"))?,
                ts_ns: raw.ts_ns.unwrap_or(0),
                data: raw.data.unwrap_or(serde_json::Value::Null),
            })
        }
        "tick" | "snapshot" => {
            let tick = Tick {
                symbol: raw.symbol.clone().ok_or_else(|| missing("symbol"))?,
                seq: raw.seq.ok_or_else(|| missing("seq"))?,
                kind: if raw.tick_kind.as_deref() == Some("quote") {
                    Kind::Quote
                } else {
                    Kind::Trade
                },
                ts_ns: raw.ts_ns.unwrap_or(0),
                recv_ns: raw.recv_ns.unwrap_or(0),
                price: raw.price,
                size: raw.size,
                bid: raw.bid,
                ask: raw.ask,
                bid_size: raw.bid_size,
                ask_size: raw.ask_size,
                venue: raw.venue,
            };
            if raw.kind == "tick" {
                Message::Tick(tick)
            } else {
                Message::Snapshot(tick)
            }
        }
        "gap" => Message::Gap {
            from: raw.from.ok_or_else(|| missing("from"))?,
            to: raw.to.ok_or_else(|| missing("to"))?,
            symbol: raw.symbol,
            channel: raw.channel,
        },
        "error" => Message::Error(ServerError {
            code: raw.code.unwrap_or_default(),
            message: raw.message.unwrap_or_default(),
        }),
        _ => Message::Other,
    })
}

fn protobuf(frame: &[u8]) -> Result<Message, DecodeError> {
    use proto::server_message::Msg;
    let message = proto::ServerMessage::decode(frame)?;
    Ok(match message.msg {
        Some(Msg::Welcome(w)) => Message::Welcome {
            session: w.session,
            // proto3: 0 is "not set" (a relay without epochs).
            epoch: (w.epoch != 0).then(|| w.epoch.to_string()),
        },
        Some(Msg::Tick(t)) => Message::Tick(tick(t)),
        Some(Msg::Snapshot(t)) => Message::Snapshot(tick(t)),
        // A gap names a symbol or (field 4) a channel.
        Some(Msg::Gap(g)) => Message::Gap {
            symbol: (!g.symbol.is_empty()).then_some(g.symbol),
            channel: (!g.channel.is_empty()).then_some(g.channel),
            from: g.from,
            to: g.to,
        },
        Some(Msg::Error(e)) => Message::Error(ServerError {
            code: e.code,
            message: e.message,
        }),
        // A reset follows a welcome whose epoch differs from the one the client resumed
        // with: the client has already reset every symbol on seeing that epoch.
        // An event and a channel's last event (on subscribe) read the same here.
        Some(Msg::Event(e) | Msg::EventSnapshot(e)) => Message::Event(Event {
            channel: e.channel,
            seq: e.seq,
            ts_ns: e.ts_ns,
            data: serde_json::from_slice(&e.data).unwrap_or(serde_json::Value::Null),
        }),
        Some(Msg::Bar(b)) => Message::Derived(Derived::Bar(derived::bar(b))),
        Some(Msg::BarSnapshot(s)) => {
            Message::Derived(Derived::BarSnapshot(derived::bar_snapshot(s)))
        }
        Some(Msg::Ticker(t) | Msg::TickerSnapshot(t)) => {
            Message::Derived(Derived::Ticker(derived::ticker(t)))
        }
        Some(
            Msg::Ack(_)
            | Msg::ChannelAck(_)
            | Msg::Authenticated(_)
            | Msg::Pong(_)
            | Msg::Heartbeat(_)
            | Msg::Reset(_),
        )
        | None => Message::Other,
    })
}

fn tick(t: proto::Tick) -> Tick {
    Tick {
        kind: if t.kind == proto::TickKind::Quote as i32 {
            Kind::Quote
        } else {
            Kind::Trade
        },
        symbol: t.symbol,
        seq: t.seq,
        ts_ns: t.ts_ns,
        recv_ns: t.recv_ns,
        price: t.price,
        size: t.size,
        bid: t.bid,
        ask: t.ask,
        bid_size: t.bid_size,
        ask_size: t.ask_size,
        venue: t.venue,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use flate2::{Compress, Compression, FlushCompress};

    const TICK: &str = r#"{"type":"tick","symbol":"BTC-USD","seq":17,"kind":"trade","ts_ns":1764000000000000001,"recv_ns":1764000000000041000,"price":43250.5,"size":0.25}"#;

    #[test]
    fn json_ticks_keep_exact_values() {
        let Message::Tick(t) = json(TICK.as_bytes()).unwrap() else {
            panic!("a tick")
        };
        assert_eq!(
            (t.seq, t.ts_ns, t.price),
            (17, 1764000000000000001, Some(43250.5))
        );
    }

    #[test]
    fn the_snapshot_ack_is_not_a_snapshot() {
        let m = json(br#"{"type":"snapshot","symbols":["A"]}"#).unwrap();
        assert_eq!(m, Message::Other);
    }

    #[test]
    fn a_channel_snapshot_is_its_event() {
        let m = json(br#"{"type":"snapshot","channel":"news","seq":4,"ts_ns":9,"data":{"h":1}}"#)
            .unwrap();
        let Message::Event(e) = m else {
            panic!("an event, got {m:?}")
        };
        assert_eq!(
            (e.channel.as_str(), e.seq, e.data["h"].as_u64()),
            ("news", 4, Some(1))
        );
    }

    #[test]
    fn a_welcome_epoch_is_read_as_text_whatever_its_json_type() {
        let m = json(br#"{"type":"welcome","session":3,"epoch":42}"#).unwrap();
        assert_eq!(
            m,
            Message::Welcome {
                session: 3,
                epoch: Some("42".into())
            }
        );
    }

    #[test]
    fn one_gzip_stream_decodes_frame_by_frame() {
        // As the relay writes it: one deflate stream, a sync flush after each message.
        let mut deflate = Compress::new_gzip(Compression::fast(), 12);
        let mut decoder = Decoder::new(Encoding::Gzip);
        for i in 0..200 {
            let text = TICK.replace("\"seq\":17", &format!("\"seq\":{i}"));
            let mut frame = Vec::with_capacity(text.len() + 64);
            deflate
                .compress_vec(text.as_bytes(), &mut frame, FlushCompress::Sync)
                .unwrap();
            assert!(frame.ends_with(&[0, 0, 0xff, 0xff]));
            let Message::Tick(t) = decoder.binary(&frame).unwrap() else {
                panic!("a tick")
            };
            assert_eq!(t.seq, i);
        }
    }
}
