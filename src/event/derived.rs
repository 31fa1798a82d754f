//! Derived channels: the names the relay reserves for what it computes itself
//! (`bars:INTERVAL:SYMBOL`, `ticker:SYMBOL`, `book:…`), the [`BarInterval`] a bars channel
//! names, and the two items the sequencer derives from trades, [`Bar`] and [`Ticker`].
//!
//! A derived channel is a [`Channel`] like any other downstream (seq, last value, replay
//! ring, resume), so the shard needs no new machinery. What differs is who may write it:
//! only the sequencer, never a publisher ([`Channel::is_reserved`]), and who may read it: whoever may
//! read its symbol ([`symbol_of`]).

use std::collections::VecDeque;
use std::fmt;
use std::sync::{Arc, Mutex, PoisonError};

use super::Channel;
pub use super::channel::{BARS, TICKER};
use crate::tick::Seq;

/// A bar length: a whole number of seconds from 1 s to 1 day, written in its largest exact
/// unit (`1s`, `90s`, `1m`, `5m`, `1h`, `1d`). Bars are aligned on the Unix epoch: a bar of
/// interval `I` starts at a multiple of `I`.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BarInterval {
    secs: u64,
}

impl BarInterval {
    /// One minute: the bars the 24-hour ticker is built from.
    pub const MINUTE: Self = Self { secs: 60 };

    /// Parses `<n><unit>` with unit `s`, `m`, `h` or `d` (any spelling of the length:
    /// `60s` is `1m`, and is then written `1m`).
    pub fn parse(text: &str) -> Result<Self, String> {
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let scale = UNITS
            .iter()
            .find(|(name, _)| *name == unit)
            .map(|(_, secs)| *secs)
            .ok_or_else(|| format!("`{text}` is not <number><s|m|h|d>, e.g. 1m"))?;
        let secs = number
            .parse::<u64>()
            .ok()
            .and_then(|n| n.checked_mul(scale))
            .filter(|secs| (1..=DAY_SECS).contains(secs))
            .ok_or_else(|| format!("`{text}` must be from 1s to 1d"))?;
        Ok(Self { secs })
    }

    /// Its length in nanoseconds.
    pub fn nanos(self) -> u64 {
        self.secs * 1_000_000_000
    }

    /// The start of the bar holding `ts_ns`.
    pub fn start_of(self, ts_ns: u64) -> u64 {
        ts_ns - ts_ns % self.nanos()
    }
}

impl fmt::Display for BarInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (unit, secs) = UNITS
            .iter()
            .rev()
            .find(|(_, secs)| self.secs.is_multiple_of(*secs))
            .expect("every length is a whole number of seconds");
        write!(f, "{}{unit}", self.secs / secs)
    }
}

impl fmt::Debug for BarInterval {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// What a reserved channel name asks for, before it is checked against what the relay
/// computes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DerivedName<'a> {
    /// `bars:INTERVAL:SYMBOL`.
    Bars {
        /// The interval as written.
        interval: &'a str,
        /// The symbol.
        symbol: &'a str,
    },
    /// `ticker:SYMBOL`.
    Ticker {
        /// The symbol.
        symbol: &'a str,
    },
    /// `book:…` (order books).
    Book,
}

impl<'a> DerivedName<'a> {
    /// The derived channel `name` asks for; `None` for an ordinary channel.
    pub fn parse(name: &'a str) -> Option<Self> {
        if let Some(rest) = name.strip_prefix(BARS) {
            let (interval, symbol) = rest.split_once(':').unwrap_or((rest, ""));
            return Some(Self::Bars { interval, symbol });
        }
        if let Some(symbol) = name.strip_prefix(TICKER) {
            return Some(Self::Ticker { symbol });
        }
        name.starts_with(crate::book::BOOK_PREFIX)
            .then_some(Self::Book)
    }
}

/// The symbol a derived channel (bars, ticker, a book of any depth) is computed from: its
/// readers are its symbol's.
pub fn symbol_of(name: &str) -> Option<&str> {
    match DerivedName::parse(name)? {
        DerivedName::Bars { symbol, .. } | DerivedName::Ticker { symbol } => Some(symbol),
        DerivedName::Book => crate::book::channel::symbol_of(name),
    }
}

/// The name of the bars channel of `symbol` at `interval`.
pub fn bars_channel(interval: BarInterval, symbol: &str) -> Channel {
    Channel::built(format!("{BARS}{interval}:{symbol}"))
}

/// The name of the ticker channel of `symbol`.
pub fn ticker_channel(symbol: &str) -> Channel {
    Channel::built(format!("{TICKER}{symbol}"))
}

/// One bar's values. `open`, `high`, `low` and `close` are trade prices (finite); `volume`
/// is the sum of the trades' sizes in arrival order (a missing size counts 0).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BarValues {
    /// The bar's start, ns since the Unix epoch (a multiple of its interval).
    pub start_ns: u64,
    /// The first trade's price.
    pub open: f64,
    /// The highest trade price.
    pub high: f64,
    /// The lowest trade price.
    pub low: f64,
    /// The last trade's price (by arrival).
    pub close: f64,
    /// The sum of the trades' sizes.
    pub volume: f64,
    /// How many trades it holds.
    pub trades: u64,
    /// Final: no trade will change it again.
    pub closed: bool,
}

