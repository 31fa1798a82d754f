//! One JSON server message (a text frame, a line of a batch, or a gzip client's inflated
//! text) → [`Message`].
//!
//! Nothing the relay passes on can stop the stream: an event's `data` is kept as its text
//! ([`RawJson`]), which serde_json checks without building it (no depth limit, no number
//! range), and fields the client does not read are skipped the same way. A message that
//! still does not decode becomes [`Message::Undecodable`], with its key and seq when they
//! can be read, so that the seq check counts it and goes on.

use serde::Deserialize;
use serde_json::value::RawValue;

use crate::derived;
use crate::item::{Event, EventTier, Key, Kind, RawJson, ServerError, Tick, TickTier, Undecodable};
use crate::message::Message;

/// Decodes one message; never fails (see the module doc).
pub(crate) fn message(bytes: &[u8]) -> Message {
    decode(bytes).unwrap_or_else(|e| undecodable(bytes, format!("invalid JSON message: {e}")))
}

/// Every field any JSON server message has; `type` says which apply.
#[derive(Deserialize)]
struct Fields {
    #[serde(rename = "type")]
    message_type: String,
    session: Option<u64>,
    epoch: Option<serde_json::Value>,
    symbol: Option<String>,
    channel: Option<String>,
    seq: Option<u64>,
    kind: Option<String>,
    ts_ns: Option<u64>,
    recv_ns: Option<u64>,
    price: Option<f64>,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
    bid_size: Option<f64>,
    ask_size: Option<f64>,
    venue: Option<String>,
    /// Rate tiers (docs/PROTOCOL.md, "Rate tiers"): on ticks, events and gaps.
    tier: Option<String>,
    from_seq: Option<u64>,
    trades: Option<u64>,
    volume: Option<f64>,
    high: Option<f64>,
    low: Option<f64>,
    from: Option<u64>,
    to: Option<u64>,
    code: Option<String>,
    message: Option<String>,
    /// `Some` whenever the field is there, `null` included (a plain `Option` reads `null`
    /// as absent).
    #[serde(default, deserialize_with = "present")]
    data: Option<Box<RawValue>>,
}

fn present<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<Box<RawValue>>, D::Error> {
    Box::<RawValue>::deserialize(d).map(Some)
}

fn decode(bytes: &[u8]) -> Result<Message, serde_json::Error> {
    let f: Fields = serde_json::from_slice(bytes)?;
    if derived::is_derived(&f.message_type) {
        return derived::json(bytes).map(Message::Derived);
    }
    let missing = |field: &str| {
        serde::de::Error::custom(format!("`{}` message without `{field}`", f.message_type))
    };
    Ok(match f.message_type.as_str() {
        "book" => Message::Book(serde_json::from_slice(bytes)?),
        "welcome" => Message::Welcome {
            session: f.session.unwrap_or(0),
            epoch: f.epoch.as_ref().map(|e| match e {
                serde_json::Value::String(s) => s.clone(),
                other => other.to_string(),
            }),
        },
        // `{"type":"snapshot","symbols":[...]}` without a seq is the ack of a snapshot op.
        "snapshot" if f.seq.is_none() => Message::Other,
        // A channel's last event (on subscribe) reads as the event it is, as in protobuf.
        "event" | "snapshot" if f.message_type == "event" || f.channel.is_some() => {
            let seq = f.seq.ok_or_else(|| missing("seq"))?;
            Message::Event(Event {
                channel: f.channel.clone().ok_or_else(|| missing("channel"))?,
                seq,
                ts_ns: f.ts_ns.unwrap_or(0),
                data: RawJson::from_raw(f.data.ok_or_else(|| missing("data"))?),
                tier: f.tier.map(|name| EventTier {
                    name,
                    from_seq: f.from_seq.unwrap_or(seq),
                }),
            })
        }
        "tick" | "snapshot" => {
            let seq = f.seq.ok_or_else(|| missing("seq"))?;
            let tick = Tick {
                symbol: f.symbol.clone().ok_or_else(|| missing("symbol"))?,
                seq,
                kind: if f.kind.as_deref() == Some("quote") {
                    Kind::Quote
                } else {
                    Kind::Trade
                },
                ts_ns: f.ts_ns.unwrap_or(0),
                recv_ns: f.recv_ns.unwrap_or(0),
                price: f.price,
                size: f.size,
                bid: f.bid,
                ask: f.ask,
                bid_size: f.bid_size,
                ask_size: f.ask_size,
                venue: f.venue,
                tier: match f.tier {
                    // Without `from_seq` a frame stands for itself.
                    Some(name) => Some(TickTier {
                        name,
                        from_seq: f.from_seq.unwrap_or(seq),
                        trades: f.trades.unwrap_or(0),
                        volume: f.volume.unwrap_or(0.0),
                        high: f.high,
                        low: f.low,
                    }),
                    None => None,
                },
            };
            if f.message_type == "tick" {
                Message::Tick(tick)
            } else {
                Message::Snapshot(tick)
            }
        }
        "gap" => Message::Gap {
            from: f.from.ok_or_else(|| missing("from"))?,
            to: f.to.ok_or_else(|| missing("to"))?,
            symbol: f.symbol,
            channel: f.channel,
            tier: f.tier,
        },
        "error" => Message::Error(ServerError {
            code: f.code.unwrap_or_default(),
            message: f.message.unwrap_or_default(),
        }),
        _ => Message::Other,
    })
}

