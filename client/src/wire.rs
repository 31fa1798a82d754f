//! The relay's wire facts this client acts on, each written once (docs/PROTOCOL.md): the
//! error codes with the close code and HTTP status that carry them, the close codes that
//! carry no error code, and what the stream does on each. Everything else in the crate asks
//! these tables rather than naming a code.

/// What the stream does when the relay answers with an error or closes with a code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Then {
    /// This relay is stopping or restarting: reconnect at once (after a small jitter only)
    /// and resume, wherever the URL now leads.
    ReconnectNow,
    /// Reconnect after a backoff and resume.
    Reconnect,
    /// Reconnecting would send the same thing again: end the stream with
    /// [`Error::Closed`](crate::Error::Closed) or [`Error::Refused`](crate::Error::Refused).
    Fatal,
    /// The token was refused, ran out, or does not allow what was asked: the same token
    /// cannot do better, so end the stream with
    /// [`Error::Unauthorized`](crate::Error::Unauthorized) (at connect:
    /// [`ConnectError::Unauthorized`](crate::ConnectError::Unauthorized)).
    Unauthorized,
    /// Connect again without the resume list, which is longer than the relay takes.
    ReconnectWithoutResume,
}

/// One error code of the relay: its wire name, the close code that follows it when it ends
/// a session, the HTTP status that refuses an upgrade with it (`None`: never seen on an
/// upgrade), and what the stream does.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct ErrorRow {
    pub(crate) code: &'static str,
    pub(crate) close: Option<u16>,
    pub(crate) http: Option<u16>,
    pub(crate) then: Then,
}

/// The relay's error codes that change what the stream does. An error code not listed is
/// delivered as an [`Item::Error`](crate::Item::Error) and the session goes on.
pub(crate) const ERRORS: &[ErrorRow] = &[
    error("protocol_error", Some(1002), None, Then::Fatal),
    error("message_too_big", Some(1009), None, Then::Fatal),
    error("inflated_too_big", Some(1009), None, Then::Fatal),
    error("bad_deflate", Some(1007), None, Then::Fatal),
    error("invalid_utf8", Some(1007), None, Then::Fatal),
    error("auth_required", Some(4001), Some(401), Then::Unauthorized),
    error("invalid_token", Some(4001), Some(401), Then::Unauthorized),
    error("token_expired", Some(4002), Some(401), Then::Unauthorized),
    error(
        "user_connection_limit",
        Some(4001),
        Some(429),
        Then::Unauthorized,
    ),
    // In a session `forbidden` refuses one subscription and the session goes on; at
    // connect it refuses the connection.
    error("forbidden", None, Some(403), Then::Unauthorized),
    error(
        "too_many_symbols",
        None,
        Some(400),
        Then::ReconnectWithoutResume,
    ),
    error("draining", None, Some(503), Then::Reconnect),
    error("too_many_connections", None, Some(503), Then::Reconnect),
    error("slow_consumer", Some(4008), None, Then::Reconnect),
    error("idle_timeout", Some(4009), None, Then::Reconnect),
];

/// One close code that no error code of [`ERRORS`] carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CloseRow {
    pub(crate) close: u16,
    /// What it says, for logs.
    pub(crate) name: &'static str,
    pub(crate) then: Then,
}

/// Close codes without an error code of their own (RFC 6455 §7.4.1, IANA's registry, and
/// the relay's operator close).
pub(crate) const CLOSES: &[CloseRow] = &[
    close(1000, "normal", Then::Reconnect),
    close(1001, "going_away", Then::ReconnectNow),
    close(1003, "unsupported_data", Then::Fatal),
    close(1012, "service_restart", Then::ReconnectNow),
    close(4003, "closed_by_operator", Then::Reconnect),
];

/// Sent when the relay closes without a code (RFC 6455 §7.1.5: no status code received).
pub(crate) const CLOSE_NO_STATUS: u16 = 1005;

/// An upgrade refused with this status (the relay draining or full, or a proxy in front of
/// it without a relay behind) is tried again whatever its body says.
pub(crate) const HTTP_UNAVAILABLE: u16 = 503;

/// Query parameters of the connect URL (docs/PROTOCOL.md, Connecting).
pub(crate) mod param {
    /// Symbols to subscribe to at connect, comma-separated.
    pub(crate) const SYMBOLS: &str = "symbols";
    /// Event channels to subscribe to at connect.
    pub(crate) const CHANNELS: &str = "channels";
    /// `json`, `protobuf` or `gzip`.
    pub(crate) const ENCODING: &str = "encoding";
    /// The slow-consumer policy (`conflate`).
    pub(crate) const SLOW: &str = "slow";
    /// `SYMBOL:SEQ,...` to replay after.
    pub(crate) const RESUME: &str = "resume";
    /// `CHANNEL:SEQ,...` to replay after.
    pub(crate) const RESUME_CHANNELS: &str = "resume_channels";
    /// The epoch the resumed seqs belong to.
    pub(crate) const EPOCH: &str = "epoch";
    /// `on`: several messages per frame (json and gzip: separated by `\n`; protobuf: every
    /// binary frame is one `ServerBatch`).
    pub(crate) const BATCH: &str = "batch";
}

