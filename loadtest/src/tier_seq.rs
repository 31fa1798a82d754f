//! Rate-tier frame continuity on the client side: each frame of a symbol's tier chains onto
//! the last one (`from_seq` = the previous frame's `seq + 1`), per docs/PROTOCOL.md "Rate tiers".
//!
//! A tier frame stands for `from_seq..=seq` of the symbol's ticks; the relay promises that
//! nothing is missing between two frames. The first frame (or a tier snapshot) is the
//! baseline; after it every frame whose `from_seq` is not the last `seq + 1`, whose
//! `from_seq` exceeds its own `seq`, or that carries no `from_seq` at all (a raw tick on a
//! tier subscription) is a break.

use serde::{Deserialize, Serialize};

/// The tier state of one symbol on one connection: the last frame's seq.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TierTrack {
    last: Option<u64>,
}

/// What the tier checker found, summed over symbols and clients.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct TierCounts {
    /// Tier frames received (`"type":"tick"` with `tier`).
    pub frames: u64,
    /// Tier snapshots received (at subscribe).
    pub snapshots: u64,
    /// Frames that did not chain onto the previous one (or carried no `from_seq`).
    pub breaks: u64,
    /// `gap` notices for a tier subscription (announced, so not breaks, but loss).
    pub gaps: u64,
    /// Ticks the frames stood for (`seq - from_seq + 1` summed): what the tier aggregated.
    pub ticks_covered: u64,
}

impl TierTrack {
    /// Checks one tier frame standing for `from_seq..=seq` (`None`: the frame had no
    /// `from_seq`).
    pub fn on_frame(&mut self, seq: u64, from_seq: Option<u64>, counts: &mut TierCounts) {
        counts.frames += 1;
        match from_seq {
            Some(from) if from <= seq => {
                counts.ticks_covered += seq - from + 1;
                if self.last.is_some_and(|last| from != last + 1) {
                    counts.breaks += 1;
                }
            }
            _ => counts.breaks += 1,
        }
        // The next frame chains onto this one, whatever came before it.
        self.last = Some(seq);
    }

    /// A tier snapshot: the next frame chains onto its seq.
    pub fn on_snapshot(&mut self, seq: u64, counts: &mut TierCounts) {
        counts.snapshots += 1;
        self.last = Some(seq);
    }

    /// The relay announced the frames up to `to` will not come: the next one follows `to`.
    pub fn on_gap_notice(&mut self, to: u64, counts: &mut TierCounts) {
        counts.gaps += 1;
        self.last = Some(self.last.map_or(to, |last| last.max(to)));
    }
}

impl TierCounts {
    /// Adds `other` into `self`.
    pub fn add(&mut self, other: &Self) {
        self.frames += other.frames;
        self.snapshots += other.snapshots;
        self.breaks += other.breaks;
        self.gaps += other.gaps;
        self.ticks_covered += other.ticks_covered;
    }

    /// `self - earlier`, for counts taken at two moments.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            frames: self.frames - earlier.frames,
            snapshots: self.snapshots - earlier.snapshots,
            breaks: self.breaks - earlier.breaks,
            gaps: self.gaps - earlier.gaps,
            ticks_covered: self.ticks_covered - earlier.ticks_covered,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frames(track: &mut TierTrack, frames: &[(u64, Option<u64>)]) -> TierCounts {
        let mut counts = TierCounts::default();
        for &(seq, from) in frames {
            track.on_frame(seq, from, &mut counts);
        }
        counts
    }

    #[test]
    fn chained_frames_are_clean_from_any_first_one() {
        let mut t = TierTrack::default();
        let c = frames(&mut t, &[(20, Some(11)), (40, Some(21)), (41, Some(41))]);
        assert_eq!((c.frames, c.breaks, c.ticks_covered), (3, 0, 10 + 20 + 1));
    }

    #[test]
    fn a_frame_that_skips_or_overlaps_is_a_break() {
        let mut t = TierTrack::default();
        let c = frames(&mut t, &[(20, Some(1)), (40, Some(22)), (50, Some(40))]);
        assert_eq!(c.breaks, 2, "21 skipped, then 40 repeated");
        // The break is counted once: the next frame chains onto the one that broke.
        let c = frames(&mut t, &[(60, Some(51))]);
        assert_eq!(c.breaks, 0);
    }

    #[test]
    fn a_frame_without_from_seq_or_inverted_is_a_break() {
        let mut t = TierTrack::default();
        let c = frames(&mut t, &[(5, None), (9, Some(10))]);
        assert_eq!(c.breaks, 2);
    }

    #[test]
    fn snapshots_and_gap_notices_set_the_baseline() {
        let mut t = TierTrack::default();
        let mut c = TierCounts::default();
        t.on_snapshot(30, &mut c);
        t.on_frame(35, Some(31), &mut c);
        t.on_gap_notice(50, &mut c);
        t.on_frame(60, Some(51), &mut c);
        assert_eq!((c.snapshots, c.gaps, c.breaks, c.frames), (1, 1, 0, 2));
    }

    #[test]
    fn since_subtracts_what_add_added() {
        let a = TierCounts {
            frames: 5,
            snapshots: 1,
            breaks: 2,
            gaps: 3,
            ticks_covered: 40,
        };
        let mut b = a;
        b.add(&a);
        assert_eq!(b.since(&a), a);
    }
}
