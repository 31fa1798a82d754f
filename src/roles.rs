//! Wiring of `--role` (docs/SCALING.md): the `nats` thread that joins a sequencer or an
//! edge to the stream.
//!
//! [`NatsThread::spawn`] starts the thread and waits (bounded: [`START_PATIENCE`]) for it
//! to reach NATS and open the history: a sequencer creates the stream if needed and reads
//! the epoch, each key's newest seq and every book (its newest checkpoint and the updates
//! after it); an edge reads the epoch a sequencer wrote, waiting
//! for a sequencer to write one. Relays started beside their NATS server retry the first
//! connect, logging each try, and the `--listen` socket answers 503 `starting` meanwhile
//! (`waiting::NotReady`). Only then does [`Relay::start`](crate::relay::Relay::start)
//! build the rest, with that epoch, and hand the thread its [`Job`]: publish the
//! sequencer's batches, or follow what the edge's clients want.

mod patience;
mod waiting;

use std::net::TcpListener;
use std::sync::Arc;
use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tokio::sync::{oneshot, watch};
use tracing::{error, info, warn};

use patience::Patience;
pub use patience::START_PATIENCE;

use crate::book::BookUpdate;
use crate::config::Role;
use crate::config::{Config, ConfigError};
use crate::event::Key;
use crate::metrics::Metrics;
use crate::nats::lease::Lease;
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
        /// Where it reports the batches the stream holds (for publishers' acks).
        stored: nats::stored::Stored,
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
    /// A sequencer's books as the stream holds them, to rebuild (empty on an edge).
    pub books: Vec<BookUpdate>,
    /// Acking publishers' highest pseqs the stream holds (empty on an edge).
    pub publishers: Vec<(Arc<str>, u64)>,
    /// The thread.
    pub thread: JoinHandle<()>,
    job: oneshot::Sender<Job>,
}

