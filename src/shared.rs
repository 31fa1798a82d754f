//! [`Shared`]: the relay-wide state every thread reads: the configuration, the counters, the
//! subscriber interest the sequencer encodes for, the sequencer's inbox (for
//! `POST /api/publish`), the stop signal and the auth state.
//!
//! Read-mostly: counters are atomics and interest counts are lock-free, so nothing here is
//! locked on the per-tick path.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};

use tokio::sync::{mpsc, oneshot};

use crate::auth::Auth;
use crate::config::Config;
use crate::event::Tiers;
use crate::ingest::Inbox;
use crate::limits::{DeflateSlots, LifecycleLog};
use crate::metrics::Metrics;
use crate::nats::Follow;
use crate::sequencer::Interest;
use crate::shutdown::Shutdown;
use crate::tls::Tls;

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
    /// taken for one history. On an edge, the stream's at start; a later new history of the
    /// stream is each shard's to switch to (`ShardCore::epoch`).
    pub epoch: u64,
    /// Rate limits for session lifecycle log lines.
    pub lifecycle_log: LifecycleLog,
    /// The limits a SIGHUP may change while the relay runs; read these, not `config`.
    pub live: LiveLimits,
    /// Token verification, anonymous access and per-user limits.
    pub auth: Auth,
    /// The TLS configuration of `--listen`, when `--tls-cert` is given.
    pub tls: Option<Arc<Tls>>,
    /// Clients compressing with permessage-deflate, under `--ws-deflate-max-clients`.
    pub deflate_slots: DeflateSlots,
    /// Each shard's admin queue (set once the shards exist): how `/api/sessions` reaches
    /// sessions that live on other shards' threads.
    pub shard_requests: OnceLock<Vec<mpsc::UnboundedSender<ShardRequest>>>,
    /// On an edge (set once, at start): how sessions ask for the keys they are about to
    /// subscribe or resume, so the shard holds their history first.
    pub follow: OnceLock<Follow>,
    /// The rate tiers clients may pick (`--rate-tiers`).
    pub tiers: Tiers,
    session_ids: AtomicU64,
}

impl Shared {
    /// State for a relay of `config.shards` shards feeding `inbox`, with auth off.
    pub fn new(config: Config, inbox: Inbox) -> Self {
        Self::with_access(config, inbox, Auth::off(), None)
    }

    /// State for a relay whose clients are checked by `auth`, over `tls` when given (the
    /// access rules: who may connect, read and operate).
    pub fn with_access(config: Config, inbox: Inbox, auth: Auth, tls: Option<Arc<Tls>>) -> Self {
        Self {
            auth,
            tls,
            shard_requests: OnceLock::new(),
            follow: OnceLock::new(),
            metrics: Arc::new(Metrics::new(config.shard_count())),
            interest: Arc::new(Interest::default()),
            inbox,
            shutdown: Shutdown::new(),
            epoch: new_epoch(),
            lifecycle_log: LifecycleLog::new(std::time::Instant::now()),
            live: LiveLimits::new(&config),
            deflate_slots: DeflateSlots::new(config.deflate.ws_deflate_max_clients),
            session_ids: AtomicU64::new(0),
            tiers: Tiers::new(&config.rate_tiers),
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

/// A question from the admin API to one shard, answered on the shard's own thread.
#[derive(Debug)]
pub enum ShardRequest {
    /// List the shard's sessions.
    Sessions(oneshot::Sender<Vec<SessionInfo>>),
    /// Close session `id` with `reason`; answers whether it was on this shard.
    Close {
        /// The relay-wide session id.
        id: u64,
        /// Sent in the close frame.
        reason: String,
        /// The answer.
        done: oneshot::Sender<bool>,
    },
}

/// One session as `GET /api/sessions` shows it.
#[derive(Debug, Clone, serde::Serialize)]
pub struct SessionInfo {
    /// Relay-wide session id.
    pub id: u64,
    /// The shard serving it.
    pub shard: usize,
    /// The client's address.
    pub peer: Option<SocketAddr>,
    /// The token's subject, if the session has a token.
    pub user: Option<String>,
    /// `json`, `protobuf` or `gzip`.
    pub encoding: &'static str,
    /// Subscribed to `*`.
    pub all: bool,
    /// Symbols subscribed by name.
    pub symbols: Vec<String>,
    /// Channels subscribed.
    pub channels: Vec<String>,
    /// Bytes queued for the client and not yet written (its lag).
    pub outbox_bytes: usize,
    /// How long the oldest queued frame has waited, in ms.
    pub outbox_age_ms: u64,
    /// When it connected, ns since the Unix epoch.
    pub connected_ns: u64,
}
