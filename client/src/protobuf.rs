//! One `tickrelay.v1.ServerMessage` → [`Message`], and a `ServerBatch` → its messages.
//!
//! An event's `data` (the published JSON's bytes) is kept as its text ([`RawJson`]) after a
//! check that it is one JSON value; bytes that are not become [`Message::Undecodable`] with
//! the event's channel and seq, so the seq check counts them and goes on. A message that is
//! not valid protobuf is undecodable as a whole.

use bytes::Bytes;
use prost::Message as _;

use crate::derived::{self, Derived};
use crate::item::{Event, EventTier, Key, Kind, RawJson, ServerError, Tick, TickTier, Undecodable};
use crate::message::Message;
use crate::proto;

/// Decodes one `ServerBatch` (`repeated ServerMessage messages = 1`) into `out`, each
/// message on its own: a bad one is one [`Message::Undecodable`] among the others.
pub(crate) fn batch(frame: Bytes, out: &mut Vec<Message>) {
    match Batch::decode(frame) {
        Ok(batch) => out.extend(batch.messages.iter().map(|m| message(m))),
        Err(e) => out.push(Message::undecodable(format!("invalid protobuf batch: {e}"))),
    }
}

/// `ServerBatch` with its messages left encoded (an embedded message and `bytes` are the same
/// on the wire), so that each is decoded, and can fail, alone.
#[derive(Clone, PartialEq, prost::Message)]
struct Batch {
    #[prost(bytes = "bytes", repeated, tag = "1")]
    messages: Vec<Bytes>,
}

/// Decodes one `ServerMessage`; never fails (see the module doc).
pub(crate) fn message(bytes: &[u8]) -> Message {
    use proto::server_message::Msg;
    let message = match proto::ServerMessage::decode(bytes) {
        Ok(m) => m,
        Err(e) => return Message::undecodable(format!("invalid protobuf message: {e}")),
    };
    match message.msg {
        Some(Msg::Welcome(w)) => Message::Welcome {
            session: w.session,
            // proto3: 0 is "not set" (a relay without epochs).
            epoch: (w.epoch != 0).then(|| w.epoch.to_string()),
        },
        Some(Msg::Tick(t)) => Message::Tick(tick(t)),
        Some(Msg::Book(b)) => {
            let levels =
                |l: Vec<proto::BookLevel>| l.into_iter().map(|l| (l.price, l.size)).collect();
            Message::Book(crate::book::BookMessage {
                channel: b.channel,
                seq: b.seq,
                from_seq: (b.from_seq != 0).then_some(b.from_seq),
                snapshot: b.snapshot,
                bids: levels(b.bids),
                asks: levels(b.asks),
                checksum: b.checksum,
            })
        }
        Some(Msg::Snapshot(t)) => Message::Snapshot(tick(t)),
        // A gap names a symbol or (field 4) a channel.
        Some(Msg::Gap(g)) => Message::Gap {
            symbol: (!g.symbol.is_empty()).then_some(g.symbol),
            channel: (!g.channel.is_empty()).then_some(g.channel),
            tier: (!g.tier.is_empty()).then_some(g.tier),
            from: g.from,
            to: g.to,
        },
        Some(Msg::Error(e)) => Message::Error(ServerError {
            code: e.code,
            message: e.message,
        }),
        // An event and a channel's last event (on subscribe) read the same here.
        Some(Msg::Event(e) | Msg::EventSnapshot(e)) => event(e),
        Some(Msg::Bar(b)) => Message::Derived(Derived::Bar(derived::bar(b))),
        Some(Msg::BarSnapshot(s)) => {
            Message::Derived(Derived::BarSnapshot(derived::bar_snapshot(s)))
        }
        Some(Msg::Ticker(t) | Msg::TickerSnapshot(t)) => {
            Message::Derived(Derived::Ticker(derived::ticker(t)))
        }
        // A reset follows a welcome whose epoch differs from the one the client resumed
        // with: the client has already reset every symbol on seeing that epoch.
        Some(
            Msg::Ack(_)
            | Msg::ChannelAck(_)
            | Msg::Authenticated(_)
            | Msg::Pong(_)
            | Msg::Heartbeat(_)
            | Msg::Reset(_),
        )
        | None => Message::Other,
    }
}

