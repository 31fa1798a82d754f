//! The derived-stream settings (`--bar-*`, `--derived-interval`): which bars the sequencer
//! computes from trades and how often their updates and the 24-hour tickers go out.
//! Flattened into [`Config`](super::Config). docs/PROTOCOL.md ("Bars and tickers") is the
//! client contract they shape.

use std::fmt;
use std::time::Duration;

use clap::Args;

use super::defaults;
use super::error::ConfigError;
use super::values::parse_duration;
use crate::error::one_of;
use crate::event::derived::{BarInterval, DerivedName};
use crate::event::{Channel, EventError};
use crate::tick::Symbol;

/// Bars and tickers.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct DerivedConfig {
    /// Bar intervals computed per symbol, comma-separated (`1s,1m,5m,1h`), each a channel
    /// `bars:INTERVAL:SYMBOL`; `off` computes no bars and no tickers. Must hold `1m` (the
    /// 24-hour ticker is built from the 1-minute bars). The default is what charts draw
    /// most: a live second view, minute and five-minute candles, hourly ones.
    #[arg(long, default_value = defaults::BAR_INTERVALS, value_parser = BarIntervals::parse)]
    pub bar_intervals: BarIntervals,

    /// Shortest time between two updates of one open bar, and between two messages of one
    /// ticker. 1 s is a screen's refresh, one update of each 1 s bar before it closes, and
    /// bounds derived traffic at 5 messages a second per symbol with the default intervals
    /// (4 bars and a ticker) however busy the symbol is.
    #[arg(long, default_value = defaults::DERIVED_INTERVAL, value_parser = parse_duration)]
    pub derived_interval: Duration,

    /// How long after its end (in its symbol's event time) a bar with no later trade is
    /// held open for a trade stamped inside it before it is closed; a trade that comes
    /// later is counted late and left out. 2 s covers a feed's usual delivery lag and
    /// keeps a quiet symbol's last bar final within ~3 s of its end.
    #[arg(long, default_value = defaults::BAR_GRACE, value_parser = parse_duration)]
    pub bar_grace: Duration,

    /// Closed bars in a bars channel's snapshot, before its open bar. 60 draws a small
    /// chart at once (a minute of 1 s bars, an hour of 1 m bars) and costs ~4 KiB per
    /// bars channel, shared by every message of the channel.
    #[arg(long, default_value_t = defaults::BAR_HISTORY)]
    pub bar_history: usize,

    /// A trade stamped further than this ahead of the relay's clock is left out of bars and
    /// tickers (counted `bar_future_trades`): one bad clock would otherwise open a bar in
    /// the future and make every correct trade after it late. 10 s is far beyond NTP skew.
    #[arg(long, default_value = defaults::BAR_MAX_SKEW, value_parser = parse_duration)]
    pub bar_max_skew: Duration,
}

/// The `--bar-intervals` list: distinct, shortest first; empty for `off`.
#[derive(Clone, PartialEq, Eq, Default)]
pub struct BarIntervals(Vec<BarInterval>);

impl BarIntervals {
    /// Parses `1s,1m,5m` (any order, no repeats) or `off`.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.trim() == "off" {
            return Ok(Self::default());
        }
        let mut intervals = Vec::new();
        for name in text.split(',').map(str::trim) {
            let interval = BarInterval::parse(name)?;
            if intervals.contains(&interval) {
                return Err(format!("{interval} is given twice"));
            }
            intervals.push(interval);
        }
        intervals.sort();
        Ok(Self(intervals))
    }

    /// The intervals, shortest first.
    pub fn as_slice(&self) -> &[BarInterval] {
        &self.0
    }
}

impl fmt::Display for BarIntervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("off");
        }
        let names: Vec<String> = self.0.iter().map(ToString::to_string).collect();
        f.write_str(&names.join(","))
    }
}

impl fmt::Debug for BarIntervals {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

impl DerivedConfig {
    /// Whether bars and tickers are computed.
    pub fn enabled(&self) -> bool {
        !self.bar_intervals.0.is_empty()
    }

