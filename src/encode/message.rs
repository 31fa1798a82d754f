//! Server messages other than ticks: welcome, snapshot, acks, errors, pongs, gaps,
//! heartbeats. Encoded per client (they are rare), in the client's encoding.

use serde::Serialize;

use super::{Encoding, json, protobuf};
use crate::book::BookUpdate;
use crate::event::{Item, Key, Tier};
use crate::proto;
use crate::tick::Seq;

/// A server→client message that is not a live tick.
#[derive(Debug)]
pub enum Message<'a> {
    /// First message of a session.
    Welcome {
        /// Session id, unique within the relay's life.
        session: u64,
        /// The shard serving the session.
        shard: u32,
        /// The negotiated encoding.
        encoding: Encoding,
        /// `*` was subscribed at connect.
        all: bool,
        /// The symbols (and symbols' tiers) subscribed at connect.
        symbols: &'a [Key],
        /// The channels (and channels' tiers) subscribed at connect.
        channels: &'a [Key],
        /// The token's subject, if the session has a token.
        user: Option<&'a str>,
        /// When the token runs out, ns since the Unix epoch.
        expires_ns: Option<u64>,
        /// The history this relay serves.
        epoch: u64,
    },
    /// The client's position in `key` belongs to another history: a snapshot of
    /// `epoch`'s follows, never ticks or events continuing the old seqs.
    Reset {
        /// The symbol or channel.
        key: &'a Key,
        /// This relay's epoch.
        epoch: u64,
    },
    /// A token was accepted (`auth` or `refresh`).
    Authenticated {
        /// The token's subject.
        user: &'a str,
        /// When the token runs out, ns since the Unix epoch.
        expires_ns: u64,
    },
    /// The last known value of a symbol (its tick) or channel (its event; a bars channel's
    /// closed bars and open bar; a ticker's statistics).
    Snapshot(&'a Item),
    /// A book message built for this client alone: a snapshot of the shard's copy of the
    /// book, or the merged changes a client that fell behind missed.
    Book(&'a BookUpdate),
    /// A control message took effect: `op` is `subscribed`, `unsubscribed`, `snapshot`, `resumed`, `heartbeat_set`.
    Ack {
        /// What was done.
        op: &'static str,
        /// `*` was among the symbols.
        all: bool,
        /// The symbols (and symbols' tiers) it was done to.
        symbols: &'a [Key],
        /// The channels (and channels' tiers) it was done to.
        channels: &'a [Key],
    },
    /// Something the client sent was wrong.
    Error {
        /// Stable code (docs/PROTOCOL.md).
        code: &'a str,
        /// Human-readable detail.
        message: &'a str,
    },
    /// Answer to `{"op":"ping","id":N}`.
    Pong {
        /// The id the client sent.
        id: u64,
    },
    /// The client will not receive the items `from..=to` of `key`.
    Gap {
        /// The symbol or channel.
        key: &'a Key,
        /// First missing seq.
        from: Seq,
        /// Last missing seq.
        to: Seq,
    },
    /// Application-level heartbeat.
    Heartbeat {
        /// Relay time, ns since the Unix epoch.
        ts_ns: u64,
    },
}

impl Message<'_> {
    /// The JSON text of the message.
    pub fn to_json(&self) -> Vec<u8> {
        fn names(keys: &[Key]) -> Vec<&str> {
            keys.iter().map(Key::as_str).collect()
        }
        let channel_names = names;
        match self {
            Self::Snapshot(item) => {
                let mut out = Vec::with_capacity(256);
                json::write_item(&mut out, item, true);
                out
            }
            Self::Book(book) => {
                let mut out = Vec::with_capacity(256);
                json::write_book(&mut out, book);
                out
            }
            Self::Welcome {
                session,
                shard,
                encoding,
                all,
                symbols,
                channels,
                user,
                expires_ns,
                epoch,
            } => json::to_vec(&JsonWelcome {
                kind: "welcome",
                session: *session,
                shard: *shard,
                encoding: encoding.as_str(),
                symbols: with_all(names(symbols), *all, "*"),
                channels: channel_names(channels),
                server: SERVER,
                user: *user,
                expires_ns: *expires_ns,
                epoch: *epoch,
            }),
            Self::Reset { key, epoch } => json::to_vec(&JsonReset {
                kind: "reset",
                symbol: key.is_symbol().then(|| key.base().as_str()),
                channel: (!key.is_symbol()).then(|| key.base().as_str()),
                tier: key.tier().map(Tier::name),
                epoch: *epoch,
            }),
            Self::Authenticated { user, expires_ns } => json::to_vec(&JsonAuthenticated {
                kind: "authenticated",
                user,
                expires_ns: *expires_ns,
            }),
            Self::Ack {
                op,
                all,
                symbols,
                channels,
            } => json::to_vec(&JsonAck {
                kind: op,
                symbols: with_all(names(symbols), *all, "*"),
                channels: channel_names(channels),
            }),
            Self::Error { code, message } => json::to_vec(&JsonError {
                kind: "error",
                code,
                message,
            }),
            Self::Pong { id } => json::to_vec(&JsonPong {
                kind: "pong",
                id: *id,
            }),
            Self::Gap { key, from, to } => json::to_vec(&JsonGap {
                kind: "gap",
                symbol: key.is_symbol().then(|| key.base().as_str()),
                channel: (!key.is_symbol()).then(|| key.base().as_str()),
                tier: key.tier().map(Tier::name),
                from: from.0,
                to: to.0,
            }),
            Self::Heartbeat { ts_ns } => json::to_vec(&JsonHeartbeat {
                kind: "heartbeat",
                ts_ns: *ts_ns,
            }),
        }
    }

    /// The message as an encoded `tickrelay.v1.ServerMessage`. One arm per message kind,
    /// like [`Message::to_json`]: the length is the list of messages, not logic.
    pub fn to_protobuf(&self) -> Vec<u8> {
        use proto::server_message::Msg;
        let names =
            |keys: &[Key]| -> Vec<String> { keys.iter().map(|k| k.as_str().to_owned()).collect() };
        let channel_names = names;
        // A symbol's key in `symbol`, a channel's in `channel`, its tier in `tier`.
        let split = |key: &Key| {
            let name = key.base().as_str().to_owned();
            let (symbol, channel) = if key.is_symbol() {
                (name, String::new())
            } else {
                (String::new(), name)
            };
            (
                symbol,
                channel,
                key.tier().map_or_else(String::new, |t| t.name().to_owned()),
            )
        };
        let msg = match self {
            Self::Welcome {
                session,
                shard,
                encoding,
                all,
                symbols,
                channels,
                user,
                expires_ns,
                epoch,
            } => Msg::Welcome(proto::Welcome {
                session: *session,
                shard: *shard,
                encoding: encoding.as_str().into(),
                symbols: with_all(names(symbols), *all, "*".to_owned()),
                server: SERVER.into(),
                channels: channel_names(channels),
                user: user.unwrap_or_default().into(),
                expires_ns: expires_ns.unwrap_or(0),
                epoch: *epoch,
            }),
            Self::Reset { key, epoch } => {
                let (symbol, channel, tier) = split(key);
                Msg::Reset(proto::Reset {
                    symbol,
                    channel,
                    tier,
                    epoch: *epoch,
                })
            }
            Self::Authenticated { user, expires_ns } => Msg::Authenticated(proto::Authenticated {
                user: (*user).into(),
                expires_ns: *expires_ns,
            }),
            Self::Snapshot(item) => protobuf::item_message(item, true),
            Self::Book(book) => Msg::Book(protobuf::book_message(book)),
            // A protobuf Ack names symbols only (its shape is fixed); channel ops are
            // acknowledged with a ChannelAck (the session sends one of each for a mixed op).
            Self::Ack {
                op,
                all: false,
                symbols: [],
                channels,
            } if !channels.is_empty() => Msg::ChannelAck(proto::ChannelAck {
                op: (*op).into(),
                channels: channel_names(channels),
            }),
            Self::Ack {
                op, all, symbols, ..
            } => Msg::Ack(proto::Ack {
                op: (*op).into(),
                symbols: with_all(names(symbols), *all, "*".to_owned()),
            }),
            Self::Error { code, message } => Msg::Error(proto::Error {
                code: (*code).into(),
                message: (*message).into(),
            }),
            Self::Pong { id } => Msg::Pong(proto::Pong { id: *id }),
            Self::Gap { key, from, to } => {
                let (symbol, channel, tier) = split(key);
                Msg::Gap(proto::Gap {
                    symbol,
                    from: from.0,
                    to: to.0,
                    channel,
                    tier,
                })
            }
            Self::Heartbeat { ts_ns } => Msg::Heartbeat(proto::Heartbeat { ts_ns: *ts_ns }),
        };
        protobuf::server_message(msg)
    }
}

