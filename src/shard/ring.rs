//! [`Ring`]: a shard's record of one key: the replay ring of its newest items, whose
//! last entry is the key's last value.
//!
//! The ring lives in the shard, next to the live stream it is cut from: a resume is served
//! between two fan-out turns on the shard's own thread, so the replay ends exactly where
//! the live stream continues (no tick missing or repeated at the boundary) without a lock.
//! Entries are `Arc<Frames>` handles shared with the other shards, so N shards cost N
//! pointers per tick, not N copies.
//!
//! What stays true: the ring holds the newest `depth` ticks of the symbol in seq order with
//! no gap, and `since(seq)` returns exactly the ticks after `seq` or says why it cannot.
//! `depth` can shrink (never below 1) when many symbols share the shard's replay budget;
//! the oldest ticks go first.

use std::collections::VecDeque;
use std::sync::Arc;

use crate::encode::Frames;
use crate::tick::Seq;

/// The newest ticks of one symbol.
#[derive(Debug)]
pub struct Ring {
    ring: VecDeque<Arc<Frames>>,
    depth: usize,
}

/// What a resume from a position gets.
#[derive(Debug)]
pub enum Since<'a> {
    /// Every tick after the position, in order (possibly none: the client is up to date).
    Ticks(Vec<&'a Arc<Frames>>),
    /// The position is older than the ring: ticks `from..=to` are gone; `last` is the value
    /// to send as a snapshot.
    Gap {
        /// First missing seq.
        from: Seq,
        /// Last missing seq (the one before `last`).
        to: Seq,
        /// The newest tick.
        last: &'a Arc<Frames>,
    },
    /// The position is ahead of anything this relay has sequenced (e.g. it restarted):
    /// `last` is sent as a snapshot so the client can resynchronise.
    Ahead {
        /// The newest tick.
        last: &'a Arc<Frames>,
    },
}

impl Ring {
    /// An empty history keeping the newest `depth` ticks (at least one: the last value).
    pub fn new(depth: usize) -> Self {
        Self {
            ring: VecDeque::with_capacity(depth.clamp(1, INITIAL_CAPACITY)),
            depth: depth.max(1),
        }
    }

    /// Records the next tick (seq order is the sequencer's promise), keeping at most
    /// `depth` (the configured depth or less, see [`effective_depth`]).
    ///
    /// A seq that does not follow the newest (an edge whose stream no longer held the
    /// ticks between) restarts the ring at it: the ring stays gap-free, and a resume from
    /// before the jump gets a `gap`, never a silent skip.
    pub fn push(&mut self, frames: Arc<Frames>, depth: usize) {
        if self
            .ring
            .back()
            .is_some_and(|last| last.seq().next() != frames.seq())
        {
            self.ring.clear();
        }
        let depth = depth.clamp(1, self.depth);
        while self.ring.len() >= depth {
            self.ring.pop_front();
        }
        self.ring.push_back(frames);
    }

    /// Drops all but the newest `depth` ticks (at least the last value).
    pub fn truncate(&mut self, depth: usize) {
        let depth = depth.max(1);
        while self.ring.len() > depth {
            self.ring.pop_front();
        }
    }

    /// How many ticks it holds.
    #[cfg(test)]
    pub fn held(&self) -> usize {
        self.ring.len()
    }

    /// The newest tick.
    pub fn last(&self) -> Option<&Arc<Frames>> {
        self.ring.back()
    }

    /// The ticks after `seq` (the last one the client has).
    pub fn since(&self, seq: Seq) -> Option<Since<'_>> {
        self.since_within(seq, usize::MAX)
    }

    /// The ticks after `seq`, from at most the newest `depth` ticks held: the ring may
    /// hold more than the symbol's current share of the replay budget (it is trimmed
    /// lazily, see [`Ring::truncate`]), and a resume never replays beyond that share.
    pub fn since_within(&self, seq: Seq, depth: usize) -> Option<Since<'_>> {
        let last = self.ring.back()?;
        let newest = last.seq();
        let held = self.ring.len().min(depth.max(1));
        let oldest = self.ring[self.ring.len() - held].seq();
        if seq > newest {
            return Some(Since::Ahead { last });
        }
        if seq.0 + 1 >= oldest.0 {
            let skip = usize::try_from(seq.0 + 1 - oldest.0).expect("within the ring length");
            let start = self.ring.len() - held + skip;
            return Some(Since::Ticks(self.ring.iter().skip(start).collect()));
        }
        Some(Since::Gap {
            from: seq.next(),
            to: Seq(newest.0 - 1),
            last,
        })
    }
}

/// The depth each ring may use: `--replay-depth`, or less when `symbols` rings would hold
/// more than `budget` ticks in total (memory stays bounded however many symbols appear).
pub fn effective_depth(depth: usize, budget: usize, symbols: usize) -> usize {
    depth.min(budget / symbols.max(1)).max(1)
}

