//! [`EventError`]: why bytes are not a valid event.

use crate::error::ErrorCode;
use crate::tick::TickError;

/// Why bytes are not a valid [`Event`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EventError {
    /// Not JSON, or not an event object.
    #[error("invalid JSON event: {0}")]
    Json(String),
    /// A field an event does not have.
    #[error("{0}")]
    UnknownField(String),
    /// The channel name is not valid.
    #[error("channel: {0}")]
    Channel(TickError),
    /// `user:` without an id.
    #[error("a user channel needs an id: user:<id>")]
    NoUserId,
    /// No `data`.
    #[error("an event needs `data`")]
    MissingData,
    /// `data` over `--max-event-bytes`.
    #[error("data is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl EventError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Json(_) => ErrorCode::BadJson,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::Channel(_) | Self::NoUserId => ErrorCode::InvalidChannel,
            Self::MissingData => ErrorCode::MissingField,
            Self::TooLarge { .. } => ErrorCode::EventTooLarge,
        }
    }

    /// The field the error is about, when one is to blame.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Channel(_) | Self::NoUserId => Some("channel"),
            Self::MissingData | Self::TooLarge { .. } => Some("data"),
            Self::Json(_) | Self::UnknownField(_) => None,
        }
    }
}
