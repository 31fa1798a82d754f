//! Why a publisher's book update is refused: its shape or a level ([`BookError`] while
//! parsing), or what the book it would change says (no snapshot yet, a crossed result, too
//! many levels). Either way it is answered with its code, counted, and the book is unchanged.

use rust_decimal::Decimal;

use crate::error::ErrorCode;
use crate::tick::TickError;

/// Why a book update is refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookError {
    /// Not JSON, or not a book object.
    #[error("invalid JSON book update: {0}")]
    Json(String),
    /// A field a book update does not have.
    #[error("{0}")]
    UnknownField(String),
    /// A field a book update needs.
    #[error("a book update needs `{0}`")]
    MissingField(&'static str),
    /// `type` is not `book`.
    #[error("`type` is `{0}`; a book update has \"type\":\"book\"")]
    Type(String),
    /// The symbol is not valid.
    #[error("symbol: {0}")]
    Symbol(TickError),
    /// One level is not `[price, size]` of finite decimals with a size of 0 or more.
    #[error("{side}[{index}]: {error}")]
    Level {
        /// `bids` or `asks`.
        side: &'static str,
        /// Its position in the list, from 0.
        index: usize,
        /// What is wrong with it.
        error: LevelError,
    },
    /// A delta for a book that has had no snapshot (nothing to apply it to).
    #[error("a delta for `{0}` before any snapshot of its book")]
    NoSnapshot(String),
    /// A snapshot that would start a book new to the relay while it already tracks
    /// `--max-symbols` symbols, channels and books, none idle long enough to evict. The
    /// sequencer answers the publisher with its symbol-limit refusal, naming the limit.
    #[error("the book of `{0}` is new and the relay tracks --max-symbols keys: not published")]
    NoRoom(String),
    /// The update would leave the best bid at or above the best ask.
    #[error("crossed book: best bid {bid} is not below best ask {ask}")]
    Crossed {
        /// The best bid it would leave.
        bid: Decimal,
        /// The best ask it would leave.
        ask: Decimal,
    },
    /// The update would leave a side with more levels than `--book-max-levels`.
    #[error("{side} would hold {levels} levels, the limit is {limit} (--book-max-levels)")]
    TooDeep {
        /// `bids` or `asks`.
        side: &'static str,
        /// How many it would hold.
        levels: usize,
        /// The limit.
        limit: usize,
    },
}

/// Why a price or size is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LevelError {
    /// `NaN` or an infinity.
    #[error("not a finite number")]
    NotFinite,
    /// Not a decimal number (a JSON number, or a string holding one).
    #[error("`{0}` is not a decimal number")]
    Malformed(String),
    /// More digits or decimal places than a price or size may have (28 places, 96 bits).
    #[error("`{0}` has more digits than a price or size may have (28 decimal places, 28 digits)")]
    OutOfRange(String),
    /// A size below zero.
    #[error("size {0} is negative (0 removes a level)")]
    Negative(String),
    /// Not a two-element array.
    #[error("a level is [price, size]")]
    Shape,
}

impl BookError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Json(_) | Self::Type(_) => ErrorCode::BadJson,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::MissingField(_) => ErrorCode::MissingField,
            Self::Symbol(e) => e.code(),
            Self::Level { error, .. } => error.code(),
            Self::NoSnapshot(_) => ErrorCode::BookNoSnapshot,
            Self::NoRoom(_) => ErrorCode::SymbolLimit,
            Self::Crossed { .. } => ErrorCode::BookCrossed,
            Self::TooDeep { .. } => ErrorCode::BookTooDeep,
        }
    }

    /// The field the error is about, when one is to blame.
    pub fn field(&self) -> Option<&'static str> {
        match self {
            Self::MissingField(field) => Some(field),
            Self::Symbol(_) | Self::NoSnapshot(_) | Self::NoRoom(_) => Some("symbol"),
            Self::Type(_) => Some("type"),
            Self::Level { side, .. } | Self::TooDeep { side, .. } => Some(side),
            Self::Json(_) | Self::UnknownField(_) | Self::Crossed { .. } => None,
        }
    }
}

impl LevelError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::NotFinite => ErrorCode::NotFinite,
            Self::Negative(_) => ErrorCode::NegativeSize,
            Self::Malformed(_) | Self::OutOfRange(_) => ErrorCode::BadDecimal,
            Self::Shape => ErrorCode::BadJson,
        }
    }
}