/// A message of a bars channel: the open bar as it is now, or a bar closed.
#[derive(Clone, Debug, PartialEq)]
pub struct Bar {
    /// `bars:INTERVAL:SYMBOL`.
    pub channel: Channel,
    /// Per-channel seq; [`Seq(0)`](Seq) until the sequencer assigns it.
    pub seq: Seq,
    /// The bar.
    pub bar: BarValues,
    /// The channel's closed bars as of this message (itself among them when it is closed):
    /// with it, a snapshot.
    pub recent: Recent,
    /// The seq of the symbol's newest tick this message accounts for: a restarted
    /// sequencer applies the ticks after it. Travels in the stream, never to clients.
    pub tick_seq: Seq,
    /// When the relay built it, ns since the Unix epoch (its latency is measured from
    /// here, or from the receipt of the trade that closed it).
    pub recv_ns: u64,
}

/// One bars channel's closed bars, newest last: one per channel, shared by all its messages.
///
/// A message keeps only its place in it ([`Recent`]), so a channel's replay ring holds the
/// history once, not once per message. It holds twice `--bar-history` bars: a shard that is
/// behind the sequencer by fewer closes than that still finds a snapshot's every bar.
#[derive(Debug)]
pub struct BarHistory {
    keep: usize,
    /// Closed bars appended so far, and the newest `2 × keep` of them.
    bars: Mutex<(u64, VecDeque<BarValues>)>,
}

/// A message's place in its channel's [`BarHistory`]: the closed bars `1..=through`.
#[derive(Debug, Clone)]
pub struct Recent {
    history: Arc<BarHistory>,
    through: u64,
}

impl BarHistory {
    /// An empty history whose snapshots show `keep` bars (`--bar-history`).
    pub fn new(keep: usize) -> Arc<Self> {
        Arc::new(Self {
            keep,
            bars: Mutex::new((0, VecDeque::new())),
        })
    }

    /// Appends a closed bar.
    pub fn push(&self, bar: BarValues) {
        let mut held = self.lock();
        held.0 += 1;
        held.1.push_back(bar);
        while held.1.len() > self.keep * 2 {
            held.1.pop_front();
        }
    }