/// Appends `*` to a symbol list when the selection included it.
fn with_all<T>(mut names: Vec<T>, all: bool, star: T) -> Vec<T> {
    if all {
        names.push(star);
    }
    names
}

/// What `welcome` says the server is.
const SERVER: &str = concat!("tickrelay/", env!("CARGO_PKG_VERSION"));

#[derive(Serialize)]
struct JsonWelcome<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    session: u64,
    shard: u32,
    encoding: &'static str,
    symbols: Vec<&'a str>,
    // Absent when empty: a tick-only client sees exactly what it saw before channels.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    channels: Vec<&'a str>,
    server: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    user: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    expires_ns: Option<u64>,
    epoch: u64,
}

#[derive(Serialize)]
struct JsonReset<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    epoch: u64,
}

#[derive(Serialize)]
struct JsonAuthenticated<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    user: &'a str,
    expires_ns: u64,
}

#[derive(Serialize)]
struct JsonAck<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    symbols: Vec<&'a str>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    channels: Vec<&'a str>,
}

#[derive(Serialize)]
struct JsonError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
}

#[derive(Serialize)]
struct JsonPong {
    #[serde(rename = "type")]
    kind: &'static str,
    id: u64,
}

#[derive(Serialize)]
struct JsonGap<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    #[serde(skip_serializing_if = "Option::is_none")]
    symbol: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    channel: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    tier: Option<&'a str>,
    from: u64,
    to: u64,
}

#[derive(Serialize)]
struct JsonHeartbeat {
    #[serde(rename = "type")]
    kind: &'static str,
    ts_ns: u64,
}
