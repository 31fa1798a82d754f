//! The upgrade request → [`SessionParams`], or a [`HandshakeError`] answered with an HTTP
//! 4xx and a JSON body before any WebSocket exists.
//!
//! `GET /ws?symbols=A,B&channels=news,alerts&encoding=json|protobuf|gzip&slow=disconnect|conflate&resume=A:17,B:4&resume_channels=news:7`;
//! the encoding may come from `Sec-WebSocket-Protocol: tickrelay.<encoding>` instead, and a
//! token from `Authorization: Bearer <jwt>` or `&token=<jwt>`. [`admit`] then decides who
//! the client is (or that it must authenticate in-band) and whether it may read what it
//! asked for.

use hyper::StatusCode;
use hyper::header::{AUTHORIZATION, HeaderMap, SEC_WEBSOCKET_PROTOCOL};

use super::control::{self, ControlError, KeyRules, Positions, Selection};
use crate::auth::{Auth, AuthError, Identity, Token, UserSlot};
use crate::config::{Config, SlowPolicy};
use crate::encode::Encoding;
use crate::encode::deflate::DeflateParams;
use crate::error::{ErrorCode, clip, one_of};
use crate::event::Key;
use crate::tick::Seq;

/// What the session does with client messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// `/ws`: the tick feed; client messages are control messages.
    Feed,
    /// `/echo` (`--conformance-echo`): every message is echoed back, through the same
    /// frame reader, limits and write path as `/ws`.
    Echo,
}

/// What a client asked for at connect.
#[derive(Debug, Clone, PartialEq)]
pub struct SessionParams {
    /// The negotiated encoding.
    pub encoding: Encoding,
    /// Whether it was chosen through `Sec-WebSocket-Protocol` (then the answer names it).
    pub by_subprotocol: bool,
    /// Symbols to subscribe to at once.
    pub selection: Selection,
    /// The slow-consumer policy.
    pub slow: SlowPolicy,
    /// Positions (of symbols and channels) to resume from, and the epoch they belong to
    /// (`&epoch=`).
    pub resume: Positions,
    /// Several messages per frame (`&batch=on`).
    pub batch: bool,
    /// Feed or echo.
    pub mode: Mode,
    /// The bearer token, from the `Authorization` header or `?token=`.
    pub token: Option<Token>,
    /// permessage-deflate as negotiated from `Sec-WebSocket-Extensions` (`None`: plain
    /// frames); set by the upgrade once the offer is accepted.
    pub deflate: Option<DeflateParams>,
}

/// Who a client is once its upgrade is admitted.
#[derive(Debug)]
pub struct Admission {
    /// Its identity; `None`: it must send `{"op":"auth"}` within the handshake timeout.
    pub identity: Option<Identity>,
    /// Its place in its user's connection count.
    pub slot: Option<UserSlot>,
}

impl SessionParams {
    /// The parameters of an `/echo` session (no subscriptions, JSON framing unused).
    pub fn echo() -> Self {
        Self {
            encoding: Encoding::Json,
            by_subprotocol: false,
            selection: Selection::default(),
            slow: SlowPolicy::Disconnect,
            resume: Positions::default(),
            batch: false,
            mode: Mode::Echo,
            token: None,
            deflate: None,
        }
    }
}

