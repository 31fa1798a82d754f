//! The sequencer lease: several `--role sequencer` processes may run on one stream, exactly
//! one sequences at a time (docs/SCALING.md, "A standby sequencer").
//!
//! The lease is one key in a JetStream key-value bucket beside the stream
//! (`<stream>-lease`, key `sequencer`), its value the holder's name. A sequencer takes it
//! with a create (only if the key is absent or deleted) or, once the holder has let it
//! lapse, with an update that names the revision it saw (compare and swap: of several
//! standbys, one wins). The holder renews it every [`RENEW`] by an update naming its own
//! last revision; a standby that sees the same revision for [`LEASE`] on its own clock
//! takes it over. No clock is compared across machines.
//!
//! The lease says who may sequence; the stream enforces it: every publish names the stream
//! sequence it follows (`publish`), so a deposed holder's late publish is refused, never
//! stored. A holder whose renewal is refused (another took the lease) stops; one that cannot
//! reach NATS keeps trying (nobody it could be replaced by can reach NATS either, or its
//! publishes are refused once it is replaced).

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use async_nats::jetstream::{self, kv};
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::NatsError;
use crate::shutdown::Shutdown;

/// A lease this sequencer holds (cloned handles share its revision).
#[derive(Debug, Clone)]
pub struct Lease {
    store: kv::Store,
    holder: String,
    revision: Arc<AtomicU64>,
    /// The revision at which it was taken: unique to this tenure.
    taken: u64,
}

/// Why the lease is no longer this sequencer's.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[error("the sequencer lease is now held by another sequencer")]
pub struct LeaseLost;

impl Lease {
    /// Waits until this sequencer (named `holder`) holds the lease of `stream`; says once
    /// that it is a standby (and calls `standby`) when another holds it.
    pub async fn acquire(
        js: &jetstream::Context,
        stream: &str,
        replicas: usize,
        holder: String,
        standby: &mut dyn FnMut(),
    ) -> Result<Self, NatsError> {
        // The bucket's stream as a key-value bucket is laid out (the client's own bucket
        // creation sends settings older servers, such as Debian's 2.9, do not answer).
        js.get_or_create_stream(jetstream::stream::Config {
            name: format!("KV_{}", bucket(stream)),
            description: Some(format!("which sequencer sequences stream {stream}")),
            subjects: vec![format!("$KV.{}.>", bucket(stream))],
            max_messages_per_subject: 1,
            discard: jetstream::stream::DiscardPolicy::New,
            allow_rollup: true,
            deny_delete: true,
            allow_direct: true,
            storage: jetstream::stream::StorageType::File,
            num_replicas: replicas,
            ..Default::default()
        })
        .await
        .map_err(super::jetstream_error("create the lease bucket"))?;
        let store = js
            .get_key_value(bucket(stream))
            .await
            .map_err(super::jetstream_error("open the lease bucket"))?;
        let mut told = false;
        // The revision a standby watches, and since when it has not changed.
        let mut seen: Option<(u64, Instant)> = None;
        loop {
            match store.create(KEY, holder.clone().into()).await {
                Ok(revision) => return Ok(Self::held(store, holder, revision)),
                Err(e) if e.kind() == kv::CreateErrorKind::AlreadyExists => {}
                Err(e) => return Err(super::jetstream_error("take the lease")(e)),
            }
            let entry = store
                .entry(KEY)
                .await
                .map_err(super::jetstream_error("read the lease"))?;
            if let Some(entry) = entry {
                let now = Instant::now();
                match seen {
                    Some((revision, since)) if revision == entry.revision => {
                        if now.duration_since(since) >= LEASE {
                            let value = holder.clone().into();
                            match store.update(KEY, value, entry.revision).await {
                                Ok(revision) => {
                                    info!(
                                        previous = %String::from_utf8_lossy(&entry.value),
                                        "the sequencer lease lapsed: taking it over"
                                    );
                                    return Ok(Self::held(store, holder, revision));
                                }
                                // Another standby was faster: watch its revision now.
                                Err(e) => debug!(error = %e, "lease taken by another standby"),
                            }
                        }
                    }
                    _ => seen = Some((entry.revision, now)),
                }
                if !std::mem::replace(&mut told, true) {
                    info!(
                        holder = %String::from_utf8_lossy(&entry.value),
                        "standby: another sequencer holds the lease; taking over when it lapses"
                    );
                    standby();
                }
            }
            tokio::time::sleep(POLL).await;
        }
    }

    fn held(store: kv::Store, holder: String, revision: u64) -> Self {
        info!(holder, "holding the sequencer lease");
        Self {
            store,
            holder,
            revision: Arc::new(AtomicU64::new(revision)),
            taken: revision,
        }
    }

    /// This tenure's mark in every message id it publishes: no other sequencer's message
    /// (even of the same key and seq) is a duplicate of one of this tenure's.
    pub fn writer(&self) -> u64 {
        self.taken
    }

    /// Renews the lease once: [`LeaseLost`] if another holds it now; `Ok(false)` if NATS
    /// did not answer (try again).
    pub async fn renew(&self) -> Result<bool, LeaseLost> {
        let revision = self.revision.load(Ordering::Acquire);
        match self
            .store
            .update(KEY, self.holder.clone().into(), revision)
            .await
        {
            Ok(revision) => {
                self.revision.store(revision, Ordering::Release);
                Ok(true)
            }
            Err(e) if e.kind() == kv::UpdateErrorKind::WrongLastRevision => Err(LeaseLost),
            Err(e) => {
                debug!(error = %e, "lease not renewed; trying again");
                Ok(false)
            }
        }
    }

    /// Whether this sequencer still holds the lease, asked of NATS now; `None` if NATS did
    /// not answer.
    pub async fn still_held(&self) -> Option<bool> {
        match self.store.entry(KEY).await {
            Ok(Some(entry)) => Some(
                entry.revision == self.revision.load(Ordering::Acquire)
                    && entry.operation == kv::Operation::Put,
            ),
            Ok(None) => Some(false),
            Err(_) => None,
        }
    }

    /// Renews the lease until `finished` (the publisher is done: nothing this sequencer
    /// accepted is left to store), then lets it go so a standby takes over at once. A
    /// renewal refused because another holds the lease triggers `shutdown`.
    pub async fn keep(self, shutdown: Shutdown, finished: tokio::sync::oneshot::Receiver<()>) {
        let mut every = tokio::time::interval(RENEW);
        every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(finished);
        loop {
            tokio::select! {
                _ = &mut finished => break,
                _ = every.tick() => {}
            }
            if let Err(lost) = self.renew().await {
                warn!(%lost, "sequencer stopping");
                shutdown.trigger();
                return;
            }
        }
        self.release().await;
    }

    /// Deletes the key if it is still this holder's.
    async fn release(&self) {
        let revision = self.revision.load(Ordering::Acquire);
        match self.store.delete_expect_revision(KEY, Some(revision)).await {
            Ok(()) => info!("sequencer lease released"),
            Err(e) => debug!(error = %e, "sequencer lease not released"),
        }
    }
}

/// The lease bucket of `stream`.
pub fn bucket(stream: &str) -> String {
    format!("{stream}-lease")
}

/// The key holding the holder's name.
const KEY: &str = "sequencer";
/// How long a standby waits for the holder's revision to change before it takes the lease.
pub const LEASE: Duration = Duration::from_millis(1500);
/// How often the holder renews (several renewals fit in a [`LEASE`]).
const RENEW: Duration = Duration::from_millis(250);
/// How often a standby looks at the lease.
const POLL: Duration = Duration::from_millis(100);
