//! Event channels beside ticks: [`Channel`], [`Event`], and the one key space both share
//! ([`Key`], [`Item`]).
//!
//! A tick is keyed by its symbol, an event by its channel (`news`, `alerts`, `status.model`,
//! `user:<id>`); everything keyed downstream (seq, last value, replay ring, resume,
//! subscriptions, interest) is keyed by [`Key`], so events ride the tick machinery instead
//! of a copy of it. A symbol and a channel of the same name are different keys.
//!
//! [`Event::parse`] is the only validation point for events: after it the channel is
//! well-formed and `data` is one JSON value of at most the configured size, kept as the
//! exact bytes the publisher sent (it is delivered byte for byte), and never names a
//! channel only the relay writes ([`derived`]: bars, tickers, books).

pub mod derived;

mod channel;
mod data;
mod error;
mod key;
mod tag;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::book::BookUpdate;
use crate::tick::{Seq, Tick};
pub use channel::{Channel, RESERVED_PREFIXES, USER_PREFIX};
pub use data::{MAX_EVENT_DEPTH, check_data};
use derived::{Bar, Ticker};
pub use error::EventError;
pub use key::{Key, Tier, TierError, Tiered, Tiers};
pub use tag::{MAX_PUBLISHER_ID, Tag, publisher_id};

/// A validated event. `seq` and `recv_ns` are set by the relay.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    /// The channel.
    pub channel: Channel,
    /// One JSON value, exactly as published.
    pub data: Bytes,
    /// Source event time, ns since the Unix epoch (the relay's receive time if the
    /// publisher gave none); passed through unchanged.
    pub ts_ns: u64,
    /// Per-channel sequence number; [`Seq(0)`](Seq) until the sequencer assigns it.
    pub seq: Seq,
    /// Relay ingest time, ns since the Unix epoch.
    pub recv_ns: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawEvent<'a> {
    channel: String,
    #[serde(borrow)]
    data: Option<&'a RawValue>,
    ts_ns: Option<u64>,
}

impl Event {
    /// Parses one event object `{"channel":..,"data":..,"ts_ns":..}` (`ts_ns` optional),
    /// refusing `data` over `max_data` bytes and `data` no client could decode ([`check_data`]).
    pub fn parse(json: &[u8], max_data: usize) -> Result<Self, EventError> {
        let raw: RawEvent<'_> = serde_json::from_slice(json).map_err(|e| {
            let text = e.to_string();
            if text.contains("unknown field") {
                EventError::UnknownField(text)
            } else {
                EventError::Json(text)
            }
        })?;
        let channel = Channel::parse(&raw.channel)?;
        if channel.is_reserved() {
            return Err(EventError::Reserved {
                channel: channel.to_string(),
                prefixes: &RESERVED_PREFIXES,
            });
        }
        let data = raw.data.ok_or(EventError::MissingData)?.get().as_bytes();
        check_data(data, max_data)?;
        Ok(Self {
            channel,
            data: Bytes::copy_from_slice(data),
            ts_ns: raw.ts_ns.unwrap_or(0),
            seq: Seq(0),
            recv_ns: 0,
        })
    }
}

/// What the sequencer sequences: ticks, events and book messages from the sources, and the
/// bars and tickers it derives from trades, one stream of sequenced items; and what a
/// shard's rate tier makes of them.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A market tick.
    Tick(Tick),
    /// A channel event.
    Event(Event),
    /// A bars channel's message (boxed: rare beside ticks, and bigger).
    Bar(Box<Bar>),
    /// A ticker channel's message.
    Ticker(Box<Ticker>),
    /// A message of a book channel (or, seq 0, a publisher's book update).
    Book(BookUpdate),
    /// A rate tier's frame: the newest item of its base in an interval, and what it stands
    /// for. Made by a shard, never sequenced (it carries its newest item's seq).
    Tier(Box<TierItem>),
}

/// One frame of a rate tier (`BTC-USD@1s`).
#[derive(Clone, Debug, PartialEq)]
pub struct TierItem {
    /// The tiered key.
    pub key: Key,
    /// The newest item of the base in the interval (a tick or an event).
    pub newest: Item,
    /// The first seq the frame stands for: the previous frame's seq + 1.
    pub from: Seq,
    /// Over the trades of `from..=newest`, for a symbol's tier.
    pub trades: Option<Trades>,
}

