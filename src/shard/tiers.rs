//! [`Throttle`]: a shard's rate tiers. For every tiered key with a subscriber on this shard
//! (`BTC-USD@1s`), what its base did since the tier's last frame; at each tier interval, one
//! frame per such key that changed, shared by every subscriber of that key on the shard.
//!
//! Cost is per tier, not per client: a tick of a base with tier subscribers updates one
//! pending record per tier (the newest item, the first seq, the trades' count, volume, high
//! and low); at the interval each changed key's frame is built once and encoded once per
//! encoding (`Frames`), then fanned out like a tick. One clock per tier, aligned on the wall
//! clock (multiples of the interval since the Unix epoch), so every shard and every edge
//! fires its tier at about the same moment.
//!
//! A book channel on a tier (`book:BTC-USD:10@1s`) gets, instead of its newest delta, the
//! whole book at the channel's depth as of the interval's newest seq (the shard's copy,
//! `shard/books.rs`): a snapshot standing for `from..=seq`, so nothing the interval changed
//! can be lost by merging, and a client's book is right after every frame (Binance's
//! `@depth10@100ms` streams send their top levels the same way).
//!
//! What stays true: a tiered key's frames chain (each frame's `from` is the previous frame's
//! seq + 1), except across seqs this shard never saw (an edge's stream skipped them), which
//! are announced as a `gap` before the frame after them. The last frame of each key is kept:
//! it is the key's snapshot, so a new subscriber's next frame chains onto what it was given.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use crate::book::BookUpdate;
use crate::encode::Frames;
use crate::event::{Item, Key, Tier, TierItem, Trades};
use crate::tick::Seq;

/// Every tiered key with local subscribers, and the clock of each tier in use.
#[derive(Debug, Default)]
pub struct Throttle {
    /// Base key → its tiered keys with subscribers here.
    by_base: HashMap<Key, Vec<Slot>>,
    /// One clock per tier in use.
    clocks: Vec<Clock>,
}

#[derive(Debug)]
struct Slot {
    key: Key,
    /// The last frame sent (or, before the first, the base's value when the slot opened):
    /// the key's snapshot, and what the next frame chains onto.
    last: Option<Arc<Frames>>,
    pending: Option<Pending>,
}

/// What a base did since its tier's last frame.
#[derive(Debug)]
struct Pending {
    newest: Arc<Frames>,
    /// The first seq seen since the last frame.
    from: Seq,
    trades: Trades,
}

#[derive(Debug)]
struct Clock {
    tier: Tier,
    next: Instant,
    /// Tiered keys of this tier with a pending change.
    changed: Vec<Key>,
    /// Slots of this tier (the clock stops at zero).
    slots: usize,
}

/// A frame a tier fire produced, and the seqs its subscribers will never see before it.
#[derive(Debug)]
pub struct Fired {
    /// The frame (keyed by the tiered key).
    pub frames: Arc<Frames>,
    /// Seqs of the base this shard never saw between the last frame and this one.
    pub gap: Option<(Seq, Seq)>,
}

impl Throttle {
    /// Starts throttling `key` (a tiered key that just got its first subscriber here);
    /// `base_last` is its base's last value now (what the key's first snapshot is: for a
    /// book channel, the book at its depth).
    pub fn open(&mut self, key: &Key, base_last: Option<&Arc<Frames>>, now: Instant) {
        let tier = key.tier().expect("only tiered keys are throttled").clone();
        let slots = self.by_base.entry(key.base().clone()).or_default();
        if slots.iter().any(|s| s.key == *key) {
            return;
        }
        let last = base_last.map(|b| frame(key, b.item().clone(), b.seq(), trades_of(b)));
        slots.push(Slot {
            key: key.clone(),
            last,
            pending: None,
        });
        match self.clocks.iter_mut().find(|c| c.tier == tier) {
            Some(clock) => clock.slots += 1,
            None => self.clocks.push(Clock {
                next: next_boundary(tier.period(), now),
                tier,
                changed: Vec::new(),
                slots: 1,
            }),
        }
    }

