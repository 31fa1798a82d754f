//! Pure parsing of client control messages (JSON text, or protobuf `ClientMessage` for
//! protobuf clients) into [`Control`], or a [`ControlError`] with a stable code.

use std::time::Duration;

use crate::auth::{AuthError, Token};
use crate::book::{BOOK_PREFIX, BookChannelError};
use crate::error::{ErrorCode, clip, one_of};
use crate::event::{Channel, Key, Tier, Tiered, Tiers};
use crate::tick::{Seq, Symbol};

mod derived;
mod parser;

pub use derived::check_derived_channels;
pub use parser::ControlParser;

/// A parsed control message.
#[derive(Debug, PartialEq)]
pub enum Control {
    /// Start receiving these symbols.
    Subscribe(Selection),
    /// Stop receiving these symbols.
    Unsubscribe(Selection),
    /// Send the last value of these symbols now.
    Snapshot(Selection),
    /// Answer with `pong` and the same id.
    Ping {
        /// Echoed back.
        id: u64,
    },
    /// Replay each symbol or channel after the given seq, then go live.
    Resume(Positions),
    /// Authenticate a connection opened without a token.
    Auth(Token),
    /// Replace the session's token with a newer one of the same user.
    Refresh(Token),
    /// Send `{"type":"heartbeat"}` every `interval` (zero: stop).
    Heartbeat {
        /// The interval.
        interval: Duration,
    },
}

impl Control {
    /// The keys (and `*`, the bool) whose history the message reads: a subscribe's or
    /// snapshot's last values, a resume's rings (a tier's: its base's). `None` for messages that read none. An edge
    /// makes the shard hold these from the stream before it answers.
    pub fn history_keys(&self) -> Option<(bool, Vec<Key>)> {
        match self {
            Self::Subscribe(selection) | Self::Snapshot(selection) => Some((
                selection.all,
                selection.keys().iter().map(|k| k.base().clone()).collect(),
            )),
            Self::Resume(positions) => Some((
                false,
                positions
                    .iter()
                    .map(|(key, _)| key.base().clone())
                    .collect(),
            )),
            Self::Unsubscribe(_)
            | Self::Ping { .. }
            | Self::Auth(_)
            | Self::Refresh(_)
            | Self::Heartbeat { .. } => None,
        }
    }
}

/// Where a resuming client is: the last seq it has of each symbol or channel, in the history `epoch`
/// names (`None`: the client did not say; the relay then trusts no seq but 0).
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Positions {
    /// Key and the last seq the client has, sorted, no duplicates.
    pub from: Vec<(Key, Seq)>,
    /// The epoch of the history those seqs belong to.
    pub epoch: Option<u64>,
}

impl std::ops::Deref for Positions {
    type Target = [(Key, Seq)];

    fn deref(&self) -> &Self::Target {
        &self.from
    }
}

/// How names parse on this relay: the per-client limit (`--max-symbols-per-client`) and the
/// rate tiers a name may carry after `@` (`--rate-tiers`).
#[derive(Debug, Clone)]
pub struct KeyRules {
    /// Most keys one client may hold (`*` counts as one).
    pub limit: usize,
    /// The tiers `NAME@TIER` may name.
    pub tiers: Tiers,
}

impl KeyRules {
    /// The rules of this relay (its config, its tiers).
    pub fn of(shared: &crate::shared::Shared) -> Self {
        Self {
            limit: shared.config.max_symbols_per_client,
            tiers: shared.tiers.clone(),
        }
    }

    /// `limit` keys, no tiers (tests of the limit alone).
    pub fn limit(limit: usize) -> Self {
        Self {
            limit,
            tiers: Tiers::default(),
        }
    }

