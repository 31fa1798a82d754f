//! One sequenced item as a stream message, and back: the NATS side's wire contract.
//!
//! A tick's payload is the protobuf `Tick` (with `seq` and `recv_ns`), an event's the
//! protobuf `Event`, a bar's the protobuf `Bar`, a ticker's the protobuf `Ticker`, a book
//! update's or checkpoint's the protobuf `Book` of its full-depth channel; the subject names
//! the key and what it carries ([`Subjects`]). Headers: `Tickrelay-Epoch` (the history the
//! seq belongs to), `Tickrelay-Recv-Ns` (events, bars, tickers and books: their protos have
//! no field for it), `Tickrelay-Tick-Seq` (bars: the symbol's newest tick the bar accounts
//! for, where a restarted sequencer resumes), and `Nats-Msg-Id`
//! (`<epoch>:<subject>:<seq>:<writer>`, the writer being the sequencer's lease), which makes
//! a retried publish a duplicate the stream stores once, and never makes another
//! sequencer's message at the same seq look like one.
//!
//! [`decode`] is the only validation point for what an edge reads from NATS: a message that
//! is not exactly such an item is a [`WireError`], counted as `bad_nats_message` and
//! skipped; it never reaches a shard.

use async_nats::HeaderMap;
use bytes::Bytes;
use prost::Message as _;

use super::subject::{Carries, SubjectError, Subjects};
use crate::book::{BookKind, BookUpdate, Depth, Level, input};
use crate::encode::derived::{bar_message, ticker_message};
use crate::encode::protobuf::{book_message, event_message, tick_message};
use crate::event::derived::{
    Bar, BarInterval, BarValues, DerivedName, Recent, Ticker, TickerValues,
};
use crate::event::{Channel, Event, Item, Key, Tag, publisher_id};
use crate::ingest::DecodeError;
use crate::ingest::protobuf::validate;
use crate::proto;
use crate::tick::Seq;

/// The header naming the history (epoch) of a message's seq.
pub const EPOCH: &str = "Tickrelay-Epoch";
/// The header holding an event's, bar's or ticker's relay time, ns since the Unix epoch.
pub const RECV_NS: &str = "Tickrelay-Recv-Ns";
/// The header holding a bar's `tick_seq`.
pub const TICK_SEQ: &str = "Tickrelay-Tick-Seq";
/// JetStream's message id: a publish with one the stream holds is a duplicate, stored once.
pub const MSG_ID: &str = "Nats-Msg-Id";
/// JetStream's header that makes a publish conditional: stored only if the stream's last
/// sequence is this one (the first publish of a sequencer's chain, `publish`).
pub const EXPECTED_LAST_SEQUENCE: &str = "Nats-Expected-Last-Sequence";
/// JetStream's header that makes a publish conditional: stored only if the stream's last
/// message has this id (every later publish of the chain).
pub const EXPECTED_LAST_MSG_ID: &str = "Nats-Expected-Last-Msg-Id";

/// The header naming an acking publisher (acknowledged ingest), on each item it tagged.
pub const PUBLISHER: &str = "Tickrelay-Publisher";
/// The header holding that item's pseq.
pub const PSEQ: &str = "Tickrelay-Pseq";

/// Notes in `out`'s headers who published it, so a successor sequencer reading the stream
/// knows the item is stored (a resend of it is a duplicate).
pub fn tag(out: &mut Outgoing, tag: &Tag) {
    out.headers.insert(PUBLISHER, &*tag.publisher);
    out.headers.insert(PSEQ, tag.pseq.to_string().as_str());
}

/// The publisher's tag a stream message carries, if it carries a valid one.
pub fn tag_of(headers: &HeaderMap) -> Option<Tag> {
    let publisher = publisher_id(headers.get(PUBLISHER)?.as_str()).ok()?;
    let pseq = headers.get(PSEQ)?.as_str().parse().ok()?;
    Some(Tag { publisher, pseq })
}

/// One item ready to publish.
#[derive(Debug, Clone)]
pub struct Outgoing {
    /// Its key's subject.
    pub subject: String,
    /// Epoch, message id and (events) receive time.
    pub headers: HeaderMap,
    /// The protobuf body.
    pub payload: Bytes,
    /// Its `Nats-Msg-Id`.
    pub id: String,
}

