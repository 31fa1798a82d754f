//! [`Derived`]: the bars and 24-hour tickers the sequencer computes from trades, once, for
//! every shard, edge and client.
//!
//! Per trade ([`Derived::trade`], right after the trade is sequenced) each of the symbol's
//! [`BarBuilder`]s takes it; a bar it closes becomes a `closed` message appended to the batch
//! right after the trade. Nothing else is sent per trade: the open bars it changed and its
//! ticker are marked, and [`Derived::on_timer`] (every `--derived-interval`) sends each
//! marked open bar once, closes the bars whose interval ended in their symbol's event time
//! (plus `--bar-grace`) with no later trade, rolls the 24-hour windows, and sends each
//! ticker that changed. So an open bar is updated at most once per interval and each bar
//! ends with exactly one `closed` message.
//!
//! Event time: a symbol's clock is its newest trade's `ts_ns`, advancing with the relay's
//! clock since that trade arrived. A feed replayed at its recorded pace closes bars as the
//! live one did; bars never depend on which edge or replay serves them.
//!
//! On an edge nothing is computed: [`FollowedBars`](super::bars::FollowedBars) only gives
//! each bar that arrives from the stream the closed bars before it, for snapshots.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::sync::Arc;

use super::bars::{Applied, BarBuilder};
use super::ticker::Window;
use crate::config::DerivedConfig;
use crate::event::derived::{
    Bar, BarInterval, BarValues, DerivedName, Recent, Ticker, TickerValues, bars_channel,
    ticker_channel,
};
use crate::event::{Channel, Item};
use crate::metrics::{self, Metrics};
use crate::tick::{Seq, Symbol, Tick, TickKind};

/// Every symbol's bars and ticker.
#[derive(Debug)]
pub struct Derived {
    intervals: Vec<BarInterval>,
    keep: usize,
    grace_ns: u64,
    max_skew_ns: u64,
    index: HashMap<Symbol, u32>,
    symbols: Vec<SymbolState>,
    /// Open bars changed since their last message: (symbol, interval index).
    dirty_bars: Vec<(u32, u8)>,
    /// Tickers to recompute.
    dirty_tickers: Vec<u32>,
    /// Wall-clock times at which a bar may be due to close or a window to roll.
    due: BinaryHeap<Reverse<Due>>,
    metrics: Arc<Metrics>,
}

/// What the stream held for the derived channels when a sequencer restarts.
#[derive(Debug, Default)]
pub struct Restored {
    /// The newest message of each bars channel (its `tick_seq` from the stream).
    pub bars: Vec<Bar>,
    /// Each bars channel's closed bars, oldest first.
    pub closed: HashMap<Channel, Vec<BarValues>>,
    /// The newest message of each ticker channel.
    pub tickers: Vec<Ticker>,
    /// The ticks the stream retains, each symbol's in seq order: those after a bar's
    /// `tick_seq` are applied again.
    pub ticks: Vec<Tick>,
}

