//! What the application receives: [`Item`]s, each a tick, a snapshot, an event, a gap, a
//! reset, a relay error or a connection status change.
//!
//! Per key (a symbol or a channel), the ticks, snapshots and events come with strictly
//! increasing seqs, each seq once; anything missing between two of them is named by a
//! [`Gap`] or a [`Reset`] in between, never skipped silently.

use std::fmt;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use crate::derived::{Bar, BarSnapshot, Derived, Ticker};

/// One thing the stream delivers. Serialized (e.g. by the `tail` example) as one JSON object
/// with a `type` field first: `{"type":"tick","symbol":"BTC-USD","seq":17,...}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum Item {
    /// A live tick, or one replayed after a reconnect: the next seq of its symbol.
    Tick(Tick),
    /// The last value of a symbol, sent when it is first subscribed (or after a gap or reset
    /// that a replay could not cover). It counts as that seq: the next tick is `seq + 1`.
    Snapshot(Tick),
    /// An event of a channel (planned relay feature; today's relay sends none).
    Event(Event),
    /// A message of a bars channel (`bars:INTERVAL:SYMBOL`): the open bar now, or a bar
    /// closed.
    Bar(Bar),
    /// A bars channel's last closed bars and open bar (on subscribe, or after a gap). It
    /// counts as its seq: the next bar is `seq + 1`.
    BarSnapshot(BarSnapshot),
    /// A symbol's 24-hour statistics (`ticker:SYMBOL`).
    Ticker(Ticker),
    /// Seqs `from..=to` of a key will never be delivered.
    Gap(Gap),
    /// The history of a key started again (the relay restarted, or the epoch changed): the
    /// next item of this key starts a new sequence, unrelated to the seqs before.
    Reset(Reset),
    /// An error the relay answered to a control message (the connection stays open).
    Error(ServerError),
    /// A message the client could not decode. When it named its key and seq, that seq
    /// counts as delivered; either way the stream goes on.
    Undecodable(Undecodable),
    /// A connection to the relay is up (the first one or a reconnect).
    Connected(Connected),
    /// The connection was lost; the client reconnects by itself and resumes.
    Disconnected(Disconnected),
    /// A `book:` channel's book after a message, its checksum verified.
    Book(crate::book::Book),
    /// A `book:` channel's local book was dropped (checksum mismatch, missing messages)
    /// and is being fetched again; its next [`Item::Book`] is the fresh book.
    BookResync(crate::book::BookResync),
}

/// A market tick, as the relay sends it (see the relay's `docs/PROTOCOL.md`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Tick {
    /// The symbol, e.g. `BTC-USD`.
    pub symbol: String,
    /// Per-symbol sequence number, set by the relay: starts at 1, +1 per tick.
    pub seq: u64,
    /// Trade or quote.
    pub kind: Kind,
    /// Source event time, ns since the Unix epoch, exactly as published.
    pub ts_ns: u64,
    /// Relay ingest time, ns since the Unix epoch.
    pub recv_ns: u64,
    /// Trade price.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub price: Option<f64>,
    /// Trade size.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub size: Option<f64>,
    /// Best bid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid: Option<f64>,
    /// Best ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ask: Option<f64>,
    /// Size at the best bid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bid_size: Option<f64>,
    /// Size at the best ask.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ask_size: Option<f64>,
    /// Trading venue.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub venue: Option<String>,
    /// On a rate tier (`SYMBOL@TIER`): the tier and the seqs this tick stands for; `None` on
    /// the raw stream.
    #[serde(flatten)]
    pub tier: Option<TickTier>,
}

/// What a tick on a rate tier stands for (the relay's docs/PROTOCOL.md, "Rate tiers"): it is
/// the newest of `from_seq..=seq`, and `from_seq` is the previous frame's seq + 1.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct TickTier {
    /// The tier, e.g. `1s`.
    #[serde(rename = "tier")]
    pub name: String,
    /// The first seq this tick stands for.
    pub from_seq: u64,
    /// How many trades `from_seq..=seq` held (quotes are not trades).
    pub trades: u64,
    /// Their summed size.
    pub volume: f64,
    /// Their highest price; `None` when the interval had no priced trade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub high: Option<f64>,
    /// Their lowest price; `None` when the interval had no priced trade.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub low: Option<f64>,
}

/// Trade or quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Kind {
    /// A trade: `price` and usually `size`.
    Trade,
    /// A quote: `bid` and/or `ask`.
    Quote,
}

