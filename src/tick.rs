//! Domain types of the tick contract: [`Tick`], [`TickKind`], [`Symbol`], [`Seq`].
//!
//! [`Tick::try_from`] a [`RawTick`] is the only validation point: after it, a symbol is
//! non-empty and well-formed, every number is finite, and a trade has a price and a quote a
//! bid or an ask. Nothing downstream re-checks.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use serde::Deserialize;

use crate::error::ErrorCode;

/// A market symbol such as `BTC-USD`: 1 to [`MAX_SYMBOL_LEN`] bytes of `[A-Za-z0-9._:/-]`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Symbol(Arc<str>);

impl Symbol {
    /// Validates `name` and wraps it.
    pub fn parse(name: &str) -> Result<Self, TickError> {
        if name.is_empty() {
            return Err(TickError::EmptySymbol);
        }
        if name.len() > MAX_SYMBOL_LEN {
            return Err(TickError::SymbolTooLong { len: name.len() });
        }
        if let Some(bad) = name
            .chars()
            .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-')))
        {
            return Err(TickError::SymbolChar(bad));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The symbol's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl Borrow<str> for Symbol {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Per-symbol sequence number: starts at 1, +1 per tick, never a gap.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Seq(pub u64);

impl Seq {
    /// The first sequence number of every symbol.
    pub const FIRST: Self = Self(1);

    /// The number after this one.
    pub fn next(self) -> Self {
        Self(self.0 + 1)
    }
}

/// Whether a tick reports a trade or a quote.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TickKind {
    /// A trade: `price` is set, `size` usually.
    Trade,
    /// A quote: `bid` and/or `ask` are set.
    Quote,
}

impl TickKind {
    /// The name used in JSON (`"trade"` / `"quote"`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Trade => "trade",
            Self::Quote => "quote",
        }
    }
}

/// A validated, normalized tick. `seq` and `recv_ns` are set by the relay.
#[derive(Clone, Debug, PartialEq)]
pub struct Tick {
    /// The instrument.
    pub symbol: Symbol,
    /// Trade or quote.
    pub kind: TickKind,
    /// Trade price.
    pub price: Option<f64>,
    /// Trade size.
    pub size: Option<f64>,
    /// Best bid.
    pub bid: Option<f64>,
    /// Best ask.
    pub ask: Option<f64>,
    /// Size at the best bid.
    pub bid_size: Option<f64>,
    /// Size at the best ask.
    pub ask_size: Option<f64>,
    /// Venue the tick came from, if the source says.
    pub venue: Option<Arc<str>>,
    /// Source event time, ns since the Unix epoch; passed through unchanged.
    pub ts_ns: u64,
    /// Per-symbol sequence number; [`Seq(0)`](Seq) until the sequencer assigns it.
    pub seq: Seq,
    /// Relay ingest time, ns since the Unix epoch.
    pub recv_ns: u64,
}

/// A tick as a source sends it, before validation (the NDJSON ingest line and `POST /api/publish`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawTick {
    /// The instrument.
    pub symbol: String,
    /// `"trade"` or `"quote"`; inferred from the fields when absent.
    pub kind: Option<String>,
    /// Trade price.
    pub price: Option<f64>,
    /// Trade size.
    pub size: Option<f64>,
    /// Best bid.
    pub bid: Option<f64>,
    /// Best ask.
    pub ask: Option<f64>,
    /// Size at the best bid.
    pub bid_size: Option<f64>,
    /// Size at the best ask.
    pub ask_size: Option<f64>,
    /// Venue.
    pub venue: Option<String>,
    /// Source event time, ns since the Unix epoch.
    pub ts_ns: u64,
}

/// Why a [`RawTick`] is not a valid [`Tick`].
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum TickError {
    /// `symbol` is `""`.
    #[error("symbol is empty")]
    EmptySymbol,
    /// `symbol` is longer than [`MAX_SYMBOL_LEN`].
    #[error("symbol is {len} bytes, the limit is {MAX_SYMBOL_LEN}")]
    SymbolTooLong {
        /// Its length in bytes.
        len: usize,
    },
    /// `symbol` holds a character outside `[A-Za-z0-9._:/-]`.
    #[error("symbol contains {0:?}; allowed are A-Z a-z 0-9 . _ : / -")]
    SymbolChar(char),
    /// A number field is NaN or infinite.
    #[error("field `{0}` is not a finite number")]
    NotFinite(&'static str),
    /// `kind` is neither `trade` nor `quote`.
    #[error("unknown kind `{0}`: expected `trade` or `quote`")]
    UnknownKind(String),
    /// A trade without a price.
    #[error("a trade needs `price`")]
    TradeWithoutPrice,
    /// A quote with neither bid nor ask.
    #[error("a quote needs `bid` or `ask`")]
    QuoteWithoutSide,
    /// `venue` is longer than [`MAX_VENUE_LEN`].
    #[error("venue is {len} bytes, the limit is {MAX_VENUE_LEN}")]
    VenueTooLong {
        /// Its length in bytes.
        len: usize,
    },
}

impl TickError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::EmptySymbol | Self::SymbolTooLong { .. } | Self::SymbolChar(_) => {
                ErrorCode::InvalidSymbol
            }
            Self::NotFinite(_) => ErrorCode::NotFinite,
            Self::UnknownKind(_) => ErrorCode::UnknownKind,
            Self::TradeWithoutPrice | Self::QuoteWithoutSide => ErrorCode::MissingField,
            Self::VenueTooLong { .. } => ErrorCode::InvalidVenue,
        }
    }

    /// The field the error is about.
    pub fn field(&self) -> &'static str {
        match self {
            Self::EmptySymbol | Self::SymbolTooLong { .. } | Self::SymbolChar(_) => "symbol",
            Self::NotFinite(field) => field,
            Self::UnknownKind(_) => "kind",
            Self::TradeWithoutPrice => "price",
            Self::QuoteWithoutSide => "bid",
            Self::VenueTooLong { .. } => "venue",
        }
    }
}

