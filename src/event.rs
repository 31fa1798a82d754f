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
//! exact bytes the publisher sent (it is delivered byte for byte).

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use bytes::Bytes;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::error::ErrorCode;
use crate::tick::{Seq, Symbol, Tick, TickError};

/// An event channel such as `news` or `user:42`: 1 to
/// [`MAX_SYMBOL_LEN`](crate::tick::MAX_SYMBOL_LEN) bytes of
/// `[A-Za-z0-9._:/-]` (the symbol alphabet: nothing to escape in JSON).
///
/// A **private** channel is `user:<id>` or `user:<id>:<name>` (an id and a name are
/// non-empty and hold no `:`): it belongs to the connections whose token subject is `<id>`,
/// so `user:bob:orders` is bob's as `user:bob` is. Any other name whose lowercase starts
/// with `user:` (`USER:bob`, `User:bob`, `user:`, `user::x`, `user:a:b:c`) is refused, so a
/// look-alike can never pass for a public channel beside a private one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

impl Channel {
    /// Validates `name` and wraps it; a name in the `user:` space must be a private
    /// channel's (see [`Channel`]).
    pub fn parse(name: &str) -> Result<Self, EventError> {
        // Same alphabet and length as symbols; reuse the one check.
        Symbol::parse(name).map_err(EventError::Channel)?;
        let prefix = name.get(..USER_PREFIX.len());
        if prefix.is_some_and(|p| p.eq_ignore_ascii_case(USER_PREFIX)) {
            let well_formed = prefix == Some(USER_PREFIX) && {
                let mut parts = name[USER_PREFIX.len()..].split(':');
                let id = parts.next().filter(|id| !id.is_empty());
                let sub = parts.next();
                id.is_some() && sub.is_none_or(|s| !s.is_empty()) && parts.next().is_none()
            };
            if !well_formed {
                return Err(EventError::NotPrivate(crate::error::clip(name)));
            }
        } else if name == USER_PREFIX.trim_end_matches(':') {
            return Err(EventError::NotPrivate(name.to_owned()));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The channel's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user a private channel (`user:<id>` or `user:<id>:<name>`) belongs to; `None`
    /// for a public channel.
    pub fn owner(&self) -> Option<&str> {
        let rest = self.0.strip_prefix(USER_PREFIX)?;
        Some(rest.split_once(':').map_or(rest, |(id, _)| id))
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

/// Checks an event's `data` (one JSON value, already parsed as such) against the limits
/// every source applies: at most `max_data` bytes, nested at most [`MAX_EVENT_DEPTH`] deep,
/// and a value every client decodes: JSON's grammar lets through numbers no double holds
/// (`8e999`) and escapes of lone UTF-16 surrogates (`"\ud800"`), which serde_json (the Rust
/// client's decoder) refuses, so one such event would be as undecodable as a deep one.
pub fn check_data(data: &[u8], max_data: usize) -> Result<(), EventError> {
    if data.len() > max_data {
        return Err(EventError::TooLarge {
            len: data.len(),
            limit: max_data,
        });
    }
    if let Some(depth) = depth_beyond(data, MAX_EVENT_DEPTH) {
        return Err(EventError::TooDeep { depth });
    }
    // Cold path (events, at most --max-event-bytes): a full parse decides it.
    serde_json::from_slice::<serde_json::Value>(data)
        .map(drop)
        .map_err(|e| EventError::Undecodable(e.to_string()))
}

/// How deep `json` (valid JSON) nests arrays and objects, if deeper than `limit`: the scan
/// stops one level past it. Brackets inside strings do not count.
fn depth_beyond(json: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
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
    /// A name in the `user:` space that is not `user:<id>` or `user:<id>:<name>`.
    #[error(
        "`{0}` is not a private channel: write user:<id> or user:<id>:<name> (lowercase `user:`, no empty parts)"
    )]
    NotPrivate(String),
    /// No `data`.
    #[error("an event needs `data`")]
    MissingData,
    /// `data` over `--max-event-bytes`.
    #[error("data is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// `data` that is JSON a client's decoder refuses (a number out of a double's range,
    /// a lone surrogate escape).
    #[error("data: {0}")]
    Undecodable(String),
    /// `data` nested deeper than [`MAX_EVENT_DEPTH`].
    #[error("data nests arrays and objects {depth} levels deep, the limit is {MAX_EVENT_DEPTH}")]
    TooDeep {
        /// How deep it nests (counted up to one past the limit).
        depth: usize,
    },
}

impl EventError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Json(_) | Self::Undecodable(_) => ErrorCode::BadJson,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::Channel(_) | Self::NotPrivate(_) => ErrorCode::InvalidChannel,
            Self::MissingData => ErrorCode::MissingField,
            Self::TooLarge { .. } => ErrorCode::EventTooLarge,
            Self::TooDeep { .. } => ErrorCode::EventTooDeep,
        }
    }

    /// The field the error is about, when one is to blame.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Channel(_) | Self::NotPrivate(_) => Some("channel"),
            Self::MissingData
            | Self::TooLarge { .. }
            | Self::TooDeep { .. }
            | Self::Undecodable(_) => Some("data"),
            Self::Json(_) | Self::UnknownField(_) => None,
        }
    }
}

