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

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ErrorCode;
use crate::tick::{Seq, Symbol, Tick, TickError};
use derived::{Bar, Ticker};

/// An event channel such as `news` or `user:42`: 1 to
/// [`MAX_SYMBOL_LEN`](crate::tick::MAX_SYMBOL_LEN) bytes of
/// `[A-Za-z0-9._:/-]` (the symbol alphabet: nothing to escape in JSON). `user:<id>` is
/// private to the connections whose token subject is `<id>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

impl Channel {
    /// Validates `name` and wraps it; `user:` needs an id after it.
    pub fn parse(name: &str) -> Result<Self, EventError> {
        // Same alphabet and length as symbols; reuse the one check.
        Symbol::parse(name).map_err(EventError::Channel)?;
        if name == USER_PREFIX.trim_end_matches(':') || name == USER_PREFIX {
            return Err(EventError::NoUserId);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The channel's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user a private `user:<id>` channel belongs to; `None` for a public channel.
    pub fn owner(&self) -> Option<&str> {
        self.0.strip_prefix(USER_PREFIX)
    }
}

impl Borrow<str> for Channel {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", &*self.0)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// What a subscriber follows: a symbol's ticks or a channel's events. One key space for seq,
/// last value, replay, resume, subscriptions and interest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// The ticks of a symbol.
    Symbol(Symbol),
    /// The events of a channel.
    Channel(Channel),
}

impl Key {
    /// The name without its kind.
    pub fn as_str(&self) -> &str {
        match self {
            Self::Symbol(s) => s.as_str(),
            Self::Channel(c) => c.as_str(),
        }
    }

    /// Whether `*` (every symbol) covers this key: symbols yes, channels never (a channel
    /// is subscribed by name, so a wildcard cannot reach a private one by accident).
    pub fn in_wildcard(&self) -> bool {
        matches!(self, Self::Symbol(_))
    }
}

impl From<Symbol> for Key {
    fn from(symbol: Symbol) -> Self {
        Self::Symbol(symbol)
    }
}

impl From<Channel> for Key {
    fn from(channel: Channel) -> Self {
        Self::Channel(channel)
    }
}

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
    /// refusing `data` over `max_data` bytes.
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
        if derived::reserved(channel.as_str()) {
            return Err(EventError::Reserved(channel.as_str().to_owned()));
        }
        let data = raw.data.ok_or(EventError::MissingData)?.get().as_bytes();
        if data.len() > max_data {
            return Err(EventError::TooLarge {
                len: data.len(),
                limit: max_data,
            });
        }
        Ok(Self {
            channel,
            data: Bytes::copy_from_slice(data),
            ts_ns: raw.ts_ns.unwrap_or(0),
            seq: Seq(0),
            recv_ns: 0,
        })
    }
}

/// Why bytes are not a valid [`Event`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not an event object.
    #[error("invalid JSON event: {0}")]
    Json(String),
    /// A field an event does not have.
    #[error("{0}")]
    UnknownField(String),
    /// The channel name is not valid.
    #[error("channel: {0}")]
    Channel(TickError),
    /// `user:` without an id.
    #[error("a user channel needs an id: user:<id>")]
    NoUserId,
    /// No `data`.
    #[error("an event needs `data`")]
    MissingData,
    /// A channel only the relay writes (`bars:`, `ticker:`, `book:`).
    #[error(
        "channel `{0}` is computed by the relay: nobody publishes to {names}",
        names = crate::error::one_of(&derived::RESERVED)
    )]
    Reserved(String),
    /// A derived channel the relay does not compute (an interval it is not configured
    /// for, no symbol); the message lists what it accepts.
    #[error("{0}")]
    NotServed(String),
    /// `data` over `--max-event-bytes`.
    #[error("data is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl EventError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Json(_) => ErrorCode::BadJson,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::Channel(_) | Self::NoUserId | Self::NotServed(_) => ErrorCode::InvalidChannel,
            Self::Reserved(_) => ErrorCode::ReservedChannel,
            Self::MissingData => ErrorCode::MissingField,
            Self::TooLarge { .. } => ErrorCode::EventTooLarge,
        }
    }

    /// The field the error is about, when one is to blame.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Channel(_) | Self::NoUserId | Self::Reserved(_) | Self::NotServed(_) => {
                Some("channel")
            }
            Self::MissingData | Self::TooLarge { .. } => Some("data"),
            Self::Json(_) | Self::UnknownField(_) => None,
        }
    }
}

/// What the sequencer sequences: ticks and events from the sources, and the bars and
/// tickers it derives from trades; one stream of sequenced items.
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
}

impl Item {
    /// The key it is sequenced under.
    pub fn key(&self) -> Key {
        match self {
            Self::Tick(t) => Key::Symbol(t.symbol.clone()),
            Self::Event(e) => Key::Channel(e.channel.clone()),
            Self::Bar(b) => Key::Channel(b.channel.clone()),
            Self::Ticker(t) => Key::Channel(t.channel.clone()),
        }
    }

    /// Its per-key seq.
    pub fn seq(&self) -> Seq {
        match self {
            Self::Tick(t) => t.seq,
            Self::Event(e) => e.seq,
            Self::Bar(b) => b.seq,
            Self::Ticker(t) => t.seq,
        }
    }

    /// Sets its per-key seq (the sequencer's job).
    pub fn set_seq(&mut self, seq: Seq) {
        match self {
            Self::Tick(t) => t.seq = seq,
            Self::Event(e) => e.seq = seq,
            Self::Bar(b) => b.seq = seq,
            Self::Ticker(t) => t.seq = seq,
        }
    }

    /// Relay ingest time, ns since the Unix epoch.
    pub fn recv_ns(&self) -> u64 {
        match self {
            Self::Tick(t) => t.recv_ns,
            Self::Event(e) => e.recv_ns,
            Self::Bar(b) => b.recv_ns,
            Self::Ticker(t) => t.recv_ns,
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
            // Built by the relay with their time set.
            Self::Bar(_) | Self::Ticker(_) => {}
        }
    }

    /// The tick, if it is one.
    pub fn tick(&self) -> Option<&Tick> {
        match self {
            Self::Tick(t) => Some(t),
            Self::Event(_) | Self::Bar(_) | Self::Ticker(_) => None,
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

/// The prefix of private per-user channels.
pub const USER_PREFIX: &str = "user:";

#[cfg(test)]
mod tests {
    use super::*;
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

    proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = Event::parse(&bytes, 64);
        }
    }
}
