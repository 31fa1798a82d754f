//! [`BarBuilder`]: one symbol's bar of one interval, built from its trades in event time.
//!
//! A trade belongs to the bar whose interval holds its `ts_ns`. The open bar takes the
//! trades of its interval; a trade of a later interval closes it and opens the next; a trade
//! of an earlier interval than the open bar, or of a bar already closed, is late: counted,
//! never applied (a closed bar is final). An interval without a trade has no bar. The
//! builder is pure: no clock, no I/O; the engine (`sequencer::derived`) decides when a quiet
//! bar closes and when an update goes out.

use std::collections::HashMap;
use std::sync::Arc;

use crate::event::Channel;
use crate::event::derived::{Bar, BarHistory, BarInterval, BarValues, Recent};
use crate::tick::Seq;

/// One symbol's bars at one interval.
#[derive(Debug, Clone)]
pub struct BarBuilder {
    interval: BarInterval,
    open: Option<BarValues>,
    /// No bar may start before this: the end of the last closed bar.
    floor_ns: u64,
    /// The closed bars, shared with the messages (what a snapshot shows).
    history: Arc<BarHistory>,
    /// Ticks up to this seq are accounted for (a restarted builder skips them).
    pub through: Seq,
    /// The open bar changed since its last message.
    pub dirty: bool,
}

/// What a trade did to the bars of one interval.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Applied {
    /// It went into the open bar (a new one if none was open).
    Into,
    /// It closed the open bar (returned, final) and opened the next.
    Closed(BarValues),
    /// It belongs to a bar that is closed or older than the open one: left out.
    Late,
}

impl BarBuilder {
    /// No bar yet; snapshots will show up to `keep` closed bars.
    pub fn new(interval: BarInterval, keep: usize) -> Self {
        Self {
            interval,
            open: None,
            floor_ns: 0,
            history: BarHistory::new(keep),
            through: Seq(0),
            dirty: false,
        }
    }

    /// Continues from a message read back from the stream: `last` is the channel's newest
    /// bar (open or closed), `closed` its closed bars, oldest first, `through` the tick seq
    /// `last` accounts for.
    pub fn restore(&mut self, last: BarValues, closed: &[BarValues], through: Seq) {
        for bar in closed {
            self.history.push(*bar);
        }
        self.through = through;
        if last.closed {
            self.open = None;
            self.floor_ns = last.start_ns + self.interval.nanos();
        } else {
            self.open = Some(last);
            self.floor_ns = last.start_ns;
        }
    }

    /// The interval.
    pub fn interval(&self) -> BarInterval {
        self.interval
    }

    /// The open bar, if any.
    pub fn open(&self) -> Option<&BarValues> {
        self.open.as_ref()
    }

    /// The closed bars so far, for a message sent now.
    pub fn recent(&self) -> Recent {
        self.history.now()
    }

    /// Applies one trade (`size`: 0 when the trade gave none).
    pub fn trade(&mut self, ts_ns: u64, price: f64, size: f64) -> Applied {
        let start = self.interval.start_of(ts_ns);
        let closed = match &mut self.open {
            Some(bar) if start == bar.start_ns => {
                bar.high = bar.high.max(price);
                bar.low = bar.low.min(price);
                bar.close = price;
                bar.volume = finite(bar.volume + size);
                bar.trades += 1;
                self.dirty = true;
                return Applied::Into;
            }
            Some(bar) if start < bar.start_ns => return Applied::Late,
            Some(_) => self.close(),
            None if start < self.floor_ns => return Applied::Late,
            None => None,
        };
        self.open = Some(BarValues {
            start_ns: start,
            open: price,
            high: price,
            low: price,
            close: price,
            volume: finite(size),
            trades: 1,
            closed: false,
        });
        self.dirty = true;
        closed.map_or(Applied::Into, Applied::Closed)
    }

    /// Closes the open bar (its interval is over); returns it, final.
    pub fn close(&mut self) -> Option<BarValues> {
        let mut bar = self.open.take()?;
        bar.closed = true;
        self.floor_ns = bar.start_ns + self.interval.nanos();
        self.dirty = false;
        self.history.push(bar);
        Some(bar)
    }

    /// The end of the open bar, ns since the Unix epoch.
    pub fn open_end_ns(&self) -> Option<u64> {
        self.open.map(|bar| bar.start_ns + self.interval.nanos())
    }
}

/// An edge's bars channels: the closed bars each message arriving from the stream follows,
/// so an edge's snapshot shows what the sequencer's does.
#[derive(Debug)]
pub struct FollowedBars {
    keep: usize,
    histories: HashMap<Channel, Arc<BarHistory>>,
}

impl FollowedBars {
    /// Keeping `keep` closed bars per channel (`--bar-history`).
    pub fn new(keep: usize) -> Self {
        Self {
            keep,
            histories: HashMap::new(),
        }
    }

    /// Gives `bar` (the next message of its channel) its closed bars.
    pub fn attach(&mut self, bar: &mut Bar) {
        let keep = self.keep;
        let history = self
            .histories
            .entry(bar.channel.clone())
            .or_insert_with(|| BarHistory::new(keep));
        if bar.bar.closed {
            history.push(bar.bar);
        }
        bar.recent = history.now();
    }

    /// Drops every channel's closed bars (the stream started another history).
    pub fn forget(&mut self) {
        self.histories.clear();
    }
}