/// A stream message decoded into an item of history `epoch`.
#[derive(Debug)]
pub struct Incoming {
    /// The item, its seq as the sequencer assigned it.
    pub item: Item,
    /// The history it belongs to.
    pub epoch: u64,
}

/// Why a stream message is not an item of this relay.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WireError {
    /// The subject names no key of this stream.
    #[error(transparent)]
    Subject(#[from] SubjectError),
    /// No `Tickrelay-Epoch` header, or not a number.
    #[error("no valid {EPOCH} header")]
    Epoch,
    /// An event, bar or ticker without a valid `Tickrelay-Recv-Ns` header.
    #[error("no valid {RECV_NS} header")]
    RecvNs,
    /// A bar without a valid `Tickrelay-Tick-Seq` header.
    #[error("no valid {TICK_SEQ} header")]
    TickSeq,
    /// A bar or ticker whose numbers do not hold together (not finite, low above high, no
    /// trade, a start off its interval, on the other part's subject).
    #[error("{0}")]
    Inconsistent(&'static str),
    /// The payload is not a valid protobuf tick or event.
    #[error("payload: {0}")]
    Payload(String),
    /// The payload's symbol or channel is not the subject's.
    #[error("payload key `{payload}` on the subject of `{subject}`")]
    KeyMismatch {
        /// The key the payload names.
        payload: String,
        /// The key the subject names.
        subject: String,
    },
    /// Seq 0: the sequencer never publishes an unsequenced item.
    #[error("seq 0 (unsequenced)")]
    Unsequenced,
}

/// Whether `item` goes into the stream: everything but a book's views at a depth (every
/// relay derives those from the full-depth updates).
pub fn published(item: &Item) -> bool {
    !matches!(item, Item::Book(book) if book.channel.depth() != Depth::Full)
}

/// `item` (sequenced, of history `epoch`, by the sequencer whose lease is `writer`) as a
/// message for the stream.
pub fn encode(subjects: &Subjects, item: &Item, epoch: u64, writer: u64) -> Outgoing {
    let subject = subjects.of_item(item);
    let mut headers = HeaderMap::new();
    headers.insert(EPOCH, epoch.to_string().as_str());
    let id = format!("{epoch}:{subject}:{}:{writer}", item.seq().0);
    headers.insert(MSG_ID, id.as_str());
    let payload = match item {
        Item::Tick(tick) => tick_message(tick).encode_to_vec(),
        Item::Event(event) => {
            headers.insert(RECV_NS, event.recv_ns.to_string().as_str());
            event_message(event).encode_to_vec()
        }
        Item::Bar(bar) => {
            headers.insert(RECV_NS, bar.recv_ns.to_string().as_str());
            headers.insert(TICK_SEQ, bar.tick_seq.0.to_string().as_str());
            bar_message(bar).encode_to_vec()
        }
        Item::Ticker(ticker) => {
            headers.insert(RECV_NS, ticker.recv_ns.to_string().as_str());
            ticker_message(ticker).encode_to_vec()
        }
        Item::Tier(_) => {
            unreachable!("a tier's frame is made by a shard after the sequencer: never published")
        }
        Item::Book(book) => {
            headers.insert(RECV_NS, book.recv_ns.to_string().as_str());
            book_message(book).encode_to_vec()
        }
    };
    Outgoing {
        subject,
        headers,
        payload: Bytes::from(payload),
        id,
    }
}

/// The item a stream message carries, validated like any other source.
pub fn decode(
    subjects: &Subjects,
    subject: &str,
    headers: Option<&HeaderMap>,
    payload: &[u8],
) -> Result<Incoming, WireError> {
    let (carries, key) = subjects.parse(subject)?;
    let number = |name: &str| {
        headers
            .and_then(|h| h.get(name))
            .and_then(|v| v.as_str().parse::<u64>().ok())
    };
    let epoch = number(EPOCH).ok_or(WireError::Epoch)?;
    let bad = |e: prost::DecodeError| WireError::Payload(e.to_string());
    let item = match &key {
        Key::Symbol(symbol) => {
            let message = proto::Tick::decode(payload).map_err(bad)?;
            let (seq, recv_ns) = (message.seq, message.recv_ns);
            let mut tick =
                validate(message).map_err(|e: DecodeError| WireError::Payload(e.to_string()))?;
            if tick.symbol != *symbol {
                return Err(mismatch(tick.symbol.as_str(), &key));
            }
            tick.seq = Seq(seq);
            tick.recv_ns = recv_ns;
            Item::Tick(tick)
        }
        Key::Channel(channel) if matches!(carries, Carries::Bars { .. }) => {
            let message = proto::Bar::decode(payload).map_err(bad)?;
            if message.channel != channel.as_str() {
                return Err(mismatch(&message.channel, &key));
            }
            let bar = bar_values(&message, channel)?;
            if carries != (Carries::Bars { closed: bar.closed }) {
                return Err(WireError::Inconsistent("a bar on the other part's subject"));
            }
            Item::Bar(Box::new(Bar {
                channel: channel.clone(),
                seq: Seq(message.seq),
                bar,
                recent: Recent::none(),
                tick_seq: Seq(number(TICK_SEQ).ok_or(WireError::TickSeq)?),
                recv_ns: number(RECV_NS).ok_or(WireError::RecvNs)?,
            }))
        }
        Key::Channel(channel) if carries == Carries::Tickers => {
            let m = proto::Ticker::decode(payload).map_err(bad)?;
            if m.channel != channel.as_str() {
                return Err(mismatch(&m.channel, &key));
            }
            let numbers = [
                m.last,
                m.open,
                m.high,
                m.low,
                m.volume,
                m.change,
                m.change_percent,
            ];
            if !numbers.iter().all(|n| n.is_finite()) || m.low > m.high {
                return Err(WireError::Inconsistent(
                    "ticker numbers not finite, or low > high",
                ));
            }
            Item::Ticker(Box::new(Ticker {
                channel: channel.clone(),
                seq: Seq(m.seq),
                stats: TickerValues {
                    last: m.last,
                    open: m.open,
                    high: m.high,
                    low: m.low,
                    volume: m.volume,
                    change: m.change,
                    change_percent: m.change_percent,
                },
                ts_ns: m.ts_ns,
                recv_ns: number(RECV_NS).ok_or(WireError::RecvNs)?,
            }))
        }
        Key::Channel(channel)
            if matches!(carries, Carries::BookUpdates | Carries::BookCheckpoints) =>
        {
            let message = proto::Book::decode(payload).map_err(bad)?;
            if message.channel != channel.as_str() {
                return Err(mismatch(&message.channel, &key));
            }
            let recv_ns = number(RECV_NS).ok_or(WireError::RecvNs)?;
            Item::Book(book(message, carries == Carries::BookCheckpoints, recv_ns)?)
        }
        Key::Channel(channel) => {
            let message = proto::Event::decode(payload).map_err(bad)?;
            if message.channel != channel.as_str() {
                return Err(mismatch(&message.channel, &key));
            }
            serde_json::from_slice::<&serde_json::value::RawValue>(&message.data)
                .map_err(|e| WireError::Payload(format!("event data: {e}")))?;
            // The depth every source checks: an item on the stream is delivered as it is.
            crate::event::check_data(&message.data, usize::MAX)
                .map_err(|e| WireError::Payload(format!("event data: {e}")))?;
            Item::Event(Event {
                channel: channel.clone(),
                data: message.data,
                ts_ns: message.ts_ns,
                seq: Seq(message.seq),
                recv_ns: number(RECV_NS).ok_or(WireError::RecvNs)?,
            })
        }
        // `Subjects::key` reads only symbols and channels back.
        Key::Tiered(_) => return Err(WireError::Payload("a tier is not a stream key".into())),
    };
    if item.seq().0 == 0 {
        return Err(WireError::Unsequenced);
    }
    Ok(Incoming { item, epoch })
}

/// A bar's values, checked: finite, `low <= open, close <= high`, at least one trade, a
/// start on its interval.
fn bar_values(m: &proto::Bar, channel: &Channel) -> Result<BarValues, WireError> {
    let prices = [m.open, m.high, m.low, m.close, m.volume];
    if !prices.iter().all(|p| p.is_finite()) {
        return Err(WireError::Inconsistent("bar numbers not finite"));
    }
    let within = |p: f64| m.low <= p && p <= m.high;
    if !(within(m.open) && within(m.close)) || m.trades == 0 {
        return Err(WireError::Inconsistent(
            "a bar needs low <= open, close <= high and a trade",
        ));
    }
    let interval = match DerivedName::parse(channel.as_str()) {
        Some(DerivedName::Bars { interval, .. }) => BarInterval::parse(interval).ok(),
        _ => None,
    };
    if interval.is_none_or(|i| i.start_of(m.start_ns) != m.start_ns) {
        return Err(WireError::Inconsistent("a bar's start is off its interval"));
    }
    Ok(BarValues {
        start_ns: m.start_ns,
        open: m.open,
        high: m.high,
        low: m.low,
        close: m.close,
        volume: m.volume,
        trades: m.trades,
        closed: m.closed,
    })
}

/// A book message of the stream, its levels validated like a publisher's.
fn book(message: proto::Book, checkpoint: bool, recv_ns: u64) -> Result<BookUpdate, WireError> {
    let levels = |side: &str, list: &[proto::BookLevel]| -> Result<Vec<Level>, WireError> {
        list.iter()
            .map(|l| {
                input::level(&l.price, &l.size)
                    .map_err(|e| WireError::Payload(format!("{side}: {e}")))
            })
            .collect()
    };
    let symbol = crate::book::channel::symbol_of(&message.channel)
        .and_then(|s| crate::tick::Symbol::parse(s).ok())
        .ok_or_else(|| WireError::Payload(format!("book channel `{}`", message.channel)))?;
    let kind = match (checkpoint, message.snapshot) {
        (true, _) => BookKind::Checkpoint,
        (false, true) => BookKind::Snapshot,
        (false, false) => BookKind::Delta,
    };
    let mut update = BookUpdate::input(
        crate::book::BookChannel::full(symbol),
        kind,
        levels("bids", &message.bids)?,
        levels("asks", &message.asks)?,
        message.ts_ns,
    );
    update.seq = Seq(message.seq);
    update.checksum = message.checksum;
    update.recv_ns = recv_ns;
    Ok(update)
}

fn mismatch(payload: &str, subject: &Key) -> WireError {
    WireError::KeyMismatch {
        payload: payload.to_owned(),
        subject: subject.as_str().to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Channel;
    use crate::tick::{RawTick, Tick};

    fn tick(symbol: &str, seq: u64) -> Item {
        let mut tick = Tick::try_from(RawTick {
            symbol: symbol.into(),
            price: Some(43_250.5),
            ts_ns: 1_764_000_000_000_000_001,
            ..RawTick::default()
        })
        .unwrap();
        tick.seq = Seq(seq);
        tick.recv_ns = 17;
        Item::Tick(tick)
    }

    #[test]
    fn a_tick_and_an_event_come_back_as_they_went() {
        let subjects = Subjects::new("tickrelay");
        let event = Item::Event(Event {
            channel: Channel::parse("news").unwrap(),
            data: Bytes::from_static(br#"{"headline":"x"}"#),
            ts_ns: 5,
            seq: Seq(3),
            recv_ns: 9,
        });
        for item in [tick("BRK.B", 7), event] {
            let out = encode(&subjects, &item, 42, 7);
            let back = decode(&subjects, &out.subject, Some(&out.headers), &out.payload).unwrap();
            assert_eq!((back.item, back.epoch), (item, 42));
        }
    }

    #[test]
    fn a_book_update_and_checkpoint_come_back_as_they_went_and_views_stay_home() {
        use crate::book::{BookChannel, decimal};
        let subjects = Subjects::new("tickrelay");
        let symbol = crate::tick::Symbol::parse("BTC-USD").unwrap();
        let level = |p: &str, s: &str| Level {
            price: decimal::parse(p).unwrap(),
            size: decimal::parse(s).unwrap(),
        };
        for kind in [BookKind::Delta, BookKind::Snapshot, BookKind::Checkpoint] {
            let mut book = BookUpdate::input(
                BookChannel::full(symbol.clone()),
                kind,
                vec![level("43250.5", "0")],
                vec![level("43251", "1.25")],
                7,
            );
            (book.seq, book.checksum, book.recv_ns) = (Seq(9), 1234, 8);
            let item = Item::Book(book);
            assert!(published(&item));
            let out = encode(&subjects, &item, 42, 7);
            let want = if kind == BookKind::Checkpoint {
                "tickrelay.bookcp.BTC-USD"
            } else {
                "tickrelay.book.BTC-USD"
            };
            assert_eq!(out.subject, want);
            let back = decode(&subjects, &out.subject, Some(&out.headers), &out.payload).unwrap();
            assert_eq!((back.item, back.epoch), (item, 42));
        }
        let view = BookUpdate::input(
            BookChannel::new(symbol, Depth::Top(10)),
            BookKind::Delta,
            vec![],
            vec![],
            1,
        );
        assert!(
            !published(&Item::Book(view)),
            "every relay derives the views itself"
        );
    }

    #[test]
    fn a_bar_is_checked_before_it_is_believed() {
        let channel = Channel::parse("bars:1m:AAPL").unwrap();
        let good = proto::Bar {
            channel: channel.as_str().into(),
            seq: 1,
            start_ns: 120_000_000_000,
            open: 10.0,
            high: 12.0,
            low: 9.0,
            close: 11.0,
            volume: 3.0,
            trades: 2,
            closed: true,
        };
        let values = bar_values(&good, &channel).unwrap();
        assert_eq!((values.open, values.close, values.trades), (10.0, 11.0, 2));
        let inconsistent = |m: proto::Bar| match bar_values(&m, &channel) {
            Err(WireError::Inconsistent(why)) => why,
            other => panic!("{:?} passed as {other:?}", (m.open, m.close, m.trades)),
        };
        type Spoil = fn(&mut proto::Bar);
        let bad: [(&str, Spoil); 8] = [
            ("not finite", |m| m.high = f64::INFINITY),
            ("not finite", |m| m.volume = f64::NAN),
            ("low <= open", |m| m.open = 12.5),
            ("low <= open", |m| m.open = 8.0),
            ("low <= open", |m| m.close = 12.5),
            ("low <= open", |m| m.close = 8.5),
            ("a trade", |m| m.trades = 0),
            ("off its interval", |m| m.start_ns += 1),
        ];
        for (why, spoil) in bad {
            let mut m = good.clone();
            spoil(&mut m);
            assert!(inconsistent(m).contains(why), "{why}");
        }
        let not_bars = Channel::parse("news").unwrap();
        assert!(bar_values(&good, &not_bars).is_err());
    }

    #[test]
    fn a_ticker_is_checked_before_it_is_believed() {
        use crate::event::derived::{Ticker, TickerValues};
        use prost::Message as _;
        let subjects = Subjects::new("tickrelay");
        let ticker = Item::Ticker(Box::new(Ticker {
            channel: Channel::parse("ticker:AAPL").unwrap(),
            seq: Seq(4),
            stats: TickerValues::sample(),
            ts_ns: 5,
            recv_ns: 6,
        }));
        let out = encode(&subjects, &ticker, 42, 7);
        let back = decode(&subjects, &out.subject, Some(&out.headers), &out.payload).unwrap();
        assert_eq!(back.item, ticker);
        type Spoil = fn(&mut proto::Ticker);
        let spoils: [Spoil; 3] = [
            |m| m.last = f64::NAN,
            |m| m.change_percent = f64::INFINITY,
            |m| m.low = m.high + 1.0,
        ];
        for spoil in spoils {
            let mut m = proto::Ticker::decode(&out.payload[..]).unwrap();
            spoil(&mut m);
            let payload = m.encode_to_vec();
            let refused = decode(&subjects, &out.subject, Some(&out.headers), &payload);
            assert!(
                matches!(refused, Err(WireError::Inconsistent(_))),
                "{refused:?}"
            );
        }
    }

    #[test]
    fn malformed_messages_are_refused_with_their_reason() {
        let subjects = Subjects::new("tickrelay");
        let good = encode(&subjects, &tick("A", 1), 42, 7);
        let headers = Some(&good.headers);
        assert!(matches!(
            decode(&subjects, "tickrelay.tick.A", headers, b"\xff\xff"),
            Err(WireError::Payload(_))
        ));
        assert_eq!(
            decode(&subjects, "tickrelay.tick.A", None, &good.payload).unwrap_err(),
            WireError::Epoch
        );
        assert!(matches!(
            decode(&subjects, "tickrelay.tick.B", headers, &good.payload),
            Err(WireError::KeyMismatch { .. })
        ));
        assert!(matches!(
            decode(&subjects, "tickrelay.nope.A", headers, &good.payload),
            Err(WireError::Subject(_))
        ));
        let unsequenced = encode(&subjects, &tick("A", 0), 42, 7);
        assert_eq!(
            decode(&subjects, "tickrelay.tick.A", headers, &unsequenced.payload).unwrap_err(),
            WireError::Unsequenced
        );
    }
}