/// Rings start small and grow to `depth`: most symbols in a wide universe are quiet.
const INITIAL_CAPACITY: usize = 16;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::{RawTick, Tick};
    use proptest::prelude::*;

    fn frames(seq: u64) -> Arc<Frames> {
        let mut tick = Tick::try_from(RawTick {
            symbol: "R".into(),
            price: Some(1.0),
            ts_ns: seq,
            ..RawTick::default()
        })
        .unwrap();
        tick.seq = Seq(seq);
        Arc::new(Frames::new(tick))
    }

    fn seqs(replay: Since<'_>) -> Vec<u64> {
        match replay {
            Since::Ticks(t) => t.iter().map(|f| f.seq().0).collect(),
            other => panic!("expected ticks, got {other:?}"),
        }
    }

    #[test]
    fn a_resume_never_replays_beyond_the_current_share_and_truncate_keeps_the_newest() {
        let mut h = Ring::new(10);
        for seq in 1..=10 {
            h.push(frames(seq), 10);
        }
        // The ring holds 1..=10, but the symbol's share is now 5: 6..=10.
        assert_eq!(seqs(h.since_within(Seq(6), 5).unwrap()), vec![7, 8, 9, 10]);
        assert_eq!(
            seqs(h.since_within(Seq(5), 5).unwrap()),
            vec![6, 7, 8, 9, 10]
        );
        match h.since_within(Seq(2), 5).unwrap() {
            Since::Gap { from, to, last } => {
                // As for any position older than the ring: a gap up to the newest, its snapshot.
                assert_eq!((from, to, last.seq()), (Seq(3), Seq(9), Seq(10)));
            }
            other => panic!("expected a gap, got {other:?}"),
        }
        assert_eq!(
            seqs(h.since(Seq(2)).unwrap()).len(),
            8,
            "the whole ring without a share"
        );
        h.truncate(3);
        assert_eq!(seqs(h.since(Seq(7)).unwrap()), vec![8, 9, 10]);
        h.truncate(0);
        assert_eq!(
            h.last().map(|f| f.seq()),
            Some(Seq(10)),
            "the last value stays"
        );
    }

    #[test]
    fn resume_inside_the_ring_returns_exactly_the_missed_ticks() {
        let mut h = Ring::new(4);
        for seq in 1..=6 {
            h.push(frames(seq), 4);
        }
        assert_eq!(seqs(h.since(Seq(4)).unwrap()), vec![5, 6]);
        assert_eq!(
            seqs(h.since(Seq(2)).unwrap()),
            vec![3, 4, 5, 6],
            "oldest kept is 3"
        );
        assert_eq!(
            seqs(h.since(Seq(6)).unwrap()),
            Vec::<u64>::new(),
            "up to date"
        );
    }

    #[test]
    fn a_jump_in_seq_restarts_the_ring_so_an_older_resume_is_a_gap() {
        let mut h = Ring::new(8);
        for seq in [1, 2, 3, 7, 8] {
            h.push(frames(seq), 8);
        }
        assert_eq!(seqs(h.since(Seq(6)).unwrap()), vec![7, 8]);
        match h.since(Seq(2)).unwrap() {
            Since::Gap { from, to, last } => {
                assert_eq!((from, to, last.seq()), (Seq(3), Seq(7), Seq(8)));
            }
            other => panic!("expected a gap, got {other:?}"),
        }
    }

    #[test]
    fn the_last_value_is_the_newest_tick() {
        let mut h = Ring::new(3);
        assert!(h.last().is_none(), "nothing seen yet");
        for seq in 1..=5 {
            h.push(frames(seq), 3);
            assert_eq!(h.last().map(|f| f.seq()), Some(Seq(seq)));
        }
    }

    #[test]
    fn resume_older_than_the_ring_is_a_gap_then_the_last_value() {
        let mut h = Ring::new(4);
        for seq in 1..=10 {
            h.push(frames(seq), 4);
        }
        match h.since(Seq(3)).unwrap() {
            Since::Gap { from, to, last } => {
                assert_eq!((from, to, last.seq()), (Seq(4), Seq(9), Seq(10)));
            }
            other => panic!("expected a gap, got {other:?}"),
        }
        assert!(matches!(h.since(Seq(11)).unwrap(), Since::Ahead { .. }));
        assert!(Ring::new(4).since(Seq(1)).is_none(), "nothing seen yet");
    }

    #[test]
    fn a_shrinking_budget_drops_the_oldest_ticks() {
        let mut h = Ring::new(8);
        for seq in 1..=8 {
            h.push(frames(seq), 8);
        }
        h.push(frames(9), effective_depth(8, 6, 2));
        assert!(
            matches!(h.since(Seq(5)).unwrap(), Since::Gap { from: Seq(6), .. }),
            "1-6 are gone"
        );
        assert_eq!(
            seqs(h.since(Seq(6)).unwrap()),
            vec![7, 8, 9],
            "3 per symbol, the newest"
        );
        assert_eq!(effective_depth(1024, 1_000_000, 100_000), 10);
        assert_eq!(
            effective_depth(1024, 10, 100_000),
            1,
            "the last value always stays"
        );
    }

    proptest! {
        #[test]
        fn since_never_skips_or_repeats(depth in 1usize..50, count in 1u64..200, from in 0u64..220) {
            let mut h = Ring::new(depth);
            for seq in 1..=count { h.push(frames(seq), depth); }
            match h.since(Seq(from)).unwrap() {
                Since::Ticks(ticks) => {
                    let got: Vec<u64> = ticks.iter().map(|f| f.seq().0).collect();
                    let want: Vec<u64> = (from + 1..=count).collect();
                    prop_assert_eq!(got, want);
                }
                Since::Gap { from: gap_from, to, last } => {
                    prop_assert_eq!(gap_from.0, from + 1);
                    prop_assert_eq!(to.0 + 1, last.seq().0);
                    prop_assert!(from + 1 < count + 1 - depth.min(count as usize) as u64);
                }
                Since::Ahead { .. } => prop_assert!(from > count),
            }
        }
    }
}