/// What the trades of a tier interval add up to.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Trades {
    /// How many.
    pub count: u64,
    /// Their summed size.
    pub volume: f64,
    /// The highest and lowest price (`None` without a priced trade).
    pub high: Option<f64>,
    /// See `high`.
    pub low: Option<f64>,
}

impl Trades {
    /// Counts `tick` in, if it is a trade.
    pub fn add(&mut self, tick: &Tick) {
        if tick.kind != crate::tick::TickKind::Trade {
            return;
        }
        self.count += 1;
        self.volume += tick.size.unwrap_or(0.0);
        if let Some(price) = tick.price {
            self.high = Some(self.high.map_or(price, |h| h.max(price)));
            self.low = Some(self.low.map_or(price, |l| l.min(price)));
        }
    }
}

impl Item {
    /// The key it is sequenced (or, a tier's frame, delivered) under.
    pub fn key(&self) -> Key {
        match self {
            Self::Tick(t) => Key::Symbol(t.symbol.clone()),
            Self::Event(e) => Key::Channel(e.channel.clone()),
            Self::Bar(b) => Key::Channel(b.channel.clone()),
            Self::Ticker(t) => Key::Channel(t.channel.clone()),
            Self::Tier(t) => t.key.clone(),
            Self::Book(b) => Key::Channel(Channel::of_book(&b.channel)),
        }
    }

    /// Its per-key seq (a tier's frame: its newest item's).
    pub fn seq(&self) -> Seq {
        match self {
            Self::Tick(t) => t.seq,
            Self::Event(e) => e.seq,
            Self::Bar(b) => b.seq,
            Self::Ticker(t) => t.seq,
            Self::Tier(t) => t.newest.seq(),
            Self::Book(b) => b.seq,
        }
    }

    /// The first seq the item stands for: its own, or a tier frame's `from`.
    pub fn first_seq(&self) -> Seq {
        match self {
            Self::Tier(t) => t.from,
            Self::Tick(_) | Self::Event(_) | Self::Bar(_) | Self::Ticker(_) | Self::Book(_) => {
                self.seq()
            }
        }
    }

    /// Sets its per-key seq (the sequencer's job; a tier's frame is never sequenced).
    pub fn set_seq(&mut self, seq: Seq) {
        match self {
            Self::Tick(t) => t.seq = seq,
            Self::Event(e) => e.seq = seq,
            Self::Bar(b) => b.seq = seq,
            Self::Ticker(t) => t.seq = seq,
            Self::Tier(_) => debug_assert!(false, "a tier's frame is never sequenced"),
            Self::Book(b) => b.seq = seq,
        }
    }

    /// Relay ingest time, ns since the Unix epoch.
    pub fn recv_ns(&self) -> u64 {
        match self {
            Self::Tick(t) => t.recv_ns,
            Self::Event(e) => e.recv_ns,
            Self::Bar(b) => b.recv_ns,
            Self::Ticker(t) => t.recv_ns,
            Self::Tier(t) => t.newest.recv_ns(),
            Self::Book(b) => b.recv_ns,
        }
    }

    /// Stamps the relay ingest time (and an event's missing source time with it).
    pub fn stamp(&mut self, recv_ns: u64) {
        match self {
            Self::Tick(t) => t.recv_ns = recv_ns,
            Self::Event(e) => {
                e.recv_ns = recv_ns;
                if e.ts_ns == 0 {
                    e.ts_ns = recv_ns;
                }
            }
            // Built by the relay (or a shard) with their time set.
            Self::Bar(_) | Self::Ticker(_) | Self::Tier(_) => {}
            Self::Book(b) => {
                b.recv_ns = recv_ns;
                if b.ts_ns == 0 {
                    b.ts_ns = recv_ns;
                }
            }
        }
    }

    /// The tick, if it is one.
    pub fn tick(&self) -> Option<&Tick> {
        match self {
            Self::Tick(t) => Some(t),
            Self::Event(_) | Self::Bar(_) | Self::Ticker(_) | Self::Tier(_) | Self::Book(_) => None,
        }
    }

    /// Whether the relay computed it (a bar or a ticker) rather than a source sent it.
    pub fn is_derived(&self) -> bool {
        matches!(self, Self::Bar(_) | Self::Ticker(_))
    }
}