/// What the stream does when the relay closes with `code`.
pub(crate) fn on_close(code: u16) -> Then {
    CLOSES
        .iter()
        .find(|row| row.close == code)
        .map(|row| row.then)
        .or_else(|| {
            ERRORS
                .iter()
                .find(|row| row.close == Some(code))
                .map(|row| row.then)
        })
        .unwrap_or(Then::Reconnect)
}

/// What a close code without an error code says (`going_away` for 1001), for logs.
pub(crate) fn close_name(close: u16) -> Option<&'static str> {
    CLOSES
        .iter()
        .find(|row| row.close == close)
        .map(|row| row.name)
}

/// The row of the relay's error `code`, if the client acts on it.
pub(crate) fn error_row(code: &str) -> Option<&'static ErrorRow> {
    ERRORS.iter().find(|row| row.code == code)
}

/// Whether a session error with `code` ends the session for its token: the relay closes
/// with 4001 or 4002 after it, and that close is explained by this code.
pub(crate) fn ends_session_for_token(code: &str) -> bool {
    error_row(code).is_some_and(|row| row.then == Then::Unauthorized && row.close.is_some())
}

/// What the stream does after an upgrade refused with `status` and the relay's error `code`
/// (`None` when the body named none).
pub(crate) fn on_refusal(status: u16, code: Option<&str>) -> Then {
    code.and_then(error_row)
        .filter(|row| row.http == Some(status))
        .map_or(
            if status == HTTP_UNAVAILABLE {
                Then::Reconnect
            } else {
                Then::Fatal
            },
            |row| row.then,
        )
}

/// The error code a close explains itself with when no error message came before it: the
/// first row that the close code carries (4001: `auth_required`).
pub(crate) fn close_code_name(close: u16) -> Option<&'static str> {
    ERRORS
        .iter()
        .find(|row| row.close == Some(close))
        .map(|row| row.code)
}

const fn error(code: &'static str, close: Option<u16>, http: Option<u16>, then: Then) -> ErrorRow {
    ErrorRow {
        code,
        close,
        http,
        then,
    }
}

const fn close(close: u16, name: &'static str, then: Then) -> CloseRow {
    CloseRow { close, name, then }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The client's tables against the relay's own (`tickrelay::error`): every code it acts
    /// on exists with the same close code and status, and every close code the relay sends
    /// is one it knows.
    #[test]
    fn the_tables_agree_with_the_relays() {
        use tickrelay::error::{CloseCode, ErrorCode};
        for row in ERRORS {
            let relay = ErrorCode::ALL
                .iter()
                .find(|c| c.as_str() == row.code)
                .unwrap_or_else(|| panic!("the relay has no error `{}`", row.code));
            assert_eq!(
                row.close,
                relay.close().map(CloseCode::value),
                "{}",
                row.code
            );
            if let Some(http) = row.http {
                assert_eq!(http, relay.http_status().as_u16(), "{}", row.code);
            }
        }
        for close in CloseCode::ALL {
            let known = CLOSES.iter().any(|r| r.close == close.value())
                || ERRORS.iter().any(|r| r.close == Some(close.value()));
            assert!(
                known,
                "the relay sends {close}, which the client does not know"
            );
        }
    }

    #[test]
    fn every_code_is_written_once() {
        let mut codes: Vec<&str> = ERRORS.iter().map(|r| r.code).collect();
        codes.sort_unstable();
        codes.dedup();
        assert_eq!(codes.len(), ERRORS.len(), "an error code twice in ERRORS");
        for row in CLOSES {
            assert!(
                ERRORS.iter().all(|e| e.close != Some(row.close)),
                "close {} is in both tables",
                row.close
            );
        }
    }

    #[test]
    fn a_close_code_carried_by_several_errors_means_one_thing() {
        for row in ERRORS {
            if let Some(close) = row.close {
                assert_eq!(on_close(close), row.then, "close {close} ({})", row.code);
            }
        }
    }

    #[test]
    fn the_stream_reads_closes_and_refusals_from_the_tables() {
        assert_eq!(on_close(1001), Then::ReconnectNow);
        assert_eq!(on_close(1012), Then::ReconnectNow);
        assert_eq!(on_close(1009), Then::Fatal);
        assert_eq!(on_close(4002), Then::Unauthorized);
        assert_eq!(on_close(4008), Then::Reconnect);
        assert_eq!(
            on_close(4999),
            Then::Reconnect,
            "an unknown code reconnects"
        );
        assert_eq!(on_refusal(401, Some("invalid_token")), Then::Unauthorized);
        assert_eq!(on_refusal(403, Some("forbidden")), Then::Unauthorized);
        assert_eq!(
            on_refusal(400, Some("invalid_token")),
            Then::Fatal,
            "the status must match the row"
        );
        assert_eq!(on_refusal(503, None), Then::Reconnect);
        assert_eq!(
            on_refusal(400, Some("too_many_symbols")),
            Then::ReconnectWithoutResume
        );
        assert!(ends_session_for_token("token_expired"));
        assert!(
            !ends_session_for_token("forbidden"),
            "forbidden refuses one subscription"
        );
        assert_eq!(close_code_name(4002), Some("token_expired"));
    }
}
