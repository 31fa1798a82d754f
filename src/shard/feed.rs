//! [`Feed`]: the part of a client the fan-out loop writes into — the client's encoder, its
//! outbox, and its slow-consumer state — apart from the socket, so the hot path can be
//! exercised (and benchmarked) on in-memory sessions.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;

use super::book_lag::BooksBehind;
use super::outbox::Outbox;
use crate::config::Config;
use crate::encode::ws_frame::OpCode;
use crate::encode::{Encoder, Encoding, Frames, Message};
use crate::event::Key;
use crate::metrics::{self, ShardMetrics};
use crate::tick::Seq;

/// Where a client is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FeedPhase {
    /// Receiving ticks.
    Live,
    /// A close frame is queued: no more ticks; the socket closes once it is written or at
    /// the deadline.
    Closing { deadline: Instant },
    /// The socket failed; the task will remove the session.
    Dead,
}

/// What the fan-out loop writes into for one client.
#[derive(Debug)]
pub struct Feed {
    pub(super) encoder: Encoder,
    pub(super) outbox: Outbox,
    /// Bytes a burst the client asked for (a resume's replay, an echoed message) may hold
    /// beyond the outbox budget until they drain: bounded by the ring depth or the message
    /// limit, and not a sign of slowness.
    pub(super) burst_allowance: usize,
    /// While a conflating client lags: the newest skipped item per key and the first
    /// seq it skipped.
    pub(super) lagging: Option<BTreeMap<Key, (Arc<Frames>, Seq)>>,
    /// While a conflating client lags: the book messages it skipped, merged (a book cannot
    /// conflate to its newest delta).
    pub(super) books_behind: BooksBehind,
    pub(super) phase: FeedPhase,
    /// A batching client (`?batch=on`): its messages wait unframed and go out, at each
    /// write, as one frame of at most this many payload bytes (`--batch-max-bytes`).
    pub(super) batch: Option<usize>,
    /// Listed in the shard's dirty list.
    pub dirty: bool,
}

impl Feed {
    /// A live feed in `encoding` with an empty outbox.
    pub fn new(encoding: Encoding) -> Self {
        Self {
            encoder: Encoder::new(encoding),
            outbox: Outbox::new(),
            burst_allowance: 0,
            lagging: None,
            books_behind: BooksBehind::default(),
            phase: FeedPhase::Live,
            batch: None,
            dirty: false,
        }
    }

    /// The same feed for a client that asked for batches of at most `max_body` bytes.
    pub fn batching(mut self, max_body: usize) -> Self {
        self.batch = Some(max_body);
        self
    }

    /// Queues a tick's frame; false if the client takes no more ticks (closing) or the
    /// tick was conflated.
    pub fn push_tick(
        &mut self,
        frames: &Arc<Frames>,
        now: Instant,
        metrics: &ShardMetrics,
    ) -> bool {
        if self.phase != FeedPhase::Live {
            return false;
        }
        if let Some(pending) = &mut self.lagging {
            if self.books_behind.absorb(frames) {
                metrics::add(&metrics.conflated, 1);
                return false;
            }
            match pending.get_mut(frames.key()) {
                Some(slot) => {
                    slot.0 = frames.clone();
                    metrics::add(&metrics.conflated, 1);
                }
                None => {
                    // A tier's frame stands for several seqs: the first it skips is its first.
                    pending.insert(frames.key().clone(), (frames.clone(), frames.first_seq()));
                }
            }
            return false;
        }
        self.queue_tick(frames, now);
        true
    }

    /// Queues a tick as it goes to this client: a shared frame, a compressed one, or (a
    /// batching client) its payload.
    fn queue_tick(&mut self, frames: &Frames, now: Instant) {
        if self.batch.is_some() {
            let payload = self.encoder.tick_payload(frames);
            self.outbox.push_message(payload, now);
        } else {
            let frame = self.encoder.tick(frames);
            self.outbox.push(frame, now);
        }
    }

    /// Drops what a conflating client skipped (its stream started another history: those
    /// items must never reach it now). It stays behind, conflating, until it catches up.
    pub(super) fn forget_history(&mut self) {
        if let Some(pending) = &mut self.lagging {
            pending.clear();
        }
        self.books_behind = BooksBehind::default();
    }

    /// Queues `reset` for `key` (its seqs now belong to no run the client can continue:
    /// evicted, or another history) and drops what the client skipped of it while lagging,
    /// so nothing of the old run follows the reset.
    pub fn reset(&mut self, key: &Key, epoch: u64, now: Instant) {
        if let Some(pending) = &mut self.lagging {
            pending.remove(key);
        }
        self.send(&Message::Reset { key, epoch }, now);
    }

    /// Queues a server message in the client's encoding.
    pub fn send(&mut self, message: &Message<'_>, now: Instant) {
        if self.phase != FeedPhase::Live {
            return;
        }
        if self.batch.is_some() {
            let payload = self.encoder.message_payload(message);
            self.outbox.push_message(payload, now);
        } else {
            let frame = self.encoder.message(message);
            self.outbox.push(frame, now);
        }
    }