/// A message that did not decode, with the key and seq of a tick, snapshot or event when
/// those fields alone can be read.
fn undecodable(bytes: &[u8], reason: String) -> Message {
    #[derive(Deserialize)]
    struct Named {
        #[serde(rename = "type")]
        message_type: Option<String>,
        symbol: Option<String>,
        channel: Option<String>,
        seq: Option<u64>,
        tier: Option<String>,
    }
    let named = serde_json::from_slice::<Named>(bytes).ok();
    let (key, seq, tier) = match named {
        Some(n) => {
            let key = match (n.message_type.as_deref(), n.symbol, n.channel) {
                (Some("tick" | "snapshot"), Some(s), None) => Some(Key::Symbol(s)),
                (Some("event" | "snapshot"), None, Some(c)) => Some(Key::Channel(c)),
                (Some(kind), None, Some(c)) if derived::is_derived(kind) => Some(Key::Channel(c)),
                _ => None,
            };
            (key, n.seq, n.tier)
        }
        None => (None, None, None),
    };
    Message::Undecodable(Undecodable {
        key,
        seq,
        tier,
        reason,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const TICK: &str = r#"{"type":"tick","symbol":"BTC-USD","seq":17,"kind":"trade","ts_ns":1764000000000000001,"recv_ns":1764000000000041000,"price":43250.5,"size":0.25}"#;

    #[test]
    fn ticks_keep_exact_values() {
        let Message::Tick(t) = message(TICK.as_bytes()) else {
            panic!("a tick")
        };
        assert_eq!(
            (t.seq, t.ts_ns, t.price),
            (17, 1764000000000000001, Some(43250.5))
        );
    }

    #[test]
    fn a_tier_tick_keeps_its_tier_fields() {
        let text = r#"{"type":"tick","symbol":"A","seq":212,"kind":"trade","ts_ns":1,"recv_ns":2,"price":4.5,"size":0.1,"tier":"1s","from_seq":187,"trades":9,"volume":1.35,"high":5.5,"low":4.0}"#;
        let Message::Tick(t) = message(text.as_bytes()) else {
            panic!("a tick")
        };
        let tier = TickTier {
            name: "1s".into(),
            from_seq: 187,
            trades: 9,
            volume: 1.35,
            high: Some(5.5),
            low: Some(4.0),
        };
        assert_eq!(t.tier, Some(tier));
        // Serialized as the relay sends it, flat.
        let out = serde_json::to_string(&t).unwrap();
        assert!(
            out.ends_with(
                r#""tier":"1s","from_seq":187,"trades":9,"volume":1.35,"high":5.5,"low":4.0}"#
            ),
            "{out}"
        );
        let Message::Tick(raw) = message(TICK.as_bytes()) else {
            panic!("a tick")
        };
        assert_eq!(raw.tier, None);
        assert!(!serde_json::to_string(&raw).unwrap().contains("tier"));
    }

    #[test]
    fn the_snapshot_ack_is_not_a_snapshot() {
        let m = message(br#"{"type":"snapshot","symbols":["A"]}"#);
        assert_eq!(m, Message::Other);
    }

    #[test]
    fn a_channel_snapshot_is_its_event() {
        let m =
            message(br#"{"type":"snapshot","channel":"news","seq":4,"ts_ns":9,"data":{"h":1}}"#);
        let Message::Event(e) = m else {
            panic!("an event, got {m:?}")
        };
        assert_eq!(
            (e.channel.as_str(), e.seq, e.data.get()),
            ("news", 4, r#"{"h":1}"#)
        );
    }

    #[test]
    fn a_welcome_epoch_is_read_as_text_whatever_its_json_type() {
        let m = message(br#"{"type":"welcome","session":3,"epoch":42}"#);
        assert_eq!(
            m,
            Message::Welcome {
                session: 3,
                epoch: Some("42".into())
            }
        );
    }

    #[test]
    fn event_data_is_delivered_as_published_however_deep_or_large_its_numbers() {
        // serde_json builds at most 128 levels and refuses numbers beyond f64; the relay
        // passes both on (it checks `data` the same way, without building it).
        for data in [
            format!("{}{}", "[".repeat(5000), "]".repeat(5000)),
            r#"{"overflow":1e400,"text":"\ud800","n":-0.0}"#.to_owned(),
        ] {
            let text =
                format!(r#"{{"type":"event","channel":"news","seq":2,"ts_ns":9,"data":{data}}}"#);
            let Message::Event(e) = message(text.as_bytes()) else {
                panic!("an event")
            };
            assert_eq!((e.seq, e.data.get()), (2, data.as_str()));
        }
    }

    #[test]
    fn an_undecodable_message_keeps_its_key_and_seq_when_they_can_be_read() {
        let m = message(br#"{"type":"event","channel":"news","seq":5,"ts_ns":"soon","data":1}"#);
        let Message::Undecodable(u) = m else {
            panic!("undecodable, got {m:?}")
        };
        assert_eq!((u.key, u.seq), (Some(Key::Channel("news".into())), Some(5)));
        let m = message(br#"{"type":"tick","symbol":"A","seq":7,"price":"high"}"#);
        assert!(
            matches!(&m, Message::Undecodable(u) if u.key == Some(Key::Symbol("A".into())) && u.seq == Some(7)),
            "{m:?}"
        );
        let m = message(br#"{"type":"event","channel":"news","seq":6,"ts_ns":1,"data":null}"#);
        assert!(
            matches!(&m, Message::Event(e) if e.data.get() == "null"),
            "null is a value: {m:?}"
        );
        let m = message(br#"{"type":"event","channel":"news","seq":"#);
        assert!(
            matches!(&m, Message::Undecodable(u) if u.key.is_none() && u.seq.is_none()),
            "{m:?}"
        );
    }
}
