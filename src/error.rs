//! Every wire fact about errors, each written once: [`ErrorCode`] (the stable error codes the
//! relay sends to clients and sources and counts in `/stats` and `/metrics`), and
//! [`CloseCode`] (the WebSocket close codes it sends).
//!
//! One row per error in [`errors!`]: its wire name (also the metrics label), the close code
//! that follows it when it ends a session, and the HTTP status it is answered with before
//! an upgrade or on an HTTP route. Each module owns its error enum; its `code()` returns one
//! of these, so a new variant must choose a code the compiler knows, and every code has its
//! own counter (no run-time lookup, no catch-all). Nothing else in the relay writes a close
//! code or an error's status as a literal.

use hyper::StatusCode;

/// The error table: `Name "wire_name" close(CLOSE_CODE | -) http(status);`, one row per code,
/// with its doc line. `close(-)`: the error never ends a session by itself.
macro_rules! errors {
    ($( $(#[doc = $doc:literal])* $name:ident $wire:literal close($($close:ident)?$(-)?) http($status:literal); )*) => {
        /// A stable error code.
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $name, )*
        }

        impl ErrorCode {
            /// Every code, in table order (the order of `/stats` and `/metrics`).
            pub const ALL: &'static [Self] = &[$(Self::$name),*];
            /// How many codes there are.
            pub const COUNT: usize = Self::ALL.len();

            /// The wire form and metrics label, e.g. `bad_json`.
            pub fn as_str(self) -> &'static str {
                match self {
                    $( Self::$name => $wire, )*
                }
            }

            /// The close code that follows this error when it ends a session (`None`: it
            /// never does by itself).
            pub fn close(self) -> Option<CloseCode> {
                match self {
                    $( Self::$name => errors!(@close $($close)?), )*
                }
            }

            /// The HTTP status this error is answered with (before an upgrade, or on an
            /// HTTP route).
            pub fn http_status(self) -> StatusCode {
                let status = match self {
                    $( Self::$name => $status, )*
                };
                StatusCode::from_u16(status).expect("every status in the table is in 100..=999")
            }
        }
    };
    (@close $close:ident) => { Some(CloseCode::$close) };
    (@close) => { None };
}

