//! [`Queue`]: the bounded buffer between the connection task and the application, and
//! [`SharedQueue`], the one both hold.
//!
//! The task pushes what the [`SeqCheck`](crate::seq_check::SeqCheck) lets through; the
//! application pops. When the application reads too slowly the queue fills, and the
//! [`SlowConsumer`] policy decides: wait (TCP backpressure, then the relay's own policy and a
//! resume), conflate (keep only the newest tick of each key and report the skipped seqs as a
//! [`Gap`]), or fail with [`Error::ConsumerTooSlow`]. Whatever the policy, items of one key
//! stay in order and a skipped seq is always named.

use std::collections::{HashMap, VecDeque};
use std::sync::{Mutex, MutexGuard};
use std::task::Waker;

use tokio::sync::Notify;

use crate::error::Error;
use crate::item::{Gap, GapReason, Item, Stream};
use crate::options::SlowConsumer;

/// The queue as the task and the application share it.
#[derive(Debug)]
pub(crate) struct SharedQueue {
    queue: Mutex<Queue>,
    /// Signalled on every pop: the task may be waiting for space.
    pub(crate) space: Notify,
}

impl SharedQueue {
    /// An empty queue of `capacity` items.
    pub(crate) fn new(capacity: usize, policy: SlowConsumer) -> Self {
        Self {
            queue: Mutex::new(Queue::new(capacity, policy)),
            space: Notify::new(),
        }
    }

    /// The queue, locked.
    pub(crate) fn lock(&self) -> MutexGuard<'_, Queue> {
        // A panic while holding the lock leaves the queue consistent (every method completes
        // its change before it can panic), so a poisoned lock is still usable.
        self.queue
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// The buffer (see the module doc). Callers hold it behind a mutex.
#[derive(Debug)]
pub(crate) struct Queue {
    items: VecDeque<Item>,
    capacity: usize,
    policy: SlowConsumer,
    /// Streams whose ticks are being conflated, in the order they started (a raw stream and
    /// a tier of the same symbol conflate apart: their seqs are unrelated).
    slots: Vec<(Stream, Slot)>,
    slot_of: HashMap<Stream, usize>,
    /// Set once: the stream ends with this error after the items before it.
    failed: Option<Error>,
    /// The task has stopped: nothing more will be pushed.
    task_stopped: bool,
    /// The application's task, woken when there is something to pop.
    pub(crate) waker: Option<Waker>,
    /// The last seq popped per stream (`Client::positions`).
    popped: HashMap<Stream, u64>,
}

/// What a conflated key holds: the newest item and the seqs skipped before it.
#[derive(Debug, Default)]
struct Slot {
    skipped: Option<(u64, u64, GapReason)>,
    latest: Option<Item>,
}

/// What [`Queue::push`] did with an item.
#[derive(Debug, PartialEq)]
pub(crate) enum Pushed {
    /// Queued (or conflated): the task goes on.
    Done,
    /// The queue is full under [`SlowConsumer::Wait`]: wait for space and push again.
    Full(Box<Item>),
    /// The queue is full under [`SlowConsumer::Error`]: the stream now ends with the error.
    Failed,
}

impl Queue {
    /// An empty queue of `capacity` items.
    pub(crate) fn new(capacity: usize, policy: SlowConsumer) -> Self {
        Self {
            items: VecDeque::new(),
            capacity: capacity.max(1),
            policy,
            slots: Vec::new(),
            slot_of: HashMap::new(),
            failed: None,
            task_stopped: false,
            waker: None,
            popped: HashMap::new(),
        }
    }

    /// Adds an item from the connection task.
    pub(crate) fn push(&mut self, item: Item) -> Pushed {
        if self.failed.is_some() {
            return Pushed::Failed;
        }
        let key = match &item {
            Item::Tick(_)
            | Item::Snapshot(_)
            | Item::Event(_)
            | Item::Bar(_)
            | Item::BarSnapshot(_)
            | Item::Ticker(_)
            | Item::Undecodable(_) => item.span().map(|(stream, _, _)| stream),
            Item::Gap(g) => Some(Stream {
                key: g.key.clone(),
                tier: g.tier.clone(),
            }),
            Item::Reset(r) => Some(Stream {
                key: r.key.clone(),
                tier: r.tier.clone(),
            }),
            _ => None,
        };
        // A key that is being conflated keeps conflating until its slot is flushed, so that
        // its items stay in order.
        if let Some(at) = key.as_ref().and_then(|k| self.slot_of.get(k)).copied() {
            return self.conflate_into(at, item);
        }
        let conflatable = item.seq().is_some();
        if self.items.len() < self.capacity || !conflatable {
            // Status items, gaps and resets are rare: they never wait and are never dropped.
            self.items.push_back(item);
            self.wake();
            return Pushed::Done;
        }
        match self.policy {
            SlowConsumer::Wait => Pushed::Full(Box::new(item)),
            SlowConsumer::Error => {
                self.failed = Some(Error::ConsumerTooSlow {
                    capacity: self.capacity,
                });
                self.wake();
                Pushed::Failed
            }
            SlowConsumer::Conflate => {
                let key = key.expect("a tick, snapshot or event has a key");
                self.slot_of.insert(key.clone(), self.slots.len());
                self.slots.push((key, Slot::default()));
                self.conflate_into(self.slots.len() - 1, item)
            }
        }
    }

