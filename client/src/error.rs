//! The client's errors: [`ConnectError`] for the first connection, [`Error`] for the stream.

/// Why [`Client::connect`](crate::Client::connect) failed. Later connections are retried
/// with backoff instead.
#[derive(Debug, thiserror::Error)]
pub enum ConnectError {
    /// The URL or an option cannot make a valid WebSocket request.
    #[error("invalid request: {0}")]
    InvalidRequest(String),
    /// The relay refused the upgrade with an HTTP status (400 names the problem in `body`).
    #[error("the relay refused the connection: HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body (the relay's JSON error).
        body: String,
    },
    /// The relay refused the token (HTTP 401, `invalid_token` or `token_expired`; 403
    /// `forbidden` for a connect-time subscription the token does not allow; 429
    /// `user_connection_limit`). Reconnecting with the same token cannot help.
    #[error("the relay refused the token: {code}: {message}")]
    Unauthorized {
        /// The HTTP status.
        status: u16,
        /// The relay's error code (docs/PROTOCOL.md, Auth).
        code: String,
        /// The relay's message.
        message: String,
    },
    /// TLS could not be set up (an unreadable [`Options::ca_file`](crate::Options::ca_file)),
    /// or the TLS handshake failed (e.g. a certificate no root vouches for).
    #[error("TLS: {0}")]
    Tls(String),
    /// The TCP connection or the WebSocket handshake failed.
    #[error("could not connect: {0}")]
    Io(String),
    /// No welcome arrived within the liveness timeout.
    #[error("no welcome from the relay within {0:?}")]
    NoWelcome(std::time::Duration),
}

/// Why the stream ended with an error.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Error {
    /// Under [`SlowConsumer::Error`](crate::SlowConsumer::Error), the application did not read
    /// fast enough and the buffer of `capacity` items filled up. The items before it were
    /// delivered; [`Client::positions`](crate::Client::positions) says where to resume.
    #[error("the application fell {capacity} items behind the stream")]
    ConsumerTooSlow {
        /// The buffer size that was exceeded.
        capacity: usize,
    },
    /// The relay closed with a code that reconnecting cannot fix (1002 protocol error, 1007
    /// invalid UTF-8, 1009 message too big).
    #[error("the relay closed the connection with {code}: {reason}")]
    Closed {
        /// The close code.
        code: u16,
        /// The close reason.
        reason: String,
    },
    /// A reconnect was refused with an HTTP error other than 503 (the request is wrong).
    #[error("the relay refused to reconnect: HTTP {status}: {body}")]
    Refused {
        /// The HTTP status.
        status: u16,
        /// The response body.
        body: String,
    },
    /// The relay refused the token on a reconnect (HTTP 401/403/429), or closed the session
    /// for it: 4001 (the token was refused) or 4002 (it ran out). The stream ends rather
    /// than reconnecting with a token that cannot work.
    #[error("the relay refused the token: {code}: {message}")]
    Unauthorized {
        /// The relay's error code (`invalid_token`, `token_expired`, `auth_required`, ...).
        code: String,
        /// The relay's message, or the close reason.
        message: String,
    },
    /// The client was closed ([`Client::close`](crate::Client::close)).
    #[error("the client is closed")]
    ClientClosed,
}
