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

#[cfg(test)]
mod tests {
    use prost::Message as _;
    use serde_json::{Value, json};

    use super::*;
    use crate::event::{Channel, Tiered};
    use crate::tick::{Symbol, sequenced};
    use proto::server_message::Msg;

    fn symbol(name: &str) -> Key {
        Key::Symbol(Symbol::parse(name).expect("a symbol"))
    }

    fn channel(name: &str) -> Key {
        Key::Channel(Channel::parse(name).expect("a channel"))
    }

    fn tiered(base: Key) -> Key {
        Tiered::key(base, Tier::of(std::time::Duration::from_secs(1)))
    }

    fn both(message: &Message<'_>) -> (Value, Msg) {
        let json = serde_json::from_slice(&message.to_json()).expect("JSON");
        let decoded = proto::ServerMessage::decode(&message.to_protobuf()[..]).expect("protobuf");
        (json, decoded.msg.expect("a message"))
    }

    #[test]
    fn welcome_names_the_session_its_keys_and_the_server() {
        let symbols = [symbol("BTC")];
        let channels = [channel("news")];
        let welcome = Message::Welcome {
            session: 3,
            shard: 1,
            encoding: Encoding::Protobuf,
            all: true,
            symbols: &symbols,
            channels: &channels,
            user: Some("alice"),
            expires_ns: Some(99),
            epoch: 7,
        };
        let (json, msg) = both(&welcome);
        assert_eq!(
            json,
            json!({"type":"welcome","session":3,"shard":1,"encoding":"protobuf",
                "symbols":["BTC","*"],"channels":["news"],"server":SERVER,
                "user":"alice","expires_ns":99,"epoch":7})
        );
        let Msg::Welcome(w) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (w.session, w.shard, w.encoding.as_str()),
            (3, 1, "protobuf")
        );
        assert_eq!(
            (w.symbols, w.channels),
            (vec!["BTC".into(), "*".into()], vec!["news".into()])
        );
        assert_eq!(
            (w.user.as_str(), w.expires_ns, w.epoch, w.server.as_str()),
            ("alice", 99, 7, SERVER)
        );
        let anonymous = Message::Welcome {
            session: 1,
            shard: 0,
            encoding: Encoding::Json,
            all: false,
            symbols: &[],
            channels: &[],
            user: None,
            expires_ns: None,
            epoch: 7,
        };
        let (json, _) = both(&anonymous);
        assert_eq!(json["symbols"], json!([]));
        for absent in ["channels", "user", "expires_ns"] {
            assert!(json.get(absent).is_none(), "{absent} left out: {json}");
        }
    }

    #[test]
    fn resets_and_gaps_name_a_symbol_or_a_channel_and_its_tier() {
        let btc = tiered(symbol("BTC"));
        let (json, msg) = both(&Message::Reset {
            key: &btc,
            epoch: 4,
        });
        assert_eq!(
            json,
            json!({"type":"reset","symbol":"BTC","tier":"1s","epoch":4})
        );
        let Msg::Reset(reset) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (
                reset.symbol.as_str(),
                reset.channel.as_str(),
                reset.tier.as_str(),
                reset.epoch
            ),
            ("BTC", "", "1s", 4)
        );
        let news = channel("news");
        let gap = Message::Gap {
            key: &news,
            from: Seq(2),
            to: Seq(5),
        };
        let (json, msg) = both(&gap);
        assert_eq!(json, json!({"type":"gap","channel":"news","from":2,"to":5}));
        let Msg::Gap(gap) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (
                gap.symbol.as_str(),
                gap.channel.as_str(),
                gap.tier.as_str(),
                gap.from,
                gap.to
            ),
            ("", "news", "", 2, 5)
        );
    }

    #[test]
    fn acks_of_symbols_and_of_channels() {
        let symbols = [symbol("A")];
        let channels = [channel("news")];
        let ack = Message::Ack {
            op: "subscribed",
            all: true,
            symbols: &symbols,
            channels: &channels,
        };
        let (json, msg) = both(&ack);
        assert_eq!(
            json,
            json!({"type":"subscribed","symbols":["A","*"],"channels":["news"]})
        );
        let Msg::Ack(ack) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (ack.op.as_str(), ack.symbols),
            ("subscribed", vec!["A".into(), "*".into()])
        );
        let only_channels = Message::Ack {
            op: "unsubscribed",
            all: false,
            symbols: &[],
            channels: &channels,
        };
        let (json, msg) = both(&only_channels);
        assert_eq!(
            json,
            json!({"type":"unsubscribed","symbols":[],"channels":["news"]})
        );
        let Msg::ChannelAck(ack) = msg else {
            panic!("{msg:?}")
        };
        assert_eq!(
            (ack.op.as_str(), ack.channels),
            ("unsubscribed", vec!["news".into()])
        );
        let all_only = Message::Ack {
            op: "subscribed",
            all: true,
            symbols: &[],
            channels: &[],
        };
        let (_, msg) = both(&all_only);
        assert!(
            matches!(msg, Msg::Ack(ref a) if a.symbols == ["*"]),
            "{msg:?}"
        );
        // An op that named nothing gets the plain Ack, which every client knows.
        let nothing = Message::Ack {
            op: "unsubscribed",
            all: false,
            symbols: &[],
            channels: &[],
        };
        let (_, msg) = both(&nothing);
        assert!(
            matches!(msg, Msg::Ack(ref a) if a.symbols.is_empty()),
            "{msg:?}"
        );
    }

    #[test]
    fn the_small_messages_carry_their_fields() {
        let (json, msg) = both(&Message::Authenticated {
            user: "bob",
            expires_ns: 5,
        });
        assert_eq!(
            json,
            json!({"type":"authenticated","user":"bob","expires_ns":5})
        );
        assert!(matches!(msg, Msg::Authenticated(ref a) if a.user == "bob" && a.expires_ns == 5));
        let (json, msg) = both(&Message::Error {
            code: "bad_json",
            message: "nope",
        });
        assert_eq!(
            json,
            json!({"type":"error","code":"bad_json","message":"nope"})
        );
        assert!(matches!(msg, Msg::Error(ref e) if e.code == "bad_json" && e.message == "nope"));
        let (json, msg) = both(&Message::Pong { id: 8 });
        assert_eq!(json, json!({"type":"pong","id":8}));
        assert!(matches!(msg, Msg::Pong(ref p) if p.id == 8));
        let (json, msg) = both(&Message::Heartbeat { ts_ns: 12 });
        assert_eq!(json, json!({"type":"heartbeat","ts_ns":12}));
        assert!(matches!(msg, Msg::Heartbeat(ref h) if h.ts_ns == 12));
        let item = Item::Tick(sequenced("BTC", 9));
        let (json, msg) = both(&Message::Snapshot(&item));
        assert_eq!(
            (json["type"].as_str(), json["seq"].as_u64()),
            (Some("snapshot"), Some(9))
        );
        assert!(matches!(msg, Msg::Snapshot(ref t) if t.seq == 9), "{msg:?}");
    }
}
