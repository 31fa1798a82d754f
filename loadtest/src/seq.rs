//! Per-symbol sequence checking on the client side.
//!
//! The relay promises `seq` starts at 1 and grows by exactly 1 per tick of a symbol. A client
//! that joins late cannot know where it starts, so the first seq seen (from a snapshot or the
//! first tick) is the baseline; after that every tick must be `last + 1`.

use serde::{Deserialize, Serialize};

/// The sequence state of one symbol on one connection.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SeqTrack {
    last: Option<u64>,
}

/// What the checker found, summed over symbols and clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SeqCounts {
    /// Ticks that jumped ahead (`seq > last + 1`) without a relay gap notice.
    pub gaps: u64,
    /// Ticks skipped over by those jumps.
    pub missing: u64,
    /// Ticks repeating the last seq.
    pub dups: u64,
    /// Ticks older than the last seq.
    pub out_of_order: u64,
}

impl SeqTrack {
    /// Checks one delivered tick.
    pub fn on_tick(&mut self, seq: u64, counts: &mut SeqCounts) {
        match self.last {
            None => self.last = Some(seq),
            Some(last) if seq == last + 1 => self.last = Some(seq),
            Some(last) if seq > last => {
                counts.gaps += 1;
                counts.missing += seq - last - 1;
                self.last = Some(seq);
            }
            Some(last) if seq == last => counts.dups += 1,
            Some(_) => counts.out_of_order += 1,
        }
    }

    /// A snapshot carries the symbol's current seq: the next tick must follow it.
    pub fn on_snapshot(&mut self, seq: u64) {
        self.last = Some(self.last.map_or(seq, |last| last.max(seq)));
    }

    /// The relay announced ticks up to `to` will not come: the next tick follows `to`.
    pub fn on_gap_notice(&mut self, to: u64) {
        self.last = Some(self.last.map_or(to, |last| last.max(to)));
    }
}

impl SeqCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.gaps += other.gaps;
        self.missing += other.missing;
        self.dups += other.dups;
        self.out_of_order += other.out_of_order;
    }

    /// `self - earlier`, for counts taken at two moments.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            gaps: self.gaps - earlier.gaps,
            missing: self.missing - earlier.missing,
            dups: self.dups - earlier.dups,
            out_of_order: self.out_of_order - earlier.out_of_order,
        }
    }

    /// True when nothing went wrong.
    pub fn is_clean(&self) -> bool {
        *self == Self::default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(track: &mut SeqTrack, seqs: &[u64]) -> SeqCounts {
        let mut counts = SeqCounts::default();
        for &s in seqs {
            track.on_tick(s, &mut counts);
        }
        counts
    }

    #[test]
    fn first_seq_is_the_baseline_and_a_run_is_clean() {
        let mut t = SeqTrack::default();
        assert!(run(&mut t, &[40, 41, 42, 43]).is_clean());
    }

    #[test]
    fn jumps_count_gaps_and_missing() {
        let mut t = SeqTrack::default();
        let c = run(&mut t, &[1, 2, 5, 6, 10]);
        assert_eq!((c.gaps, c.missing), (2, 2 + 3));
        assert_eq!((c.dups, c.out_of_order), (0, 0));
    }

    #[test]
    fn repeats_are_dups_and_older_ones_out_of_order() {
        let mut t = SeqTrack::default();
        let c = run(&mut t, &[1, 2, 2, 3, 1, 4]);
        assert_eq!((c.gaps, c.dups, c.out_of_order), (0, 1, 1));
    }

    #[test]
    fn snapshot_sets_the_baseline() {
        let mut t = SeqTrack::default();
        t.on_snapshot(10);
        assert!(run(&mut t, &[11, 12]).is_clean());
        let mut t = SeqTrack::default();
        t.on_snapshot(10);
        assert_eq!(run(&mut t, &[10]).dups, 1);
    }

    #[test]
    fn gap_notice_moves_the_baseline_without_counting_a_gap() {
        let mut t = SeqTrack::default();
        let mut c = run(&mut t, &[1, 2]);
        t.on_gap_notice(7);
        t.on_tick(8, &mut c);
        assert!(c.is_clean());
    }

    #[test]
    fn since_subtracts() {
        let a = SeqCounts {
            gaps: 3,
            missing: 9,
            dups: 1,
            out_of_order: 2,
        };
        let mut b = a;
        b.add(&a);
        assert_eq!(b.since(&a), a);
    }
}
