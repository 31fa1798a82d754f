//! [`ErrorCode`]: every stable error code the relay sends to clients and sources and counts
//! in `/stats` and `/metrics`.
//!
//! Each module owns its error enum; its `code()` returns one of these, so a new variant
//! must choose a code the compiler knows, and every code has its own counter (no run-time
//! lookup, no catch-all). The snake_case name is the wire form and the metrics label.

use strum::{EnumCount, IntoStaticStr, VariantArray};

/// A stable error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, EnumCount, IntoStaticStr, VariantArray)]
#[strum(serialize_all = "snake_case")]
pub enum ErrorCode {
    // ingest and publish
    /// Not JSON, or JSON of the wrong shape.
    BadJson,
    /// Not a valid protobuf message.
    BadProtobuf,
    /// A symbol name that is empty, too long or has a character outside the allowed set.
    InvalidSymbol,
    /// A price or size that is NaN or infinite.
    NotFinite,
    /// A `kind` that is neither trade nor quote.
    UnknownKind,
    /// A field the tick or message needs is missing.
    MissingField,
    /// A venue over its length limit.
    InvalidVenue,
    /// An ingest line or message over `--max-ingest-line`.
    LineTooLong,
    /// A tick or event of a new symbol or channel beyond `--max-symbols`, with no idle key
    /// to evict; answered to its publisher.
    SymbolLimit,
    /// A field the contract does not have (ticks and control messages).
    UnknownField,
    /// A channel name that is empty, too long, has a character outside the allowed set, or
    /// is in the `user:` space (any case) without being `user:<id>` or `user:<id>:<name>`.
    InvalidChannel,
    /// An event whose `data` is over `--max-event-bytes`.
    EventTooLarge,
    /// An event whose `data` nests arrays and objects deeper than
    /// [`MAX_EVENT_DEPTH`](crate::event::MAX_EVENT_DEPTH) levels (clients' JSON decoders
    /// have depth limits: one such event would be undecodable for them).
    EventTooDeep,
    // control messages
    /// A control message that is not valid JSON or protobuf of the right shape.
    BadMessage,
    /// An `op` the relay does not know.
    UnknownOp,
    /// More symbols than `--max-symbols-per-client`.
    TooManySymbols,
    /// More control messages per second than `--max-control-rate`.
    RateLimited,
    /// A resume of symbols the client already receives live.
    AlreadySubscribed,
    /// A binary control frame from a client that is not protobuf.
    BinaryNotSupported,
    // websocket protocol
    /// A frame or reassembled message over `--max-message-bytes`.
    MessageTooBig,
    /// An RFC 6455 violation (unmasked, reserved bits, bad fragmentation, bad close).
    ProtocolError,
    /// A text message that is not UTF-8.
    InvalidUtf8,
    /// A permessage-deflate message that inflates past `--max-message-bytes` (a deflate
    /// bomb); closed with 1009.
    InflatedTooBig,
    /// A permessage-deflate message that is not valid deflate data; closed with 1007.
    BadDeflate,
    // handshake and http
    /// A malformed request or upgrade.
    BadRequest,
    /// An encoding the relay does not speak, or a conflicting choice.
    UnknownEncoding,
    /// A request body over `--max-http-body`.
    BodyTooLarge,
    /// A request body that did not arrive within `--body-timeout` (408).
    BodyTimeout,
    /// A tokenless admin `POST` whose `Content-Type` is neither JSON nor NDJSON (415): what
    /// a browser form or a cross-site `text/plain` request sends.
    UnsupportedMediaType,
    /// `--max-connections` or `--max-connections-per-ip` reached.
    TooManyConnections,
    /// The relay is shutting down and admits no new clients.
    Draining,
    /// The relay is shutting down and accepts no more ticks.
    ShuttingDown,
    /// The request head did not arrive within `--handshake-timeout`.
    HandshakeTimeout,
    /// A TLS handshake on `--listen` failed or did not finish within `--handshake-timeout`.
    TlsHandshake,
    /// No such path.
    NotFound,
    /// The path exists, the method does not.
    MethodNotAllowed,
    /// `/price/{symbol}` of a symbol never seen.
    UnknownSymbol,
    // auth
    /// A token is required and none was given (401, or close 4001 in-band).
    AuthRequired,
    /// A token that does not verify: malformed, bad signature, an algorithm not pinned to
    /// any key (`none`, HS/RS confusion), wrong audience or issuer, bad claims.
    InvalidToken,
    /// A token past its `exp` (401 at connect; close 4002 when it runs out in a session).
    TokenExpired,
    /// A symbol or channel the token does not allow, or another user's `user:` channel.
    Forbidden,
    /// `--max-connections-per-user` reached.
    UserConnectionLimit,
    /// An admin route without the admin token (or, with none configured, from a peer not
    /// on loopback, through a proxy, or with a `Host` that is not the relay's own).
    AdminRequired,
    /// A WebSocket upgrade from a browser `Origin` not in `--allowed-origin`, or a
    /// tokenless admin request from a browser page of another origin (403).
    OriginNotAllowed,
    /// `DELETE /api/sessions/{id}` of a session that is not connected.
    UnknownSession,
    // liveness and flow
    /// A client closed by the slow-consumer policy (4008).
    SlowConsumer,
    /// A client silent for longer than `--idle-timeout` (4009).
    IdleTimeout,
    // scale-out (NATS)
    /// NATS could not be reached or refused a request (publish, stream, consumer): the
    /// sequencer retries (ingest waits meanwhile), an edge keeps serving what it has.
    NatsUnavailable,
    /// A message on a stream subject that is not a tick or event of this relay (bad
    /// subject, header or payload): counted and skipped.
    BadNatsMessage,
    /// A route the relay's `--role` does not serve (publishing to an edge).
    WrongRole,
}

impl ErrorCode {
    /// Every code, in declaration order (the order of `/stats` and `/metrics`).
    pub const ALL: &'static [Self] = Self::VARIANTS;
    /// How many codes there are.
    pub const COUNT: usize = <Self as EnumCount>::COUNT;

    /// The wire form and metrics label, e.g. `bad_json`.
    pub fn as_str(self) -> &'static str {
        self.into()
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl serde::Serialize for ErrorCode {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(self.as_str())
    }
}

/// `code == "bad_json"`: tests and callers compare with the wire form.
impl PartialEq<&str> for ErrorCode {
    fn eq(&self, other: &&str) -> bool {
        self.as_str() == *other
    }
}

/// A value a client or source sent, cut to its first 80 characters for an error message (the
/// message names what was wrong without echoing an arbitrarily long input).
pub fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_snake_case_names() {
        let names: std::collections::BTreeSet<&str> =
            ErrorCode::ALL.iter().map(|c| c.as_str()).collect();
        assert_eq!(names.len(), ErrorCode::COUNT);
        assert_eq!(ErrorCode::BadJson.as_str(), "bad_json");
        assert_eq!(ErrorCode::InvalidUtf8.as_str(), "invalid_utf8");
        assert!(names.iter().all(|n| {
            n.chars()
                .all(|c| c.is_ascii_lowercase() || c == '_' || c.is_ascii_digit())
        }));
    }
}
