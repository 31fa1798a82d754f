//! Wires the data path: ingest → sequencer → shards → sessions, plus the client listener.
//!
//! [`Relay::start`] binds every socket (so a bad address fails at once, naming its flag),
//! starts the threads, and returns the running [`Relay`] with the bound addresses for
//! `main` and tests. Threads: one per shard (pinned with `--pin-shards`), shard 0's also running
//! the ingest listeners, the demo feed and the sequencer ([`crate::pipeline`]: no thread hop
//! between them and shard 0), and one control thread (client accept loop, JWKS and TLS
//! reloads).

mod control;
mod error;
mod sockets;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{info, warn};

use crate::auth::{Auth, AuthConfigError, jwks};
use crate::config::{Config, Role};
use crate::ingest::Published;
use crate::ingest::{self, Inbox};
use crate::pipeline::Head;
use crate::roles::{self, NatsThread};
use crate::sequencer::{self, Sequencer, TickSender};
use crate::shard_thread::{self, ShardHandle, ShardInputs};
use crate::shared::Shared;
use control::{Listeners, control};
pub use error::StartError;
use sockets::Sockets;
use tokio::sync::mpsc::Receiver;

/// A running relay: its addresses and the means to stop it.
#[derive(Debug)]
pub struct Relay {
    /// HTTP and WebSocket address.
    pub http_addr: SocketAddr,
    /// NDJSON ingest address (`0.0.0.0:0` on an edge: it takes no ingest).
    pub ingest_addr: SocketAddr,
    /// Protobuf ingest address (`0.0.0.0:0` on an edge).
    pub ingest_protobuf_addr: SocketAddr,
    /// `--admin-listen` address, when the admin routes have their own.
    pub admin_addr: Option<SocketAddr>,
    /// The shared state (tests read metrics through it).
    pub shared: Arc<Shared>,
    threads: Vec<JoinHandle<()>>,
}

impl Relay {
    /// Binds the listeners, opens the files, then starts every thread: whatever can fail
    /// for a bad flag fails before any thread runs.
    pub fn start(mut config: Config) -> Result<Self, StartError> {
        config.validate()?;
        roles::check(&config)?;
        // Resolve "one per CPU" now: once threads are pinned, a thread sees only its core.
        config.shards = config.shard_count();
        let mut sockets = Sockets::bind(&config)?;
        let files = Files::open(&config)?;
        let jwks_source = jwks_source(&config)?;
        let (shared, inbox) = shared_state(config)?;
        // With NATS, the history (its epoch, its seqs) is the stream's, not this process's.
        let (shared, mut nats) = join_history(shared, &sockets.http)?;
        // Publishers reach a sequencer only once it sequences (a standby refuses them).
        let ingest = sockets.listen_ingest()?;
        let shared = Arc::new(shared);
        let mut threads = Vec::new();
        let (mut senders, handles, inputs) = shard_channels(&shared);
        threads.extend(files.spawn(&shared, &mut senders)?);
        let newest = nats.as_ref().map(|n| n.newest.clone()).unwrap_or_default();
        let restored = nats.as_mut().and_then(|n| n.restored.take());
        let books = nats
            .as_mut()
            .map(|n| std::mem::take(&mut n.books))
            .unwrap_or_default();
        let publishers = nats
            .as_mut()
            .map(|n| std::mem::take(&mut n.publishers))
            .unwrap_or_default();
        let mut durable = None;
        if let Some(nats) = nats {
            let (thread, stored) = nats.start(&shared, &mut senders);
            threads.push(thread);
            durable = stored;
        }
        let mut sequencer = sequencer(&shared, senders, newest, books);
        sequencer.remember_publishers(publishers);
        if let Some(durable) = durable {
            sequencer = sequencer.durable_after(durable);
        }
        if let Some(restored) = restored {
            sequencer.restore(restored);
        }
        let head = Head::new(shared.clone(), ingest, sequencer, inbox);
        threads.extend(spawn_shards(&shared, inputs, head)?);
        let listeners = Listeners {
            http: sockets.http,
            admin: sockets.admin,
        };
        let control_shared = shared.clone();
        let control_thread = std::thread::Builder::new()
            .name("control".into())
            .spawn(move || control(control_shared, listeners, handles, jwks_source))
            .map_err(spawn_error("the control thread"))?;
        threads.push(control_thread);
        let (http_addr, ingest_addr, ingest_protobuf_addr) = (
            sockets.http_addr,
            sockets.ingest_addr,
            sockets.ingest_protobuf_addr,
        );
        let shards = shared.config.shards;
        info!(%http_addr, %ingest_addr, %ingest_protobuf_addr, shards, "tickrelay started");
        Ok(Self {
            http_addr,
            ingest_addr,
            ingest_protobuf_addr,
            admin_addr: sockets.admin_addr,
            shared,
            threads,
        })
    }

