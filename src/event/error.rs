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
    /// A name in the `user:` space that is not `user:<id>` or `user:<id>:<name>`.
    #[error(
        "`{0}` is not a private channel: write user:<id> or user:<id>:<name> (lowercase `user:`, no empty parts)"
    )]
    NotPrivate(String),
    /// A channel the relay derives itself (`book:`, `bars:`, `ticker:`): nobody publishes
    /// on it.
    #[error(
        "`{channel}` is reserved for a stream the relay derives ({names}); publish book updates as {{\"type\":\"book\",...}}",
        names = prefixes.join(", ")
    )]
    Reserved {
        /// The channel named.
        channel: String,
        /// The prefixes only the relay writes.
        prefixes: &'static [&'static str],
    },
    /// No `data`.
    #[error("an event needs `data`")]
    MissingData,
    /// A derived channel the relay does not compute (an interval it is not configured
    /// for, no symbol); the message lists what it accepts.
    #[error("{0}")]
    NotServed(String),
    /// `data` over `--max-event-bytes`.
    #[error("data is {len} bytes, the limit is {limit}")]
    TooLarge {
        /// Its length in bytes.
        len: usize,
        /// The limit.
        limit: usize,
    },
    /// `data` that is JSON a client's decoder refuses (a number out of a double's range,
    /// a lone surrogate escape).
    #[error("data: {0}")]
    Undecodable(String),
    /// `data` nested deeper than [`MAX_EVENT_DEPTH`](crate::event::MAX_EVENT_DEPTH).
    #[error("data nests arrays and objects {depth} levels deep, the limit is {limit}")]
    TooDeep {
        /// How deep it nests (counted up to one past the limit).
        depth: usize,
        /// The limit.
        limit: usize,
    },
}

impl EventError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Json(_) | Self::Undecodable(_) => ErrorCode::BadJson,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::Channel(_) | Self::NotPrivate(_) | Self::NotServed(_) => {
                ErrorCode::InvalidChannel
            }
            Self::Reserved { .. } => ErrorCode::ReservedChannel,
            Self::MissingData => ErrorCode::MissingField,
            Self::TooLarge { .. } => ErrorCode::EventTooLarge,
            Self::TooDeep { .. } => ErrorCode::EventTooDeep,
        }
    }

    /// The field the error is about, when one is to blame.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::Channel(_) | Self::NotPrivate(_) | Self::Reserved { .. } | Self::NotServed(_) => {
                Some("channel")
            }
            Self::MissingData
            | Self::TooLarge { .. }
            | Self::TooDeep { .. }
            | Self::Undecodable(_) => Some("data"),
            Self::Json(_) | Self::UnknownField(_) => None,
        }
    }
}
