//! With acks: the batches the relay has not acknowledged yet, kept to send again under their
//! pseqs after a reconnect (docs/PROTOCOL.md, "Acknowledged ingest": a hello with the first
//! unacknowledged pseq, then those lines). The relay stores a resent line it already holds
//! only once, so nothing is lost or doubled across a relay restart or a sequencer failover.

use std::collections::VecDeque;

/// A publisher's id and its unacknowledged batches.
#[derive(Debug)]
pub(super) struct Unacked {
    id: String,
    /// (first pseq, last pseq, the batch's bytes), oldest first.
    batches: VecDeque<(u64, u64, Vec<u8>)>,
}

impl Unacked {
    pub(super) fn new(id: &str) -> Self {
        Self {
            id: id.to_owned(),
            batches: VecDeque::new(),
        }
    }

    /// The hello a connection starts with: `pseq` is its next line's.
    pub(super) fn hello(&self, pseq: u64) -> String {
        format!(
            "{{\"type\":\"hello\",\"publisher\":\"{}\",\"pseq\":{pseq}}}\n",
            self.id
        )
    }

    /// Keeps a batch of the ticks `first..=last` until acknowledged.
    pub(super) fn push(&mut self, first: u64, last: u64, bytes: &[u8]) {
        self.batches.push_back((first, last, bytes.to_vec()));
    }

    /// Drops the batches acknowledged up to `acked`.
    pub(super) fn trim(&mut self, acked: u64) {
        while self.batches.front().is_some_and(|b| b.1 <= acked) {
            self.batches.pop_front();
        }
    }

    /// What a new connection sends: the hello with the first unacknowledged pseq (or
    /// `next`, if none is), then every unacknowledged batch, in order. A batch partly
    /// acknowledged goes again whole: its acknowledged lines come back as duplicates.
    pub(super) fn replay(&self, next: u64) -> Vec<u8> {
        let first = self.batches.front().map_or(next, |b| b.0);
        let mut out = self.hello(first).into_bytes();
        for (_, _, bytes) in &self.batches {
            out.extend_from_slice(bytes);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_replay_starts_at_the_first_unacknowledged_pseq() {
        let mut unacked = Unacked::new("lt");
        unacked.push(1, 2, b"a\nb\n");
        unacked.push(3, 3, b"c\n");
        unacked.push(4, 6, b"d\ne\nf\n");
        unacked.trim(3);
        let replay = String::from_utf8(unacked.replay(7)).unwrap();
        assert_eq!(
            replay,
            "{\"type\":\"hello\",\"publisher\":\"lt\",\"pseq\":4}\nd\ne\nf\n"
        );
        unacked.trim(6);
        let replay = String::from_utf8(unacked.replay(7)).unwrap();
        assert_eq!(
            replay,
            "{\"type\":\"hello\",\"publisher\":\"lt\",\"pseq\":7}\n"
        );
    }
}