#[derive(Debug)]
struct SymbolState {
    bars: Vec<(Channel, BarBuilder)>,
    /// Which of `bars` is the 1-minute one.
    minute: usize,
    window: Window,
    ticker: Channel,
    ticker_sent: Option<TickerValues>,
    ticker_dirty: bool,
    roll_scheduled: bool,
    /// The newest trade's `ts_ns` and when it arrived (relay clock): the event clock.
    clock: Option<(u64, u64)>,
    /// The newest tick of the symbol seen (any kind).
    last_tick: Seq,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Due {
    at_ns: u64,
    symbol: u32,
    what: What,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum What {
    /// The open bar of interval `index` that started at `start_ns` may be over.
    Close { index: u8, start_ns: u64 },
    /// The oldest minute of the window may have left it.
    Roll,
}

impl Derived {
    /// The engine for `config`; `None` when bars are off.
    pub fn new(config: &DerivedConfig, metrics: Arc<Metrics>) -> Option<Self> {
        config.enabled().then(|| Self {
            intervals: config.bar_intervals.as_slice().to_vec(),
            keep: config.bar_history,
            grace_ns: nanos(config.bar_grace),
            max_skew_ns: nanos(config.bar_max_skew),
            index: HashMap::new(),
            symbols: Vec::new(),
            dirty_bars: Vec::new(),
            dirty_tickers: Vec::new(),
            due: BinaryHeap::new(),
            metrics,
        })
    }

    /// Takes one sequenced tick: a trade goes into its symbol's bars; a bar it closes is
    /// appended to `out`. Quotes change nothing (bars are trades).
    pub fn trade(&mut self, tick: &Tick, out: &mut Vec<Item>) {
        let (TickKind::Trade, Some(price)) = (tick.kind, tick.price) else {
            if let Some(&i) = self.index.get(&tick.symbol) {
                self.symbols[i as usize].last_tick = tick.seq;
            }
            return;
        };
        if tick.ts_ns > tick.recv_ns.saturating_add(self.max_skew_ns) {
            metrics::add(&self.metrics.derived.future_trades, 1);
            return;
        }
        let i = self.symbol(&tick.symbol);
        let state = &mut self.symbols[i as usize];
        state.last_tick = tick.seq;
        if state.clock.is_none_or(|(ts, _)| tick.ts_ns > ts) {
            state.clock = Some((tick.ts_ns, tick.recv_ns));
        }
        let size = tick.size.unwrap_or(0.0);
        let mut late = 0;
        for (index, (channel, bars)) in state.bars.iter_mut().enumerate() {
            if tick.seq <= bars.through {
                continue; // Accounted for by the message a restart continued from.
            }
            let (was_open, was_dirty) = (bars.open().map(|b| b.start_ns), bars.dirty);
            match bars.trade(tick.ts_ns, price, size) {
                Applied::Late => {
                    late += 1;
                    continue;
                }
                Applied::Into => {}
                Applied::Closed(bar) => {
                    // It holds the ticks before this one: this one opened the next bar.
                    let through = Seq(tick.seq.0 - 1);
                    out.push(bar_item(channel, bar, bars.recent(), through, tick.recv_ns));
                    if index == state.minute {
                        state.window.push(&bar);
                    }
                }
            }
            if index == state.minute {
                state.window.saw(price);
                if !state.ticker_dirty {
                    state.ticker_dirty = true;
                    self.dirty_tickers.push(i);
                }
            }
            if !was_dirty {
                self.dirty_bars.push((i, index as u8));
            }
            let opened = bars.open().map(|b| b.start_ns);
            if opened != was_open
                && let (Some(start_ns), Some(end)) = (opened, bars.open_end_ns())
            {
                let at_ns = wall_time(state.clock, end + self.grace_ns);
                let what = What::Close {
                    index: index as u8,
                    start_ns,
                };
                self.due.push(Reverse(Due {
                    at_ns,
                    symbol: i,
                    what,
                }));
            }
        }
        if late > 0 {
            metrics::add(&self.metrics.derived.late_trades, late);
        }
    }

    /// The timed work at relay time `now_ns`: closes the bars that are over, rolls the
    /// windows, then sends each changed open bar and ticker once; appended to `out`.
    pub fn on_timer(&mut self, now_ns: u64, out: &mut Vec<Item>) {
        while let Some(Reverse(due)) = self.due.peek().copied()
            && due.at_ns <= now_ns
        {
            self.due.pop();
            self.fire(due, now_ns, out);
        }
        for (i, index) in std::mem::take(&mut self.dirty_bars) {
            let state = &mut self.symbols[i as usize];
            let (channel, bars) = &mut state.bars[usize::from(index)];
            if let Some(bar) = bars.open().copied().filter(|_| bars.dirty) {
                bars.dirty = false;
                out.push(bar_item(
                    channel,
                    bar,
                    bars.recent(),
                    state.last_tick,
                    now_ns,
                ));
            }
        }
        for i in std::mem::take(&mut self.dirty_tickers) {
            self.send_ticker(i, now_ns, out);
        }
    }

    /// Continues from what the stream held: each channel's newest bar and closed bars, the
    /// tickers last sent, then the retained ticks each bar message did not account for.
    pub fn restore(&mut self, restored: Restored, now_ns: u64, out: &mut Vec<Item>) {
        for message in &restored.bars {
            let Some(DerivedName::Bars { interval, symbol }) =
                DerivedName::parse(message.channel.as_str())
            else {
                continue;
            };
            let (Ok(symbol), Some(index)) = (
                Symbol::parse(symbol),
                self.intervals
                    .iter()
                    .position(|i| i.to_string() == interval),
            ) else {
                continue; // An interval no longer configured.
            };
            let closed = restored.closed.get(&message.channel);
            let closed = closed.map_or(&[][..], Vec::as_slice);
            let i = self.symbol(&symbol);
            let state = &mut self.symbols[i as usize];
            state.bars[index]
                .1
                .restore(message.bar, closed, message.tick_seq);
            if index == state.minute {
                for bar in closed {
                    state.window.push(bar);
                }
                if let Some(open) = state.bars[index].1.open() {
                    state.window.saw(open.close);
                }
            }
        }
        for ticker in &restored.tickers {
            let Some(DerivedName::Ticker { symbol }) = DerivedName::parse(ticker.channel.as_str())
            else {
                continue;
            };
            if let Ok(symbol) = Symbol::parse(symbol) {
                let i = self.symbol(&symbol);
                self.symbols[i as usize].ticker_sent = Some(ticker.stats);
            }
        }
        for tick in &restored.ticks {
            self.trade(tick, out);
        }
        for i in 0..self.symbols.len() as u32 {
            let state = &mut self.symbols[i as usize];
            for (index, (_, bars)) in state.bars.iter().enumerate() {
                if let (Some(bar), Some(end)) = (bars.open(), bars.open_end_ns()) {
                    let at_ns = wall_time(state.clock, end + self.grace_ns);
                    let what = What::Close {
                        index: index as u8,
                        start_ns: bar.start_ns,
                    };
                    self.due.push(Reverse(Due {
                        at_ns,
                        symbol: i,
                        what,
                    }));
                }
            }
            if !state.ticker_dirty {
                state.ticker_dirty = true;
                self.dirty_tickers.push(i);
            }
        }
        self.on_timer(now_ns, out);
    }

    fn fire(&mut self, due: Due, now_ns: u64, out: &mut Vec<Item>) {
        let i = due.symbol;
        let state = &mut self.symbols[i as usize];
        let clock = event_time(state.clock, now_ns);
        match due.what {
            What::Close { index, start_ns } => {
                let (channel, bars) = &mut state.bars[usize::from(index)];
                let Some(end) = bars
                    .open_end_ns()
                    .filter(|_| bars.open().is_some_and(|b| b.start_ns == start_ns))
                else {
                    return; // Closed by a trade since.
                };
                if clock < end + self.grace_ns {
                    // Its symbol's clock moved less than the wall clock: look again then.
                    let at_ns = wall_time(state.clock, end + self.grace_ns).max(now_ns + 1);
                    self.due.push(Reverse(Due { at_ns, ..due }));
                    return;
                }
                let bar = bars.close().expect("checked open above");
                out.push(bar_item(
                    channel,
                    bar,
                    bars.recent(),
                    state.last_tick,
                    now_ns,
                ));
                if usize::from(index) == state.minute {
                    state.window.push(&bar);
                    if !state.ticker_dirty {
                        state.ticker_dirty = true;
                        self.dirty_tickers.push(i);
                    }
                }
            }
            What::Roll => {
                state.roll_scheduled = false;
                if state.window.evict(clock) {
                    if !state.ticker_dirty {
                        state.ticker_dirty = true;
                        self.dirty_tickers.push(i);
                    }
                } else {
                    self.schedule_roll(i, now_ns);
                }
            }
        }
    }

    fn send_ticker(&mut self, i: u32, now_ns: u64, out: &mut Vec<Item>) {
        let state = &mut self.symbols[i as usize];
        state.ticker_dirty = false;
        let clock = event_time(state.clock, now_ns);
        state.window.evict(clock);
        let open = state.bars[state.minute].1.open().copied();
        if let Some(stats) = state.window.stats(open.as_ref(), clock)
            && state.ticker_sent != Some(stats)
        {
            state.ticker_sent = Some(stats);
            out.push(Item::Ticker(Box::new(Ticker {
                channel: state.ticker.clone(),
                seq: Seq(0),
                stats,
                ts_ns: clock,
                recv_ns: now_ns,
            })));
        }
        self.schedule_roll(i, now_ns);
    }

    /// Schedules the next roll of the window, never at or before `now_ns` (the timer's
    /// loop takes what is due: a roll due again at once would never let it end).
    fn schedule_roll(&mut self, i: u32, now_ns: u64) {
        let state = &mut self.symbols[i as usize];
        if state.roll_scheduled {
            return;
        }
        if let Some(leaves_ns) = state.window.next_eviction_ns() {
            state.roll_scheduled = true;
            let at_ns = wall_time(state.clock, leaves_ns).max(now_ns + 1);
            self.due.push(Reverse(Due {
                at_ns,
                symbol: i,
                what: What::Roll,
            }));
        }
    }

    fn symbol(&mut self, symbol: &Symbol) -> u32 {
        if let Some(&i) = self.index.get(symbol) {
            return i;
        }
        let i = u32::try_from(self.symbols.len()).expect("--max-symbols bounds symbols");
        let minute = self
            .intervals
            .iter()
            .position(|i| *i == BarInterval::MINUTE)
            .expect("config checks --bar-intervals holds 1m");
        self.symbols.push(SymbolState {
            bars: self
                .intervals
                .iter()
                .map(|i| {
                    let channel = bars_channel(*i, symbol.as_str());
                    (channel, BarBuilder::new(*i, self.keep))
                })
                .collect(),
            minute,
            window: Window::default(),
            ticker: ticker_channel(symbol.as_str()),
            ticker_sent: None,
            ticker_dirty: false,
            roll_scheduled: false,
            clock: None,
            last_tick: Seq(0),
        });
        self.index.insert(symbol.clone(), i);
        i
    }
}

fn bar_item(
    channel: &Channel,
    bar: BarValues,
    recent: Recent,
    tick_seq: Seq,
    recv_ns: u64,
) -> Item {
    Item::Bar(Box::new(Bar {
        channel: channel.clone(),
        seq: Seq(0),
        bar,
        recent,
        tick_seq,
        recv_ns,
    }))
}

/// The symbol's event time at relay time `now_ns`: its newest trade's `ts_ns` plus the time
/// since that trade arrived (the relay's clock before its first trade).
fn event_time(clock: Option<(u64, u64)>, now_ns: u64) -> u64 {
    match clock {
        Some((ts_ns, recv_ns)) => ts_ns.saturating_add(now_ns.saturating_sub(recv_ns)),
        None => now_ns,
    }
}

/// The relay time at which the symbol's event clock reaches `event_ns`.
fn wall_time(clock: Option<(u64, u64)>, event_ns: u64) -> u64 {
    match clock {
        Some((ts_ns, recv_ns)) => {
            let at = i128::from(event_ns) - i128::from(ts_ns) + i128::from(recv_ns);
            u64::try_from(at.max(0)).unwrap_or(u64::MAX)
        }
        None => event_ns,
    }
}

fn nanos(d: std::time::Duration) -> u64 {
    u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;
    use crate::tick::RawTick;
    use proptest::prelude::*;

    const S: u64 = 1_000_000_000;
    /// Event time of the tests' trades: a whole day, so minutes and hours line up.
    const T0: u64 = 1_764_028_800 * S;

    fn engine(grace: std::time::Duration) -> Derived {
        let mut config = Config::for_tests().derived;
        config.bar_grace = grace;
        Derived::new(&config, Arc::new(Metrics::new(1))).expect("bars are on by default")
    }

    fn trade(seq: u64, ts_ns: u64, price: f64, recv_ns: u64) -> Tick {
        let mut tick = Tick::try_from(RawTick {
            symbol: "X".into(),
            price: Some(price),
            size: Some(1.0),
            ts_ns,
            ..RawTick::default()
        })
        .unwrap();
        tick.seq = Seq(seq);
        tick.recv_ns = recv_ns;
        tick
    }

    fn bars(items: &[Item], channel: &str) -> Vec<BarValues> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Bar(b) if b.channel.as_str() == channel => Some(b.bar),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn a_trade_closes_bars_at_once_and_updates_wait_for_the_timer() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        derived.trade(&trade(1, T0 + 100, 10.0, T0 + 100), &mut out);
        derived.trade(&trade(2, T0 + 200, 11.0, T0 + 200), &mut out);
        assert!(out.is_empty(), "nothing per trade until a bar closes");
        derived.trade(&trade(3, T0 + S + 1, 12.0, T0 + S + 1), &mut out);
        let closed = bars(&out, "bars:1s:X");
        assert_eq!(closed.len(), 1);
        assert!(closed[0].closed && closed[0].trades == 2 && closed[0].close == 11.0);
        let Item::Bar(bar) = &out[0] else { panic!() };
        assert_eq!(
            bar.tick_seq,
            Seq(2),
            "the closing trade opened the next bar"
        );
        out.clear();
        derived.on_timer(T0 + S + 2, &mut out);
        let open: Vec<&str> = out
            .iter()
            .map(|i| match i {
                Item::Bar(b) if !b.bar.closed => b.channel.as_str(),
                Item::Ticker(t) => t.channel.as_str(),
                _ => "closed",
            })
            .collect();
        assert_eq!(
            open,
            [
                "bars:1s:X",
                "bars:1m:X",
                "bars:5m:X",
                "bars:1h:X",
                "ticker:X"
            ]
        );
        out.clear();
        derived.on_timer(T0 + S + 3, &mut out);
        assert!(out.is_empty(), "nothing changed: nothing sent");
    }

    #[test]
    fn a_trade_from_further_ahead_than_the_skew_allows_is_counted_not_applied() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        // --bar-max-skew is 10 s: a trade stamped an hour after it arrived is refused.
        derived.trade(&trade(1, T0 + 3_600 * S, 10.0, T0), &mut out);
        derived.on_timer(T0 + S, &mut out);
        assert!(out.is_empty(), "{out:?}");
        let future = derived
            .metrics
            .derived
            .future_trades
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(future, 1);
        // Within the skew, and at its very end: applied.
        derived.trade(&trade(2, T0 + 5 * S, 10.0, T0), &mut out);
        derived.trade(&trade(3, T0 + 10 * S, 10.0, T0), &mut out);
        derived.on_timer(T0 + S, &mut out);
        assert!(!bars(&out, "bars:1s:X").is_empty());
        let future = derived
            .metrics
            .derived
            .future_trades
            .load(std::sync::atomic::Ordering::Relaxed);
        assert_eq!(future, 1, "10 s ahead is within a skew of 10 s");
    }

