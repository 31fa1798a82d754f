//! Wiring of `--role` (docs/SCALING.md): the `nats` thread that joins a sequencer or an
//! edge to the stream.
//!
//! [`NatsThread::spawn`] starts the thread and waits (bounded by the connect timeout) for it
//! to reach NATS and open the history: a sequencer creates the stream if needed and reads
//! the epoch and each key's newest seq; an edge reads the epoch a sequencer wrote. Only
//! then does [`Relay::start`](crate::relay::Relay::start) build the rest, with that epoch,
//! and hand the thread its [`Job`]: publish the sequencer's batches, or follow what the
//! edge's clients want.

use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::oneshot;
use tracing::warn;

use crate::config::Role;
use crate::config::{Config, ConfigError};
use crate::event::Key;
use crate::metrics::Metrics;
use crate::nats::{self, History, NatsError, follow};
use crate::sequencer::derived::Restored;
use crate::sequencer::{TickQueue, TickSender, tick_queue};
use crate::shared::Shared;
use crate::shutdown::Shutdown;
use crate::tick::Seq;

/// What the `nats` thread does once the relay is built.
#[derive(Debug)]
pub enum Job {
    /// Publish every batch of this queue (a sequencer, or `all` with `--nats`).
    Publish {
        /// The sequencer's batches.
        queue: TickQueue,
        /// The stop signal.
        shutdown: Shutdown,
        /// How long to keep trying unacknowledged items after shutdown.
        drain: Duration,
    },
    /// Follow the keys the edge's clients want into its sequencer.
    Follow {
        /// Sessions' wants.
        wants: follow::Wants,
        /// Inbox, interest, counters, linger, stop signal.
        wiring: follow::Wiring,
    },
}

/// The running `nats` thread and what it found in the stream.
#[derive(Debug)]
pub struct NatsThread {
    /// The history's epoch: the stream's, the same on every relay.
    pub epoch: u64,
    /// A sequencer's newest seq of every key (empty on an edge).
    pub newest: Vec<(Key, Seq)>,
    /// A sequencer's bars and tickers as the stream holds them (with bars on).
    pub restored: Option<Restored>,
    /// The thread.
    pub thread: JoinHandle<()>,
    job: oneshot::Sender<Job>,
}

impl NatsThread {
    /// Connects to `--nats` and opens the history; `None` when this relay uses no NATS.
    pub fn spawn(
        config: &Config,
        metrics: Arc<Metrics>,
        fresh_epoch: u64,
    ) -> Result<Option<Self>, NatsStartError> {
        let Some(url) = config.scale.nats.clone() else {
            return Ok(None);
        };
        let (opened_tx, opened) = std_mpsc::channel();
        let (job, job_rx) = oneshot::channel::<Job>();
        let config = config.clone();
        let thread = std::thread::Builder::new()
            .name("nats".into())
            .spawn(move || {
                let runtime = match tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                {
                    Ok(runtime) => runtime,
                    Err(e) => {
                        let _ = opened_tx.send(Err(NatsError::Connect {
                            url,
                            reason: format!("no runtime: {e}"),
                        }));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let history = match open(&url, &config, metrics.clone(), fresh_epoch).await {
                        Ok(opened) => opened,
                        Err(e) => {
                            let _ = opened_tx.send(Err(e));
                            return;
                        }
                    };
                    let (history, newest, restored) = history;
                    let _ = opened_tx.send(Ok((history.epoch, newest, restored)));
                    match job_rx.await {
                        Ok(Job::Publish {
                            queue,
                            shutdown,
                            drain,
                        }) => nats::publish::run(history, queue, metrics, shutdown, drain).await,
                        Ok(Job::Follow { wants, wiring }) => {
                            follow::run(history, wants, wiring).await;
                        }
                        // The relay failed to start after opening the stream.
                        Err(_) => {}
                    }
                });
            })
            .map_err(NatsStartError::Spawn)?;
        match opened.recv_timeout(OPEN_TIMEOUT) {
            Ok(Ok((epoch, newest, restored))) => Ok(Some(Self {
                epoch,
                newest,
                restored,
                thread,
                job,
            })),
            Ok(Err(e)) => Err(NatsStartError::Nats(e)),
            Err(_) => Err(NatsStartError::Nats(NatsError::JetStream {
                what: "open the stream",
                reason: format!("no answer within {}s", OPEN_TIMEOUT.as_secs()),
            })),
        }
    }

    /// Gives the thread its job, the one of this relay's role: publish what the sequencer
    /// hands on (one more of `senders`), or follow what an edge's sessions ask for (their
    /// handle set in `shared`).
    pub fn start(self, shared: &Shared, senders: &mut Vec<TickSender>) -> JoinHandle<()> {
        let job = if shared.config.scale.role == Role::Edge {
            let (handle, wants) = follow::channel();
            shared
                .follow
                .set(handle)
                .expect("set once, before any connection is served");
            Job::Follow {
                wants,
                wiring: follow::Wiring {
                    inbox: shared.inbox.clone(),
                    interest: shared.interest.clone(),
                    metrics: shared.metrics.clone(),
                    linger: shared.config.scale.nats_linger,
                    shutdown: shared.shutdown.clone(),
                },
            }
        } else {
            let (sender, queue) = tick_queue(PUBLISH_BATCHES);
            senders.push(sender);
            Job::Publish {
                queue,
                shutdown: shared.shutdown.clone(),
                drain: shared.config.drain_timeout,
            }
        };
        self.run(job)
    }

    /// Gives the thread its job.
    pub fn run(self, job: Job) -> JoinHandle<()> {
        if self.job.send(job).is_err() {
            warn!("the nats thread stopped before it was given its job");
        }
        self.thread
    }
}

/// Why the NATS side could not start.
#[derive(Debug, thiserror::Error)]
pub enum NatsStartError {
    /// NATS or JetStream refused.
    #[error(transparent)]
    Nats(#[from] NatsError),
    /// The thread could not start.
    #[error("could not start the nats thread: {0}")]
    Spawn(std::io::Error),
}

/// Settings that contradict `--role`: an edge has no ingest of its own.
pub fn check(config: &Config) -> Result<(), ConfigError> {
    if config.scale.role != Role::Edge {
        return Ok(());
    }
    let sources = [
        ("--demo", config.demo),
        ("--replay", config.replay.is_some()),
    ];
    match sources.iter().find(|(_, on)| *on) {
        Some((flag, _)) => Err(ConfigError::Invalid {
            flag,
            value: "on".into(),
            reason: "an edge takes no ingest: run sources on the sequencer",
        }),
        None => Ok(()),
    }
}

async fn open(
    url: &str,
    config: &Config,
    metrics: Arc<Metrics>,
    fresh_epoch: u64,
) -> Result<(History, Vec<(Key, Seq)>, Option<Restored>), NatsError> {
    let connection = nats::connect(url, metrics.clone()).await?;
    if config.scale.role == Role::Edge {
        return Ok((History::open(connection, config).await?, Vec::new(), None));
    }
    let history = History::open_or_create(connection, config, fresh_epoch).await?;
    let newest = history.last_seqs(&metrics).await?;
    let restored = if config.derived.enabled() {
        Some(history.derived_state(&metrics).await?)
    } else {
        None
    };
    Ok((history, newest, restored))
}

/// Batches the NATS publisher's queue holds before the sequencer waits for NATS acks.
const PUBLISH_BATCHES: usize = 4096;
/// Longest start-up wait for NATS: the connect timeout plus the stream requests.
const OPEN_TIMEOUT: Duration = Duration::from_secs(20);