/// Why an upgrade was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum HandshakeError {
    /// The encoding named is not one we speak.
    #[error("unknown encoding `{0}`; supported: {names}", names = Encoding::NAMES.join(", "))]
    UnknownEncoding(String),
    /// The query names one encoding and the subprotocol header another.
    #[error("encoding `{query}` in the query conflicts with subprotocol `{header}`")]
    ConflictingEncoding {
        /// From `?encoding=`.
        query: &'static str,
        /// From `Sec-WebSocket-Protocol`.
        header: &'static str,
    },
    /// `encoding=` given twice with different values.
    #[error("`encoding` is given twice with different values")]
    RepeatedEncoding,
    /// A query parameter we do not know.
    #[error("unknown query parameter `{0}`; expected {names}", names = one_of(&Param::NAMES))]
    UnknownParam(String),
    /// `slow=` is not a policy's name.
    #[error("unknown slow-consumer policy `{0}`; expected {names}", names = one_of(&SlowPolicy::NAMES))]
    UnknownPolicy(String),
    /// `batch=` is neither `on` nor `off`.
    #[error("batch `{0}`: expected on or off")]
    BadBatch(String),
    /// `resume=` is not a list of `SYMBOL:SEQ`.
    #[error("resume position `{0}` is not SYMBOL:SEQ")]
    BadResume(String),
    /// `epoch=` is not a positive whole number.
    #[error("epoch `{0}` is not a positive whole number (take it from `welcome`)")]
    BadEpoch(String),
    /// A symbol list problem (invalid name, too many).
    #[error(transparent)]
    Symbols(#[from] ControlError),
    /// Not a WebSocket upgrade request.
    #[error("not a WebSocket upgrade: {0}")]
    NotUpgrade(String),
    /// The relay is shutting down.
    #[error("the relay is shutting down")]
    Draining,
    /// Too many connections.
    #[error("connection limit reached")]
    TooManyConnections,
    /// The token was refused (401), or its user is at its connection limit (429).
    #[error(transparent)]
    Auth(#[from] AuthError),
    /// The token does not allow what the query asks for.
    #[error("not allowed for this token: {0}")]
    Forbidden(String),
    /// A browser `Origin` not in `--allowed-origin`.
    #[error("origin `{0}` is not allowed")]
    Origin(String),
    /// A token in both the header and the query, or a malformed `Authorization` header.
    #[error("{0}")]
    BadToken(&'static str),
}

impl HandshakeError {
    /// Stable code for the JSON body and metrics.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::UnknownEncoding(_)
            | Self::ConflictingEncoding { .. }
            | Self::RepeatedEncoding => ErrorCode::UnknownEncoding,
            Self::Symbols(e) => e.code(),
            Self::Draining => ErrorCode::Draining,
            Self::TooManyConnections => ErrorCode::TooManyConnections,
            Self::Auth(e) => e.code(),
            Self::Forbidden(_) => ErrorCode::Forbidden,
            Self::BadToken(_) => ErrorCode::InvalidToken,
            Self::Origin(_) => ErrorCode::OriginNotAllowed,
            Self::UnknownParam(_)
            | Self::UnknownPolicy(_)
            | Self::BadResume(_)
            | Self::BadBatch(_)
            | Self::BadEpoch(_)
            | Self::NotUpgrade(_) => ErrorCode::BadRequest,
        }
    }

    /// The HTTP status to answer with: its code's (the error table).
    pub fn status(&self) -> StatusCode {
        self.code().http_status()
    }
}

/// Every query parameter `/ws` accepts, by name (docs/PROTOCOL.md, "Connecting").
pub const QUERY_PARAMS: [&str; 9] = Param::NAMES;

/// Every query parameter `/ws` accepts, by its name: the parser matches on it, and the
/// `bad_request` message for an unknown one lists them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Param {
    Symbols,
    Channels,
    Encoding,
    Slow,
    Resume,
    ResumeChannels,
    Epoch,
    Token,
    Batch,
}

impl Param {
    const ALL: [Self; 9] = [
        Self::Symbols,
        Self::Channels,
        Self::Encoding,
        Self::Slow,
        Self::Resume,
        Self::ResumeChannels,
        Self::Epoch,
        Self::Token,
        Self::Batch,
    ];
    const NAMES: [&'static str; 9] = [
        "symbols",
        "channels",
        "encoding",
        "slow",
        "resume",
        "resume_channels",
        "epoch",
        "token",
        "batch",
    ];

    fn parse(name: &str) -> Option<Self> {
        let at = Self::NAMES.iter().position(|n| *n == name)?;
        Some(Self::ALL[at])
    }
}