    /// Stops throttling `key` (its last subscriber here left).
    pub fn close(&mut self, key: &Key) {
        let Some(slots) = self.by_base.get_mut(key.base()) else {
            return;
        };
        let before = slots.len();
        slots.retain(|s| s.key != *key);
        if slots.len() == before {
            return;
        }
        if slots.is_empty() {
            self.by_base.remove(key.base());
        }
        let tier = key.tier().expect("only tiered keys are throttled");
        if let Some(at) = self.clocks.iter().position(|c| c.tier == *tier) {
            self.clocks[at].slots -= 1;
            if self.clocks[at].slots == 0 {
                self.clocks.swap_remove(at);
            }
        }
    }

    /// Forgets every key's last frame and pending change (the stream started another
    /// history); the keys stay throttled, and their next frame starts the new history.
    pub fn forget_history(&mut self) {
        for slot in self.by_base.values_mut().flatten() {
            slot.last = None;
            slot.pending = None;
        }
        for clock in &mut self.clocks {
            clock.changed.clear();
        }
    }

    /// Whether no key is throttled (the fan-out skips [`Throttle::observe`] then).
    pub fn is_empty(&self) -> bool {
        self.by_base.is_empty()
    }

    /// Notes a sequenced item of a base (a tick or an event) for every tier following it.
    pub fn observe(&mut self, frames: &Arc<Frames>) {
        let Some(slots) = self.by_base.get_mut(frames.key()) else {
            return;
        };
        for slot in slots {
            match &mut slot.pending {
                Some(pending) => {
                    pending.newest = frames.clone();
                    if let Some(tick) = frames.tick() {
                        pending.trades.add(tick);
                    }
                }
                None => {
                    slot.pending = Some(Pending {
                        newest: frames.clone(),
                        from: frames.seq(),
                        trades: trades_of(frames),
                    });
                    let tier = slot.key.tier().expect("only tiered keys are throttled");
                    if let Some(clock) = self.clocks.iter_mut().find(|c| c.tier == *tier) {
                        clock.changed.push(slot.key.clone());
                    }
                }
            }
        }
    }

    /// When the next tier fires (`None`: no tier in use).
    pub fn next_deadline(&self) -> Option<Instant> {
        self.clocks.iter().map(|c| c.next).min()
    }

    /// Fires every tier whose interval ended by `now`: one frame per key that changed, in no
    /// particular order across keys. `book` gives a book channel's whole book at its depth
    /// (the base key of a book tier); a book the shard does not hold sends nothing this
    /// interval, and the next frame stands for these seqs too.
    pub fn fire(&mut self, now: Instant, book: impl Fn(&Key) -> Option<BookUpdate>) -> Vec<Fired> {
        let mut fired = Vec::new();
        for clock in &mut self.clocks {
            if clock.next > now {
                continue;
            }
            clock.next = next_boundary(clock.tier.period(), now);
            for key in clock.changed.drain(..) {
                let Some(slot) = self
                    .by_base
                    .get_mut(key.base())
                    .and_then(|slots| slots.iter_mut().find(|s| s.key == key))
                else {
                    continue; // closed since it changed
                };
                let Some(pending) = slot.pending.take() else {
                    continue;
                };
                let newest = match pending.newest.item() {
                    Item::Book(_) => match book(key.base()) {
                        Some(whole) => Item::Book(whole),
                        None => continue,
                    },
                    item => item.clone(),
                };
                let expected = slot.last.as_ref().map(|l| l.seq().next());
                let (from, gap) = match expected {
                    Some(next) if pending.from > next => {
                        (pending.from, Some((next, Seq(pending.from.0 - 1))))
                    }
                    Some(next) => (next, None),
                    None => (pending.from, None),
                };
                let frames = frame(&key, newest, from, pending.trades);
                slot.last = Some(frames.clone());
                fired.push(Fired { frames, gap });
            }
        }
        fired
    }

    /// The last frame of `key` (its snapshot).
    pub fn last(&self, key: &Key) -> Option<&Arc<Frames>> {
        self.by_base
            .get(key.base())?
            .iter()
            .find(|s| s.key == *key)?
            .last
            .as_ref()
    }

