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
pub(super) const KEY: &str = "sequencer";
/// How long a standby waits for the holder's revision to change before it takes the lease.
pub const LEASE: Duration = Duration::from_millis(1500);
/// How often the holder renews (several renewals fit in a [`LEASE`]).
const RENEW: Duration = Duration::from_millis(250);
/// How often a standby looks at the lease.
const POLL: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use std::future::Future;

    use super::super::nats_server::NatsServer;
    use super::*;
    use crate::config::Config;
    use crate::metrics::Metrics;

    /// A server and a JetStream context on it.
    async fn setup(name: &str) -> Option<(NatsServer, jetstream::Context)> {
        let server = NatsServer::start(name)?;
        let mut config = Config::for_tests();
        config.scale.nats = Some(server.url());
        let connection =
            super::super::connect(&config.scale, "unit test", Arc::new(Metrics::new(1)))
                .await
                .expect("connect");
        Some((server, super::super::context(connection.client)))
    }

    /// The lease of stream `s` for `holder`, taken at once (no other holds it).
    async fn take(js: &jetstream::Context, holder: &str) -> Lease {
        Lease::acquire(js, "s", 1, holder.into(), &mut || {
            panic!("{holder} should not wait as a standby")
        })
        .await
        .expect("the lease")
    }

    /// The lease key as NATS holds it: holder, revision, operation.
    async fn key(js: &jetstream::Context) -> Option<(String, u64, kv::Operation)> {
        let store = js.get_key_value("s-lease").await.expect("the bucket");
        let entry = store.entry(KEY).await.expect("read the key")?;
        Some((
            String::from_utf8_lossy(&entry.value).into_owned(),
            entry.revision,
            entry.operation,
        ))
    }

    /// Keeps this test's clock still: it moves only by `tokio::time::advance`, never while
    /// the test waits for NATS (a blocking task, waiting until this is dropped, stops the
    /// paused clock from jumping to the next timer whenever the runtime is idle).
    struct Frozen(#[allow(dead_code)] std::sync::mpsc::Sender<()>);

    fn freeze() -> Frozen {
        let (hold, held) = std::sync::mpsc::channel::<()>();
        drop(tokio::task::spawn_blocking(move || {
            let _ = held.recv();
        }));
        tokio::time::pause();
        Frozen(hold)
    }

    /// `future`'s output, or `None` once `real` wall-clock time has passed (measured by a
    /// blocking wait, which a frozen clock does not stop).
    async fn within<T>(real: Duration, future: impl Future<Output = T>) -> Option<T> {
        let (stop, stopped) = std::sync::mpsc::channel::<()>();
        let timer = tokio::task::spawn_blocking(move || {
            let _ = stopped.recv_timeout(real);
        });
        let output = tokio::select! {
            output = future => Some(output),
            _ = timer => None,
        };
        drop(stop);
        output
    }

    /// A standby's wait for the lease, driven by the test's own task.
    type Waiting = std::pin::Pin<Box<dyn Future<Output = Result<Lease, NatsError>>>>;

    /// A standby `holder` waiting for the lease of stream `s`, and its standby notices.
    fn standby(
        js: &jetstream::Context,
        holder: &str,
    ) -> (Waiting, tokio::sync::mpsc::UnboundedReceiver<()>) {
        let (notice, notices) = tokio::sync::mpsc::unbounded_channel();
        let (js, holder) = (js.clone(), holder.to_owned());
        let waiting = Box::pin(async move {
            let mut notify = move || {
                let _ = notice.send(());
            };
            Lease::acquire(&js, "s", 1, holder, &mut notify).await
        });
        (waiting, notices)
    }

    /// Drives `waiting` until it says it is a standby (it then sleeps until its next look).
    async fn until_standby(
        waiting: &mut Waiting,
        notices: &mut tokio::sync::mpsc::UnboundedReceiver<()>,
    ) {
        within(PATIENCE, async {
            tokio::select! {
                _ = notices.recv() => {}
                taken = waiting => panic!("took a held lease: {taken:?}"),
            }
        })
        .await
        .expect("told it is a standby");
    }

    const PATIENCE: Duration = Duration::from_secs(5);

    #[tokio::test]
    async fn the_first_sequencer_holds_the_lease_in_a_bucket_laid_out_for_it() {
        let Some((_server, js)) = setup("lease-first").await else {
            return;
        };
        let lease = take(&js, "a").await;
        assert_eq!(key(&js).await, Some(("a".into(), 1, kv::Operation::Put)));
        assert_eq!(lease.writer(), 1, "its tenure is the revision it took");
        assert_eq!(lease.still_held().await, Some(true));

        let mut stream = js.get_stream("KV_s-lease").await.expect("the bucket");
        let settings = stream.info().await.expect("bucket info").config.clone();
        assert_eq!(
            settings.description.as_deref(),
            Some("which sequencer sequences stream s")
        );
        assert_eq!(settings.subjects, vec!["$KV.s-lease.>".to_owned()]);
        assert_eq!(settings.max_messages_per_subject, 1, "the holder only");
        assert_eq!(
            settings.discard,
            jetstream::stream::DiscardPolicy::New,
            "a key-value bucket's layout"
        );
        assert!(settings.allow_rollup && settings.deny_delete && settings.allow_direct);
        assert_eq!(settings.storage, jetstream::stream::StorageType::File);
        assert_eq!(settings.num_replicas, 1);
        assert_eq!(bucket("s"), "s-lease");
    }

    #[tokio::test]
    async fn a_bucket_with_more_replicas_than_servers_is_refused() {
        let Some((_server, js)) = setup("lease-replicas").await else {
            return;
        };
        let refused = Lease::acquire(&js, "s", 3, "a".into(), &mut || {}).await;
        assert!(
            matches!(
                refused,
                Err(NatsError::JetStream {
                    what: "create the lease bucket",
                    ..
                })
            ),
            "{refused:?}"
        );
    }

    #[tokio::test]
    async fn a_lease_that_cannot_be_written_is_an_error_not_a_standby_wait() {
        let Some((_server, js)) = setup("lease-unwritable").await else {
            return;
        };
        // A bucket stream that does not take the lease key's subject.
        js.create_stream(jetstream::stream::Config {
            name: "KV_s-lease".into(),
            subjects: vec!["elsewhere.>".into()],
            max_messages_per_subject: 1,
            ..Default::default()
        })
        .await
        .expect("a stream in the bucket's place");
        let acquired = within(
            PATIENCE,
            Lease::acquire(&js, "s", 1, "a".into(), &mut || {}),
        )
        .await
        .expect("an answer, not a wait");
        assert!(
            matches!(
                acquired,
                Err(NatsError::JetStream {
                    what: "take the lease",
                    ..
                })
            ),
            "{acquired:?}"
        );
    }

    #[tokio::test]
    async fn a_standby_says_so_once_and_does_not_take_a_lease_seen_briefly() {
        let Some((_server, js)) = setup("lease-brief").await else {
            return;
        };
        let holder = take(&js, "a").await;
        let _frozen = freeze();
        let (mut waiting, mut notices) = standby(&js, "b");
        until_standby(&mut waiting, &mut notices).await;
        // Several looks, each seeing the same revision, within the lease time.
        for _ in 0..3 {
            tokio::time::advance(POLL).await;
        }
        assert!(
            within(Duration::from_millis(300), &mut waiting)
                .await
                .is_none(),
            "the standby took a lease that had not lapsed"
        );
        assert!(notices.try_recv().is_err(), "said it is a standby once");
        assert_eq!(key(&js).await, Some(("a".into(), 1, kv::Operation::Put)));
        assert_eq!(holder.still_held().await, Some(true));
    }

    #[tokio::test]
    async fn a_standby_takes_over_a_lease_whose_revision_stood_still_for_the_lease_time() {
        let Some((_server, js)) = setup("lease-lapsed").await else {
            return;
        };
        let holder = take(&js, "a").await;
        let _frozen = freeze();
        let (mut waiting, mut notices) = standby(&js, "b");
        until_standby(&mut waiting, &mut notices).await;
        tokio::time::advance(LEASE).await;
        let taken = within(PATIENCE, &mut waiting)
            .await
            .expect("took the lapsed lease")
            .expect("the lease");
        assert_eq!(key(&js).await, Some(("b".into(), 2, kv::Operation::Put)));
        assert_eq!(taken.writer(), 2, "a new tenure: the revision it took");
        assert_eq!(taken.still_held().await, Some(true));
        assert_eq!(holder.still_held().await, Some(false), "deposed");
        assert_eq!(holder.renew().await, Err(LeaseLost));
        assert_eq!(key(&js).await, Some(("b".into(), 2, kv::Operation::Put)));
        assert!(notices.try_recv().is_err(), "said it is a standby once");
    }

    #[tokio::test]
    async fn a_standby_does_not_take_a_lease_renewed_within_the_lease_time() {
        let Some((_server, js)) = setup("lease-renewed").await else {
            return;
        };
        let holder = take(&js, "a").await;
        let _frozen = freeze();
        let (mut waiting, mut notices) = standby(&js, "b");
        until_standby(&mut waiting, &mut notices).await;
        // Renewed while the standby sleeps: the lease time starts again from its next look.
        assert_eq!(holder.renew().await, Ok(true));
        tokio::time::advance(LEASE).await;
        assert!(
            within(Duration::from_millis(300), &mut waiting)
                .await
                .is_none(),
            "the standby took a lease that was renewed"
        );
        assert_eq!(key(&js).await, Some(("a".into(), 2, kv::Operation::Put)));
        assert_eq!(holder.still_held().await, Some(true));
    }

    #[tokio::test]
    async fn a_kept_lease_is_renewed_and_let_go_when_the_publisher_is_done() {
        let Some((_server, js)) = setup("lease-kept").await else {
            return;
        };
        let lease = take(&js, "a").await;
        let shutdown = Shutdown::new();
        let (finished, done) = tokio::sync::oneshot::channel();
        let keeping = tokio::spawn(lease.clone().keep(shutdown.clone(), done));
        let renewed = within(PATIENCE, async {
            loop {
                if let Some((_, revision, _)) = key(&js).await
                    && revision > 1
                {
                    return revision;
                }
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        })
        .await
        .expect("renewed");
        assert!(lease.still_held().await.is_some());
        finished.send(()).expect("still keeping");
        within(PATIENCE, keeping)
            .await
            .expect("stops once done")
            .expect("joined");
        let (_, released, operation) = key(&js).await.expect("the key");
        assert!(released > renewed);
        assert_eq!(operation, kv::Operation::Delete, "let go");
        assert!(!shutdown.is_triggered());
        assert_eq!(lease.still_held().await, Some(false));
        // The next sequencer takes it at once, without waiting out the lease time.
        let next = take(&js, "b").await;
        assert_eq!(next.writer(), released + 1);
    }

    #[tokio::test]
    async fn a_holder_whose_renewal_is_refused_stops_the_relay_and_leaves_the_lease() {
        let Some((_server, js)) = setup("lease-refused").await else {
            return;
        };
        let lease = take(&js, "a").await;
        // Another sequencer took it meanwhile.
        let store = js.get_key_value("s-lease").await.expect("the bucket");
        store.update(KEY, "b".into(), 1).await.expect("taken");
        let shutdown = Shutdown::new();
        let (_finished, done) = tokio::sync::oneshot::channel();
        within(PATIENCE, lease.clone().keep(shutdown.clone(), done))
            .await
            .expect("stops at the refused renewal");
        assert!(shutdown.is_triggered());
        assert_eq!(key(&js).await, Some(("b".into(), 2, kv::Operation::Put)));
        assert_eq!(lease.still_held().await, Some(false));
        assert_eq!(lease.renew().await, Err(LeaseLost));
    }

    #[tokio::test]
    async fn a_renewal_nats_does_not_take_is_tried_again_not_a_lost_lease() {
        let Some((_server, js)) = setup("lease-unanswered").await else {
            return;
        };
        let lease = take(&js, "a").await;
        js.delete_stream("KV_s-lease").await.expect("bucket gone");
        assert_eq!(lease.renew().await, Ok(false));
        assert_eq!(lease.still_held().await, None, "no answer");
    }
}