    /// Where a message sent now stands: every closed bar appended so far.
    pub fn now(self: &Arc<Self>) -> Recent {
        Recent {
            history: self.clone(),
            through: self.lock().0,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, (u64, VecDeque<BarValues>)> {
        // Plain values behind the lock: a panic elsewhere leaves them usable.
        self.bars.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

impl Recent {
    /// A message with no history (decoded from the stream, before an edge places it).
    pub fn none() -> Self {
        Self {
            history: BarHistory::new(0),
            through: 0,
        }
    }

    /// The last `--bar-history` closed bars up to this message, oldest first (fewer if the
    /// history has moved on by more than its slack since: never another channel's or a
    /// later bar).
    pub fn bars(&self) -> Vec<BarValues> {
        let held = self.history.lock();
        let (total, bars) = (&held.0, &held.1);
        let first_held = total - bars.len() as u64 + 1;
        let from = (self.through + 1)
            .saturating_sub(self.history.keep as u64)
            .max(first_held);
        (from..=self.through)
            .map(|n| bars[usize::try_from(n - first_held).expect("within the deque")])
            .collect()
    }

    /// How many closed bars came before this message (itself included when closed).
    pub fn through(&self) -> u64 {
        self.through
    }
}

/// Messages are equal by their place in the history, not by the shared history's state.
impl PartialEq for Recent {
    fn eq(&self, other: &Self) -> bool {
        self.through == other.through
    }
}

/// The 24-hour statistics of a symbol (docs/PROTOCOL.md defines each field).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TickerValues {
    /// The newest trade price: the close of the newest 1-minute bar.
    pub last: f64,
    /// The first trade price of the window: the open of its oldest 1-minute bar.
    pub open: f64,
    /// The highest trade price in the window.
    pub high: f64,
    /// The lowest trade price in the window.
    pub low: f64,
    /// The sum of the window's 1-minute bar volumes, oldest first.
    pub volume: f64,
    /// `last - open`.
    pub change: f64,
    /// `change / open × 100` (0 when `open` is 0).
    pub change_percent: f64,
}

/// A message of a ticker channel.
#[derive(Clone, Debug, PartialEq)]
pub struct Ticker {
    /// `ticker:SYMBOL`.
    pub channel: Channel,
    /// Per-channel seq; [`Seq(0)`](Seq) until the sequencer assigns it.
    pub seq: Seq,
    /// The statistics.
    pub stats: TickerValues,
    /// The event time the window ends at, ns since the Unix epoch: it covers the 1-minute
    /// bars starting after `ts_ns - 24 h` up to the one holding `ts_ns`.
    pub ts_ns: u64,
    /// When the relay built it, ns since the Unix epoch.
    pub recv_ns: u64,
}

const DAY_SECS: u64 = 86_400;
const UNITS: [(&str, u64); 4] = [("s", 1), ("m", 60), ("h", 3600), ("d", DAY_SECS)];

#[cfg(test)]
impl BarValues {
    /// 1.5 to 1.25 within 1..2, 4 trades of 3 in all, from `start_ns`: a bar for tests.
    pub(crate) fn sample(start_ns: u64, closed: bool) -> Self {
        Self {
            start_ns,
            open: 1.5,
            high: 2.0,
            low: 1.0,
            close: 1.25,
            volume: 3.0,
            trades: 4,
            closed,
        }
    }
}

#[cfg(test)]
impl TickerValues {
    /// Every price `price`, nothing traded, no change: a quiet ticker for tests.
    pub(crate) fn flat(price: f64) -> Self {
        Self {
            last: price,
            open: price,
            high: price,
            low: price,
            volume: 0.0,
            change: 0.0,
            change_percent: 0.0,
        }
    }

    /// 100 to 101 within 99..102.5 on a volume of 12: a moving ticker for tests.
    pub(crate) fn sample() -> Self {
        Self {
            last: 101.0,
            open: 100.0,
            high: 102.5,
            low: 99.0,
            volume: 12.0,
            change: 1.0,
            change_percent: 1.0,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn intervals_parse_and_print_in_their_largest_exact_unit() {
        let name = |t: &str| BarInterval::parse(t).map(|i| i.to_string());
        assert_eq!(name("1s").unwrap(), "1s");
        assert_eq!(name("60s").unwrap(), "1m");
        assert_eq!(name("90s").unwrap(), "90s");
        assert_eq!(name("5m").unwrap(), "5m");
        assert_eq!(name("24h").unwrap(), "1d");
        for bad in [
            "",
            "0s",
            "1",
            "m",
            "1ms",
            "2d",
            "-1s",
            "1.5m",
            "99999999999999999999d",
        ] {
            assert!(BarInterval::parse(bad).is_err(), "{bad}");
        }
        let minute = BarInterval::MINUTE;
        assert_eq!(minute.start_of(61_000_000_001), 60_000_000_000);
        assert_eq!(minute.start_of(60_000_000_000), 60_000_000_000);
    }

    #[test]
    fn a_history_shows_each_message_the_bars_up_to_it() {
        let bar = |start_ns| BarValues {
            start_ns,
            open: 1.0,
            high: 1.0,
            low: 1.0,
            close: 1.0,
            volume: 0.0,
            trades: 1,
            closed: true,
        };
        let history = BarHistory::new(2);
        let empty = history.now();
        history.push(bar(1));
        let one = history.now();
        history.push(bar(2));
        history.push(bar(3));
        let three = history.now();
        let starts = |r: &Recent| r.bars().iter().map(|b| b.start_ns).collect::<Vec<_>>();
        assert!(starts(&empty).is_empty());
        assert_eq!(starts(&one), [1], "not the bars closed after it");
        assert_eq!(starts(&three), [2, 3], "the newest `keep`");
        for n in 4..10 {
            history.push(bar(n));
        }
        assert!(
            starts(&one).is_empty(),
            "moved on past its slack: fewer, never others"
        );
        assert_eq!(starts(&three), Vec::<u64>::new());
        assert_eq!(starts(&history.now()), [8, 9]);
        assert!(Recent::none().bars().is_empty());
    }

    #[test]
    fn derived_names_name_their_symbol() {
        assert_eq!(
            DerivedName::parse("bars:1m:BTC-USD"),
            Some(DerivedName::Bars {
                interval: "1m",
                symbol: "BTC-USD"
            })
        );
        assert_eq!(
            symbol_of("bars:1m:A:B"),
            Some("A:B"),
            "a symbol may hold `:`"
        );
        assert_eq!(symbol_of("ticker:ETH-USD"), Some("ETH-USD"));
        assert_eq!(symbol_of("bars:1m"), Some(""));
        assert_eq!(symbol_of("news"), None);
        let reserved = |name| Channel::parse(name).unwrap().is_reserved();
        assert!(reserved("book:BTC-USD:10") && reserved("ticker:X") && !reserved("barsx"));
        assert_eq!(bars_channel(BarInterval::MINUTE, "X").as_str(), "bars:1m:X");
    }

    proptest! {
        #[test]
        fn any_text_parses_or_is_refused_without_panicking(text in "\\PC{0,24}") {
            let _ = BarInterval::parse(&text);
            let _ = DerivedName::parse(&text);
        }

        #[test]
        fn a_written_interval_parses_back_to_itself(secs in 1u64..=86_400) {
            let interval = BarInterval { secs };
            prop_assert_eq!(BarInterval::parse(&interval.to_string()), Ok(interval));
        }
    }
}