    #[test]
    fn a_quiet_bar_closes_once_its_symbols_clock_passes_its_end_and_the_grace() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        // The feed runs 10 s behind the relay's clock: event time follows it.
        let lag = 10 * S;
        derived.trade(&trade(1, T0 + S / 2, 10.0, T0 + S / 2 + lag), &mut out);
        derived.on_timer(T0 + 3 * S + lag - 1, &mut out);
        assert!(bars(&out, "bars:1s:X").iter().all(|b| !b.closed));
        out.clear();
        derived.on_timer(T0 + 3 * S + lag, &mut out);
        let closed: Vec<BarValues> = bars(&out, "bars:1s:X");
        assert_eq!(closed.len(), 1);
        assert!(
            closed[0].closed,
            "1 s + 2 s grace after its start, in event time"
        );
        assert!(bars(&out, "bars:1m:X").is_empty(), "the minute is not over");
        derived.trade(&trade(2, T0 + S / 2 + 1, 11.0, T0 + 4 * S + lag), &mut out);
        assert_eq!(
            derived
                .metrics
                .derived
                .late_trades
                .load(std::sync::atomic::Ordering::Relaxed),
            1,
            "its second is closed: late for 1s, on time for the others"
        );
    }

    #[test]
    fn a_bar_whose_symbols_clock_fell_behind_is_looked_at_again_when_it_can_be_over() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        // On time at first: the 1 s bar is due at T0 + 3 s (its end and the grace).
        derived.trade(&trade(1, T0 + S / 2, 10.0, T0 + S / 2), &mut out);
        // Then the feed falls 1.4 s behind, within the same second.
        derived.trade(&trade(2, T0 + 6 * S / 10, 11.0, T0 + 2 * S), &mut out);
        out.clear();
        // At T0 + 3 s the symbol's clock reads T0 + 1.6 s: the bar cannot be over yet.
        derived.on_timer(T0 + 3 * S, &mut out);
        assert!(bars(&out, "bars:1s:X").iter().all(|b| !b.closed));
        // Its clock reaches T0 + 3 s at T0 + 4.4 s: the next look is then.
        let next = derived.due.peek().expect("the bar is due again").0;
        assert_eq!(next.at_ns, T0 + 44 * S / 10);
        out.clear();
        derived.on_timer(T0 + 44 * S / 10, &mut out);
        let closed = bars(&out, "bars:1s:X");
        assert_eq!(closed.len(), 1);
        assert!(closed[0].closed && closed[0].trades == 2);
    }

    #[test]
    fn a_ticker_rolls_its_window_without_trades() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        derived.trade(&trade(1, T0, 10.0, T0), &mut out);
        derived.trade(&trade(2, T0 + 61 * S, 12.0, T0 + 61 * S), &mut out);
        derived.on_timer(T0 + 61 * S, &mut out);
        let stats = last_ticker(&out).unwrap();
        assert_eq!((stats.open, stats.last, stats.volume), (10.0, 12.0, 2.0));
        out.clear();
        // Every bar closes (the last hour's too); then nothing is due but the roll.
        derived.on_timer(T0 + 4_000 * S, &mut out);
        out.clear();
        // 24 h after the first minute began it leaves the window.
        derived.on_timer(T0 + 86_400 * S, &mut out);
        let stats = last_ticker(&out).expect("the window changed");
        assert_eq!((stats.open, stats.last, stats.volume), (12.0, 12.0, 1.0));
    }

    fn last_ticker(items: &[Item]) -> Option<TickerValues> {
        items.iter().rev().find_map(|i| match i {
            Item::Ticker(t) => Some(t.stats),
            _ => None,
        })
    }

    #[test]
    fn with_only_the_minute_bars_on_the_ticker_still_follows_each_trade() {
        let mut config = Config::for_tests().derived;
        config.bar_intervals = crate::config::BarIntervals::parse("1m").expect("1m");
        let mut derived = Derived::new(&config, Arc::new(Metrics::new(1))).expect("bars on");
        let mut out = Vec::new();
        derived.trade(&trade(1, T0 + S / 2, 10.0, T0 + S / 2), &mut out);
        derived.trade(&trade(2, T0 + S, 12.0, T0 + S), &mut out);
        derived.on_timer(T0 + 2 * S, &mut out);
        let ticker = last_ticker(&out).expect("a ticker after the trades");
        assert_eq!((ticker.last, ticker.open, ticker.high), (12.0, 10.0, 12.0));
    }

    #[test]
    fn a_trade_at_the_clocks_own_time_leaves_the_clock_where_it_was() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        derived.trade(&trade(1, T0 + S / 2, 10.0, T0 + S / 2), &mut out);
        // The same event time, arriving a second later: no newer than the clock.
        derived.trade(&trade(2, T0 + S / 2, 10.0, T0 + S / 2 + S), &mut out);
        out.clear();
        // The 1 s bar's end and grace, on the clock its first trade set.
        derived.on_timer(T0 + 3 * S, &mut out);
        assert!(bars(&out, "bars:1s:X").iter().any(|b| b.closed), "{out:?}");
    }

    #[test]
    fn the_24_hour_window_is_of_minutes_so_25_minutes_of_seconds_all_count() {
        let mut derived = engine(std::time::Duration::from_secs(2));
        let mut out = Vec::new();
        derived.trade(&trade(1, T0, 100.0, T0), &mut out);
        for second in 1..1_500 {
            let at = T0 + second * S;
            derived.trade(&trade(second + 1, at, 10.0, at), &mut out);
            if second % 10 == 0 {
                derived.on_timer(at, &mut out);
            }
        }
        derived.on_timer(T0 + 1_600 * S, &mut out);
        let stats = last_ticker(&out).expect("a ticker");
        assert_eq!(
            (stats.open, stats.high, stats.volume),
            (100.0, 100.0, 1_500.0)
        );
    }

    #[test]
    fn a_restore_sends_the_ticker_the_stream_lacks() {
        let grace = std::time::Duration::from_secs(2);
        let now = T0 + 10 * S;
        let mut before = Vec::new();
        let mut first = engine(grace);
        first.trade(&trade(1, T0, 10.0, T0), &mut before);
        first.trade(&trade(2, T0 + S, 11.0, T0 + S), &mut before);
        first.on_timer(now, &mut before);
        let sent = last_ticker(&before).expect("a ticker before the stop");
        // What the stream kept: the bars, not the ticker (the sequencer stopped first).
        let mut restored = Restored::default();
        let mut newest: HashMap<Channel, Bar> = HashMap::new();
        for item in &before {
            if let Item::Bar(bar) = item {
                if bar.bar.closed {
                    let closed = restored.closed.entry(bar.channel.clone()).or_default();
                    closed.push(bar.bar);
                }
                newest.insert(bar.channel.clone(), (**bar).clone());
            }
        }
        restored.bars = newest.into_values().collect();
        let mut after = Vec::new();
        engine(grace).restore(restored, now, &mut after);
        assert_eq!(last_ticker(&after), Some(sent));
    }

    proptest! {
        /// A sequencer that stops after any tick and continues from what it published
        /// (each channel's newest message, the closed bars, the ticks) ends with exactly the
        /// closed bars, open bars and ticker of one that never stopped.
        #[test]
        fn a_restart_continues_the_bars_exactly(
            steps in proptest::collection::vec((0u64..200, 1u32..100, any::<bool>()), 1..120),
            stop_at in 0usize..120,
        ) {
            let grace = std::time::Duration::from_secs(3600);
            let now = T0 + 10_000 * S;
            let ticks: Vec<Tick> = steps
                .iter()
                .enumerate()
                .map(|(i, (secs, price, _))| trade(i as u64 + 1, T0 + secs * S, f64::from(*price), now))
                .collect();
            // The timer runs where the steps say; a stop may come between a trade and it.
            let run = |derived: &mut Derived, from: usize, to: usize, out: &mut Vec<Item>| {
                for (tick, (_, _, timer)) in ticks[from..to].iter().zip(&steps[from..to]) {
                    derived.trade(tick, out);
                    if *timer {
                        derived.on_timer(now, out);
                    }
                }
            };
            let mut whole = Vec::new();
            let mut uninterrupted = engine(grace);
            run(&mut uninterrupted, 0, ticks.len(), &mut whole);
            uninterrupted.on_timer(now, &mut whole);

            let stop = stop_at.min(ticks.len());
            let mut before = Vec::new();
            run(&mut engine(grace), 0, stop, &mut before);
            let mut restored = Restored { ticks: ticks[..stop].to_vec(), ..Restored::default() };
            let mut newest: HashMap<Channel, Bar> = HashMap::new();
            for item in &before {
                match item {
                    Item::Bar(bar) => {
                        if bar.bar.closed {
                            restored.closed.entry(bar.channel.clone()).or_default().push(bar.bar);
                        }
                        newest.insert(bar.channel.clone(), (**bar).clone());
                    }
                    Item::Ticker(t) => restored.tickers = vec![(**t).clone()],
                    _ => {}
                }
            }
            restored.bars = newest.into_values().collect();
            let mut again = engine(grace);
            let mut after = Vec::new();
            again.restore(restored, now, &mut after);
            run(&mut again, stop, ticks.len(), &mut after);
            again.on_timer(now, &mut after);

            let closed = |items: &[Item]| -> Vec<(String, BarValues)> {
                items.iter().filter_map(|i| match i {
                    Item::Bar(b) if b.bar.closed => Some((b.channel.to_string(), b.bar)),
                    _ => None,
                }).collect()
            };
            let mut both = closed(&before);
            both.extend(closed(&after));
            prop_assert_eq!(closed(&whole), both, "every bar closed once, the same");
            let last_open = |items: &[Item], channel: &str| bars(items, channel).last().copied();
            for channel in ["bars:1s:X", "bars:1m:X", "bars:5m:X", "bars:1h:X"] {
                let continued = last_open(&after, channel).or(last_open(&before, channel));
                prop_assert_eq!(last_open(&whole, channel), continued, "{}", channel);
            }
            let continued = last_ticker(&after).or(last_ticker(&before));
            prop_assert_eq!(last_ticker(&whole), continued);
        }
    }
}
