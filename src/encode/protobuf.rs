//! Ticks and server messages as prost-encoded `tickrelay.v1` messages.

use prost::Message as _;

use super::derived;
use crate::book::{BookKind, BookUpdate, Level, decimal};
use crate::event::{Event, Item};
use crate::proto;
use crate::tick::{Tick, TickKind};

/// The protobuf `Tick` of a tick.
pub fn tick_message(tick: &Tick) -> proto::Tick {
    proto::Tick {
        symbol: tick.symbol.as_str().to_owned(),
        kind: match tick.kind {
            TickKind::Trade => proto::TickKind::Trade,
            TickKind::Quote => proto::TickKind::Quote,
        } as i32,
        price: tick.price,
        size: tick.size,
        bid: tick.bid,
        ask: tick.ask,
        bid_size: tick.bid_size,
        ask_size: tick.ask_size,
        venue: tick.venue.as_deref().map(str::to_owned),
        ts_ns: tick.ts_ns,
        seq: tick.seq.0,
        recv_ns: tick.recv_ns,
        ..proto::Tick::default()
    }
}

/// A `ServerMessage { tick }` payload.
pub fn tick(tick: &Tick) -> Vec<u8> {
    server_message(proto::server_message::Msg::Tick(tick_message(tick)))
}

/// The protobuf `Event` of an event (`data` as its JSON bytes).
pub fn event_message(event: &Event) -> proto::Event {
    proto::Event {
        channel: event.channel.as_str().to_owned(),
        seq: event.seq.0,
        ts_ns: event.ts_ns,
        data: event.data.clone(),
        ..proto::Event::default()
    }
}

/// A `ServerMessage { event }` payload.
pub fn event(event: &Event) -> Vec<u8> {
    server_message(proto::server_message::Msg::Event(event_message(event)))
}

/// The `ServerMessage` body of a sequenced item (or a tier's frame): live, or with
/// `snapshot` its snapshot form.
pub fn item_message(item: &Item, snapshot: bool) -> proto::server_message::Msg {
    use proto::server_message::Msg;
    match item {
        Item::Tick(t) if snapshot => Msg::Snapshot(tick_message(t)),
        Item::Tick(t) => Msg::Tick(tick_message(t)),
        Item::Event(e) if snapshot => Msg::EventSnapshot(event_message(e)),
        Item::Event(e) => Msg::Event(event_message(e)),
        Item::Bar(b) if snapshot => Msg::BarSnapshot(derived::bar_snapshot(b)),
        Item::Bar(b) => Msg::Bar(derived::bar_message(b)),
        Item::Ticker(t) if snapshot => Msg::TickerSnapshot(derived::ticker_message(t)),
        Item::Ticker(t) => Msg::Ticker(derived::ticker_message(t)),
        Item::Book(b) => Msg::Book(book_message(b)),
        Item::Tier(tier) => {
            let mut msg = item_message(&tier.newest, snapshot);
            let name = tier.key.tier().map_or("", |t| t.name()).to_owned();
            match &mut msg {
                Msg::Tick(t) | Msg::Snapshot(t) => {
                    t.tier = name;
                    t.from_seq = tier.from.0;
                    if let Some(trades) = &tier.trades {
                        t.trades = trades.count;
                        t.volume = trades.volume;
                        t.high = trades.high;
                        t.low = trades.low;
                    }
                }
                Msg::Event(e) | Msg::EventSnapshot(e) => {
                    e.tier = name;
                    e.from_seq = tier.from.0;
                }
                // A book carries its `from_seq` itself.
                Msg::Book(b) => b.tier = name,
                _ => {}
            }
            msg
        }
    }
}

/// The protobuf `Book` of a book message (prices and sizes as their shortest exact text).
pub fn book_message(book: &BookUpdate) -> proto::Book {
    let levels = |levels: &[Level]| {
        levels
            .iter()
            .map(|l| proto::BookLevel {
                price: decimal::text(&l.price),
                size: decimal::text(&l.size),
            })
            .collect()
    };
    proto::Book {
        channel: book.channel.name().to_string(),
        seq: book.seq.0,
        snapshot: book.kind != BookKind::Delta,
        bids: levels(&book.bids),
        asks: levels(&book.asks),
        checksum: book.checksum,
        ts_ns: book.ts_ns,
        from_seq: book.from_seq.map_or(0, |s| s.0),
        // Set by the tier frame that carries the book ([`item_message`]).
        tier: String::new(),
    }
}

/// A `ServerMessage { book }` payload.
pub fn book(book: &BookUpdate) -> Vec<u8> {
    server_message(proto::server_message::Msg::Book(book_message(book)))
}

/// Encodes a `ServerMessage` holding `msg`.
pub fn server_message(msg: proto::server_message::Msg) -> Vec<u8> {
    proto::ServerMessage { msg: Some(msg) }.encode_to_vec()
}