    /// Queues a data message given as bytes (an echo), compressed if the client deflates.
    pub fn send_data(&mut self, opcode: OpCode, payload: &[u8], now: Instant) {
        if self.phase == FeedPhase::Live {
            self.seal();
            let frame = self.encoder.data(opcode, payload);
            self.outbox.push(frame, now);
        }
    }

    /// Queues a raw control frame (ping, pong), after what is queued before it.
    pub fn send_frame(&mut self, frame: Bytes, now: Instant) {
        if self.phase == FeedPhase::Live {
            self.push_frame(frame, now);
        }
    }

    /// Queues `frame` after everything queued, whatever the phase (the close frame).
    pub(super) fn push_frame(&mut self, frame: Bytes, now: Instant) {
        self.seal();
        self.outbox.push(frame, now);
    }

    /// Frames a batching client's queued messages: whatever waits now goes out as one frame
    /// (or a few, each within the size cap). Called at each write, so a batch is never
    /// held back to fill up: at low load it is one message, as without batches.
    pub(super) fn seal(&mut self) {
        let Some(max_body) = self.batch else { return };
        let wire = self.encoder.batch_wire();
        while let Some((payloads, queued)) = self.outbox.take_batch(wire, max_body) {
            let pieces = self.encoder.batch(&payloads);
            self.outbox.push_pieces(pieces, queued);
        }
    }

    /// The encoding the client negotiated.
    pub fn encoding(&self) -> Encoding {
        self.encoder.encoding()
    }

    /// Bytes queued and not yet written.
    pub fn pending_bytes(&self) -> usize {
        self.outbox.bytes()
    }

    /// Lets what is queued now exceed the budget until it drains (see `burst_allowance`).
    pub(super) fn allow_burst(&mut self) {
        self.burst_allowance = self.burst_allowance.max(self.outbox.bytes());
    }

    /// Drops `bytes` from the front of the outbox, as a socket write of that many bytes
    /// does (benchmarks use it to model a client that keeps up).
    pub fn mark_written(&mut self, bytes: usize) {
        self.outbox.advance(bytes.min(self.outbox.bytes()));
    }