    /// A symbol name (`BTC-USD`, `BTC-USD@1s`) as its key.
    pub fn symbol(&self, text: &str) -> Result<Key, ControlError> {
        let invalid = |reason: String| ControlError::InvalidSymbol {
            symbol: clip(text),
            reason,
        };
        let (name, tier) = self.tiers.split(text).map_err(|e| invalid(e.to_string()))?;
        let symbol = Symbol::parse(name).map_err(|e| invalid(e.to_string()))?;
        Ok(tiered(Key::Symbol(symbol), tier))
    }

    /// A channel name (`news`, `news@5s`) as its key.
    pub fn channel(&self, text: &str) -> Result<Key, ControlError> {
        let invalid = |reason: String| ControlError::InvalidChannel {
            channel: clip(text),
            reason,
        };
        let (name, tier) = self.tiers.split(text).map_err(|e| invalid(e.to_string()))?;
        let channel = Channel::parse(name).map_err(|e| invalid(e.to_string()))?;
        if tier.is_some() && channel.is_reserved() && !channel.as_str().starts_with(BOOK_PREFIX) {
            // A derived stream's closed messages cannot be thinned: a later message standing
            // in for a closed bar would leave the client's chart wrong. A book on a tier gets
            // the whole book at the tier's pace (shard/tiers.rs), which thins nothing away.
            return Err(invalid(format!(
                "`{name}` is derived by the relay and has no rate tiers; subscribe to it without `@`"
            )));
        }
        Ok(tiered(Key::Channel(channel), tier))
    }
}

fn tiered(base: Key, tier: Option<Tier>) -> Key {
    match tier {
        Some(tier) => Tiered::key(base, tier),
        None => base,
    }
}

/// A set of symbols (or `*`, every symbol) and event channels, each raw or on a rate tier.
#[derive(Debug, Default, Clone, PartialEq)]
pub struct Selection {
    /// `*` was named.
    pub all: bool,
    /// The symbols named, as keys (a symbol, or a symbol's tier), validated, no duplicates,
    /// in the order given.
    pub symbols: Vec<Key>,
    /// The channels named, as keys (a channel, or a channel's tier), likewise.
    pub channels: Vec<Key>,
}

