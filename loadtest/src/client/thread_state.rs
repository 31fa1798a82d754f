//! What the sessions of one worker thread share: the figures they count into, the read and
//! inflate buffers, the wake-up of stalled clients, and the progress counters the
//! coordinator polls.
//!
//! Everything here lives on one thread: the sessions are local tasks of its current-thread
//! runtime, so a `RefCell` borrow per read (never held across an `.await`) is all the
//! synchronisation the figures need. Only [`WorkerProgress`] crosses threads.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use tokio::sync::Notify;

use super::{ClientProfile, ClientState, ClientStatus, Target};
use crate::latency::LatencyHist;
use crate::procfs;

/// Everything a worker measured, taken by the coordinator's collect.
#[derive(Clone, Debug)]
pub struct WorkerSnapshot {
    /// Latency of ticks to non-slow clients since the last reset.
    pub latency: LatencyHist,
    /// TCP connect start → welcome received, µs.
    pub handshake: LatencyHist,
    pub clients: Vec<ClientStatus>,
    /// CPU time of the worker thread since it started (ns resolution).
    pub cpu: Duration,
    /// The same split into user and kernel time (clock-tick resolution).
    pub cpu_split: procfs::CpuTimes,
    /// Distinct connection errors with their counts.
    pub errors: Vec<(String, u64)>,
}

/// Counters the coordinator polls for progress while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerProgress {
    pub welcomed: AtomicU64,
    pub failed: AtomicU64,
    pub closed: AtomicU64,
    /// Ticks delivered to any client.
    pub ticks: AtomicU64,
    /// Ticks delivered to non-slow clients.
    pub ticks_fast: AtomicU64,
}

/// State shared by every session of one worker thread.
pub(super) struct ThreadState {
    pub(super) progress: Arc<WorkerProgress>,
    pub(super) target: Target,
    pub(super) profile: ClientProfile,
    pub(super) figures: RefCell<Figures>,
    pub(super) read_buf: RefCell<Box<[u8]>>,
    pub(super) inflate_buf: RefCell<Vec<u8>>,
    cpu_at_start: Duration,
    cpu_split_at_start: procfs::CpuTimes,
    /// Slow clients read again once this is set (and `wake` notified).
    pub(super) slow_awake: Cell<bool>,
    pub(super) wake: Notify,
}

/// What the sessions of one thread counted: histograms, each client's status and counts, and
/// the distinct errors that ended sessions.
pub(super) struct Figures {
    pub(super) latency: LatencyHist,
    pub(super) handshake: LatencyHist,
    pub(super) clients: Vec<ClientStatus>,
    pub(super) errors: HashMap<String, u64>,
}

impl ThreadState {
    /// The state of a worker thread that starts now (its CPU counted from here).
    pub(super) fn new(
        progress: Arc<WorkerProgress>,
        target: Target,
        profile: ClientProfile,
    ) -> Self {
        Self {
            progress,
            target,
            profile,
            figures: RefCell::new(Figures {
                latency: LatencyHist::new(),
                handshake: LatencyHist::new(),
                clients: Vec::new(),
                errors: HashMap::new(),
            }),
            read_buf: RefCell::new(vec![0; READ_BUF].into_boxed_slice()),
            inflate_buf: RefCell::new(Vec::with_capacity(16 * 1024)),
            cpu_at_start: procfs::thread_cpu().unwrap_or_default(),
            cpu_split_at_start: procfs::thread_cpu_split().unwrap_or_default(),
            slow_awake: Cell::new(false),
            wake: Notify::new(),
        }
    }

    /// The figures so far; `reset_latency` starts a new latency window.
    pub(super) fn snapshot(&self, reset_latency: bool) -> WorkerSnapshot {
        let mut st = self.figures.borrow_mut();
        let snap = WorkerSnapshot {
            latency: st.latency.clone(),
            handshake: st.handshake.clone(),
            clients: st.clients.clone(),
            cpu: procfs::thread_cpu()
                .unwrap_or_default()
                .saturating_sub(self.cpu_at_start),
            cpu_split: procfs::thread_cpu_split()
                .unwrap_or_default()
                .since(&self.cpu_split_at_start),
            errors: st.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        };
        if reset_latency {
            st.latency.reset();
        }
        snap
    }

    /// Counts one error that ended (or prevented) a session.
    pub(super) fn record_error(&self, what: String) {
        let mut st = self.figures.borrow_mut();
        if st.errors.len() < MAX_ERROR_KINDS || st.errors.contains_key(&what) {
            *st.errors.entry(what).or_default() += 1;
        }
    }

    /// Moves client `local` to `state`, counting failures and closes for progress.
    pub(super) fn set_state(&self, local: usize, state: ClientState) {
        self.figures.borrow_mut().clients[local].state = state;
        let counter = match state {
            ClientState::Failed => &self.progress.failed,
            ClientState::Closed => &self.progress.closed,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

/// One read takes up to this much: many frames per syscall under load.
const READ_BUF: usize = 64 * 1024;
/// Distinct error strings kept per worker (they carry no per-client detail).
const MAX_ERROR_KINDS: usize = 32;