/// A channel event (news, alerts, fills):
/// `{"type":"event","channel":"news","seq":7,"ts_ns":...,"data":{...}}`.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Event {
    /// The channel, e.g. `news` or `user:42`.
    pub channel: String,
    /// Per-channel sequence number.
    pub seq: u64,
    /// Event time, ns since the Unix epoch.
    pub ts_ns: u64,
    /// The payload, exactly as published.
    pub data: RawJson,
    /// On a rate tier (`CHANNEL@TIER`): the tier and the first seq this event stands for;
    /// `None` on the raw stream.
    #[serde(flatten)]
    pub tier: Option<EventTier>,
}

/// What an event on a rate tier stands for: it is the newest of `from_seq..=seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct EventTier {
    /// The tier, e.g. `5s`.
    #[serde(rename = "tier")]
    pub name: String,
    /// The first seq this event stands for (the previous frame's seq + 1).
    pub from_seq: u64,
}

/// One JSON value kept as its text, exactly as it was published (an event's `data`).
///
/// The client checks that it is one JSON value and does not build it: any value the relay
/// passes on (however deep, whatever its numbers and escapes) is delivered. Read it with
/// [`RawJson::parse`] into the type the application expects, or take the text with
/// [`RawJson::get`]. Serialized, it is the value itself.
#[derive(Clone, Debug)]
pub struct RawJson(Box<RawValue>);

impl RawJson {
    /// Checks that `text` is one JSON value and keeps it.
    pub fn from_string(text: String) -> serde_json::Result<Self> {
        RawValue::from_string(text).map(Self)
    }

    /// Keeps a value serde_json has checked.
    pub(crate) fn from_raw(raw: Box<RawValue>) -> Self {
        Self(raw)
    }

    /// The JSON text.
    pub fn get(&self) -> &str {
        self.0.get()
    }

    /// Deserializes the value into `T` (e.g. `serde_json::Value`, or the application's own
    /// type), with serde_json's limits (a nesting depth of 128).
    pub fn parse<'a, T: Deserialize<'a>>(&'a self) -> serde_json::Result<T> {
        serde_json::from_str(self.0.get())
    }
}

impl PartialEq for RawJson {
    /// The same text (not the same value written differently).
    fn eq(&self, other: &Self) -> bool {
        self.get() == other.get()
    }
}

impl Serialize for RawJson {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        self.0.serialize(serializer)
    }
}

impl fmt::Display for RawJson {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.get())
    }
}

/// A message from the relay that the client could not decode (e.g. an event whose `data` is
/// not JSON, or a frame that is not the encoding's). When it named its key and seq, that seq
/// counts as delivered: no gap follows for it and nothing is resumed again for it.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Undecodable {
    /// The key it named, if that much could be read.
    #[serde(flatten)]
    pub key: Option<Key>,
    /// The seq it named, if that much could be read.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub seq: Option<u64>,
    /// The rate tier it named (`None`: the raw stream, or nothing could be read).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// Why it could not be decoded.
    pub reason: String,
}

/// What a seq belongs to: a symbol's ticks or a channel's events.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Key {
    /// A market symbol.
    Symbol(String),
    /// An event channel.
    Channel(String),
}

/// Seqs `from..=to` of `key` will not be delivered.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Gap {
    /// Whose seqs.
    #[serde(flatten)]
    pub key: Key,
    /// The rate tier whose frames they are (`None`: the raw stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// First missing seq.
    pub from: u64,
    /// Last missing seq (inclusive).
    pub to: u64,
    /// Why they are missing.
    pub reason: GapReason,
}

/// Why a [`Gap`] happened.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The relay conflated them: this client fell behind under `slow=conflate`.
    RelayConflated,
    /// They were older than the relay's replay ring when the client resumed.
    NotReplayable,
    /// The application read too slowly and [`SlowConsumer::Conflate`](crate::SlowConsumer)
    /// kept only the newest value.
    ClientConflated,
    /// A seq arrived further ahead than the next one, with no gap message before it (a
    /// relay fault, or a channel the relay cannot resume).
    Skipped,
}

/// The history of `key` started again: what follows is not a continuation of `last_seq`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Reset {
    /// Whose history.
    #[serde(flatten)]
    pub key: Key,
    /// The rate tier of the subscription (`None`: the raw stream).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tier: Option<String>,
    /// The last seq delivered from the old history.
    pub last_seq: u64,
    /// The seq the new history continues with (the next item of this key has it).
    pub seq: u64,
    /// The relay's epoch for the new history, if it sends one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
}

