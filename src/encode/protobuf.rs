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

#[cfg(test)]
pub(super) mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use prost::Message as _;

    use super::*;
    use crate::book::{BookChannel, Depth, input::level};
    use crate::event::derived::{Bar, BarValues, Recent, Ticker, TickerValues};
    use crate::event::{Channel, Key, Tier, TierItem, Tiered, Trades};
    use crate::proto::server_message::Msg;
    use crate::tick::{Seq, Symbol, sequenced};

    /// A quote with every field set, each to a value of its own (the encoders' tests).
    pub(in crate::encode) fn full_quote() -> Tick {
        Tick {
            symbol: Symbol::parse("ETH-USD").unwrap(),
            kind: TickKind::Quote,
            price: Some(2280.5),
            size: Some(0.75),
            bid: Some(2280.25),
            ask: Some(2280.75),
            bid_size: Some(3.5),
            ask_size: Some(4.25),
            venue: Some(Arc::from("XNAS")),
            ts_ns: 1_700_000_000_000_000_001,
            seq: Seq(42),
            recv_ns: 1_700_000_000_000_000_999,
        }
    }

    pub(in crate::encode) fn news(seq: u64) -> Event {
        let mut event = Event::parse(br#"{"channel":"news","data":{"a":[1,2]},"ts_ns":77}"#, 1024)
            .expect("a valid event");
        event.seq = Seq(seq);
        event.recv_ns = 88;
        event
    }

    pub(in crate::encode) fn bar() -> Bar {
        Bar {
            channel: Channel::parse("bars:1m:BTC-USD").unwrap(),
            seq: Seq(5),
            bar: BarValues::sample(60_000_000_000, false),
            recent: Recent::none(),
            tick_seq: Seq(9),
            recv_ns: 1,
        }
    }

    pub(in crate::encode) fn ticker() -> Ticker {
        Ticker {
            channel: Channel::parse("ticker:BTC-USD").unwrap(),
            seq: Seq(6),
            stats: TickerValues::sample(),
            ts_ns: 5,
            recv_ns: 6,
        }
    }

    pub(in crate::encode) fn book_update(kind: BookKind, from_seq: Option<Seq>) -> BookUpdate {
        let channel = BookChannel::new(Symbol::parse("BTC-USD").unwrap(), Depth::Top(10));
        let mut update = BookUpdate::input(
            channel,
            kind,
            vec![
                level("43250.50", "1.250").unwrap(),
                level("43250", "0").unwrap(),
            ],
            vec![level("43251", "2").unwrap()],
            9,
        );
        update.seq = Seq(4);
        update.checksum = 438_061_936;
        update.from_seq = from_seq;
        update
    }

    fn tier_of(base: Key, newest: Item, trades: Option<Trades>) -> Item {
        Item::Tier(Box::new(TierItem {
            key: Tiered::key(base, Tier::of(Duration::from_secs(1))),
            newest,
            from: Seq(3),
            trades,
        }))
    }

    fn decoded(payload: &[u8]) -> Msg {
        proto::ServerMessage::decode(payload)
            .expect("a ServerMessage")
            .msg
            .expect("holding a message")
    }

    #[test]
    fn a_tick_decodes_back_with_every_field() {
        let tick = full_quote();
        let Msg::Tick(message) = decoded(&super::tick(&tick)) else {
            panic!("a tick message");
        };
        assert_eq!(message.symbol, "ETH-USD");
        assert_eq!(message.kind, proto::TickKind::Quote as i32);
        assert_eq!(message.price, Some(2280.5));
        assert_eq!(message.size, Some(0.75));
        assert_eq!(message.bid, Some(2280.25));
        assert_eq!(message.ask, Some(2280.75));
        assert_eq!(message.bid_size, Some(3.5));
        assert_eq!(message.ask_size, Some(4.25));
        assert_eq!(message.venue.as_deref(), Some("XNAS"));
        assert_eq!(message.ts_ns, 1_700_000_000_000_000_001);
        assert_eq!(message.seq, 42);
        assert_eq!(message.recv_ns, 1_700_000_000_000_000_999);
        assert_eq!(
            (message.tier.as_str(), message.from_seq, message.trades),
            ("", 0, 0),
            "a live tick is no tier's frame"
        );
        assert_eq!(message, tick_message(&tick));
    }

    #[test]
    fn a_trade_keeps_its_kind_and_leaves_absent_fields_absent() {
        let trade = sequenced("BTC-USD", 7);
        let Msg::Tick(message) = decoded(&super::tick(&trade)) else {
            panic!("a tick message");
        };
        assert_eq!(message.kind, proto::TickKind::Trade as i32);
        assert_eq!((message.price, message.seq), (Some(1.0), 7));
        assert_eq!((message.size, message.bid, message.ask), (None, None, None));
        assert_eq!(message.venue, None);
    }

    #[test]
    fn an_event_decodes_back_with_its_exact_data() {
        let event = news(12);
        let Msg::Event(message) = decoded(&super::event(&event)) else {
            panic!("an event message");
        };
        assert_eq!(message.channel, "news");
        assert_eq!(message.seq, 12);
        assert_eq!(message.ts_ns, 77);
        assert_eq!(&message.data[..], br#"{"a":[1,2]}"#);
        assert_eq!((message.tier.as_str(), message.from_seq), ("", 0));
        assert_eq!(message, event_message(&event));
    }

    #[test]
    fn each_item_has_its_live_and_its_snapshot_message() {
        let tick = Item::Tick(full_quote());
        let event = Item::Event(news(1));
        let bar = Item::Bar(Box::new(bar()));
        let ticker = Item::Ticker(Box::new(ticker()));
        let book = Item::Book(book_update(BookKind::Delta, None));
        let name = |msg: &Msg| match msg {
            Msg::Tick(_) => "tick",
            Msg::Snapshot(_) => "snapshot",
            Msg::Event(_) => "event",
            Msg::EventSnapshot(_) => "event_snapshot",
            Msg::Bar(_) => "bar",
            Msg::BarSnapshot(_) => "bar_snapshot",
            Msg::Ticker(_) => "ticker",
            Msg::TickerSnapshot(_) => "ticker_snapshot",
            Msg::Book(_) => "book",
            _ => "other",
        };
        let cases = [
            (&tick, "tick", "snapshot"),
            (&event, "event", "event_snapshot"),
            (&bar, "bar", "bar_snapshot"),
            (&ticker, "ticker", "ticker_snapshot"),
            (&book, "book", "book"),
        ];
        for (item, live, snapshot) in cases {
            assert_eq!(name(&item_message(item, false)), live, "{item:?}");
            assert_eq!(name(&item_message(item, true)), snapshot, "{item:?}");
        }
        let Msg::Snapshot(message) = item_message(&tick, true) else {
            panic!("a tick snapshot");
        };
        assert_eq!(message, tick_message(&full_quote()));
        let Msg::EventSnapshot(message) = item_message(&event, true) else {
            panic!("an event snapshot");
        };
        assert_eq!(message, event_message(&news(1)));
        let Msg::Book(message) = item_message(&book, true) else {
            panic!("a book");
        };
        assert_eq!(message, book_message(&book_update(BookKind::Delta, None)));
    }

    #[test]
    fn a_ticks_tier_frame_carries_its_tier_range_and_trades() {
        let trades = Trades {
            count: 3,
            volume: 2.5,
            high: Some(2281.0),
            low: Some(2279.5),
        };
        let base = Key::Symbol(Symbol::parse("ETH-USD").unwrap());
        let frame = tier_of(base.clone(), Item::Tick(full_quote()), Some(trades));
        for snapshot in [false, true] {
            let (Msg::Tick(message) | Msg::Snapshot(message)) = item_message(&frame, snapshot)
            else {
                panic!("a tick or its snapshot");
            };
            let want = proto::Tick {
                tier: "1s".into(),
                from_seq: 3,
                trades: 3,
                volume: 2.5,
                high: Some(2281.0),
                low: Some(2279.5),
                ..tick_message(&full_quote())
            };
            assert_eq!(message, want, "snapshot: {snapshot}");
        }
        let without = tier_of(base, Item::Tick(full_quote()), None);
        let Msg::Tick(message) = item_message(&without, false) else {
            panic!("a tick");
        };
        assert_eq!((message.tier.as_str(), message.from_seq), ("1s", 3));
        assert_eq!(
            (message.trades, message.volume, message.high, message.low),
            (0, 0.0, None, None),
            "no trades counted"
        );
    }

    #[test]
    fn an_events_tier_frame_carries_its_tier_and_range() {
        let base = Key::Channel(Channel::parse("news").unwrap());
        let frame = tier_of(base, Item::Event(news(8)), None);
        for snapshot in [false, true] {
            let (Msg::Event(message) | Msg::EventSnapshot(message)) =
                item_message(&frame, snapshot)
            else {
                panic!("an event or its snapshot");
            };
            let want = proto::Event {
                tier: "1s".into(),
                from_seq: 3,
                ..event_message(&news(8))
            };
            assert_eq!(message, want, "snapshot: {snapshot}");
        }
    }

    #[test]
    fn a_books_tier_frame_names_its_tier_and_keeps_its_own_range() {
        let update = book_update(BookKind::Delta, Some(Seq(2)));
        let base = Key::Channel(Channel::of_book(&update.channel));
        let frame = tier_of(base, Item::Book(update.clone()), None);
        let Msg::Book(message) = item_message(&frame, false) else {
            panic!("a book");
        };
        let want = proto::Book {
            tier: "1s".into(),
            ..book_message(&update)
        };
        assert_eq!(message, want);
        assert_eq!(message.from_seq, 2, "the book's own, not the frame's");
    }

    #[test]
    fn a_book_decodes_back_with_exact_levels() {
        let update = book_update(BookKind::Delta, Some(Seq(2)));
        let Msg::Book(message) = decoded(&super::book(&update)) else {
            panic!("a book message");
        };
        let text = |levels: &[proto::BookLevel]| -> Vec<String> {
            levels
                .iter()
                .map(|l| format!("{}:{}", l.price, l.size))
                .collect()
        };
        assert_eq!(message.channel, "book:BTC-USD:10");
        assert_eq!(message.seq, 4);
        assert!(!message.snapshot, "a delta");
        assert_eq!(text(&message.bids), ["43250.5:1.25", "43250:0"]);
        assert_eq!(text(&message.asks), ["43251:2"]);
        assert_eq!(message.checksum, 438_061_936);
        assert_eq!(message.ts_ns, 9);
        assert_eq!(message.from_seq, 2);
        assert_eq!(message.tier, "");
        assert_eq!(message, book_message(&update));
    }

    #[test]
    fn snapshots_and_checkpoints_are_whole_books_and_no_range_is_zero() {
        for (kind, snapshot) in [
            (BookKind::Delta, false),
            (BookKind::Snapshot, true),
            (BookKind::Checkpoint, true),
        ] {
            let message = book_message(&book_update(kind, None));
            assert_eq!(message.snapshot, snapshot, "{kind:?}");
            assert_eq!(message.from_seq, 0, "no merged range");
        }
    }

    #[test]
    fn a_server_message_decodes_to_what_was_encoded() {
        let msg = Msg::Pong(proto::Pong { id: 300 });
        assert_eq!(
            proto::ServerMessage::decode(&server_message(msg.clone())[..]).unwrap(),
            proto::ServerMessage { msg: Some(msg) }
        );
    }
}
