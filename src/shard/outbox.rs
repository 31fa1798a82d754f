//! [`Outbox`]: one client's bounded queue of frames waiting to be written.
//!
//! Frames are `Bytes` handles (shared with every other client of the encoding), so queueing
//! costs a refcount bump, not a copy. The budget counts the bytes the client still has to
//! receive and the age of the oldest frame; the shard applies the client's slow-consumer
//! policy when either is exceeded.
//!
//! A client that asked for batches queues messages, not frames: their payloads wait unframed
//! until the write, when everything pending becomes one frame (or a few, each within the
//! size cap) whose pieces are the shared payloads between small per-batch headers
//! (`encode::batch`). A frame of several pieces is written, and dropped, as a whole.

use std::collections::VecDeque;
use std::io::IoSlice;
use std::time::{Duration, Instant};

use bytes::Bytes;

use crate::encode::{Wire, batch};

/// A client's pending frames.
#[derive(Debug, Default)]
pub struct Outbox {
    /// Frames, or pieces of frames, in write order.
    frames: VecDeque<Pending>,
    /// Bytes of the front piece already written.
    written: usize,
    /// Bytes not yet written, over all frames and unframed messages.
    bytes: usize,
    /// A batching client's messages not framed yet (payloads), all queued after `frames`.
    messages: VecDeque<Pending>,
}

#[derive(Debug)]
struct Pending {
    frame: Bytes,
    queued: Instant,
    /// The piece starts a frame (a whole frame is one piece, a batch several).
    starts: bool,
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self::default()
    }

    /// Queues `frame`, stamped `now` (one clock read per fan-out turn, not per frame).
    /// Messages queued unframed must be framed first ([`Outbox::take_batch`]).
    pub fn push(&mut self, frame: Bytes, now: Instant) {
        debug_assert!(
            self.messages.is_empty(),
            "a frame never overtakes a message"
        );
        self.bytes += frame.len();
        self.frames.push_back(Pending {
            frame,
            queued: now,
            starts: true,
        });
    }

    /// Queues the pieces of one frame, built from messages queued at `queued`.
    pub fn push_pieces(&mut self, pieces: Vec<Bytes>, queued: Instant) {
        for (i, frame) in pieces.into_iter().enumerate() {
            self.bytes += frame.len();
            self.frames.push_back(Pending {
                frame,
                queued,
                starts: i == 0,
            });
        }
    }

    /// Queues a message's payload unframed (a batching client).
    pub fn push_message(&mut self, payload: Bytes, now: Instant) {
        self.bytes += payload.len();
        self.messages.push_back(Pending {
            frame: payload,
            queued: now,
            starts: true,
        });
    }

    /// Takes the oldest unframed messages that fit one frame of at most `max_body` payload
    /// bytes in `wire` (at least one message), and when the first was queued; `None` when
    /// no message waits.
    pub fn take_batch(&mut self, wire: Wire, max_body: usize) -> Option<(Vec<Bytes>, Instant)> {
        let queued = self.messages.front()?.queued;
        let mut body = 0;
        let mut payloads = Vec::new();
        while let Some(next) = self.messages.front() {
            let more = batch::entry_len(wire, next.frame.len());
            if !payloads.is_empty() && body + more > max_body {
                break;
            }
            body += more;
            let message = self.messages.pop_front().expect("front() was Some");
            self.bytes -= message.frame.len();
            payloads.push(message.frame);
        }
        Some((payloads, queued))
    }

    /// Bytes not yet written.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// Whether nothing is pending.
    pub fn is_empty(&self) -> bool {
        self.frames.is_empty() && self.messages.is_empty()
    }

    /// Pieces and unframed messages queued (a partly written one included).
    pub fn len(&self) -> usize {
        self.frames.len() + self.messages.len()
    }

    /// How long the oldest pending frame or message has waited.
    pub fn oldest_age(&self, now: Instant) -> Duration {
        self.frames
            .front()
            .or(self.messages.front())
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

    /// Drops every frame that has not started to be written and every unframed message
    /// (used before a close frame replaces a backlog the client will never read). A frame
    /// partly written is kept whole: a cut frame would break the stream.
    pub fn drop_unstarted(&mut self) {
        for message in self.messages.drain(..) {
            self.bytes -= message.frame.len();
        }
        let front_started =
            self.written > 0 || self.frames.front().is_some_and(|front| !front.starts);
        let keep = if front_started {
            1 + self.frames.iter().skip(1).take_while(|p| !p.starts).count()
        } else {
            0
        };
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
    fn a_batch_takes_what_fits_the_cap_and_at_least_one_message() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        for text in ["aaaa", "bbbb", "cccc"] {
            outbox.push_message(Bytes::from_static(text.as_bytes()), now);
        }
        assert_eq!((outbox.len(), outbox.bytes()), (3, 12));
        // json: 4 + (1 + 4) = 9 bytes for two; a third would make 14.
        let (first, _) = outbox.take_batch(Wire::Json, 10).unwrap();
        assert_eq!(first.len(), 2);
        assert_eq!(outbox.bytes(), 4, "the one left");
        let (second, _) = outbox.take_batch(Wire::Json, 1).unwrap();
        assert_eq!(second.len(), 1, "one message even over the cap");
        assert!(outbox.take_batch(Wire::Json, 10).is_none());
        assert_eq!(outbox.bytes(), 0, "taken messages leave the count");
    }

    #[test]
    fn a_batch_frame_started_is_kept_whole_and_unframed_messages_dropped() {
        let now = Instant::now();
        let mut outbox = Outbox::new();
        let pieces = ["h", "one", "\n", "two"].map(|p| Bytes::from_static(p.as_bytes()));
        outbox.push_pieces(pieces.to_vec(), now);
        outbox.push_pieces(
            vec![Bytes::from_static(b"h"), Bytes::from_static(b"3")],
            now,
        );
        outbox.push_message(Bytes::from_static(b"later"), now);
        outbox.advance(2); // the header and one byte of "one"
        outbox.drop_unstarted();
        let mut slices = [IoSlice::new(&[]); 8];
        let n = outbox.slices(&mut slices);
        let left: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        assert_eq!(
            left, b"ne\ntwo",
            "the rest of the started frame, nothing after it"
        );
        assert_eq!(outbox.bytes(), left.len());
        outbox.advance(1); // "n": the front piece is now mid-frame with nothing written of it
        outbox.advance(1);
        outbox.drop_unstarted();
        assert_eq!(outbox.bytes(), 4, "still the rest of the frame");
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