/// What the sequencer sequences: a tick or an event, one stream of sequenced items.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A market tick.
    Tick(Tick),
    /// A channel event.
    Event(Event),
}

impl Item {
    /// The key it is sequenced under.
    pub fn key(&self) -> Key {
        match self {
            Self::Tick(t) => Key::Symbol(t.symbol.clone()),
            Self::Event(e) => Key::Channel(e.channel.clone()),
        }
    }

    /// Its per-key seq.
    pub fn seq(&self) -> Seq {
        match self {
            Self::Tick(t) => t.seq,
            Self::Event(e) => e.seq,
        }
    }

    /// Sets its per-key seq (the sequencer's job).
    pub fn set_seq(&mut self, seq: Seq) {
        match self {
            Self::Tick(t) => t.seq = seq,
            Self::Event(e) => e.seq = seq,
        }
    }

    /// Relay ingest time, ns since the Unix epoch.
    pub fn recv_ns(&self) -> u64 {
        match self {
            Self::Tick(t) => t.recv_ns,
            Self::Event(e) => e.recv_ns,
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
        }
    }

    /// The tick, if it is one.
    pub fn tick(&self) -> Option<&Tick> {
        match self {
            Self::Tick(t) => Some(t),
            Self::Event(_) => None,
        }
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

/// Deepest nesting of arrays and objects in an event's `data`. The clients' JSON decoders
/// stop at a depth (serde_json at 128 for a whole frame, which wraps `data` in one or two
/// more levels); 32 is far beyond any event's shape and well inside every decoder's limit.
pub const MAX_EVENT_DEPTH: usize = 32;

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
    }

    #[test]
    fn user_channels_are_private() {
        assert_eq!(Channel::parse("user:42").unwrap().owner(), Some("42"));
        assert_eq!(Channel::parse("news").unwrap().owner(), None);
        assert!(!Key::Channel(Channel::parse("news").unwrap()).in_wildcard());
    }

    #[test]
    fn a_private_channel_is_user_id_or_user_id_name_and_look_alikes_are_refused() {
        let owner = |name| Channel::parse(name).unwrap().owner().map(str::to_owned);
        assert_eq!(owner("user:bob:orders").as_deref(), Some("bob"));
        assert_eq!(owner("user:bob").as_deref(), Some("bob"));
        assert_eq!(owner("users").as_deref(), None, "a public channel");
        assert_eq!(owner("User").as_deref(), None, "no `:`: public");
        for name in [
            "USER:bob",
            "User:bob",
            "uSeR:bob",
            "user:",
            "user",
            "user::x",
            "user:bob:",
            "user:a:b:c",
            "USER:",
        ] {
            let error = Channel::parse(name).unwrap_err();
            assert_eq!(error.code(), "invalid_channel", "{name}");
            assert_eq!(error.field(), Some("channel"));
        }
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