/// Reads the session parameters from the upgrade request's query and headers.
pub fn parse(
    query: Option<&str>,
    headers: &HeaderMap,
    config: &Config,
    rules: &KeyRules,
) -> Result<SessionParams, HandshakeError> {
    let mut params = SessionParams {
        encoding: Encoding::Json,
        by_subprotocol: false,
        selection: Selection::default(),
        slow: config.slow_policy,
        resume: Positions::default(),
        batch: false,
        mode: Mode::Feed,
        token: bearer(headers)?,
        deflate: None,
    };
    let mut epoch = None;
    let mut query_encoding = None;
    let mut resume_symbols = Vec::new();
    let mut resume_channels = Vec::new();
    let query = form_urlencoded::parse(query.unwrap_or("").as_bytes()).collect::<Vec<_>>();
    for (key, value) in &query {
        let param = Param::parse(key).ok_or_else(|| HandshakeError::UnknownParam(clip(key)))?;
        match param {
            Param::Symbols => {
                let names = value.split(',').map(str::trim).filter(|s| !s.is_empty());
                let more = Selection::parse(names, rules)?;
                merge(&mut params.selection, more, config.max_symbols_per_client)?;
            }
            Param::Channels => {
                let names = value.split(',').map(str::trim).filter(|s| !s.is_empty());
                params.selection.add_channels(names, rules)?;
            }
            Param::Encoding => {
                let encoding = Encoding::parse(value)
                    .ok_or_else(|| HandshakeError::UnknownEncoding(clip(value)))?;
                if query_encoding.is_some_and(|q| q != encoding) {
                    return Err(HandshakeError::RepeatedEncoding);
                }
                query_encoding = Some(encoding);
            }
            Param::Slow => {
                params.slow = SlowPolicy::parse(value)
                    .ok_or_else(|| HandshakeError::UnknownPolicy(clip(value)))?;
            }
            Param::Token => {
                if params.token.is_some() {
                    return Err(HandshakeError::BadToken(
                        "give the token once: Authorization header or ?token=",
                    ));
                }
                params.token = Some(Token(value.to_string()));
            }
            Param::Batch => {
                params.batch = match &**value {
                    "on" => true,
                    "off" => false,
                    other => return Err(HandshakeError::BadBatch(clip(other))),
                };
            }
            Param::Resume => resume_symbols = positions(value)?,
            Param::ResumeChannels => resume_channels = positions(value)?,
            Param::Epoch => {
                let value: u64 = value
                    .parse()
                    .ok()
                    .filter(|e| *e > 0)
                    .ok_or_else(|| HandshakeError::BadEpoch(clip(value)))?;
                epoch = Some(value);
            }
        }
    }
    if !resume_symbols.is_empty() || !resume_channels.is_empty() {
        params.resume = control::resume_keys(resume_symbols, resume_channels, rules)?;
    }
    check_keys(&params, config)?;
    params.resume.epoch = epoch;
    (params.encoding, params.by_subprotocol) = negotiate(query_encoding, headers)?;
    Ok(params)
}

/// Refuses a connect-time request holding more than `--max-symbols-per-client` keys (named
/// and resumed), or a derived channel this relay does not serve.
fn check_keys(params: &SessionParams, config: &Config) -> Result<(), HandshakeError> {
    let limit = config.max_symbols_per_client;
    let named = params.selection.keys();
    let resumed = params.resume.iter().map(|(key, _)| key);
    control::check_derived_channels(named.iter().chain(resumed.clone()), config)?;
    let requested = params.selection.len() + resumed.filter(|k| !named.contains(k)).count();
    if requested > limit {
        return Err(ControlError::TooManySymbols { requested, limit }.into());
    }
    Ok(())
}

/// The encoding from `?encoding=` and `Sec-WebSocket-Protocol` (which must agree when both
/// are given), and whether the subprotocol chose it (then the answer names it).
fn negotiate(
    query: Option<Encoding>,
    headers: &HeaderMap,
) -> Result<(Encoding, bool), HandshakeError> {
    Ok(match (query, subprotocol(headers)?) {
        (Some(q), Some(h)) if q != h => {
            return Err(HandshakeError::ConflictingEncoding {
                query: q.as_str(),
                header: h.subprotocol(),
            });
        }
        (_, Some(h)) => (h, true),
        (Some(q), None) => (q, false),
        (None, None) => (Encoding::Json, false),
    })
}