impl Selection {
    /// Parses a list of symbol names; `*` selects every symbol.
    pub fn parse<'a>(
        names: impl IntoIterator<Item = &'a str>,
        rules: &KeyRules,
    ) -> Result<Self, ControlError> {
        let names: Vec<&str> = names.into_iter().collect();
        if names.len() > rules.limit {
            return Err(ControlError::TooManySymbols {
                requested: names.len(),
                limit: rules.limit,
            });
        }
        let mut selection = Self::default();
        for name in names {
            if name == "*" {
                selection.all = true;
                continue;
            }
            let key = rules.symbol(name)?;
            if !selection.symbols.contains(&key) {
                selection.symbols.push(key);
            }
        }
        Ok(selection)
    }

    /// Parses a list of channel names and adds them (the limit counts symbols too).
    pub fn add_channels<'a>(
        &mut self,
        names: impl IntoIterator<Item = &'a str>,
        rules: &KeyRules,
    ) -> Result<(), ControlError> {
        for name in names {
            let key = rules.channel(name)?;
            if !self.channels.contains(&key) {
                self.channels.push(key);
            }
            if self.len() > rules.limit {
                return Err(ControlError::TooManySymbols {
                    requested: self.len(),
                    limit: rules.limit,
                });
            }
        }
        Ok(())
    }

    /// The symbols and channels named, as keys (not `*`).
    pub fn keys(&self) -> Vec<Key> {
        self.symbols.iter().chain(&self.channels).cloned().collect()
    }

    /// The selection of exactly these keys.
    pub fn of_keys(keys: &[Key]) -> Self {
        let mut selection = Self::default();
        for key in keys {
            if key.is_symbol() {
                selection.symbols.push(key.clone());
            } else {
                selection.channels.push(key.clone());
            }
        }
        selection
    }

    /// How many entries the selection counts for against the per-client limit.
    pub fn len(&self) -> usize {
        self.symbols.len() + self.channels.len() + usize::from(self.all)
    }

    /// Whether nothing is selected.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// Why a control message was refused. Non-fatal: the session answers and stays open.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum ControlError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("invalid control message: {0}")]
    BadMessage(String),
    /// A field no control message has.
    #[error("{0}")]
    UnknownField(String),
    /// An `op` the relay does not know.
    #[error("unknown op `{0}`; expected {names}", names = one_of(&Op::NAMES))]
    UnknownOp(String),
    /// The op needs a field that is missing.
    #[error("`{op}` needs `{field}`")]
    MissingField {
        /// The op.
        op: &'static str,
        /// The missing field.
        field: &'static str,
    },
    /// A symbol name is not valid (or names a tier the relay does not offer).
    #[error("symbol `{symbol}`: {reason}")]
    InvalidSymbol {
        /// The name given (truncated).
        symbol: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A channel name is not valid (or names a tier the relay does not offer).
    #[error("channel `{channel}`: {reason}")]
    InvalidChannel {
        /// The name given (truncated).
        channel: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A `book:` channel of no valid symbol, or of a depth not in `--book-depths`.
    #[error("channel `{channel}`: {reason}")]
    BookChannel {
        /// The name given (truncated).
        channel: String,
        /// What is wrong with it.
        reason: BookChannelError,
    },
    /// More symbols than `--max-symbols-per-client`.
    #[error("{requested} symbols requested, the limit is {limit}")]
    TooManySymbols {
        /// How many the client would hold.
        requested: usize,
        /// The limit.
        limit: usize,
    },
    /// Binary frames carry control messages only for protobuf clients.
    #[error("binary control messages are only for protobuf clients; send JSON text")]
    BinaryNotSupported,
    /// A resume named symbols the session already receives live.
    #[error("already subscribed to {0}; unsubscribe before resuming")]
    AlreadySubscribed(String),
    /// More control messages per second than allowed.
    #[error("more than {0} control messages per second")]
    RateLimited(u32),
    /// Symbols or channels the session's token does not allow.
    #[error("not allowed for this token: {0}")]
    Forbidden(String),
    /// A token was refused, or is needed first.
    #[error(transparent)]
    Auth(#[from] AuthError),
}

impl ControlError {
    /// Stable code: sent in `{"type":"error"}` and used as the metrics label.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::BadMessage(_) | Self::MissingField { .. } => ErrorCode::BadMessage,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::UnknownOp(_) => ErrorCode::UnknownOp,
            Self::InvalidSymbol { .. } => ErrorCode::InvalidSymbol,
            Self::InvalidChannel { .. } | Self::BookChannel { .. } => ErrorCode::InvalidChannel,
            Self::TooManySymbols { .. } => ErrorCode::TooManySymbols,
            Self::BinaryNotSupported => ErrorCode::BinaryNotSupported,
            Self::AlreadySubscribed(_) => ErrorCode::AlreadySubscribed,
            Self::RateLimited(_) => ErrorCode::RateLimited,
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::Auth(e) => e.code(),
        }
    }
}

/// Every op a client may send, by its wire name: the JSON parser matches on it, and the
/// `unknown_op` message lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Op {
    Subscribe,
    Unsubscribe,
    Snapshot,
    Ping,
    Resume,
    Heartbeat,
    Auth,
    Refresh,
}

impl Op {
    const ALL: [Self; 8] = [
        Self::Subscribe,
        Self::Unsubscribe,
        Self::Snapshot,
        Self::Ping,
        Self::Resume,
        Self::Heartbeat,
        Self::Auth,
        Self::Refresh,
    ];
    const NAMES: [&'static str; 8] = [
        "subscribe",
        "unsubscribe",
        "snapshot",
        "ping",
        "resume",
        "heartbeat",
        "auth",
        "refresh",
    ];

