//! Why auth refused: a token or request ([`AuthError`]), the admin routes
//! ([`AdminRefusal`]), or the auth flags at startup ([`AuthConfigError`]); each with its
//! [`ErrorCode`].

use crate::error::ErrorCode;

/// Why a token or a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("a token is required: Authorization: Bearer, ?token=, or a first auth message")]
    Missing,
    /// A token that does not verify (malformed, bad signature, wrong algorithm, audience or
    /// issuer, bad claims).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A token past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// A refresh token for another subject.
    #[error("a refresh must be for the same user")]
    OtherUser,
    /// The user holds `--max-connections-per-user` connections already.
    #[error("this user holds {0} connections, the limit")]
    UserLimit(usize),
}

impl AuthError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::AuthRequired,
            Self::Invalid(_) => ErrorCode::InvalidToken,
            Self::Expired => ErrorCode::TokenExpired,
            Self::OtherUser => ErrorCode::Forbidden,
            Self::UserLimit(_) => ErrorCode::UserConnectionLimit,
        }
    }
}

/// Why a request may not use the admin routes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    /// An admin token is configured and the request has none.
    #[error("the admin routes need Authorization: Bearer <admin token>")]
    NoToken,
    /// The request's token is not the admin token.
    #[error("wrong admin token")]
    WrongToken,
    /// No admin token is configured and the peer is not on loopback.
    #[error("without --admin-token-file the admin routes answer loopback peers only")]
    NotLoopback,
    /// No admin token, and the request names a forwarding header: a proxy on this host
    /// relays someone else's request.
    #[error(
        "without --admin-token-file the admin routes answer no proxied request (`{0}` is present)"
    )]
    Proxied(&'static str),
    /// No admin token, and `Host` is not the relay's own address (DNS rebinding, or a
    /// proxy forwarding its public name).
    #[error(
        "Host `{0}` is not this relay's address; without --admin-token-file the admin routes want localhost, a loopback address or an --admin-allow-host, with the port connected to"
    )]
    WrongHost(String),
    /// No admin token, and a browser page of another origin sent the request (`Origin`,
    /// or `Sec-Fetch-Site` other than same-origin).
    #[error(
        "without --admin-token-file the admin routes refuse requests from other web pages ({0})"
    )]
    CrossSite(String),
    /// No admin token, and a `POST` body that is neither JSON nor NDJSON (a browser form
    /// or `text/plain` request).
    #[error("Content-Type `{0}` is not accepted: send application/json or application/x-ndjson")]
    ContentType(String),
}

impl AdminRefusal {
    /// Stable code for the JSON error and metrics.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NoToken
            | Self::WrongToken
            | Self::NotLoopback
            | Self::Proxied(_)
            | Self::WrongHost(_) => ErrorCode::AdminRequired,
            Self::CrossSite(_) => ErrorCode::OriginNotAllowed,
            Self::ContentType(_) => ErrorCode::UnsupportedMediaType,
        }
    }
}

/// Why the auth flags cannot be used (reported at startup, naming the flag).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A key file cannot be read.
    #[error("{flag} {path}: {source}")]
    Read {
        /// The flag.
        flag: &'static str,
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file's content is not a usable key.
    #[error("{flag}: {reason}")]
    Key {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
}