    /// After a write: ends a replay allowance once drained, and ends conflation once the
    /// backlog is down to half the budget, sending each skipped range as a `gap` before the
    /// newest tick of its symbol.
    pub(super) fn caught_up(&mut self, config: &Config) {
        if self.outbox.bytes() <= config.outbox_bytes {
            self.burst_allowance = 0;
        }
        if self.outbox.bytes() > config.outbox_bytes / 2 {
            return;
        }
        let Some(pending) = self.lagging.take() else {
            return;
        };
        let now = Instant::now();
        self.books_behind
            .catch_up(&mut self.encoder, &mut self.outbox, now);
        for (key, (latest, first_skipped)) in pending {
            // What the newest stands for arrives with it; the seqs before it do not.
            let first_sent = latest.first_seq();
            if first_sent > first_skipped {
                self.send(
                    &Message::Gap {
                        key: &key,
                        from: first_skipped,
                        to: Seq(first_sent.0 - 1),
                    },
                    now,
                );
            }
            self.queue_tick(&latest, now);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::tick::{Symbol, sequenced};

    fn tick(symbol: &str, seq: u64) -> Arc<Frames> {
        Arc::new(Frames::new(sequenced(symbol, seq)))
    }

    /// The JSON messages queued, in order (server frames: unmasked, short payloads).
    fn queued(feed: &Feed) -> Vec<serde_json::Value> {
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = feed.outbox.slices(&mut slices);
        let bytes: Vec<u8> = slices[..n].iter().flat_map(|s| s.iter().copied()).collect();
        let mut messages = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let len = usize::from(bytes[at + 1] & 0x7f);
            assert!(len < 126, "short frames only");
            messages.push(serde_json::from_slice(&bytes[at + 2..at + 2 + len]).unwrap());
            at += 2 + len;
        }
        messages
    }

    #[test]
    fn pending_bytes_are_what_is_queued_and_not_yet_written() {
        let metrics = Metrics::new(1);
        let mut feed = Feed::new(Encoding::Json);
        assert_eq!(feed.pending_bytes(), 0);
        for seq in 1..=2 {
            assert!(feed.push_tick(&tick("A", seq), Instant::now(), metrics.shard(0)));
        }
        let mut slices = [std::io::IoSlice::new(&[]); 16];
        let n = feed.outbox.slices(&mut slices);
        let queued: usize = slices[..n].iter().map(|s| s.len()).sum();
        assert!(queued > 0);
        assert_eq!(feed.pending_bytes(), queued);
        feed.mark_written(10);
        assert_eq!(feed.pending_bytes(), queued - 10);
        feed.mark_written(usize::MAX);
        assert_eq!(feed.pending_bytes(), 0, "never more than was queued");
    }

    #[test]
    fn a_replay_allowance_ends_within_the_budget_and_conflation_at_half_of_it() {
        let now = Instant::now();
        let metrics = Metrics::new(1);
        let mut feed = Feed::new(Encoding::Json);
        assert!(feed.push_tick(&tick("A", 1), now, metrics.shard(0)));
        let backlog = feed.pending_bytes();
        feed.lagging = Some(BTreeMap::new());
        assert!(
            !feed.push_tick(&tick("A", 7), now, metrics.shard(0)),
            "conflated"
        );
        let mut config = Config::for_tests();
        // A replay's allowance lasts while the backlog is over the budget.
        feed.burst_allowance = 1 << 20;
        config.outbox_bytes = backlog - 1;
        feed.caught_up(&config);
        assert_eq!(
            feed.burst_allowance,
            1 << 20,
            "over the budget: still replaying"
        );
        config.outbox_bytes = 2 * backlog - 1;
        feed.caught_up(&config);
        assert_eq!(
            feed.burst_allowance, 0,
            "within the budget: the allowance ends"
        );
        assert!(feed.lagging.is_some(), "a byte over half: still conflating");
        config.outbox_bytes = 2 * backlog;
        feed.caught_up(&config);
        assert!(feed.lagging.is_none(), "exactly half: caught up");
        let seen: Vec<String> = queued(&feed)
            .iter()
            .map(|m| format!("{} {}", m["type"], m["seq"]))
            .collect();
        assert_eq!(
            seen,
            [r#""tick" 1"#, r#""tick" 7"#],
            "the newest, once caught up"
        );
    }

    #[test]
    fn a_lagging_client_is_told_the_gap_of_what_conflation_skipped() {
        let now = Instant::now();
        let metrics = Metrics::new(1);
        let mut feed = Feed::new(Encoding::Json);
        feed.lagging = Some(BTreeMap::new());
        for seq in 5..=7 {
            assert!(
                !feed.push_tick(&tick("A", seq), now, metrics.shard(0)),
                "conflated"
            );
        }
        feed.caught_up(&Config::for_tests());
        let seen: Vec<String> = queued(&feed)
            .iter()
            .map(|m| format!("{} {} {} {}", m["type"], m["from"], m["to"], m["seq"]))
            .collect();
        assert_eq!(
            seen,
            [r#""gap" 5 6 null"#, r#""tick" null null 7"#],
            "5 and 6 were skipped, and the client is told so before 7"
        );
    }

    #[test]
    fn a_lagging_client_gets_nothing_it_skipped_of_the_old_history_after_its_reset() {
        let now = Instant::now();
        let metrics = Metrics::new(1);
        let config = Config::for_tests();
        let mut feed = Feed::new(Encoding::Json);
        feed.lagging = Some(BTreeMap::new());
        for (symbol, seq) in [("A", 7), ("B", 4)] {
            assert!(
                !feed.push_tick(&tick(symbol, seq), now, metrics.shard(0)),
                "conflated"
            );
        }
        feed.forget_history();
        for symbol in ["A", "B"] {
            let key = Key::Symbol(Symbol::parse(symbol).unwrap());
            feed.send(
                &Message::Reset {
                    key: &key,
                    epoch: 9,
                },
                now,
            );
        }
        // The new history has a tick of A so far, none of B.
        assert!(
            !feed.push_tick(&tick("A", 1), now, metrics.shard(0)),
            "still lagging"
        );
        feed.caught_up(&config);
        let seen: Vec<String> = queued(&feed)
            .iter()
            .map(|m| format!("{} {} {}", m["type"], m["symbol"], m["seq"]))
            .collect();
        let want = [
            r#""reset" "A" null"#,
            r#""reset" "B" null"#,
            r#""tick" "A" 1"#,
        ];
        assert_eq!(seen, want, "the resets, then the new history's tick");
    }

    #[test]
    fn a_lagging_client_gets_nothing_it_skipped_of_a_key_reset_under_it() {
        let now = Instant::now();
        let metrics = Metrics::new(1);
        let config = Config::for_tests();
        let mut feed = Feed::new(Encoding::Json);
        feed.lagging = Some(BTreeMap::new());
        for (symbol, seq) in [("A", 7), ("B", 4)] {
            assert!(
                !feed.push_tick(&tick(symbol, seq), now, metrics.shard(0)),
                "conflated"
            );
        }
        // A is evicted under the lagging client: its seq 7 belongs to no run now.
        let a = Key::Symbol(Symbol::parse("A").unwrap());
        feed.reset(&a, 3, now);
        feed.caught_up(&config);
        let seen: Vec<String> = queued(&feed)
            .iter()
            .map(|m| format!("{} {} {}", m["type"], m["symbol"], m["seq"]))
            .collect();
        let want = [r#""reset" "A" null"#, r#""tick" "B" 4"#];
        assert_eq!(
            seen, want,
            "A's reset and none of its old ticks; B's skipped tick"
        );
    }
}