errors! {
    // ingest and publish: every decode error is a 400 naming the line or field
    /// Not JSON, or JSON of the wrong shape.
    BadJson "bad_json" close(-) http(400);
    /// Not a valid protobuf message.
    BadProtobuf "bad_protobuf" close(-) http(400);
    /// A symbol name that is empty, too long or has a character outside the allowed set.
    InvalidSymbol "invalid_symbol" close(-) http(400);
    /// A price or size that is NaN or infinite.
    NotFinite "not_finite" close(-) http(400);
    /// A `kind` that is neither trade nor quote.
    UnknownKind "unknown_kind" close(-) http(400);
    /// A field the tick or message needs is missing.
    MissingField "missing_field" close(-) http(400);
    /// A venue over its length limit.
    InvalidVenue "invalid_venue" close(-) http(400);
    /// An ingest line or message over `--max-ingest-line`.
    LineTooLong "line_too_long" close(-) http(400);
    /// A tick or event of a new symbol or channel beyond `--max-symbols`, with no idle key
    /// to evict; answered to its publisher (503: room returns as keys go idle).
    SymbolLimit "symbol_limit" close(-) http(503);
    /// A publisher's hello (acknowledged ingest) that is not the connection's first line,
    /// or names a bad publisher id or pseq; a bad first hello closes the connection.
    BadHello "bad_hello" close(-) http(400);
    /// A tagged item of a publisher id new to the relay when it already remembers
    /// [`MAX_PUBLISHERS`](crate::limits::MAX_PUBLISHERS) publishers (503: not stored).
    PublisherLimit "publisher_limit" close(-) http(503);
    /// A field the contract does not have (ticks and control messages).
    UnknownField "unknown_field" close(-) http(400);
    /// A channel name that is empty, too long, has a character outside the allowed set, or
    /// is in the `user:` space (any case) without being `user:<id>` or `user:<id>:<name>`.
    InvalidChannel "invalid_channel" close(-) http(400);
    /// An event whose `data` is over `--max-event-bytes`.
    EventTooLarge "event_too_large" close(-) http(400);
    /// An event whose `data` nests arrays and objects deeper than
    /// [`MAX_EVENT_DEPTH`](crate::event::MAX_EVENT_DEPTH) levels (clients' JSON decoders
    /// have depth limits: one such event would be undecodable for them).
    EventTooDeep "event_too_deep" close(-) http(400);
    /// An event published on a channel name the relay reserves for what it derives itself
    /// (`book:`, `bars:`, `ticker:`).
    ReservedChannel "reserved_channel" close(-) http(400);
    // order books
    /// A book price or size that is not a decimal number, or has more than 28 digits or
    /// decimal places.
    BadDecimal "bad_decimal" close(-) http(400);
    /// A book level with a size below zero.
    NegativeSize "negative_size" close(-) http(400);
    /// A book delta before any snapshot of that book.
    BookNoSnapshot "book_no_snapshot" close(-) http(400);
    /// A book update that would leave the best bid at or above the best ask.
    BookCrossed "book_crossed" close(-) http(400);
    /// A book update that would leave a side deeper than `--book-max-levels`.
    BookTooDeep "book_too_deep" close(-) http(400);
    // control messages (at connect, a bad symbol list is a 400)
    /// A control message that is not valid JSON or protobuf of the right shape.
    BadMessage "bad_message" close(-) http(400);
    /// An `op` the relay does not know.
    UnknownOp "unknown_op" close(-) http(400);
    /// More symbols than `--max-symbols-per-client`.
    TooManySymbols "too_many_symbols" close(-) http(400);
    /// More control messages per second than `--max-control-rate`.
    RateLimited "rate_limited" close(-) http(429);
    /// A resume of symbols the client already receives live.
    AlreadySubscribed "already_subscribed" close(-) http(409);
    /// A binary control frame from a client that is not protobuf.
    BinaryNotSupported "binary_not_supported" close(-) http(400);
    // websocket protocol (RFC 6455 §7.4.1)
    /// A frame or reassembled message over `--max-message-bytes`.
    MessageTooBig "message_too_big" close(TOO_BIG) http(413);
    /// An RFC 6455 violation (unmasked, reserved bits, bad fragmentation, bad close).
    ProtocolError "protocol_error" close(PROTOCOL_ERROR) http(400);
    /// A text message that is not UTF-8.
    InvalidUtf8 "invalid_utf8" close(INVALID_DATA) http(400);
    /// A permessage-deflate message that inflates past `--max-message-bytes` (a deflate
    /// bomb).
    InflatedTooBig "inflated_too_big" close(TOO_BIG) http(413);
    /// A permessage-deflate message that is not valid deflate data.
    BadDeflate "bad_deflate" close(INVALID_DATA) http(400);
    // handshake and http
    /// A malformed request or upgrade.
    BadRequest "bad_request" close(-) http(400);
    /// An encoding the relay does not speak, or a conflicting choice.
    UnknownEncoding "unknown_encoding" close(-) http(400);
    /// A request body over `--max-http-body`.
    BodyTooLarge "body_too_large" close(-) http(413);
    /// A request body that did not arrive within `--body-timeout`.
    BodyTimeout "body_timeout" close(-) http(408);
    /// A tokenless admin `POST` whose `Content-Type` is neither JSON nor NDJSON: what a
    /// browser form or a cross-site `text/plain` request sends.
    UnsupportedMediaType "unsupported_media_type" close(-) http(415);
    /// `--max-connections` or `--max-connections-per-ip` reached.
    TooManyConnections "too_many_connections" close(-) http(503);
    /// The relay is shutting down and admits no new clients.
    Draining "draining" close(-) http(503);
    /// The relay is shutting down and accepts no more ticks.
    ShuttingDown "shutting_down" close(-) http(503);
    /// The request head did not arrive within `--handshake-timeout`.
    HandshakeTimeout "handshake_timeout" close(-) http(408);
    /// A TLS handshake on `--listen` failed or did not finish within `--handshake-timeout`
    /// (counted only: there is no channel to answer on).
    TlsHandshake "tls_handshake" close(-) http(400);
    /// No such path.
    NotFound "not_found" close(-) http(404);
    /// The path exists, the method does not.
    MethodNotAllowed "method_not_allowed" close(-) http(405);
    /// `/price/{symbol}` of a symbol never seen.
    UnknownSymbol "unknown_symbol" close(-) http(404);
    // auth
    /// A token is required and none was given (401, or close 4001 in-band).
    AuthRequired "auth_required" close(AUTH_FAILED) http(401);
    /// A token that does not verify: malformed, bad signature, an algorithm not pinned to
    /// any key (`none`, HS/RS confusion), wrong audience or issuer, bad claims.
    InvalidToken "invalid_token" close(AUTH_FAILED) http(401);
    /// A token past its `exp` (401 at connect; close 4002 when it runs out in a session).
    TokenExpired "token_expired" close(TOKEN_EXPIRED) http(401);
    /// A symbol or channel the token does not allow, or another user's `user:` channel.
    Forbidden "forbidden" close(-) http(403);
    /// `--max-connections-per-user` reached.
    UserConnectionLimit "user_connection_limit" close(AUTH_FAILED) http(429);
    /// An admin route without the admin token (401), or, with none configured, from a peer
    /// not on loopback, through a proxy, or with a `Host` that is not the relay's own (403,
    /// [`ErrorCode::ADMIN_NOT_LOOPBACK`]).
    AdminRequired "admin_required" close(-) http(401);
    /// A WebSocket upgrade from a browser `Origin` not in `--allowed-origin`, or a
    /// tokenless admin request from a browser page of another origin.
    OriginNotAllowed "origin_not_allowed" close(-) http(403);
    /// `DELETE /api/sessions/{id}` of a session that is not connected.
    UnknownSession "unknown_session" close(-) http(404);
    // liveness and flow
    /// A client closed by the slow-consumer policy.
    SlowConsumer "slow_consumer" close(SLOW_CONSUMER) http(503);
    /// A client silent for longer than `--idle-timeout`.
    IdleTimeout "idle_timeout" close(IDLE_TIMEOUT) http(408);
    // scale-out (NATS)
    /// NATS could not be reached or refused a request (publish, stream, consumer): the
    /// sequencer retries (ingest waits meanwhile), an edge keeps serving what it has.
    NatsUnavailable "nats_unavailable" close(-) http(503);
    /// A message on a stream subject that is not a tick or event of this relay (bad
    /// subject, header or payload): counted and skipped.
    BadNatsMessage "bad_nats_message" close(-) http(400);
    /// A route the relay's `--role` does not serve (publishing to an edge).
    WrongRole "wrong_role" close(-) http(404);
}