    /// A frame of `key` for one client that resumes: `newest` standing for `from..=` its
    /// seq, over `items` (the base's items of that range).
    pub fn catch_up(key: &Key, items: &[&Arc<Frames>], from: Seq) -> Option<Arc<Frames>> {
        let newest = items.last()?;
        let mut trades = Trades::default();
        for item in items {
            if let Some(tick) = item.tick() {
                trades.add(tick);
            }
        }
        Some(frame(key, newest.item().clone(), from, trades))
    }
}

/// The tier frame of `key` whose newest base item is `newest`, standing for `from..=`. A
/// book says what it stands for in its own `from_seq`.
fn frame(key: &Key, mut newest: Item, from: Seq, trades: Trades) -> Arc<Frames> {
    if let Item::Book(book) = &mut newest {
        book.from_seq = Some(from);
    }
    let item = TierItem {
        key: key.clone(),
        newest,
        from,
        trades: key.is_symbol().then_some(trades),
    };
    Arc::new(Frames::of(Item::Tier(Box::new(item))))
}

fn trades_of(frames: &Frames) -> Trades {
    let mut trades = Trades::default();
    if let Some(tick) = frames.tick() {
        trades.add(tick);
    }
    trades
}

/// The first multiple of `period` since the Unix epoch after `now`, as an instant.
fn next_boundary(period: Duration, now: Instant) -> Instant {
    let period_ns = period.as_nanos().max(1);
    let wall_ns = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos());
    let wait_ns = period_ns - wall_ns % period_ns;
    let wait = Duration::from_nanos(u64::try_from(wait_ns).unwrap_or(u64::MAX));
    now + wait
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Tiered;
    use crate::tick::{RawTick, Symbol, Tick};

    fn tick(seq: u64, price: f64, size: f64) -> Arc<Frames> {
        let mut tick = Tick::try_from(RawTick {
            symbol: "T".into(),
            price: Some(price),
            size: Some(size),
            ts_ns: seq,
            ..RawTick::default()
        })
        .unwrap();
        tick.seq = Seq(seq);
        Arc::new(Frames::new(tick))
    }

    fn tiered(period_ms: u64) -> Key {
        let base = Key::Symbol(Symbol::parse("T").unwrap());
        Tiered::key(base, Tier::of(Duration::from_millis(period_ms)))
    }

    fn tier_item(frames: &Frames) -> &TierItem {
        match frames.item() {
            Item::Tier(t) => t,
            other => panic!("a tier frame, got {other:?}"),
        }
    }

    #[test]
    fn one_frame_per_interval_with_the_newest_value_and_what_it_stands_for() {
        let now = Instant::now();
        let key = tiered(1000);
        let mut throttle = Throttle::default();
        throttle.open(&key, Some(&tick(4, 10.0, 1.0)), now);
        assert_eq!(
            throttle.last(&key).unwrap().seq(),
            Seq(4),
            "the base's value"
        );
        for (seq, price) in [(5, 11.0), (6, 9.0), (7, 10.5)] {
            throttle.observe(&tick(seq, price, 2.0));
        }
        assert!(
            throttle.fire(now, |_| None).is_empty(),
            "not before the interval ends"
        );
        let later = now + Duration::from_secs(2);
        let fired = throttle.fire(later, |_| None);
        assert_eq!(fired.len(), 1);
        let item = tier_item(&fired[0].frames);
        assert_eq!((item.from, item.newest.seq()), (Seq(5), Seq(7)));
        let trades = item.trades.unwrap();
        assert_eq!((trades.count, trades.volume), (3, 6.0));
        assert_eq!((trades.high, trades.low), (Some(11.0), Some(9.0)));
        assert!(fired[0].gap.is_none());
        assert!(
            throttle
                .fire(later + Duration::from_secs(2), |_| None)
                .is_empty(),
            "nothing changed: no frame"
        );
        throttle.observe(&tick(8, 12.0, 1.0));
        let fired = throttle.fire(later + Duration::from_secs(4), |_| None);
        assert_eq!(tier_item(&fired[0].frames).from, Seq(8), "chains onto 7");
    }

    #[test]
    fn seqs_never_seen_are_a_gap_before_the_next_frame() {
        let now = Instant::now();
        let key = tiered(100);
        let mut throttle = Throttle::default();
        throttle.open(&key, Some(&tick(1, 1.0, 1.0)), now);
        throttle.observe(&tick(5, 1.0, 1.0));
        let fired = throttle.fire(now + Duration::from_secs(1), |_| None);
        assert_eq!(fired[0].gap, Some((Seq(2), Seq(4))));
        assert_eq!(tier_item(&fired[0].frames).from, Seq(5));
    }

    #[test]
    fn a_new_history_forgets_the_old_frames_and_starts_the_next_from_its_first_seq() {
        let now = Instant::now();
        let key = tiered(100);
        let mut throttle = Throttle::default();
        throttle.open(&key, Some(&tick(9, 1.0, 1.0)), now);
        throttle.observe(&tick(10, 1.0, 1.0));
        throttle.forget_history();
        assert!(throttle.last(&key).is_none(), "no old frame as a snapshot");
        assert!(
            throttle
                .fire(now + Duration::from_secs(1), |_| None)
                .is_empty(),
            "the old history's pending change is gone"
        );
        throttle.observe(&tick(1, 2.0, 1.0));
        let fired = throttle.fire(now + Duration::from_secs(2), |_| None);
        assert_eq!(fired.len(), 1, "still throttled");
        assert!(fired[0].gap.is_none(), "no gap across histories");
        let item = tier_item(&fired[0].frames);
        assert_eq!((item.from, item.newest.seq()), (Seq(1), Seq(1)));
    }

    #[test]
    fn two_tiers_of_one_base_each_get_a_frame_and_opening_one_again_adds_none() {
        let now = Instant::now();
        let (one, two) = (tiered(1000), tiered(250));
        let mut throttle = Throttle::default();
        throttle.open(&one, None, now);
        throttle.open(&two, None, now);
        throttle.open(&one, None, now);
        throttle.observe(&tick(1, 1.0, 1.0));
        let fired = throttle.fire(now + Duration::from_secs(5), |_| None);
        let mut keys: Vec<String> = fired
            .iter()
            .map(|f| f.frames.key().as_str().to_owned())
            .collect();
        keys.sort();
        let mut want = vec![one.as_str().to_owned(), two.as_str().to_owned()];
        want.sort();
        assert_eq!(keys, want, "one frame per tier");
    }

    #[test]
    fn a_tier_shared_by_two_bases_keeps_its_clock_until_both_close() {
        let now = Instant::now();
        let other = Tiered::key(
            Key::Symbol(Symbol::parse("U").unwrap()),
            Tier::of(Duration::from_millis(1000)),
        );
        let (one, two) = (tiered(1000), other);
        let mut throttle = Throttle::default();
        throttle.open(&one, None, now);
        throttle.open(&two, None, now);
        throttle.close(&one);
        assert!(throttle.next_deadline().is_some(), "U@1s still ticks");
        throttle.close(&two);
        assert!(throttle.next_deadline().is_none(), "both closed");
    }

    #[test]
    fn a_closed_key_stops_its_clock_and_keeps_nothing() {
        let now = Instant::now();
        let (one, two) = (tiered(1000), tiered(250));
        let mut throttle = Throttle::default();
        throttle.open(&one, None, now);
        throttle.open(&two, None, now);
        assert!(throttle.next_deadline().is_some());
        throttle.observe(&tick(1, 1.0, 1.0));
        throttle.close(&one);
        throttle.close(&two);
        assert!(throttle.is_empty());
        assert!(throttle.next_deadline().is_none());
        assert!(
            throttle
                .fire(now + Duration::from_secs(5), |_| None)
                .is_empty()
        );
    }

    #[test]
    fn boundaries_are_aligned_on_the_wall_clock() {
        let now = Instant::now();
        let period = Duration::from_millis(250);
        let next = next_boundary(period, now);
        assert!(next > now && next <= now + period);
    }
}
