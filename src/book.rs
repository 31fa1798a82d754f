//! Order books: the leaf types the sequencer, the shards, the encoders and the NATS hop share.
//!
//! A publisher sends a book snapshot, then level deltas ([`input`]); the sequencer keeps one
//! [`Book`] per symbol and gives every applied update one seq; each update goes out on
//! `book:SYMBOL` (every level) and `book:SYMBOL:DEPTH` (the top DEPTH a side, a depth of
//! `--book-depths`) as a [`BookUpdate`] carrying the levels that changed within that depth
//! ([`views::diff`]) and the checksum of the channel's top N ([`Book::checksum`]).
//!
//! What stays true: prices and sizes are exact decimals ([`decimal`]: `43250.50` and
//! `43250.5` are one level, sent as `43250.5`); a book is never crossed nor deeper than
//! `--book-max-levels` a side (an update that would make it so is refused whole).

pub mod channel;
pub mod decimal;
mod error;
pub mod input;
mod side;
mod state;
mod update;
pub mod views;

use rust_decimal::Decimal;

pub use channel::{BOOK_PREFIX, BookChannel, BookChannelError, Depth};
pub use error::{BookError, LevelError};
pub use state::{Book, Changes};
pub use update::{BookKind, BookUpdate};

/// One price level: its price and size (in a delta, size 0 removes the level).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Level {
    /// The price.
    pub price: Decimal,
    /// The size at that price.
    pub size: Decimal,
}

/// A side of a book.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Side {
    /// Buyers: the best is the highest price.
    Bids,
    /// Sellers: the best is the lowest price.
    Asks,
}

impl Side {
    /// `bids` or `asks`, as the wire names them.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Bids => "bids",
            Self::Asks => "asks",
        }
    }

    /// Whether price `a` is better than price `b` on this side.
    pub fn better(self, a: Decimal, b: Decimal) -> bool {
        match self {
            Self::Bids => a > b,
            Self::Asks => a < b,
        }
    }
}
