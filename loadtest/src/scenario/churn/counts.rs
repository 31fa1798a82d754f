//! What the churn shares: where and how it runs, and its running totals.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

use crate::report::ChurnTotals;

/// What the churn did, as running totals.
#[derive(Debug, Default)]
pub(crate) struct ChurnCounts {
    pub(crate) sessions: AtomicU64,
    pub(crate) failed: AtomicU64,
    pub(crate) messages: AtomicU64,
    pub(crate) resumes: AtomicU64,
    /// Resumes whose first tick was exactly the seq after the last one read.
    pub(crate) resumed_exactly: AtomicU64,
    /// Resumes whose first tick was another seq with no `gap` or `reset` before it.
    pub(crate) resumed_wrongly: AtomicU64,
    pub(crate) control_acks: AtomicU64,
    pub(crate) deflate_sessions: AtomicU64,
    pub(crate) compressed_frames: AtomicU64,
    pub(crate) stalled: AtomicU64,
    pub(crate) dropped: AtomicU64,
    pub(crate) refreshes: AtomicU64,
    pub(crate) events_published: AtomicU64,
    pub(crate) events_received: AtomicU64,
    /// `{"type":"error"}` messages: a churn client never sends anything wrong.
    pub(crate) errors: AtomicU64,
}

impl ChurnCounts {
    /// The totals now.
    pub(crate) fn totals(&self) -> ChurnTotals {
        ChurnTotals {
            sessions: self.sessions.load(Relaxed),
            failed: self.failed.load(Relaxed),
            messages: self.messages.load(Relaxed),
            resumes: self.resumes.load(Relaxed),
            resumed_exactly: self.resumed_exactly.load(Relaxed),
            resumed_wrongly: self.resumed_wrongly.load(Relaxed),
            control_acks: self.control_acks.load(Relaxed),
            deflate_sessions: self.deflate_sessions.load(Relaxed),
            compressed_frames: self.compressed_frames.load(Relaxed),
            stalled: self.stalled.load(Relaxed),
            dropped: self.dropped.load(Relaxed),
            refreshes: self.refreshes.load(Relaxed),
            events_published: self.events_published.load(Relaxed),
            events_received: self.events_received.load(Relaxed),
            errors: self.errors.load(Relaxed),
        }
    }
}

/// Where and how the churn runs.
#[derive(Clone)]
pub(crate) struct ChurnPlan {
    pub(crate) ws: SocketAddr,
    pub(crate) ingest: SocketAddr,
    /// Concurrent churn clients.
    pub(crate) slots: usize,
    pub(crate) symbols: u32,
    pub(crate) seed: u64,
    /// Signs a fresh token for a session (`None`: the relay has no key; no refreshes).
    pub(crate) token: Option<Arc<dyn Fn() -> String + Send + Sync>>,
}

impl std::fmt::Debug for ChurnPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ChurnPlan")
            .field("ws", &self.ws)
            .field("slots", &self.slots)
            .field("token", &self.token.is_some())
            .finish_non_exhaustive()
    }
}

/// The channel the churn's events go to.
pub(crate) const EVENT_CHANNEL: &str = "soak";