    /// The next item for the application, or `None` when there is none yet.
    pub(crate) fn pop(&mut self) -> Option<Result<Item, Error>> {
        if self.items.len() <= self.capacity / 2 {
            self.flush_slots();
        }
        match self.items.pop_front() {
            Some(item) => {
                if let Some((stream, _, seq)) = item.span() {
                    self.popped.insert(stream, seq);
                } else if let Item::Gap(g) = &item {
                    let stream = Stream {
                        key: g.key.clone(),
                        tier: g.tier.clone(),
                    };
                    self.popped.insert(stream, g.to);
                }
                Some(Ok(item))
            }
            None => self.failed.take().map(Err),
        }
    }

    /// The task has stopped: the stream ends once the queued items are read.
    pub(crate) fn task_stopped(&mut self) {
        self.task_stopped = true;
        self.wake();
    }

    /// The stream has ended: nothing queued and nothing more coming.
    pub(crate) fn finished(&self) -> bool {
        self.task_stopped && self.items.is_empty() && self.slots.is_empty() && self.failed.is_none()
    }

    /// Ends the stream with `error` once the queued items are read.
    pub(crate) fn fail(&mut self, error: Error) {
        self.failed.get_or_insert(error);
        self.wake();
    }

    /// How many `pop`s would return something now: items, conflated items and gaps, and a
    /// pending error.
    pub(crate) fn backlog(&self) -> usize {
        let conflated: usize = self
            .slots
            .iter()
            .map(|(_, slot)| {
                usize::from(slot.skipped.is_some()) + usize::from(slot.latest.is_some())
            })
            .sum();
        self.items.len() + conflated + usize::from(self.failed.is_some())
    }

    /// The last seq popped per stream.
    pub(crate) fn popped(&self) -> &HashMap<Stream, u64> {
        &self.popped
    }

    fn conflate_into(&mut self, at: usize, item: Item) -> Pushed {
        let (key, slot) = &mut self.slots[at];
        // The first seq the held item stands for (a tier frame's `from_seq`): dropping it
        // skips all of them.
        let latest_first = slot.latest.as_ref().and_then(Item::span).map(|(_, f, _)| f);
        match item {
            Item::Gap(gap) => {
                let from = slot
                    .skipped
                    .map(|(from, _, _)| from)
                    .or(latest_first)
                    .unwrap_or(gap.from);
                let reason = slot.skipped.map_or(gap.reason, |(_, _, r)| r);
                slot.skipped = Some((from, gap.to, reason));
                slot.latest = None;
            }
            Item::Reset(_) => {
                // A new history: deliver what the old one left, then the reset, in order.
                let key = key.clone();
                self.flush_slot(&key);
                self.items.push_back(item);
            }
            newer => {
                if let Some(prev) = latest_first {
                    let first = newer.span().map_or(prev + 1, |(_, f, _)| f);
                    let from = slot.skipped.map_or(prev, |(from, _, _)| from);
                    let reason = slot
                        .skipped
                        .map_or(GapReason::ClientConflated, |(_, _, r)| r);
                    slot.skipped = Some((from, first - 1, reason));
                }
                slot.latest = Some(newer);
            }
        }
        self.wake();
        Pushed::Done
    }

    fn flush_slots(&mut self) {
        while let Some((key, _)) = self.slots.first() {
            let key = key.clone();
            self.flush_slot(&key);
        }
    }

    fn flush_slot(&mut self, stream: &Stream) {
        let Some(at) = self.slot_of.remove(stream) else {
            return;
        };
        let (stream, slot) = self.slots.remove(at);
        for index in self.slot_of.values_mut() {
            if *index > at {
                *index -= 1;
            }
        }
        if let Some((from, to, reason)) = slot.skipped {
            self.items.push_back(Item::Gap(Gap {
                key: stream.key,
                tier: stream.tier,
                from,
                to,
                reason,
            }));
        }
        self.items.extend(slot.latest);
    }