impl TryFrom<RawTick> for Tick {
    type Error = TickError;

    fn try_from(raw: RawTick) -> Result<Self, TickError> {
        let symbol = Symbol::parse(&raw.symbol)?;
        let numbers = [
            ("price", raw.price),
            ("size", raw.size),
            ("bid", raw.bid),
            ("ask", raw.ask),
            ("bid_size", raw.bid_size),
            ("ask_size", raw.ask_size),
        ];
        if let Some((field, _)) = numbers
            .iter()
            .find(|(_, v)| v.is_some_and(|v| !v.is_finite()))
        {
            return Err(TickError::NotFinite(field));
        }
        let kind = match raw.kind.as_deref() {
            Some("trade") => TickKind::Trade,
            Some("quote") => TickKind::Quote,
            Some(other) => return Err(TickError::UnknownKind(other.to_owned())),
            None if raw.price.is_none() && (raw.bid.is_some() || raw.ask.is_some()) => {
                TickKind::Quote
            }
            None => TickKind::Trade,
        };
        match kind {
            TickKind::Trade if raw.price.is_none() => return Err(TickError::TradeWithoutPrice),
            TickKind::Quote if raw.bid.is_none() && raw.ask.is_none() => {
                return Err(TickError::QuoteWithoutSide);
            }
            _ => {}
        }
        let venue = match raw.venue {
            Some(v) if v.len() > MAX_VENUE_LEN => {
                return Err(TickError::VenueTooLong { len: v.len() });
            }
            Some(v) => Some(Arc::from(v)),
            None => None,
        };
        Ok(Self {
            symbol,
            kind,
            price: raw.price,
            size: raw.size,
            bid: raw.bid,
            ask: raw.ask,
            bid_size: raw.bid_size,
            ask_size: raw.ask_size,
            venue,
            ts_ns: raw.ts_ns,
            seq: Seq(0),
            recv_ns: 0,
        })
    }
}

/// Nanoseconds since the Unix epoch, now.
pub fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_nanos()).unwrap_or(u64::MAX))
}

/// Longest accepted symbol, in bytes (longer ones are a publisher bug, not an instrument).
pub const MAX_SYMBOL_LEN: usize = 64;
/// Longest accepted venue, in bytes.
pub const MAX_VENUE_LEN: usize = 64;

/// Unit tests' tick: a valid trade of `symbol` at price 1, given `seq`.
#[cfg(test)]
pub(crate) fn sequenced(symbol: &str, seq: u64) -> Tick {
    let mut tick = Tick::try_from(RawTick {
        symbol: symbol.into(),
        price: Some(1.0),
        ..RawTick::default()
    })
    .expect("a valid trade");
    tick.seq = Seq(seq);
    tick
}

#[cfg(test)]
mod tests {
    use super::*;

    fn raw(symbol: &str) -> RawTick {
        RawTick {
            symbol: symbol.into(),
            price: Some(1.5),
            ts_ns: 7,
            ..RawTick::default()
        }
    }

    #[test]
    fn trade_is_inferred_and_kept_exact() {
        let tick = Tick::try_from(raw("BTC-USD")).unwrap();
        assert_eq!(tick.kind, TickKind::Trade);
        assert_eq!(tick.price, Some(1.5));
        assert_eq!(tick.ts_ns, 7);
    }

    #[test]
    fn quote_is_inferred_from_sides() {
        let tick = Tick::try_from(RawTick {
            price: None,
            bid: Some(1.0),
            ..raw("ETH-USD")
        })
        .unwrap();
        assert_eq!(tick.kind, TickKind::Quote);
    }

    #[test]
    fn bad_symbols_are_rejected() {
        assert_eq!(Tick::try_from(raw("")), Err(TickError::EmptySymbol));
        assert_eq!(Tick::try_from(raw("A B")), Err(TickError::SymbolChar(' ')));
        let long = "X".repeat(MAX_SYMBOL_LEN + 1);
        assert!(matches!(
            Tick::try_from(raw(&long)),
            Err(TickError::SymbolTooLong { .. })
        ));
    }

    #[test]
    fn non_finite_and_missing_fields_are_rejected() {
        let nan = RawTick {
            size: Some(f64::NAN),
            ..raw("A")
        };
        assert_eq!(Tick::try_from(nan), Err(TickError::NotFinite("size")));
        let no_price = RawTick {
            price: None,
            kind: Some("trade".into()),
            ..raw("A")
        };
        assert_eq!(Tick::try_from(no_price), Err(TickError::TradeWithoutPrice));
        let odd = RawTick {
            kind: Some("auction".into()),
            ..raw("A")
        };
        assert_eq!(
            Tick::try_from(odd),
            Err(TickError::UnknownKind("auction".into()))
        );
    }
}
