//! What the handle and the task share: the counters, the error answers and the buffer of
//! lines not yet acked, behind one lock.

use std::collections::{BTreeMap, VecDeque};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;

use super::config::PublisherError;

/// What the handle and the task share.
#[derive(Debug)]
pub(super) struct Shared {
    pub(super) state: Mutex<State>,
    /// Woken when a line is queued (the writer waits on it).
    pub(super) queued: Notify,
    /// Woken on every ack and when the task stops for good (senders and flush wait on it).
    pub(super) settled: Notify,
    pub(super) max_unacked: usize,
    pub(super) first_pseq: u64,
}

impl Shared {
    /// The state; never held across an await. A poisoned lock is still used: every update
    /// leaves the state consistent.
    pub(super) fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[derive(Debug)]
pub(super) struct State {
    pub(super) unacked: Unacked,
    /// The pseq the next `send` gets.
    pub(super) next_pseq: u64,
    pub(super) sent: u64,
    pub(super) acked: u64,
    pub(super) reconnects: u64,
    /// Duplicates reported on connections that ended.
    pub(super) duplicates_done: u64,
    /// The latest `duplicates` of the current connection.
    pub(super) duplicates_now: u64,
    pub(super) errors: BTreeMap<u64, String>,
    pub(super) garbled: u64,
    /// Set when the task stopped for good.
    pub(super) fatal: Option<PublisherError>,
}

impl State {
    pub(super) fn new(first_pseq: u64) -> Self {
        Self {
            unacked: Unacked::default(),
            next_pseq: first_pseq,
            sent: 0,
            acked: 0,
            reconnects: 0,
            duplicates_done: 0,
            duplicates_now: 0,
            errors: BTreeMap::new(),
            garbled: 0,
            fatal: None,
        }
    }
}

/// The lines sent but not yet acked, in pseq order with no holes.
#[derive(Debug, Default)]
pub(super) struct Unacked {
    lines: VecDeque<(u64, String)>,
}

impl Unacked {
    pub(super) fn len(&self) -> usize {
        self.lines.len()
    }

    pub(super) fn is_empty(&self) -> bool {
        self.lines.is_empty()
    }

    /// The lowest unacked pseq.
    pub(super) fn first(&self) -> Option<u64> {
        self.lines.front().map(|&(pseq, _)| pseq)
    }

    /// Appends the next line; `pseq` follows the last one.
    pub(super) fn push(&mut self, pseq: u64, line: String) {
        debug_assert!(self.lines.back().is_none_or(|&(last, _)| last + 1 == pseq));
        self.lines.push_back((pseq, line));
    }

    /// Drops the lines with pseq `<= acked`; returns how many.
    pub(super) fn trim(&mut self, acked: u64) -> usize {
        let before = self.lines.len();
        while self.lines.front().is_some_and(|&(pseq, _)| pseq <= acked) {
            self.lines.pop_front();
        }
        before - self.lines.len()
    }

    /// Appends the lines from pseq `from` on to `out`, each with its `\n`, until `out` holds
    /// at least `max_bytes` (at least one line when there is one). Returns the pseq after the
    /// last line appended (`from` when none was).
    pub(super) fn copy_from(&self, from: u64, out: &mut Vec<u8>, max_bytes: usize) -> u64 {
        let Some(first) = self.first() else {
            return from;
        };
        let skip = usize::try_from(from.saturating_sub(first)).unwrap_or(usize::MAX);
        let mut next = from.max(first);
        for (taken, (pseq, line)) in self.lines.iter().skip(skip).enumerate() {
            if taken > 0 && out.len() >= max_bytes {
                break;
            }
            out.extend_from_slice(line.as_bytes());
            out.push(b'\n');
            next = pseq + 1;
        }
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_unacked_buffer_trims_and_copies() {
        let mut u = Unacked::default();
        let mut out = Vec::new();
        assert_eq!(u.copy_from(5, &mut out, 100), 5);
        assert!(out.is_empty());
        for pseq in 5..=9 {
            u.push(pseq, format!("l{pseq}"));
        }
        assert_eq!(u.trim(4), 0);
        assert_eq!(u.trim(6), 2);
        assert_eq!((u.first(), u.len()), (Some(7), 3));
        assert_eq!(u.copy_from(7, &mut out, 100), 10);
        assert_eq!(out, b"l7\nl8\nl9\n");
        out.clear();
        assert_eq!(u.copy_from(9, &mut out, 100), 10);
        assert_eq!(out, b"l9\n");
        out.clear();
        assert_eq!(u.copy_from(10, &mut out, 100), 10);
        assert!(out.is_empty());
        // A byte limit stops after the line that reaches it, but always takes one line.
        assert_eq!(u.copy_from(7, &mut out, 1), 8);
        assert_eq!(out, b"l7\n");
        assert_eq!(u.copy_from(8, &mut out, 1), 9);
        assert_eq!(out, b"l7\nl8\n");
        out.clear();
        assert_eq!(u.trim(100), 3);
        assert!(u.is_empty());
    }
}