impl ErrorCode {
    /// The one status that is not its row's: `admin_required` from a peer that is not on
    /// loopback when no admin token is configured (no token could help: 403, not 401).
    pub const ADMIN_NOT_LOOPBACK: StatusCode = StatusCode::FORBIDDEN;
}

/// A WebSocket close code (RFC 6455 §7.4): the standard ones the relay sends, and its own
/// in 4000–4999. Written only in the table below; the echo of a client's own code is the one
/// value from outside it ([`CloseCode::echo`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CloseCode(u16);

/// The close-code table: `NAME code "default reason";`, one row per code the relay sends.
macro_rules! close_codes {
    ($( $(#[doc = $doc:literal])* $name:ident $code:literal $reason:literal; )*) => {
        impl CloseCode {
            $( $(#[doc = $doc])* pub const $name: Self = Self($code); )*
            /// Every close code the relay sends of its own accord, in table order.
            pub const ALL: &'static [Self] = &[$(Self::$name),*];

            /// The reason the relay sends with the code when the situation gives none.
            pub fn reason(self) -> &'static str {
                match self.0 {
                    $( $code => $reason, )*
                    _ => "",
                }
            }
        }
    };
}

close_codes! {
    /// The client's own close, echoed; or a normal end.
    NORMAL 1000 "";
    /// The relay is shutting down (or an edge is restarting): reconnect, elsewhere, and
    /// resume.
    GOING_AWAY 1001 "going away";
    /// An RFC 6455 violation.
    PROTOCOL_ERROR 1002 "protocol error";
    /// Invalid UTF-8 or deflate data.
    INVALID_DATA 1007 "invalid data";
    /// A message over the limit, as sent or inflated.
    TOO_BIG 1009 "message too big";
    /// No valid in-band `auth` (none in time, a refused token, another message first).
    AUTH_FAILED 4001 "authentication failed";
    /// The token ran out without a `refresh`.
    TOKEN_EXPIRED 4002 "token expired";
    /// An operator closed the session (`DELETE /api/sessions/{id}`); the reason is theirs.
    CLOSED_BY_OPERATOR 4003 "closed by operator";
    /// The client's backlog exceeded its budget under `slow=disconnect`.
    SLOW_CONSUMER 4008 "slow consumer";
    /// Nothing received from the client for `--idle-timeout`.
    IDLE_TIMEOUT 4009 "idle timeout";
}

impl CloseCode {
    /// The code a client sent in its own close frame, to echo it (RFC 6455 §5.5.1); the
    /// frame reader has already checked it may be sent.
    pub fn echo(code: u16) -> Self {
        Self(code)
    }

    /// The number on the wire.
    pub fn value(self) -> u16 {
        self.0
    }
}

impl std::fmt::Display for CloseCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
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

/// `a, b or c`: the accepted names an error message lists, built from the set the code
/// accepts so the two cannot drift.
pub fn one_of(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => (*one).to_owned(),
        [rest @ .., last] => format!("{} or {last}", rest.join(", ")),
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

    #[test]
    fn each_wire_name_is_the_variant_in_snake_case() {
        for code in ErrorCode::ALL {
            let mut snake = String::new();
            for (i, c) in format!("{code:?}").chars().enumerate() {
                if c.is_ascii_uppercase() && i > 0 {
                    snake.push('_');
                }
                snake.push(c.to_ascii_lowercase());
            }
            let snake = snake.replace("utf_8", "utf8");
            assert_eq!(code.as_str(), snake);
        }
    }

    #[test]
    fn fatal_errors_close_with_their_rfc_or_relay_code() {
        let close = |c: ErrorCode| c.close().map(CloseCode::value);
        assert_eq!(close(ErrorCode::MessageTooBig), Some(1009));
        assert_eq!(close(ErrorCode::ProtocolError), Some(1002));
        assert_eq!(close(ErrorCode::BadDeflate), Some(1007));
        assert_eq!(close(ErrorCode::TokenExpired), Some(4002));
        assert_eq!(close(ErrorCode::SlowConsumer), Some(4008));
        assert_eq!(close(ErrorCode::Forbidden), None);
        let codes: std::collections::BTreeSet<u16> =
            CloseCode::ALL.iter().map(|c| c.value()).collect();
        assert_eq!(codes.len(), CloseCode::ALL.len(), "one row per code");
        assert!(
            CloseCode::ALL
                .iter()
                .all(|c| matches!(c.value(), 1000..=1015 | 4000..=4999))
        );
        assert_eq!(CloseCode::SLOW_CONSUMER.reason(), "slow consumer");
    }

    #[test]
    fn statuses_are_client_or_server_errors() {
        for code in ErrorCode::ALL {
            let status = code.http_status();
            assert!(
                status.is_client_error() || status.is_server_error(),
                "{code}: {status}"
            );
        }
        assert_eq!(ErrorCode::UserConnectionLimit.http_status(), 429);
        assert_eq!(ErrorCode::Draining.http_status(), 503);
    }

    #[test]
    fn one_of_lists_names_as_a_sentence() {
        assert_eq!(one_of(&[]), "");
        assert_eq!(one_of(&["a"]), "a");
        assert_eq!(one_of(&["a", "b", "c"]), "a, b or c");
    }
}
