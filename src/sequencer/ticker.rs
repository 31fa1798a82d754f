//! [`Window`]: one symbol's rolling 24 hours, kept as its closed 1-minute bars, from which
//! the ticker's statistics are computed without touching a tick.
//!
//! At event time `T` the window holds the 1-minute bars starting after `T - 24 h`, up to the
//! one holding `T` (the open bar, passed in when there is one): 1,440 minutes at most, so a
//! symbol costs at most 1,440 × 40 bytes ≈ 56 KiB, and only minutes that had a trade are
//! kept. The statistics of the closed minutes are cached and recomputed only when a minute
//! enters or leaves (once a minute at most); each update is then O(1).

use std::collections::VecDeque;

use super::bars::finite;
use crate::event::derived::{BarValues, TickerValues};

/// The closed 1-minute bars of the last 24 hours, oldest first.
#[derive(Debug, Clone, Default)]
pub struct Window {
    minutes: VecDeque<Minute>,
    /// Statistics of `minutes`, recomputed after a change.
    cached: Option<Option<Closed>>,
    /// The newest trade price ever seen (when the window is empty: nothing traded for 24 h).
    last: Option<f64>,
}

#[derive(Debug, Clone, Copy)]
struct Minute {
    start_ns: u64,
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

#[derive(Debug, Clone, Copy)]
struct Closed {
    open: f64,
    high: f64,
    low: f64,
    close: f64,
    volume: f64,
}

impl Window {
    /// Takes a closed 1-minute bar (bars arrive in start order).
    pub fn push(&mut self, bar: &BarValues) {
        self.minutes.push_back(Minute {
            start_ns: bar.start_ns,
            open: bar.open,
            high: bar.high,
            low: bar.low,
            close: bar.close,
            volume: bar.volume,
        });
        self.last = Some(bar.close);
        self.cached = None;
        while self.minutes.len() > WINDOW_MINUTES {
            self.minutes.pop_front();
        }
    }

    /// Drops the minutes that are out of the window at event time `t_ns`; whether any was.
    pub fn evict(&mut self, t_ns: u64) -> bool {
        let first = first_start(t_ns);
        let before = self.minutes.len();
        while self.minutes.front().is_some_and(|m| m.start_ns < first) {
            self.minutes.pop_front();
        }
        let changed = self.minutes.len() != before;
        if changed {
            self.cached = None;
        }
        changed
    }

    /// When (event time) the oldest minute leaves the window.
    pub fn next_eviction_ns(&self) -> Option<u64> {
        self.minutes.front().map(|m| m.start_ns + WINDOW_NS)
    }

    /// The statistics at event time `t_ns` (after [`Window::evict`]) with `open_bar`, the
    /// open 1-minute bar if any; `None` before the symbol's first trade.
    pub fn stats(&mut self, open_bar: Option<&BarValues>, t_ns: u64) -> Option<TickerValues> {
        let first = first_start(t_ns);
        let open_bar = open_bar.filter(|bar| bar.start_ns >= first);
        let closed = *self.cached.get_or_insert_with(|| summary(&self.minutes));
        let (open, high, low, last, volume) = match (closed, open_bar) {
            (Some(c), Some(b)) => (
                c.open,
                c.high.max(b.high),
                c.low.min(b.low),
                b.close,
                finite(c.volume + b.volume),
            ),
            (Some(c), None) => (c.open, c.high, c.low, c.close, c.volume),
            (None, Some(b)) => (b.open, b.high, b.low, b.close, b.volume),
            // Nothing traded in 24 hours: the last price, unchanged.
            (None, None) => {
                let last = self.last?;
                (last, last, last, last, 0.0)
            }
        };
        let change = finite(last - open);
        let change_percent = if open == 0.0 {
            0.0
        } else {
            finite(change / open * 100.0)
        };
        Some(TickerValues {
            last,
            open,
            high,
            low,
            volume,
            change,
            change_percent,
        })
    }

