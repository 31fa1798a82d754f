//! [`Outbox`]: one client's bounded queue of frames waiting to be written.
//!
//! Frames are `Bytes` handles (shared with every other client of the encoding), so queueing
//! costs a refcount bump, not a copy. The budget counts the bytes the client still has to
//! receive and the age of the oldest frame; the shard applies the client's slow-consumer
//! policy when either is exceeded.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;

/// A client's pending frames.
#[derive(Debug, Default)]
pub struct Outbox {
    frames: VecDeque<Pending>,
    /// Bytes of the front frame already written.
    written: usize,
    /// Bytes not yet written, over all frames.
    bytes: usize,
}

#[derive(Debug)]
struct Pending {
    frame: Bytes,
    queued: Instant,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `frame`, stamped `now` (one clock read per fan-out turn, not per frame).
    pub fn push(&mut self, frame: Bytes, now: Instant) {
        self.bytes += frame.len();
        self.frames.push_back(Pending { frame, queued: now });
    }

    /// Bytes not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty()
    }

    /// Frames queued (a partly written one included).
    pub fn len(&self) -> usize {
        self.frames.len()
    }

    /// How long the oldest pending frame has waited.
    pub fn oldest_age(&self, now: Instant) -> Duration {
        self.frames
            .front()
            .map_or(Duration::ZERO, |p| now.saturating_duration_since(p.queued))
    }

    /// Whether the bytes or age budget is exceeded.
    pub fn over_budget(&self, max_bytes: usize, max_age: Duration, now: Instant) -> bool {
        self.bytes > max_bytes || self.oldest_age(now) > max_age
    }

    /// Fills `slices` with the pending bytes, in order; returns how many slices were filled.
    pub fn slices<'a>(&'a self, slices: &mut [IoSlice<'a>]) -> usize {
        let mut n = 0;
        for (i, pending) in self.frames.iter().take(slices.len()).enumerate() {
            let skip = if i == 0 { self.written } else { 0 };
            slices[i] = IoSlice::new(&pending.frame[skip..]);
            n += 1;
        }
        n
    }

    /// Drops `written` bytes from the front (after a write).
    pub fn advance(&mut self, mut written: usize) {
        self.bytes -= written;
        while written > 0 {
            let front = self
                .frames
                .front()
                .expect("never advanced past the queued bytes");
            let left = front.frame.len() - self.written;
            if written >= left {
                written -= left;
                self.written = 0;
                self.frames.pop_front();
            } else {
                self.written += written;
                written = 0;
            }
        }
    }

    /// Drops every frame that has not started to be written (used before a close frame
    /// replaces a backlog the client will never read).
    pub fn drop_unstarted(&mut self) {
        let keep = usize::from(self.written > 0);
        while self.frames.len() > keep {
            let dropped = self.frames.pop_back().expect("len > keep >= 0");
            self.bytes -= dropped.frame.len();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn partial_writes_resume_mid_frame() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        outbox.push(Bytes::from_static(b"abc"), now);
        outbox.push(Bytes::from_static(b"defg"), now);
        outbox.advance(4);
        let mut slices = [IoSlice::new(&[]); 4];
        let n = outbox.slices(&mut slices);
        assert_eq!(n, 1);
        assert_eq!(&*slices[0], b"efg");
        assert_eq!(outbox.bytes(), 3);
    }

    #[test]
    fn budget_counts_bytes_and_age() {
        let start = Instant::now();
        let mut outbox = Outbox::new();
        outbox.push(Bytes::from_static(b"0123456789"), start);
        assert!(!outbox.over_budget(10, Duration::from_secs(1), start));
        assert!(outbox.over_budget(9, Duration::from_secs(1), start));
        assert!(outbox.over_budget(10, Duration::from_secs(1), start + Duration::from_secs(2)));
    }

    #[test]
    fn drop_unstarted_keeps_a_half_written_frame() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        for _ in 0..3 {
            outbox.push(Bytes::from_static(b"xyz"), now);
        }
        outbox.advance(1);
        outbox.drop_unstarted();
        assert_eq!(outbox.len(), 1);
        assert_eq!(outbox.bytes(), 2);
    }

    #[test]
    fn drop_unstarted_drops_everything_when_nothing_was_written() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        for _ in 0..3 {
            outbox.push(Bytes::from_static(b"xyz"), now);
        }
        outbox.drop_unstarted();
        assert_eq!((outbox.len(), outbox.bytes()), (0, 0));
    }

    #[test]
    fn len_counts_frames_until_fully_written() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        assert_eq!((outbox.len(), outbox.is_empty()), (0, true));
        for frame in [&b"ab"[..], b"cd", b"ef"] {
            outbox.push(Bytes::from_static(frame), now);
        }
        assert_eq!(outbox.len(), 3);
        outbox.advance(3);
        assert_eq!(
            outbox.len(),
            2,
            "the half-written second frame still counts"
        );
        outbox.advance(3);
        assert_eq!((outbox.len(), outbox.is_empty()), (0, true));
    }

    #[test]
    fn the_age_limit_is_exceeded_only_past_it() {
        let start = Instant::now();
        let limit = Duration::from_millis(500);
        let mut outbox = Outbox::new();
        outbox.push(Bytes::from_static(b"x"), start);
        assert_eq!(outbox.oldest_age(start + limit), limit);
        assert!(
            !outbox.over_budget(10, limit, start + limit),
            "exactly the limit"
        );
        assert!(outbox.over_budget(10, limit, start + limit + Duration::from_nanos(1)));
        assert_eq!(
            Outbox::new().oldest_age(start + limit),
            Duration::ZERO,
            "nothing pending has no age"
        );
    }

    proptest! {
        #[test]
        fn writes_in_any_chunks_deliver_the_exact_bytes(
            frames in proptest::collection::vec(proptest::collection::vec(any::<u8>(), 1..40), 1..20),
            chunks in proptest::collection::vec(1usize..50, 1..100),
        ) {
            let now = Instant::now();
            let mut outbox = Outbox::new();
            let expected: Vec<u8> = frames.concat();
            for f in frames { outbox.push(Bytes::from(f), now); }
            let mut got = Vec::new();
            // Bounded: every write takes at least one byte, so a broken outbox that never
            // empties fails here instead of hanging the test.
            for (writes, chunk) in chunks.into_iter().cycle().enumerate() {
                if outbox.is_empty() { break; }
                prop_assert!(writes < expected.len(), "still not empty after {} writes", writes);
                let mut slices = [IoSlice::new(&[]); 8];
                let n = outbox.slices(&mut slices);
                let mut take = chunk;
                let mut written = 0;
                for s in &slices[..n] {
                    let part = take.min(s.len());
                    got.extend_from_slice(&s[..part]);
                    written += part;
                    take -= part;
                    if take == 0 { break; }
                }
                outbox.advance(written);
            }
            prop_assert_eq!(got, expected);
        }
    }
}