    /// Checks what clap cannot: the ticker needs 1-minute bars; the cadence is positive.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.enabled() && !self.bar_intervals.0.contains(&BarInterval::MINUTE) {
            return Err(ConfigError::Invalid {
                flag: "--bar-intervals",
                value: self.bar_intervals.to_string(),
                reason: "must hold 1m (the 24-hour ticker is built from 1-minute bars), or be off",
            });
        }
        if self.derived_interval.is_zero() {
            return Err(ConfigError::Invalid {
                flag: "--derived-interval",
                value: "0s".into(),
                reason: "must be above zero",
            });
        }
        Ok(())
    }

    /// Checks a derived channel a client names against what the relay computes: `Ok` for an
    /// ordinary channel, or a bars or ticker channel of a valid symbol and a configured
    /// interval; otherwise an error listing what is accepted.
    pub fn check(&self, channel: &Channel) -> Result<(), EventError> {
        let Some(name) = DerivedName::parse(channel.as_str()) else {
            return Ok(());
        };
        let symbol = match name {
            // Order books are checked against `--book-depths` (`BookChannel::parse`).
            DerivedName::Book => return Ok(()),
            _ if !self.enabled() => {
                return Err(EventError::NotServed(format!(
                    "`{channel}`: this relay computes no bars or tickers (--bar-intervals off)"
                )));
            }
            DerivedName::Ticker { symbol } => symbol,
            DerivedName::Bars { interval, symbol } => {
                let known = self
                    .bar_intervals
                    .0
                    .iter()
                    .any(|i| i.to_string() == interval);
                if !known {
                    let names: Vec<String> =
                        self.bar_intervals.0.iter().map(|i| i.to_string()).collect();
                    let names: Vec<&str> = names.iter().map(String::as_str).collect();
                    return Err(EventError::NotServed(format!(
                        "`{channel}`: bars are computed at {}; write bars:INTERVAL:SYMBOL",
                        one_of(&names)
                    )));
                }
                symbol
            }
        };
        Symbol::parse(symbol).map(drop).map_err(|reason| {
            EventError::NotServed(format!("`{channel}` names no valid symbol: {reason}"))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    fn config() -> DerivedConfig {
        Config::for_tests().derived
    }

    #[test]
    fn intervals_parse_sorted_and_print_back() {
        let list = BarIntervals::parse("1h, 1s,5m,1m").unwrap();
        assert_eq!(list.to_string(), "1s,1m,5m,1h");
        assert_eq!(BarIntervals::parse("off").unwrap().to_string(), "off");
        assert!(BarIntervals::parse("1m,60s").is_err(), "a repeat");
        assert!(BarIntervals::parse("1m,").is_err());
        assert_eq!(config().bar_intervals.to_string(), defaults::BAR_INTERVALS);
    }

    #[test]
    fn the_ticker_needs_minute_bars() {
        let mut derived = config();
        derived.bar_intervals = BarIntervals::parse("1s,5m").unwrap();
        let error = derived.validate().unwrap_err().to_string();
        assert!(error.starts_with("--bar-intervals 1s,5m"), "{error}");
        derived.bar_intervals = BarIntervals::parse("off").unwrap();
        assert!(derived.validate().is_ok());
        assert!(config().validate().is_ok());
    }

    #[test]
    fn derived_channels_are_checked_against_what_is_computed() {
        let derived = config();
        let check = |name: &str| derived.check(&Channel::parse(name).unwrap());
        assert!(check("news").is_ok());
        assert!(check("bars:1m:BTC-USD").is_ok());
        assert!(check("ticker:BTC-USD").is_ok());
        let refused = check("bars:2m:BTC-USD").unwrap_err();
        assert_eq!(refused.code(), "invalid_channel");
        assert!(
            refused.to_string().contains("1s, 1m, 5m or 1h"),
            "{refused}"
        );
        assert!(
            check("bars:60s:BTC-USD").is_err(),
            "one spelling per channel"
        );
        assert!(check("bars:1m:").is_err());
        assert!(check("ticker:").is_err());
        // Books are checked against --book-depths (`BookChannel::parse`), not here.
        assert!(check("book:BTC-USD:7").is_ok());
        let off = DerivedConfig {
            bar_intervals: BarIntervals::default(),
            ..config()
        };
        assert!(off.check(&Channel::parse("ticker:X").unwrap()).is_err());
    }
}