    fn wake(&mut self) {
        if let Some(waker) = self.waker.take() {
            waker.wake();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::item::{Key, Kind, Tick};

    fn tick(symbol: &str, seq: u64) -> Item {
        Item::Tick(Tick {
            symbol: symbol.into(),
            seq,
            kind: Kind::Trade,
            ts_ns: seq,
            recv_ns: seq,
            price: Some(seq as f64),
            size: None,
            bid: None,
            ask: None,
            bid_size: None,
            ask_size: None,
            venue: None,
            tier: None,
        })
    }

    fn drain(q: &mut Queue) -> Vec<Item> {
        std::iter::from_fn(|| q.pop().map(|r| r.expect("no error"))).collect()
    }

    #[test]
    fn conflation_keeps_the_newest_and_names_what_it_skipped() {
        let mut q = Queue::new(2, SlowConsumer::Conflate);
        for seq in 1..=10 {
            assert_eq!(q.push(tick("A", seq)), Pushed::Done);
        }
        q.push(tick("B", 1));
        let out = drain(&mut q);
        let gap = Item::Gap(Gap {
            key: Key::Symbol("A".into()),
            tier: None,
            from: 3,
            to: 9,
            reason: GapReason::ClientConflated,
        });
        assert_eq!(
            out,
            vec![tick("A", 1), tick("A", 2), gap, tick("A", 10), tick("B", 1)]
        );
        assert_eq!(q.popped()[&Stream::parse("A", Key::Symbol)], 10);
    }

    #[test]
    fn tier_frames_conflate_apart_from_the_raw_stream_and_name_what_they_stood_for() {
        use crate::item::TickTier;
        let frame = |from_seq, seq| {
            let Item::Tick(mut t) = tick("A", seq) else {
                unreachable!()
            };
            t.tier = Some(TickTier {
                name: "1s".into(),
                from_seq,
                trades: seq - from_seq + 1,
                volume: 1.0,
                high: None,
                low: None,
            });
            Item::Tick(t)
        };
        let mut q = Queue::new(1, SlowConsumer::Conflate);
        q.push(tick("A", 1));
        q.push(frame(1, 4)); // conflating the tier from here
        q.push(tick("A", 2)); // the raw stream conflates in a slot of its own
        q.push(frame(5, 9));
        let out = drain(&mut q);
        let gap = Item::Gap(Gap {
            key: Key::Symbol("A".into()),
            tier: Some("1s".into()),
            from: 1,
            to: 4,
            reason: GapReason::ClientConflated,
        });
        assert_eq!(out, vec![tick("A", 1), gap, frame(5, 9), tick("A", 2)]);
        assert_eq!(q.popped()[&Stream::parse("A@1s", Key::Symbol)], 9);
        assert_eq!(q.popped()[&Stream::parse("A", Key::Symbol)], 2);
    }

    #[test]
    fn a_relay_gap_inside_a_conflated_run_merges_into_one_gap() {
        let mut q = Queue::new(1, SlowConsumer::Conflate);
        q.push(tick("A", 1));
        q.push(tick("A", 2)); // conflating from here
        q.push(Item::Gap(Gap {
            key: Key::Symbol("A".into()),
            tier: None,
            from: 3,
            to: 7,
            reason: GapReason::RelayConflated,
        }));
        q.push(tick("A", 8));
        let out = drain(&mut q);
        assert!(
            matches!(&out[1], Item::Gap(g) if (g.from, g.to) == (2, 7)),
            "{out:?}"
        );
        assert_eq!(out[2], tick("A", 8));
        assert_eq!(out.len(), 3);
    }

    #[test]
    fn the_error_policy_ends_the_stream_after_what_was_queued() {
        let mut q = Queue::new(2, SlowConsumer::Error);
        q.push(tick("A", 1));
        q.push(tick("A", 2));
        assert_eq!(q.push(tick("A", 3)), Pushed::Failed);
        assert_eq!(q.backlog(), 3, "two items and the error");
        assert!(matches!(q.pop(), Some(Ok(_))));
        assert!(matches!(q.pop(), Some(Ok(_))));
        assert!(matches!(
            q.pop(),
            Some(Err(Error::ConsumerTooSlow { capacity: 2 }))
        ));
    }

    #[test]
    fn the_wait_policy_hands_the_item_back() {
        let mut q = Queue::new(1, SlowConsumer::Wait);
        q.push(tick("A", 1));
        assert!(matches!(q.push(tick("A", 2)), Pushed::Full(_)));
        assert!(matches!(q.pop(), Some(Ok(_))));
        assert_eq!(q.push(tick("A", 2)), Pushed::Done);
    }
}