    pub(super) fn parse(name: &str) -> Option<Self> {
        let at = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[at])
    }

    pub(super) fn name(self) -> &'static str {
        Self::NAMES[self as usize]
    }
}

/// Parses `SYMBOL:SEQ` positions (the `?resume=` list and the resume op).
pub fn resume<'a>(
    positions: impl IntoIterator<Item = (&'a str, u64)>,
    rules: &KeyRules,
) -> Result<Positions, ControlError> {
    resume_keys(positions, std::iter::empty(), rules)
}

/// Parses symbol and channel positions (`?resume=`, `?resume_channels=`, the resume op);
/// a name may carry its tier (`BTC-USD@1s`).
pub fn resume_keys<'a>(
    symbols: impl IntoIterator<Item = (&'a str, u64)>,
    channels: impl IntoIterator<Item = (&'a str, u64)>,
    rules: &KeyRules,
) -> Result<Positions, ControlError> {
    let limit = rules.limit;
    let mut out = Vec::new();
    let too_many = || ControlError::TooManySymbols {
        requested: limit + 1,
        limit,
    };
    for (name, seq) in symbols {
        if out.len() == limit {
            return Err(too_many());
        }
        out.push((rules.symbol(name)?, Seq(seq)));
    }
    for (name, seq) in channels {
        if out.len() == limit {
            return Err(too_many());
        }
        out.push((rules.channel(name)?, Seq(seq)));
    }
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out.dedup_by(|a, b| a.0 == b.0);
    Ok(Positions {
        from: out,
        epoch: None,
    })
}

/// A heartbeat request of `ms` milliseconds (0: stop): at most [`MAX_HEARTBEAT`], so the
/// session's timer (now + interval) cannot overflow, however large a number the client sends.
fn heartbeat(ms: u64) -> Result<Control, ControlError> {
    let interval = Duration::from_millis(ms);
    if interval > MAX_HEARTBEAT {
        return Err(ControlError::BadMessage(format!(
            "interval_ms {ms} is over {} (an hour)",
            MAX_HEARTBEAT.as_millis()
        )));
    }
    Ok(Control::Heartbeat { interval })
}

/// Longest application heartbeat interval a client may ask for.
pub const MAX_HEARTBEAT: Duration = Duration::from_secs(3600);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use proptest::prelude::*;
    use prost::Message as _;

    fn json(text: &str) -> Result<Control, ControlError> {
        ControlParser::new(KeyRules::limit(3)).json(&mut text.as_bytes().to_vec())
    }

    #[test]
    fn an_op_missing_its_field_is_named_in_the_error() {
        for (op, field) in [
            ("subscribe", "symbols"),
            ("unsubscribe", "symbols"),
            ("snapshot", "symbols"),
            ("resume", "from"),
            ("heartbeat", "interval_ms"),
            ("auth", "token"),
            ("refresh", "token"),
        ] {
            let error = json(&format!(r#"{{"op":"{op}"}}"#)).expect_err(op);
            assert_eq!(error, ControlError::MissingField { op, field });
            assert_eq!(error.to_string(), format!("`{op}` needs `{field}`"));
        }
        for op in Op::ALL {
            assert_eq!(Op::parse(op.name()), Some(op), "{op:?}");
        }
    }

    #[test]
    fn channels_up_to_the_limit_are_taken_and_one_more_is_refused() {
        let Control::Subscribe(sel) = json(r#"{"op":"subscribe","channels":["a","b","c"]}"#)
            .expect("three channels at a limit of three")
        else {
            panic!("subscribe")
        };
        assert_eq!(sel.channels.len(), 3);
        assert_eq!(
            json(r#"{"op":"subscribe","channels":["a","b","c","d"]}"#),
            Err(ControlError::TooManySymbols {
                requested: 4,
                limit: 3
            })
        );
    }

    #[test]
    fn the_history_a_message_reads_is_its_keys_or_star_and_none_for_the_rest() {
        let keys = |text: &str| {
            json(text).unwrap().history_keys().map(|(all, keys)| {
                let names: Vec<String> = keys.iter().map(|k| k.as_str().to_owned()).collect();
                (all, names)
            })
        };
        let named = Some((false, vec!["A".to_owned(), "B".to_owned()]));
        assert_eq!(keys(r#"{"op":"subscribe","symbols":["A","B"]}"#), named);
        assert_eq!(keys(r#"{"op":"snapshot","symbols":["A","B"]}"#), named);
        assert_eq!(keys(r#"{"op":"resume","from":{"B":3,"A":9}}"#), named);
        assert_eq!(
            keys(r#"{"op":"subscribe","symbols":["*"],"channels":["news"]}"#),
            Some((true, vec!["news".to_owned()]))
        );
        assert_eq!(keys(r#"{"op":"unsubscribe","symbols":["A"]}"#), None);
        assert_eq!(keys(r#"{"op":"ping","id":7}"#), None);
    }

    #[test]
    fn ops_parse() {
        let Control::Subscribe(sel) =
            json(r#"{"op":"subscribe","symbols":["A","*","A"]}"#).unwrap()
        else {
            panic!("subscribe")
        };
        assert!(sel.all);
        assert_eq!(sel.symbols.len(), 1);
        assert_eq!(
            json(r#"{"op":"ping","id":7}"#).unwrap(),
            Control::Ping { id: 7 }
        );
        let Control::Resume(from) = json(r#"{"op":"resume","from":{"B":3,"A":9}}"#).unwrap() else {
            panic!("resume")
        };
        assert_eq!(from[0].0.as_str(), "A");
        assert_eq!(from[0].1, Seq(9));
        let Control::Subscribe(sel) =
            json(r#"{"op":"subscribe","channels":["news","news","user:7"]}"#).unwrap()
        else {
            panic!("subscribe channels")
        };
        assert_eq!((sel.symbols.len(), sel.channels.len()), (0, 2));
        let Control::Resume(from) = json(r#"{"op":"resume","from_channels":{"news":3}}"#).unwrap()
        else {
            panic!("resume channels")
        };
        assert!(matches!(&from[0], (Key::Channel(c), Seq(3)) if c.as_str() == "news"));
        assert_eq!(
            json(r#"{"op":"subscribe","channels":["user:"]}"#)
                .unwrap_err()
                .code(),
            "invalid_channel"
        );
    }

    #[test]
    fn errors_have_stable_codes() {
        let code = |t: &str| json(t).unwrap_err().code();
        assert_eq!(code("{"), "bad_message");
        assert_eq!(code(r#"{"op":"dance"}"#), "unknown_op");
        assert_eq!(code(r#"{"op":"ping","x":1}"#), "unknown_field");
        assert_eq!(code(r#"{"op":"subscribe"}"#), "bad_message");
        assert_eq!(
            code(r#"{"op":"subscribe","symbols":["a b"]}"#),
            "invalid_symbol"
        );
        assert_eq!(
            code(r#"{"op":"subscribe","symbols":["A","B","C","D"]}"#),
            "too_many_symbols"
        );
    }

    #[test]
    fn protobuf_messages_parse() {
        let msg = proto::ClientMessage {
            msg: Some(proto::client_message::Msg::Subscribe(proto::Symbols {
                symbols: vec!["BTC-USD".into()],
            })),
        };
        let parsed = ControlParser::new(KeyRules::limit(3))
            .protobuf(&msg.encode_to_vec())
            .unwrap();
        assert!(matches!(parsed, Control::Subscribe(s) if s.symbols[0].as_str() == "BTC-USD"));
        assert_eq!(
            ControlParser::new(KeyRules::limit(3))
                .protobuf(&[0xFF, 0x01])
                .unwrap_err()
                .code(),
            "bad_message"
        );
    }

    #[test]
    fn a_selection_counts_its_symbols_and_the_wildcard() {
        let sel =
            |names: &[&str]| Selection::parse(names.iter().copied(), &KeyRules::limit(8)).unwrap();
        assert_eq!((sel(&[]).len(), sel(&[]).is_empty()), (0, true));
        assert_eq!((sel(&["*"]).len(), sel(&["*"]).is_empty()), (1, false));
        assert_eq!((sel(&["A"]).len(), sel(&["A"]).is_empty()), (1, false));
        assert_eq!(sel(&["A", "B", "*"]).len(), 3, "two symbols and *");
        assert_eq!(sel(&["A", "B", "C"]).len(), 3);
    }

    #[test]
    fn a_resume_over_the_limit_reports_one_more_than_the_limit() {
        let err = resume(
            [("A", 1), ("B", 2), ("C", 3), ("D", 4)],
            &KeyRules::limit(3),
        )
        .unwrap_err();
        assert_eq!(
            err,
            ControlError::TooManySymbols {
                requested: 4,
                limit: 3
            }
        );
        assert!(resume([("A", 1), ("B", 2), ("C", 3)], &KeyRules::limit(3)).is_ok());
    }

    #[test]
    fn the_parser_debug_names_its_limit() {
        assert_eq!(
            format!("{:?}", ControlParser::new(KeyRules::limit(3))),
            "ControlParser { limit: 3, .. }"
        );
    }

    /// An op taking a symbol list: its JSON name, and how to build it and its protobuf.
    type SelectionOp = (
        &'static str,
        fn(Selection) -> Control,
        fn(proto::Symbols) -> proto::client_message::Msg,
    );

    /// A valid symbol: 1-64 bytes of the allowed characters.
    fn symbol() -> impl Strategy<Value = String> {
        "[A-Za-z0-9._:/-]{1,64}"
    }

    /// Any well-formed control message, as the `Control` it must parse to and as the
    /// JSON and protobuf a client would send for it.
    fn message() -> impl Strategy<Value = (Control, String, proto::ClientMessage)> {
        use proto::client_message::Msg;
        let names =
            proptest::collection::vec(prop_oneof![4 => symbol(), 1 => Just("*".to_owned())], 0..8);
        prop_oneof![
            (0..3usize, names).prop_map(|(op, names)| {
                let mut expected = Selection::default();
                for name in &names {
                    if name == "*" {
                        expected.all = true;
                    } else {
                        let symbol = Key::Symbol(Symbol::parse(name).unwrap());
                        if !expected.symbols.contains(&symbol) {
                            expected.symbols.push(symbol);
                        }
                    }
                }
                let (word, control, msg): SelectionOp = match op {
                    0 => ("subscribe", Control::Subscribe, Msg::Subscribe),
                    1 => ("unsubscribe", Control::Unsubscribe, Msg::Unsubscribe),
                    _ => ("snapshot", Control::Snapshot, Msg::Snapshot),
                };
                let json = format!(
                    r#"{{"op":"{word}","symbols":{}}}"#,
                    serde_json::to_string(&names).unwrap()
                );
                let proto = proto::ClientMessage {
                    msg: Some(msg(proto::Symbols { symbols: names })),
                };
                (control(expected), json, proto)
            }),
            any::<u64>().prop_map(|id| (
                Control::Ping { id },
                format!(r#"{{"id":{id},"op":"ping"}}"#),
                proto::ClientMessage {
                    msg: Some(Msg::Ping(proto::Ping { id }))
                },
            )),
            proptest::collection::btree_map(symbol(), any::<u64>(), 0..8).prop_map(|from| {
                let expected = Positions {
                    from: from
                        .iter()
                        .map(|(s, q)| (Key::Symbol(Symbol::parse(s).unwrap()), Seq(*q)))
                        .collect(),
                    epoch: None,
                };
                let json = format!(
                    r#"{{"op":"resume","from":{}}}"#,
                    serde_json::to_string(&from).unwrap()
                );
                let proto = proto::ClientMessage {
                    msg: Some(Msg::Resume(proto::Resume {
                        from: from.into_iter().collect(),
                        epoch: 0,
                        ..proto::Resume::default()
                    })),
                };
                (Control::Resume(expected), json, proto)
            }),
            (0..=3_600_000u32).prop_map(|ms| (
                Control::Heartbeat {
                    interval: Duration::from_millis(u64::from(ms))
                },
                format!(r#"{{"op":"heartbeat","interval_ms":{ms}}}"#),
                proto::ClientMessage {
                    msg: Some(Msg::Heartbeat(proto::HeartbeatRequest { interval_ms: ms }))
                },
            )),
        ]
    }

    #[test]
    fn a_tier_thins_an_event_channel_or_paces_a_book_but_a_derived_stream_has_none() {
        let rules = KeyRules {
            limit: 8,
            tiers: Tiers::new(&crate::config::Config::for_tests().rate_tiers),
        };
        for name in [
            "news",
            "news@1s",
            "ticker:A",
            "bars:1m:A",
            "book:A@1s",
            "book:A:10@1s",
        ] {
            let key = rules.channel(name);
            assert!(key.is_ok(), "{name}: {key:?}");
        }
        for name in ["ticker:A@1s", "bars:1m:A@1s"] {
            let error = rules.channel(name).expect_err(name);
            assert!(
                matches!(error, ControlError::InvalidChannel { .. }),
                "{name}: {error:?}"
            );
        }
    }

    #[test]
    fn a_heartbeat_interval_beyond_an_hour_is_refused_not_overflowed() {
        let mut parser = ControlParser::new(KeyRules::limit(8));
        let mut huge = format!(r#"{{"op":"heartbeat","interval_ms":{}}}"#, u64::MAX).into_bytes();
        assert_eq!(parser.json(&mut huge).unwrap_err().code(), "bad_message");
        let proto = proto::ClientMessage {
            msg: Some(proto::client_message::Msg::Heartbeat(
                proto::HeartbeatRequest {
                    interval_ms: u32::MAX,
                },
            )),
        };
        let error = parser.protobuf(&proto.encode_to_vec()).unwrap_err();
        assert_eq!(error.code(), "bad_message");
        let mut hour = br#"{"op":"heartbeat","interval_ms":3600000}"#.to_vec();
        assert_eq!(
            parser.json(&mut hour).unwrap(),
            Control::Heartbeat {
                interval: MAX_HEARTBEAT
            }
        );
    }

    proptest! {
        #[test]
        fn arbitrary_input_never_panics(mut bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let mut parser = ControlParser::new(KeyRules::limit(8));
            let _ = parser.protobuf(&bytes);
            let _ = parser.json(&mut bytes);
        }

        /// Every well-formed message parses to exactly what it says, in JSON and protobuf.
        #[test]
        fn well_formed_messages_parse_to_what_they_say((expected, json, proto) in message()) {
            let mut parser = ControlParser::new(KeyRules::limit(8));
            let from_json = parser.json(&mut json.clone().into_bytes());
            prop_assert_eq!(&from_json, &Ok(expected), "{}", json);
            prop_assert_eq!(parser.protobuf(&proto.encode_to_vec()), from_json);
        }

        /// A list over the limit is refused whatever it holds; at the limit it is accepted.
        #[test]
        fn the_symbol_limit_is_exact(names in proptest::collection::vec(symbol(), 0..12), limit in 0usize..10) {
            let parsed = Selection::parse(names.iter().map(String::as_str), &KeyRules::limit(limit));
            if names.len() > limit {
                prop_assert_eq!(parsed, Err(ControlError::TooManySymbols { requested: names.len(), limit }));
            } else {
                prop_assert!(parsed.is_ok());
            }
        }
    }
}