/// Decides who the client is: the identity of a valid token, anonymous (auth off, or
/// `--allow-anonymous` and no token), or pending an in-band auth (no token). A connect-time
/// subscription the identity may not read is refused (403) before the upgrade.
pub fn admit(params: &SessionParams, auth: &Auth) -> Result<Admission, HandshakeError> {
    let identity = match &params.token {
        Some(token) => Some(auth.verify(token)?),
        None => auth.tokenless(),
    };
    let Some(identity) = identity else {
        return Ok(Admission {
            identity: None,
            slot: None,
        });
    };
    let refused = forbidden(&identity, &params.selection, &params.resume);
    if !refused.is_empty() {
        return Err(HandshakeError::Forbidden(refused));
    }
    let slot = auth.slot(&identity)?;
    Ok(Admission {
        identity: Some(identity),
        slot,
    })
}

/// The names in `selection` and `resume` that `identity` may not read, comma-separated
/// (empty: all allowed).
pub fn forbidden(identity: &Identity, selection: &Selection, resume: &[(Key, Seq)]) -> String {
    let mut refused: Vec<&str> = Vec::new();
    if selection.all && !identity.may_read_all() {
        refused.push("*");
    }
    let named = selection.keys();
    refused.extend(
        named
            .iter()
            .chain(resume.iter().map(|(k, _)| k))
            .filter(|k| !identity.may_read(k))
            .map(Key::as_str),
    );
    refused.join(",")
}

/// The token of an `Authorization: Bearer` header (the scheme in any case).
fn bearer(headers: &HeaderMap) -> Result<Option<Token>, HandshakeError> {
    let Some(value) = headers.get(AUTHORIZATION) else {
        return Ok(None);
    };
    let token = crate::auth::bearer(value.as_bytes())
        .and_then(|t| std::str::from_utf8(t).ok())
        .ok_or(HandshakeError::BadToken(
            "the Authorization header must be `Bearer <token>`",
        ))?;
    Ok(Some(Token(token.to_owned())))
}

/// The first `tickrelay.*` subprotocol offered; an error if only unknown ones are offered.
fn subprotocol(headers: &HeaderMap) -> Result<Option<Encoding>, HandshakeError> {
    let mut offered = Vec::new();
    for value in headers.get_all(SEC_WEBSOCKET_PROTOCOL) {
        let Ok(text) = value.to_str() else {
            return Err(HandshakeError::UnknownEncoding(
                "<non-ASCII subprotocol>".into(),
            ));
        };
        offered.extend(
            text.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(str::to_owned),
        );
    }
    if offered.is_empty() {
        return Ok(None);
    }
    offered
        .iter()
        .find_map(|name| Encoding::from_subprotocol(name))
        .map(Some)
        .ok_or_else(|| HandshakeError::UnknownEncoding(clip(&offered.join(", "))))
}

/// Parses a `NAME:SEQ,NAME:SEQ` list (the name may itself contain `:`; the seq is last).
fn positions(value: &str) -> Result<Vec<(&str, u64)>, HandshakeError> {
    let mut positions = Vec::new();
    for item in value.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let (name, seq) = item
            .rsplit_once(':')
            .ok_or_else(|| HandshakeError::BadResume(clip(item)))?;
        let seq: u64 = seq
            .parse()
            .map_err(|_| HandshakeError::BadResume(clip(item)))?;
        positions.push((name, seq));
    }
    Ok(positions)
}