/// An error the relay answered (`{"type":"error","code":...,"message":...}`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct ServerError {
    /// Stable code, e.g. `invalid_symbol` (docs/PROTOCOL.md lists them).
    pub code: String,
    /// Human-readable detail.
    pub message: String,
}

/// A connection is up.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Connected {
    /// The relay's session id for this connection.
    pub session: u64,
    /// The relay's epoch, if it sends one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub epoch: Option<String>,
    /// How many keys this connection resumed from a known seq.
    pub resumed: usize,
}

/// The connection was lost.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Disconnected {
    /// The close code, if the relay sent a close frame (1001 going away, 4008 slow consumer,
    /// 4009 idle).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub code: Option<u16>,
    /// What happened, for logs.
    pub reason: String,
}

impl From<Derived> for Item {
    fn from(derived: Derived) -> Self {
        match derived {
            Derived::Bar(b) => Self::Bar(b),
            Derived::BarSnapshot(s) => Self::BarSnapshot(s),
            Derived::Ticker(t) => Self::Ticker(t),
        }
    }
}

impl Item {
    /// The key and seq of a tick, snapshot, event, bar or ticker, or of an undecodable
    /// message that named both.
    pub fn seq(&self) -> Option<(Key, u64)> {
        match self {
            Self::Tick(t) | Self::Snapshot(t) => Some((Key::Symbol(t.symbol.clone()), t.seq)),
            Self::Event(e) => Some((Key::Channel(e.channel.clone()), e.seq)),
            Self::Bar(b) => Some((Key::Channel(b.channel.clone()), b.seq)),
            Self::BarSnapshot(s) => Some((Key::Channel(s.channel.clone()), s.seq)),
            Self::Ticker(t) => Some((Key::Channel(t.channel.clone()), t.seq)),
            Self::Undecodable(Undecodable {
                key: Some(key),
                seq: Some(seq),
                ..
            }) => Some((key.clone(), *seq)),
            _ => None,
        }
    }

    /// The rate tier of a tick, snapshot, event, gap, reset or undecodable message; `None`
    /// for the raw stream (and for the items that have no tier).
    pub fn tier(&self) -> Option<&str> {
        match self {
            Self::Tick(t) | Self::Snapshot(t) => t.tier.as_ref().map(|t| t.name.as_str()),
            Self::Event(e) => e.tier.as_ref().map(|t| t.name.as_str()),
            Self::Gap(g) => g.tier.as_deref(),
            Self::Reset(r) => r.tier.as_deref(),
            Self::Undecodable(u) => u.tier.as_deref(),
            _ => None,
        }
    }

    /// The stream and the seqs an item stands for: `first..=seq`, where `first` is a tier
    /// frame's `from_seq` and the seq itself otherwise.
    pub(crate) fn span(&self) -> Option<(Stream, u64, u64)> {
        let (key, seq) = self.seq()?;
        let first = match self {
            Self::Tick(t) | Self::Snapshot(t) => t.tier.as_ref().map(|t| t.from_seq),
            Self::Event(e) => e.tier.as_ref().map(|t| t.from_seq),
            _ => None,
        };
        let stream = Stream {
            key,
            tier: self.tier().map(str::to_owned),
        };
        Some((stream, first.unwrap_or(seq).min(seq), seq))
    }
}

/// One sequence of seqs the client follows: a key's raw stream, or one of its rate tiers
/// (`BTC-USD@1s`), which has seqs of its own. Positions, resumes and conflation are per
/// stream, so a raw subscription and a tier of the same symbol never share one.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub(crate) struct Stream {
    pub(crate) key: Key,
    pub(crate) tier: Option<String>,
}

impl Stream {
    /// A stream as subscribed: `NAME` or `NAME@TIER` (a symbol or channel name has no `@`).
    pub(crate) fn parse(name: &str, key: impl FnOnce(String) -> Key) -> Self {
        match name.split_once('@') {
            Some((name, tier)) => Self {
                key: key(name.to_owned()),
                tier: Some(tier.to_owned()),
            },
            None => Self {
                key: key(name.to_owned()),
                tier: None,
            },
        }
    }

    /// The name it is subscribed and resumed under: `NAME` or `NAME@TIER`.
    pub(crate) fn name(&self) -> String {
        match &self.tier {
            Some(tier) => format!("{}@{tier}", self.key.name()),
            None => self.key.name().to_owned(),
        }
    }
}

impl Key {
    /// The symbol or channel name.
    pub fn name(&self) -> &str {
        match self {
            Self::Symbol(s) | Self::Channel(s) => s,
        }
    }
}
