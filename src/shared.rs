//! [`Shared`]: the relay-wide state every thread reads: the configuration, the counters, the
//! subscriber interest the sequencer encodes for, the sequencer's inbox (for
//! `POST /api/publish`) and the stop signal.
//!
//! Read-mostly: counters are atomics and interest counts are lock-free, so nothing here is
//! locked on the per-tick path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};

use crate::config::Config;
use crate::ingest::Inbox;
use crate::limits::LifecycleLog;
use crate::metrics::Metrics;
use crate::sequencer::Interest;
use crate::shutdown::Shutdown;

/// Relay-wide state shared by every thread.
#[derive(Debug)]
pub struct Shared {
    /// The configuration.
    pub config: Config,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// Subscriber counts per symbol and encoding.
    pub interest: Arc<Interest>,
    /// The sequencer's input (for `POST /api/publish`).
    pub inbox: Inbox,
    /// The stop signal and phase.
    pub shutdown: Shutdown,
    /// The identity of the history this relay serves (in `welcome`; resumes name it).
    /// Chosen at start: a relay's seqs restart at 1, so seqs of two runs must never be
    /// taken for one history.
    pub epoch: u64,
    /// Rate limits for session lifecycle log lines.
    pub lifecycle_log: LifecycleLog,
    /// The limits a SIGHUP may change while the relay runs; read these, not `config`.
    pub live: LiveLimits,
    session_ids: AtomicU64,
}

impl Shared {
    /// State for a relay of `config.shards` shards feeding `inbox`.
    pub fn new(config: Config, inbox: Inbox) -> Self {
        Self {
            metrics: Arc::new(Metrics::new(config.shard_count())),
            interest: Arc::new(Interest::default()),
            inbox,
            shutdown: Shutdown::new(),
            epoch: new_epoch(),
            lifecycle_log: LifecycleLog::new(std::time::Instant::now()),
            live: LiveLimits::new(&config),
            session_ids: AtomicU64::new(0),
            config,
        }
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}

/// A random epoch in 1..2^53: unique per history in practice, and exact as a JSON number
/// in every client (JavaScript's integers are exact up to 2^53).
fn new_epoch() -> u64 {
    rand::random::<u64>() % ((1 << 53) - 1) + 1
}
/// Limits that can change while the relay runs (SIGHUP): atomics read once per connection
/// or session, never per tick.
#[derive(Debug)]
pub struct LiveLimits {
    max_connections: AtomicUsize,
    max_control_rate: AtomicU32,
}

impl LiveLimits {
    /// The limits of `config`.
    pub fn new(config: &Config) -> Self {
        Self {
            max_connections: AtomicUsize::new(config.max_connections),
            max_control_rate: AtomicU32::new(config.max_control_rate),
        }
    }

    /// Takes the limits of `config` (already validated) from now on.
    pub fn apply(&self, config: &Config) {
        self.max_connections
            .store(config.max_connections, Ordering::Relaxed);
        self.max_control_rate
            .store(config.max_control_rate, Ordering::Relaxed);
    }

    /// `--max-connections`, checked at each accept.
    pub fn max_connections(&self) -> usize {
        self.max_connections.load(Ordering::Relaxed)
    }

    /// `--max-control-rate`, given to each session as it opens.
    pub fn max_control_rate(&self) -> u32 {
        self.max_control_rate.load(Ordering::Relaxed)
    }
}

/// The settings (long flags) that [`LiveLimits::apply`] and the log filter change live.
pub const RELOADABLE: &[&str] = &["log", "max-connections", "max-control-rate"];