/// A sum of finite sizes can overflow; the wire carries finite numbers only.
pub fn finite(x: f64) -> f64 {
    if x.is_finite() {
        x
    } else if x > 0.0 {
        f64::MAX
    } else {
        f64::MIN
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;

    fn minute() -> BarBuilder {
        BarBuilder::new(BarInterval::MINUTE, 2)
    }

    #[test]
    fn trades_fill_a_bar_until_one_of_a_later_interval_closes_it() {
        let mut bars = minute();
        assert_eq!(bars.trade(60 * S + 1, 10.0, 1.0), Applied::Into);
        assert_eq!(bars.trade(61 * S, 12.0, 2.0), Applied::Into);
        assert_eq!(bars.trade(62 * S, 9.0, 0.5), Applied::Into);
        let Applied::Closed(bar) = bars.trade(125 * S, 11.0, 1.0) else {
            panic!("a trade of the next-but-one minute closes the bar")
        };
        let want = BarValues {
            start_ns: 60 * S,
            open: 10.0,
            high: 12.0,
            low: 9.0,
            close: 9.0,
            volume: 3.5,
            trades: 3,
            closed: true,
        };
        assert_eq!(bar, want);
        assert_eq!(
            bars.open().unwrap().start_ns,
            120 * S,
            "no bar for the empty minute"
        );
        assert_eq!(bars.recent().bars(), [want]);
    }

    #[test]
    fn a_trade_of_a_closed_or_older_bar_is_late() {
        let mut bars = minute();
        bars.trade(120 * S, 10.0, 1.0);
        assert_eq!(
            bars.trade(119 * S, 99.0, 1.0),
            Applied::Late,
            "older than the open bar"
        );
        bars.close();
        assert_eq!(
            bars.trade(121 * S, 99.0, 1.0),
            Applied::Late,
            "its bar closed"
        );
        assert_eq!(bars.trade(180 * S, 11.0, 1.0), Applied::Into);
        assert_eq!(bars.open().unwrap().open, 11.0);
    }

    #[test]
    fn a_restored_builder_continues_the_open_bar_and_respects_a_closed_one() {
        let mut bars = minute();
        bars.trade(60 * S, 10.0, 1.0);
        bars.trade(61 * S, 11.0, 1.0);
        let open = *bars.open().unwrap();
        let mut again = minute();
        again.restore(open, &[], Seq(2));
        again.trade(62 * S, 12.0, 1.0);
        bars.trade(62 * S, 12.0, 1.0);
        assert_eq!(again.open(), bars.open());
        let closed = bars.close().unwrap();
        let mut after_close = minute();
        after_close.restore(closed, &[closed], Seq(3));
        assert_eq!(after_close.trade(63 * S, 1.0, 1.0), Applied::Late);
        assert_eq!(after_close.recent().bars().len(), 1);
    }

    #[test]
    fn a_followed_bar_carries_the_closed_bars_of_its_channel_so_far() {
        let mut bars = minute();
        bars.trade(60 * S, 10.0, 1.0);
        let closed = bars.close().unwrap();
        bars.trade(120 * S, 11.0, 1.0);
        let open = *bars.open().unwrap();
        let message = |bar: BarValues| Bar {
            channel: Channel::parse("bars:1m:X").unwrap(),
            seq: Seq(0),
            bar,
            recent: Recent::none(),
            tick_seq: Seq(0),
            recv_ns: 0,
        };
        let mut followed = FollowedBars::new(3);
        let (mut first, mut second) = (message(closed), message(open));
        followed.attach(&mut first);
        followed.attach(&mut second);
        assert_eq!(
            first.recent.bars(),
            [closed],
            "a closed bar is among its own"
        );
        assert_eq!(
            second.recent.bars(),
            [closed],
            "the open one after it sees it"
        );
        followed.forget();
        let mut third = message(open);
        followed.attach(&mut third);
        assert!(third.recent.bars().is_empty(), "another history: none");
    }

    #[test]
    fn a_sum_past_the_largest_number_stays_finite() {
        assert_eq!(finite(f64::MAX * 2.0), f64::MAX);
        assert_eq!(finite(f64::MIN * 2.0), f64::MIN);
    }

    proptest! {
        /// Open, high, low, close, volume and count of every closed bar are those of the
        /// trades of its interval that were not late.
        #[test]
        fn closed_bars_summarise_their_trades(trades in proptest::collection::vec((0u64..600, 1u32..1000, 0u32..10), 1..200)) {
            let mut bars = minute();
            let mut taken: Vec<(u64, f64, f64)> = Vec::new();
            let mut closed = Vec::new();
            for (secs, price, size) in &trades {
                let (ts, price, size) = (secs * S, f64::from(*price), f64::from(*size));
                match bars.trade(ts, price, size) {
                    Applied::Late => {}
                    Applied::Into => taken.push((ts, price, size)),
                    Applied::Closed(bar) => { closed.push(bar); taken.push((ts, price, size)); }
                }
            }
            closed.extend(bars.close());
            for bar in closed {
                let of: Vec<_> = taken.iter().filter(|t| t.0 / (60 * S) * 60 * S == bar.start_ns).collect();
                prop_assert_eq!(bar.trades as usize, of.len());
                prop_assert_eq!(bar.open, of[0].1);
                prop_assert_eq!(bar.close, of[of.len() - 1].1);
                prop_assert_eq!(bar.high, of.iter().map(|t| t.1).fold(f64::MIN, f64::max));
                prop_assert_eq!(bar.low, of.iter().map(|t| t.1).fold(f64::MAX, f64::min));
                prop_assert_eq!(bar.volume, of.iter().map(|t| t.2).sum::<f64>());
            }
        }
    }
}