fn merge(into: &mut Selection, more: Selection, limit: usize) -> Result<(), HandshakeError> {
    into.all |= more.all;
    for symbol in more.symbols {
        if !into.symbols.contains(&symbol) {
            into.symbols.push(symbol);
        }
    }
    if into.len() > limit {
        return Err(ControlError::TooManySymbols {
            requested: into.len(),
            limit,
        }
        .into());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use hyper::header::HeaderValue;

    fn parse_q(query: &str, protocol: Option<&str>) -> Result<SessionParams, HandshakeError> {
        let mut headers = HeaderMap::new();
        if let Some(p) = protocol {
            headers.insert(SEC_WEBSOCKET_PROTOCOL, HeaderValue::from_str(p).unwrap());
        }
        let config = Config::for_tests();
        let rules = KeyRules {
            limit: config.max_symbols_per_client,
            tiers: crate::event::Tiers::new(&config.rate_tiers),
        };
        parse(Some(query), &headers, &config, &rules)
    }

    #[test]
    fn a_token_admits_what_it_may_read_and_refuses_the_rest_before_the_upgrade() {
        use super::super::testkit::{token, with_tokens};
        let auth = Auth::from_config(&with_tokens(Config::for_tests())).expect("auth on");
        let bob = token("bob", Some(&["BTC"]), 600);
        let allowed = parse_q(&format!("symbols=BTC&token={bob}"), None).unwrap();
        let admission = admit(&allowed, &auth).expect("admitted");
        assert!(
            admission
                .identity
                .is_some_and(|id| id.user.as_deref() == Some("bob"))
        );
        let wider = parse_q(&format!("symbols=BTC,ETH&token={bob}"), None).unwrap();
        match admit(&wider, &auth) {
            Err(HandshakeError::Forbidden(names)) => assert_eq!(names, "ETH"),
            other => panic!("{:?}", other.map(|a| a.identity.is_some())),
        }
        // Every symbol (`*`) only for a token that may read them all.
        let every = parse_q(&format!("symbols=*&token={bob}"), None).unwrap();
        match admit(&every, &auth) {
            Err(HandshakeError::Forbidden(names)) => assert_eq!(names, "*"),
            other => panic!("{:?}", other.map(|a| a.identity.is_some())),
        }
        let alice = token("alice", None, 600);
        let every = parse_q(&format!("symbols=*&token={alice}"), None).unwrap();
        assert!(admit(&every, &auth).is_ok_and(|a| a.identity.is_some()));
        // No token on a relay that requires one: pending an in-band auth, reading nothing.
        let pending = admit(&parse_q("symbols=ETH", None).unwrap(), &auth).expect("pending");
        assert!(pending.identity.is_none() && pending.slot.is_none());
    }

    #[test]
    fn a_token_may_come_in_the_authorization_header_once() {
        use super::super::testkit::{token, with_tokens};
        let config = with_tokens(Config::for_tests());
        let auth = Auth::from_config(&config).expect("auth on");
        let rules = KeyRules {
            limit: config.max_symbols_per_client,
            tiers: crate::event::Tiers::new(&config.rate_tiers),
        };
        let bob = token("bob", Some(&["BTC"]), 600);
        let with_header = |value: &str, query: &str| {
            let mut headers = HeaderMap::new();
            headers.insert(AUTHORIZATION, HeaderValue::from_str(value).unwrap());
            parse(Some(query), &headers, &config, &rules)
        };
        let params = with_header(&format!("bearer {bob}"), "symbols=BTC").unwrap();
        let admission = admit(&params, &auth).expect("admitted");
        assert!(
            admission
                .identity
                .is_some_and(|id| id.user.as_deref() == Some("bob"))
        );
        assert!(matches!(
            with_header(
                &format!("Bearer {bob}"),
                &format!("symbols=BTC&token={bob}")
            ),
            Err(HandshakeError::BadToken(_))
        ));
        assert!(matches!(
            with_header(&format!("Basic {bob}"), "symbols=BTC"),
            Err(HandshakeError::BadToken(_))
        ));
    }

    #[test]
    fn defaults_to_json_and_reads_symbols() {
        let p = parse_q("symbols=BTC-USD,ETH-USD", None).unwrap();
        assert_eq!(p.encoding, Encoding::Json);
        assert_eq!(p.selection.symbols.len(), 2);
        assert!(!p.by_subprotocol);
    }

    #[test]
    fn reads_channels_and_skips_empty_names() {
        let p = parse_q("channels=news,%20,alerts@1s,&symbols=BTC,,", None).unwrap();
        let names: Vec<&str> = p.selection.channels.iter().map(Key::as_str).collect();
        assert_eq!(names, ["news", "alerts@1s"]);
        assert_eq!(p.selection.symbols.len(), 1);
    }

    #[test]
    fn encoding_by_query_or_subprotocol() {
        assert_eq!(
            parse_q("encoding=gzip", None).unwrap().encoding,
            Encoding::Gzip
        );
        let p = parse_q("", Some("chat, tickrelay.protobuf")).unwrap();
        assert_eq!((p.encoding, p.by_subprotocol), (Encoding::Protobuf, true));
        assert!(matches!(
            parse_q("encoding=xml", None),
            Err(HandshakeError::UnknownEncoding(_))
        ));
        assert!(matches!(
            parse_q("", Some("chat")),
            Err(HandshakeError::UnknownEncoding(_))
        ));
        assert!(matches!(
            parse_q("encoding=json", Some("tickrelay.gzip")),
            Err(HandshakeError::ConflictingEncoding { .. })
        ));
        let both = parse_q("encoding=gzip", Some("tickrelay.gzip")).unwrap();
        assert_eq!((both.encoding, both.by_subprotocol), (Encoding::Gzip, true));
        let twice = parse_q("encoding=gzip&encoding=gzip", None).unwrap();
        assert_eq!(
            twice.encoding,
            Encoding::Gzip,
            "the same twice is no conflict"
        );
        assert!(matches!(
            parse_q("encoding=gzip&encoding=json", None),
            Err(HandshakeError::RepeatedEncoding)
        ));
    }

    #[test]
    fn an_epoch_is_a_positive_whole_number() {
        let p = parse_q("resume=BTC:17&epoch=4611686018427387", None).unwrap();
        assert_eq!(p.resume.epoch, Some(4_611_686_018_427_387));
        for bad in ["0", "-1", "x", ""] {
            assert!(
                matches!(
                    parse_q(&format!("epoch={bad}"), None),
                    Err(HandshakeError::BadEpoch(_))
                ),
                "{bad}"
            );
        }
    }

    #[test]
    fn named_and_resumed_keys_together_are_held_to_the_per_client_limit() {
        let limit = Config::for_tests().max_symbols_per_client;
        let names =
            |from: usize, to: usize| (from..to).map(|i| format!("S{i}")).collect::<Vec<_>>();
        let named = names(0, limit).join(",");
        let resumed = |list: Vec<String>| {
            list.iter()
                .map(|n| format!("{n}:1"))
                .collect::<Vec<_>>()
                .join(",")
        };
        // A resumed key also named counts once: exactly the limit.
        let p = parse_q(
            &format!("symbols={named}&resume={}", resumed(names(0, 1))),
            None,
        )
        .expect("at the limit");
        assert_eq!(p.selection.len(), limit);
        // One more key, resumed but not named: over it.
        let over = parse_q(
            &format!(
                "symbols={named}&resume={}",
                resumed(names(limit, limit + 1))
            ),
            None,
        );
        assert!(
            matches!(
                over,
                Err(HandshakeError::Symbols(ControlError::TooManySymbols { requested, limit: l }))
                    if requested == limit + 1 && l == limit
            ),
            "{over:?}"
        );
    }

    #[test]
    fn a_refused_upgrade_answers_its_codes_http_status() {
        let status = |e: HandshakeError| e.status().as_u16();
        assert_eq!(status(HandshakeError::UnknownParam("x".into())), 400);
        assert_eq!(status(HandshakeError::BadToken("expired")), 401);
        assert_eq!(status(HandshakeError::Forbidden("BTC".into())), 403);
        assert_eq!(status(HandshakeError::TooManyConnections), 503);
    }

    #[test]
    fn resume_and_policy_parse() {
        let p = parse_q("resume=BTC-USD:17,ES.FUT:4&slow=conflate&symbols=%2A", None).unwrap();
        assert_eq!(p.resume.len(), 2);
        assert_eq!(p.slow, SlowPolicy::Conflate);
        assert!(p.selection.all);
        let p = parse_q("resume_channels=news:7", None).unwrap();
        assert_eq!(p.resume.len(), 1, "channels alone resume too");
        assert!(matches!(
            parse_q("resume=BTC", None),
            Err(HandshakeError::BadResume(_))
        ));
        assert!(matches!(
            parse_q("colour=red", None),
            Err(HandshakeError::UnknownParam(_))
        ));
    }
}