    /// Asks the relay to stop: no new clients, close 1001 to every client, drain.
    pub fn shutdown(&self) {
        self.shared.shutdown.trigger();
    }

    /// Waits (blocking) until every relay thread has finished.
    pub fn join(mut self) {
        for thread in self.threads.drain(..) {
            if thread.join().is_err() {
                warn!("a relay thread panicked");
            }
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        // A dropped relay must not leave threads serving forever (tests drop relays).
        self.shared.shutdown.trigger();
    }
}

/// `--record` and `--replay`, opened before any thread starts.
struct Files {
    record: Option<(PathBuf, std::fs::File)>,
    replay: Option<std::fs::File>,
}

impl Files {
    fn open(config: &Config) -> Result<Self, StartError> {
        let file_error = |flag, path: &std::path::Path| {
            let path = path.to_owned();
            move |source| StartError::File { flag, path, source }
        };
        let record = match &config.record {
            Some(path) => Some((
                path.clone(),
                std::fs::File::create(path).map_err(file_error("--record", path))?,
            )),
            None => None,
        };
        let replay = match &config.replay {
            Some(path) => Some(std::fs::File::open(path).map_err(file_error("--replay", path))?),
            None => None,
        };
        Ok(Self { record, replay })
    }

    /// Starts the recorder (one more consumer of the sequencer's batches) and the playback
    /// of a recording (a source on its own thread).
    fn spawn(
        self,
        shared: &Arc<Shared>,
        senders: &mut Vec<TickSender>,
    ) -> Result<Vec<JoinHandle<()>>, StartError> {
        let mut threads = Vec::new();
        if let Some((path, file)) = self.record {
            let (sender, thread) = sequencer::record::spawn(path, file, shared.metrics.clone())
                .map_err(spawn_error("the recorder"))?;
            senders.push(sender);
            threads.push(thread);
        }
        if let Some(file) = self.replay {
            let (inbox, metrics, stop) = (
                shared.inbox.clone(),
                shared.metrics.clone(),
                shared.shutdown.clone(),
            );
            let speed = shared.config.replay_speed;
            let thread = std::thread::Builder::new()
                .name("playback".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_time()
                        .build()
                        .expect("a current-thread runtime with only timers needs no OS resources");
                    let lines = std::io::BufReader::new(file);
                    runtime.block_on(ingest::playback::run(lines, inbox, speed, metrics, stop));
                })
                .map_err(spawn_error("the playback"))?;
            threads.push(thread);
        }
        Ok(threads)
    }
}

/// Where the JWKS comes from (`--jwks-url` or `--jwks-file`), checked now.
fn jwks_source(config: &Config) -> Result<Option<jwks::Source>, StartError> {
    Ok(match (&config.jwks_url, &config.jwks_file) {
        (Some(url), _) => Some(jwks::Source::Url(jwks::parse_url(url).map_err(
            |reason| AuthConfigError::Key {
                flag: "--jwks-url",
                reason,
            },
        )?)),
        (None, Some(path)) => Some(jwks::Source::File(path.clone())),
        (None, None) => None,
    })
}

