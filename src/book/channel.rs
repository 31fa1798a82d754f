//! Book channel names: `book:SYMBOL` (the full book) and `book:SYMBOL:DEPTH` (its top
//! DEPTH levels a side, DEPTH one of `--book-depths`). A symbol may hold `:`; a name whose
//! last `:`-part is all digits names a depth.

use std::fmt;
use std::sync::Arc;

use crate::tick::{Symbol, TickError};

/// The prefix every book channel starts with (a name the relay reserves: no publisher may
/// send events on it).
pub const BOOK_PREFIX: &str = "book:";

/// How many levels a side a book channel carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Depth {
    /// The top N levels.
    Top(u32),
    /// Every level.
    Full,
}

impl Depth {
    /// The number of levels a side (`usize::MAX` for the full book).
    pub fn levels(self) -> usize {
        match self {
            Self::Top(n) => n as usize,
            Self::Full => usize::MAX,
        }
    }
}

/// A book channel: its name (shared, built once), symbol and depth.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct BookChannel {
    name: Arc<str>,
    symbol: Symbol,
    depth: Depth,
}

/// Why a `book:` name is not a channel this relay serves.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum BookChannelError {
    /// The symbol part is not a valid symbol.
    #[error("book channel symbol: {0}")]
    Symbol(TickError),
    /// A depth not in `--book-depths`.
    #[error(
        "book depth {depth} is not offered; use book:SYMBOL:DEPTH with DEPTH one of {offered}, or book:SYMBOL for the full book"
    )]
    Depth {
        /// The depth asked for.
        depth: String,
        /// The configured depths, comma-separated.
        offered: String,
    },
}

impl BookChannel {
    /// The channel of `symbol` at `depth`.
    pub fn new(symbol: Symbol, depth: Depth) -> Self {
        let name = match depth {
            Depth::Full => format!("{BOOK_PREFIX}{}", symbol.as_str()),
            Depth::Top(n) => format!("{BOOK_PREFIX}{}:{n}", symbol.as_str()),
        };
        Self {
            name: Arc::from(name),
            symbol,
            depth,
        }
    }

    /// The full-book channel of `symbol`.
    pub fn full(symbol: Symbol) -> Self {
        Self::new(symbol, Depth::Full)
    }

    /// Reads a channel name: `None` if it is not under `book:`; an error if it is, but names
    /// no valid symbol or a depth outside `offered` (`--book-depths`).
    pub fn parse(name: &str, offered: &[u32]) -> Option<Result<Self, BookChannelError>> {
        let rest = name.strip_prefix(BOOK_PREFIX)?;
        let (symbol, depth) = match rest.rsplit_once(':') {
            Some((symbol, digits))
                if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
            {
                let depth = digits
                    .parse::<u32>()
                    .ok()
                    .filter(|d| offered.contains(d))
                    .ok_or_else(|| BookChannelError::Depth {
                        depth: digits.chars().take(12).collect(),
                        offered: list(offered),
                    });
                (symbol, depth.map(Depth::Top))
            }
            _ => (rest, Ok(Depth::Full)),
        };
        Some(depth.and_then(|depth| {
            let symbol = Symbol::parse(symbol).map_err(BookChannelError::Symbol)?;
            Ok(Self::new(symbol, depth))
        }))
    }

    /// The channel's name, e.g. `book:BTC-USD:10`.
    pub fn name(&self) -> &Arc<str> {
        &self.name
    }

    /// The symbol whose book it is.
    pub fn symbol(&self) -> &Symbol {
        &self.symbol
    }

    /// How many levels a side it carries.
    pub fn depth(&self) -> Depth {
        self.depth
    }
}

impl fmt::Debug for BookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", &*self.name)
    }
}

/// The symbol of a book channel name (`book:BTC-USD:10` → `BTC-USD`), whatever its depth:
/// a token may read a book exactly when it may read the symbol.
pub fn symbol_of(name: &str) -> Option<&str> {
    let rest = name.strip_prefix(BOOK_PREFIX)?;
    match rest.rsplit_once(':') {
        Some((symbol, digits))
            if !digits.is_empty() && digits.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(symbol)
        }
        _ => Some(rest),
    }
}

/// The configured depths as a message lists them: `10, 25, 100`.
fn list(offered: &[u32]) -> String {
    let names: Vec<String> = offered.iter().map(u32::to_string).collect();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_say_symbol_and_depth() {
        let offered = [10, 25, 100];
        let parse = |n| BookChannel::parse(n, &offered);
        let c = parse("book:BTC-USD:10").unwrap().unwrap();
        assert_eq!(
            (c.symbol().as_str(), c.depth()),
            ("BTC-USD", Depth::Top(10))
        );
        let full = parse("book:BTC-USD").unwrap().unwrap();
        assert_eq!(full.depth(), Depth::Full);
        assert_eq!(&**full.name(), "book:BTC-USD");
        let colon = parse("book:X:Y:25").unwrap().unwrap();
        assert_eq!(
            (colon.symbol().as_str(), colon.depth()),
            ("X:Y", Depth::Top(25))
        );
        assert!(parse("news").is_none());
        let refused = parse("book:BTC-USD:11").unwrap().unwrap_err();
        assert!(refused.to_string().contains("10, 25, 100"), "{refused}");
        assert!(parse("book:").unwrap().is_err(), "no symbol");
        assert!(parse("book:A:99999999999").unwrap().is_err());
        assert_eq!(symbol_of("book:X:Y:25"), Some("X:Y"));
        assert_eq!(symbol_of("book:ETH-USD"), Some("ETH-USD"));
        assert_eq!(symbol_of("news"), None);
    }
}