fn event(e: proto::Event) -> Message {
    let data = String::from_utf8(e.data.to_vec())
        .map_err(|e| e.to_string())
        .and_then(|text| RawJson::from_string(text).map_err(|e| e.to_string()));
    match data {
        Ok(data) => Message::Event(Event {
            channel: e.channel,
            seq: e.seq,
            ts_ns: e.ts_ns,
            data,
            // proto3: an empty tier is the raw stream.
            tier: (!e.tier.is_empty()).then_some(EventTier {
                name: e.tier,
                from_seq: e.from_seq,
            }),
        }),
        Err(why) => Message::Undecodable(Undecodable {
            key: Some(Key::Channel(e.channel)),
            seq: Some(e.seq),
            tier: (!e.tier.is_empty()).then_some(e.tier),
            reason: format!("event data is not one JSON value: {why}"),
        }),
    }
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
        // proto3: an empty tier is the raw stream; zero trades and volume are left out.
        tier: (!t.tier.is_empty()).then_some(TickTier {
            name: t.tier,
            from_seq: t.from_seq,
            trades: t.trades,
            volume: t.volume,
            high: t.high,
            low: t.low,
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn encoded(data: &[u8]) -> Vec<u8> {
        let event = proto::Event {
            channel: "news".into(),
            seq: 3,
            ts_ns: 9,
            data: data.to_vec().into(),
            ..proto::Event::default()
        };
        proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Event(event)),
        }
        .encode_to_vec()
    }

    #[test]
    fn a_tier_tick_decodes_as_its_json_does() {
        let tick = proto::Tick {
            symbol: "A".into(),
            seq: 212,
            ts_ns: 1,
            recv_ns: 2,
            price: Some(4.5),
            tier: "1s".into(),
            from_seq: 187,
            trades: 9,
            volume: 1.35,
            high: Some(5.5),
            low: Some(4.0),
            ..proto::Tick::default()
        };
        let bytes = proto::ServerMessage {
            msg: Some(proto::server_message::Msg::Tick(tick)),
        }
        .encode_to_vec();
        let json = br#"{"type":"tick","symbol":"A","seq":212,"kind":"trade","ts_ns":1,"recv_ns":2,"price":4.5,"tier":"1s","from_seq":187,"trades":9,"volume":1.35,"high":5.5,"low":4.0}"#;
        assert_eq!(message(&bytes), crate::json::message(json));
        let Message::Tick(t) = message(&bytes) else {
            panic!("a tick")
        };
        assert_eq!(
            t.tier.map(|t| (t.name, t.from_seq)),
            Some(("1s".into(), 187))
        );
    }

    #[test]
    fn event_data_is_delivered_as_published_however_deep() {
        let deep = format!("{}{}", "[".repeat(5000), "]".repeat(5000));
        let Message::Event(e) = message(&encoded(deep.as_bytes())) else {
            panic!("an event")
        };
        assert_eq!((e.seq, e.data.get()), (3, deep.as_str()));
    }

    #[test]
    fn event_data_that_is_not_json_is_undecodable_with_its_channel_and_seq() {
        let m = message(&encoded(b"{\"a\":"));
        assert!(
            matches!(&m, Message::Undecodable(u) if u.key == Some(Key::Channel("news".into())) && u.seq == Some(3)),
            "{m:?}"
        );
        let m = message(&[0xff, 0xff, 0xff]);
        assert!(
            matches!(&m, Message::Undecodable(u) if u.key.is_none()),
            "{m:?}"
        );
    }
}