impl NatsThread {
    /// Connects to `--nats` and opens the history; `None` when this relay uses no NATS.
    /// While it waits, `http` (the bound `--listen` socket) answers 503 `starting`.
    pub fn spawn(
        config: &Config,
        metrics: Arc<Metrics>,
        fresh_epoch: u64,
        http: &TcpListener,
    ) -> Result<Option<Self>, NatsStartError> {
        let Some(urls) = config.scale.nats.as_deref() else {
            return Ok(None);
        };
        let url = crate::config::scale::redacted(urls);
        let (opened_tx, opened) = std_mpsc::channel::<Opening>();
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
                        let _ = opened_tx.send(Opening::Opened(Err(NatsError::Connect {
                            url,
                            reason: format!("no runtime: {e}"),
                        })));
                        return;
                    }
                };
                runtime.block_on(async move {
                    let standby = {
                        let opened_tx = opened_tx.clone();
                        move || {
                            let _ = opened_tx.send(Opening::Standby);
                        }
                    };
                    let opened = open(&config, metrics.clone(), fresh_epoch, standby).await;
                    let (history, found, lease) = match opened {
                        Ok(opened) => opened,
                        Err(e) => {
                            let _ = opened_tx.send(Opening::Opened(Err(e)));
                            return;
                        }
                    };
                    let _ = opened_tx.send(Opening::Opened(Ok((history.epoch, found))));
                    match job_rx.await {
                        Ok(Job::Publish {
                            queue,
                            shutdown,
                            drain,
                            stored,
                        }) => {
                            let Some(lease) = lease else {
                                error!("a publishing relay without the sequencer lease");
                                return;
                            };
                            let (finished, done) = oneshot::channel();
                            let keeper = tokio::spawn(lease.clone().keep(shutdown.clone(), done));
                            let stop = shutdown.clone();
                            let published = nats::publish::run(
                                history, lease, queue, metrics, shutdown, drain, stored,
                            )
                            .await;
                            if let Err(deposed) = published {
                                error!(%deposed, "sequencer stopping");
                                stop.trigger();
                                keeper.abort();
                            } else {
                                let _ = finished.send(());
                                let _ = keeper.await;
                            }
                        }
                        Ok(Job::Follow { wants, wiring }) => {
                            follow::run(history, wants, wiring).await;
                        }
                        // The relay failed to start after opening the stream.
                        Err(_) => {}
                    }
                });
            })
            .map_err(NatsStartError::Spawn)?;
        let mut answering =
            waiting::NotReady::serve(http, "waiting for NATS and the stream's epoch");
        let mut opened_now = opened.recv_timeout(OPEN_TIMEOUT);
        // A standby waits for the lease as long as it takes, saying so on `/ready`.
        while let Ok(Opening::Standby) = opened_now {
            if let Some(answering) = answering.take() {
                answering.stop();
            }
            answering = waiting::NotReady::serve(http, STANDBY);
            opened_now = opened
                .recv()
                .map_err(|_| std_mpsc::RecvTimeoutError::Disconnected);
        }
        if let Some(answering) = answering {
            answering.stop();
        }
        let opened = opened_now.map(|opening| match opening {
            Opening::Opened(result) => result,
            Opening::Standby => unreachable!("the loop above waits past every standby notice"),
        });
        match opened {
            Ok(Ok((epoch, found))) => Ok(Some(Self {
                epoch,
                newest: found.newest,
                restored: found.restored,
                books: found.books,
                publishers: found.publishers,
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
    /// hands on (one more of `senders`; with the count of batches the stream holds, for the
    /// sequencer's acks), or follow what an edge's sessions ask for (their handle set in
    /// `shared`).
    pub fn start(
        self,
        shared: &Shared,
        senders: &mut Vec<TickSender>,
    ) -> (JoinHandle<()>, Option<watch::Receiver<u64>>) {
        let mut durable = None;
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
            let (stored, stored_rx) = watch::channel(0);
            durable = Some(stored_rx);
            Job::Publish {
                queue,
                shutdown: shared.shutdown.clone(),
                drain: shared.config.drain_timeout,
                stored: nats::stored::Stored::new(stored),
            }
        };
        (self.run(job), durable)
    }

    /// Gives the thread its job.
    pub fn run(self, job: Job) -> JoinHandle<()> {
        if self.job.send(job).is_err() {
            warn!("the nats thread stopped before it was given its job");
        }
        self.thread
    }
}

/// What the `nats` thread tells the starting relay.
#[derive(Debug)]
enum Opening {
    /// Another sequencer holds the lease: this one waits (as long as it takes).
    Standby,
    /// The history is open (or could not be).
    Opened(Result<(u64, Found), NatsError>),
}

/// `/ready`'s reason while a sequencer waits as a standby.
const STANDBY: &str = "standby: another sequencer holds the lease";

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
    config: &Config,
    metrics: Arc<Metrics>,
    fresh_epoch: u64,
    mut standby: impl FnMut(),
) -> Result<(History, Found, Option<Lease>), NatsError> {
    let mut patience = Patience::new();
    // A relay started in the same instant as its NATS server (a script, a container set)
    // finds nobody listening yet: try again, logging each try, until START_PATIENCE.
    let connection = loop {
        let name = format!("tickrelay {}", config.scale.role.as_str());
        match nats::connect(&config.scale, &name, metrics.clone()).await {
            Ok(connection) => break connection,
            Err(e) => match patience.pause() {
                Some(pause) => {
                    warn!(error = %e, attempt = patience.tries, retry_in = ?pause, "NATS not reachable yet; retrying");
                    tokio::time::sleep(pause).await;
                }
                None => return Err(patience.gave_up(e)),
            },
        }
    };
    // A sequencer sequences only while it holds the lease: a standby waits here.
    let lease = if config.scale.role == Role::Edge {
        None
    } else {
        let js = nats::context(connection.client.clone());
        let holder = format!(
            "{} pid {} {:016x}",
            config.listen,
            std::process::id(),
            fresh_epoch
        );
        loop {
            match Lease::acquire(
                &js,
                &config.scale.nats_stream,
                config.scale.nats_replicas,
                holder.clone(),
                &mut standby,
            )
            .await
            {
                Ok(lease) => break Some(lease),
                Err(e) => match patience.pause() {
                    Some(pause) => {
                        info!(reason = %e, attempt = patience.tries, "waiting for the lease bucket");
                        tokio::time::sleep(pause).await;
                    }
                    None => return Err(patience.gave_up(e)),
                },
            }
        }
    };
    // An edge started before its sequencer waits for the history, and either role waits
    // for a JetStream cluster that is still electing its leaders, instead of exiting.
    let history = loop {
        let attempt = nats::Connection {
            client: connection.client.clone(),
            disturbed: connection.disturbed.clone(),
        };
        let opened = if config.scale.role == Role::Edge {
            History::open(attempt, config).await
        } else {
            History::open_or_create(attempt, config, fresh_epoch).await
        };
        match opened {
            Ok(history) => break history,
            Err(e) => match patience.pause() {
                Some(pause) => {
                    if matches!(e, NatsError::NoHistory(_)) {
                        info!(stream = %config.scale.nats_stream, attempt = patience.tries, "waiting for a sequencer to write the stream's epoch");
                    } else {
                        info!(stream = %config.scale.nats_stream, attempt = patience.tries, reason = %e, "waiting for the stream");
                    }
                    tokio::time::sleep(pause).await;
                }
                None => return Err(patience.gave_up(e)),
            },
        }
    };
    if config.scale.role == Role::Edge {
        return Ok((history, Found::default(), None));
    }
    let newest = history.last_seqs(&metrics).await?;
    let restored = if config.derived.enabled() {
        Some(history.derived_state(&metrics).await?)
    } else {
        None
    };
    let books = nats::books::restore(&history, &metrics).await?;
    let publishers = history.publishers(&metrics).await?;
    let found = Found {
        newest,
        restored,
        books,
        publishers,
    };
    Ok((history, found, lease))
}

/// What a sequencer finds in the stream at start (nothing on an edge).
#[derive(Debug, Default)]
struct Found {
    newest: Vec<(Key, Seq)>,
    restored: Option<Restored>,
    books: Vec<BookUpdate>,
    publishers: Vec<(Arc<str>, u64)>,
}

/// Batches the NATS publisher's queue holds before the sequencer waits for NATS acks.
const PUBLISH_BATCHES: usize = 4096;
/// Longest start-up wait for the `nats` thread: the patience, then one more connect
/// timeout and the stream requests.
const OPEN_TIMEOUT: Duration = Duration::from_secs(START_PATIENCE.as_secs() + 20);