impl From<Tick> for Item {
    fn from(tick: Tick) -> Self {
        Self::Tick(tick)
    }
}

impl From<Event> for Item {
    fn from(event: Event) -> Self {
        Self::Event(event)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ErrorCode;
    use proptest::prelude::*;

    #[test]
    fn data_is_kept_byte_for_byte() {
        let line = br#"{"channel":"news","data":{ "h" : "a\u00e9" , "n":1.50 },"ts_ns":5}"#;
        let event = Event::parse(line, 1024).unwrap();
        assert_eq!(&event.data[..], br#"{ "h" : "a\u00e9" , "n":1.50 }"#);
        assert_eq!((event.channel.as_str(), event.ts_ns), ("news", 5));
    }

    #[test]
    fn bad_events_have_codes() {
        let code = |t: &str| Event::parse(t.as_bytes(), 8).unwrap_err().code();
        assert_eq!(code("{"), "bad_json");
        assert_eq!(code(r#"{"channel":"a b","data":1}"#), "invalid_channel");
        assert_eq!(code(r#"{"channel":"user:","data":1}"#), "invalid_channel");
        assert_eq!(code(r#"{"channel":"n"}"#), "missing_field");
        assert_eq!(
            code(r#"{"channel":"n","data":"0123456789"}"#),
            "event_too_large"
        );
        assert_eq!(code(r#"{"channel":"n","data":1,"x":2}"#), "unknown_field");
        assert_eq!(code(r#"{"channel":"n","data":tru}"#), "bad_json");
        assert_eq!(
            code(r#"{"channel":"bars:1m:X","data":1}"#),
            "reserved_channel"
        );
        assert_eq!(
            code(r#"{"channel":"ticker:X","data":1}"#),
            "reserved_channel"
        );
    }

    #[test]
    fn user_channels_are_private() {
        assert_eq!(Channel::parse("user:42").unwrap().owner(), Some("42"));
        assert_eq!(Channel::parse("news").unwrap().owner(), None);
        assert!(!Key::Channel(Channel::parse("news").unwrap()).in_wildcard());
    }

    #[test]
    fn data_a_client_decoder_refuses_is_refused() {
        for data in [
            "8e999",
            r#"{"a":[-1e400]}"#,
            r#""\ud800""#,
            r#"["\udc00x"]"#,
        ] {
            let line = format!(r#"{{"channel":"n","data":{data}}}"#);
            let error = Event::parse(line.as_bytes(), 1024).unwrap_err();
            assert_eq!(
                (error.code(), error.field()),
                (ErrorCode::BadJson, Some("data")),
                "{data}"
            );
        }
        let fine = r#"{"channel":"n","data":[1e308,-0,"\ud83d\ude00",18446744073709551615]}"#;
        assert!(Event::parse(fine.as_bytes(), 1024).is_ok());
    }

    #[test]
    fn data_nested_beyond_the_limit_is_refused_and_brackets_in_strings_do_not_count() {
        let nested = |levels: usize| {
            let data = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
            format!(r#"{{"channel":"n","data":{data}}}"#)
        };
        assert!(Event::parse(nested(MAX_EVENT_DEPTH).as_bytes(), 1 << 16).is_ok());
        let deep = Event::parse(nested(MAX_EVENT_DEPTH + 1).as_bytes(), 1 << 16).unwrap_err();
        assert_eq!(deep.code(), "event_too_deep");
        assert_eq!(deep.field(), Some("data"));
        // The attack: 129 levels in 258 bytes.
        assert!(Event::parse(nested(129).as_bytes(), 1 << 16).is_err());
        let quoted = format!(
            r#"{{"channel":"n","data":{{"a":"{}\"[{{"}}}}"#,
            "[".repeat(100)
        );
        assert!(Event::parse(quoted.as_bytes(), 1 << 16).is_ok(), "{quoted}");
        let objects = format!(
            r#"{{"channel":"n","data":{}1{}}}"#,
            r#"{"a":"#.repeat(MAX_EVENT_DEPTH + 1),
            "}".repeat(MAX_EVENT_DEPTH + 1)
        );
        assert_eq!(
            Event::parse(objects.as_bytes(), 1 << 16)
                .unwrap_err()
                .code(),
            "event_too_deep"
        );
    }

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Event::parse(&bytes, 64);
        }
    }
}