/// The relay-wide state (auth keys and TLS certificate loaded) and the sequencer's inbox.
fn shared_state(config: Config) -> Result<(Shared, Receiver<Published>), StartError> {
    let auth = Auth::from_config(&config)?;
    let tls = match (&config.tls_cert, &config.tls_key) {
        (Some(cert), Some(key)) => Some(Arc::new(crate::tls::Tls::load(cert, key)?)),
        _ => None,
    };
    let (inbox, inbox_rx) = Inbox::bounded(INBOX_BATCHES);
    Ok((Shared::with_access(config, inbox, auth, tls), inbox_rx))
}

/// With `--nats`, opens the stream first: the epoch becomes the stream's. While it waits for
/// NATS, `http` (the bound `--listen` socket) answers 503 `starting`.
fn join_history(
    mut shared: Shared,
    http: &std::net::TcpListener,
) -> Result<(Shared, Option<NatsThread>), StartError> {
    let nats = NatsThread::spawn(&shared.config, shared.metrics.clone(), shared.epoch, http)?;
    if let Some(nats) = &nats {
        shared.epoch = nats.epoch;
    }
    Ok((shared, nats))
}

/// Each shard's queue (the sequencer's senders), accept handle and inputs; the admin
/// queues are registered with the shared state.
fn shard_channels(shared: &Shared) -> (Vec<TickSender>, Vec<ShardHandle>, Vec<ShardInputs>) {
    let (mut senders, mut handles, mut requests, mut inputs) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for id in 0..shared.config.shards {
        let (sender, handle, request, input) = shard_thread::channels(id);
        senders.push(sender);
        handles.push(handle);
        requests.push(request);
        inputs.push(input);
    }
    shared
        .shard_requests
        .set(requests)
        .expect("set once, before any connection is served");
    (senders, handles, inputs)
}

/// The sequencer feeding `senders`: it continues the stream's seqs, and on an edge follows
/// the stream's instead of assigning its own.
fn sequencer(
    shared: &Shared,
    senders: Vec<TickSender>,
    newest: Vec<(crate::event::Key, crate::tick::Seq)>,
    books: Vec<crate::book::BookUpdate>,
) -> Sequencer {
    let mut sequencer = Sequencer::new(
        senders,
        shared.interest.clone(),
        shared.metrics.clone(),
        shared.config.max_symbols,
    );
    sequencer.continue_from(newest);
    let config = &shared.config;
    let publishing = config.scale.nats.is_some() && config.scale.role != Role::Edge;
    let cadence = publishing.then_some(crate::sequencer::Cadence {
        updates: config.book.checkpoint_updates(config.replay_depth),
        interval: config.book.book_checkpoint_interval,
    });
    sequencer = sequencer.books(&config.book, cadence);
    sequencer.restore_books(books);
    if config.scale.role == Role::Edge {
        sequencer = sequencer.following();
    }
    sequencer.deriving(&shared.config.derived)
}

/// One thread per shard (pinned round-robin with `--pin-shards`); shard 0 also runs the
/// sources and the sequencer (`head`).
fn spawn_shards(
    shared: &Arc<Shared>,
    inputs: Vec<ShardInputs>,
    head: Head,
) -> Result<Vec<JoinHandle<()>>, StartError> {
    let cores = if shared.config.pin_shards {
        core_affinity::get_core_ids().unwrap_or_default()
    } else {
        Vec::new()
    };
    let mut head = Some(head);
    let mut threads = Vec::new();
    for (id, input) in inputs.into_iter().enumerate() {
        let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
        let thread = shard_thread::spawn(id, core, shared.clone(), input, head.take())
            .map_err(spawn_error("a shard"))?;
        threads.push(thread);
    }
    Ok(threads)
}

fn spawn_error(what: &'static str) -> impl Fn(std::io::Error) -> StartError {
    move |source| StartError::Spawn { what, source }
}

/// Batches the sequencer's inbox holds before sources wait (each batch is one read).
const INBOX_BATCHES: usize = 1024;
