//! [`Shared`]: the relay-wide state every thread reads: the configuration, the counters, the
//! subscriber interest the sequencer encodes for, the sequencer's inbox (for
//! `POST /api/publish`), the stop signal and the auth state.
//!
//! Read-mostly: counters are atomics and interest counts are lock-free, so nothing here is
//! locked on the per-tick path.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use crate::auth::Auth;
use crate::config::Config;
use crate::ingest::Inbox;
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
    /// Token verification, anonymous access and per-user limits.
    pub auth: Auth,
    session_ids: AtomicU64,
}

impl Shared {
    /// State for a relay of `config.shards` shards feeding `inbox`, with auth off.
    pub fn new(config: Config, inbox: Inbox) -> Self {
        Self::with_auth(config, inbox, Auth::off())
    }

    /// State for a relay whose clients are checked by `auth`.
    pub fn with_auth(config: Config, inbox: Inbox, auth: Auth) -> Self {
        Self {
            auth,
            metrics: Arc::new(Metrics::new(config.shard_count())),
            interest: Arc::new(Interest::default()),
            inbox,
            shutdown: Shutdown::new(),
            session_ids: AtomicU64::new(0),
            config,
        }
    }

    /// A fresh session id.
    pub fn next_session_id(&self) -> u64 {
        self.session_ids.fetch_add(1, Ordering::Relaxed) + 1
    }
}