    /// Remembers the newest trade price (the open bar's close) for an empty window.
    pub fn saw(&mut self, price: f64) {
        self.last = Some(price);
    }
}

/// The statistics of closed minutes: volume summed oldest first (the order a reader
/// reproducing it must use to get the same bits).
fn summary(minutes: &VecDeque<Minute>) -> Option<Closed> {
    let first = minutes.front()?;
    let mut closed = Closed {
        open: first.open,
        high: first.high,
        low: first.low,
        close: first.close,
        volume: 0.0,
    };
    for m in minutes {
        closed.high = closed.high.max(m.high);
        closed.low = closed.low.min(m.low);
        closed.close = m.close;
        closed.volume = finite(closed.volume + m.volume);
    }
    Some(closed)
}

/// The start of the oldest minute in the window at event time `t_ns`.
fn first_start(t_ns: u64) -> u64 {
    (t_ns - t_ns % MINUTE_NS + MINUTE_NS).saturating_sub(WINDOW_NS)
}

/// Minutes in the window.
pub const WINDOW_MINUTES: usize = 1440;
const MINUTE_NS: u64 = 60_000_000_000;
/// The window's length.
pub const WINDOW_NS: u64 = WINDOW_MINUTES as u64 * MINUTE_NS;

#[cfg(test)]
mod tests {
    use super::*;

    const MIN: u64 = MINUTE_NS;

    fn bar(minute: u64, open: f64, high: f64, low: f64, close: f64, volume: f64) -> BarValues {
        BarValues {
            start_ns: minute * MIN,
            open,
            high,
            low,
            close,
            volume,
            trades: 1,
            closed: true,
        }
    }

    #[test]
    fn the_window_spans_the_last_1440_minutes_up_to_the_open_one() {
        let mut window = Window::default();
        window.push(&bar(10, 100.0, 110.0, 90.0, 105.0, 2.0));
        window.push(&bar(11, 105.0, 120.0, 104.0, 110.0, 3.0));
        let open = BarValues {
            closed: false,
            ..bar(12, 110.0, 111.0, 80.0, 100.0, 1.0)
        };
        let t = 12 * MIN + 5;
        assert!(!window.evict(t));
        let stats = window.stats(Some(&open), t).unwrap();
        assert_eq!(
            (stats.open, stats.high, stats.low, stats.last, stats.volume),
            (100.0, 120.0, 80.0, 100.0, 6.0)
        );
        assert_eq!((stats.change, stats.change_percent), (0.0, 0.0));
        // 24 h after minute 10 began, minute 10 has left; minute 11 is the oldest.
        let later = 10 * MIN + WINDOW_NS;
        assert_eq!(window.next_eviction_ns(), Some(later));
        assert!(!window.evict(later - 1));
        assert!(window.evict(later));
        let stats = window.stats(None, later).unwrap();
        assert_eq!((stats.open, stats.last, stats.volume), (105.0, 110.0, 3.0));
        assert_eq!(stats.change, 5.0);
        assert!((stats.change_percent - 5.0 / 105.0 * 100.0).abs() < 1e-12);
    }

    #[test]
    fn a_full_day_of_minutes_is_held_and_no_more() {
        let day = WINDOW_MINUTES as u64;
        let mut window = Window::default();
        for m in 0..=day {
            let p = m as f64 + 1.0;
            window.push(&bar(m, p, p + 1.0, p - 0.5, p + 0.5, 1.0));
            let t = m * MIN + 5;
            assert!(!window.evict(t), "every minute pushed is in the window");
            let stats = window.stats(None, t).unwrap();
            let held = (m + 1).min(day);
            assert_eq!(stats.volume, held as f64, "minute {m}");
            assert_eq!(stats.open, (m + 1 - held) as f64 + 1.0, "minute {m}");
        }
    }

    #[test]
    fn an_empty_window_shows_the_last_price_flat() {
        let mut window = Window::default();
        assert_eq!(window.stats(None, MIN), None, "no trade yet");
        window.push(&bar(1, 5.0, 6.0, 4.0, 5.5, 1.0));
        assert!(window.evict(MIN + WINDOW_NS + 1));
        let stats = window.stats(None, MIN + WINDOW_NS + 1).unwrap();
        assert_eq!(
            (
                stats.open,
                stats.high,
                stats.low,
                stats.last,
                stats.volume,
                stats.change
            ),
            (5.5, 5.5, 5.5, 5.5, 0.0, 0.0)
        );
        // A trade seen since (its bar still open, and out of the window) is the last price.
        window.saw(6.25);
        let stats = window.stats(None, MIN + WINDOW_NS + 1).unwrap();
        assert_eq!((stats.open, stats.last, stats.volume), (6.25, 6.25, 0.0));
    }

    #[test]
    fn a_zero_open_gives_a_zero_percentage() {
        let mut window = Window::default();
        window.push(&bar(1, 0.0, 1.0, 0.0, 1.0, 1.0));
        let stats = window.stats(None, MIN + 1).unwrap();
        assert_eq!((stats.change, stats.change_percent), (1.0, 0.0));
    }
}
