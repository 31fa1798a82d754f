//! Wires the data path: ingest → sequencer → shards → sessions, plus the client listener.
//!
//! [`Relay::start`] binds every socket (so a bad address fails at once, naming its flag),
//! starts the threads, and returns a [`RelayHandle`] with the bound addresses for `main`
//! and tests. Threads: one per shard (pinned with `--pin-shards`), shard 0's also running
//! the ingest listeners, the demo feed and the sequencer ([`crate::pipeline`]: no thread hop
//! between them and shard 0), and one control thread (client accept loop, JWKS and TLS
//! reloads).

use std::net::{SocketAddr, TcpListener as StdTcpListener};
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{info, warn};

use crate::auth::{self, Auth, AuthConfigError, jwks};
use crate::config::scale::Role;
use crate::config::{Config, ConfigError};
use crate::ingest::{self, Inbox};
use crate::listener;
use crate::pipeline::{self, Head};
use crate::roles::{self, NatsStartError, NatsThread};
use crate::sequencer::{self, Sequencer};
use crate::shared::Shared;
use crate::shutdown::Phase;
use crate::worker::{self, ShardHandle};

/// Starts relays.
#[derive(Debug)]
pub struct Relay;

/// A running relay: its addresses and the means to stop it.
#[derive(Debug)]
pub struct RelayHandle {
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

/// Why the relay could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A flag value is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The TLS certificate or key cannot be used.
    #[error(transparent)]
    Tls(#[from] crate::tls::TlsError),
    /// An auth flag names a key that cannot be used.
    #[error(transparent)]
    Auth(#[from] AuthConfigError),
    /// A listener could not bind.
    #[error("{flag} {addr}: {source}")]
    Bind {
        /// The flag naming the address.
        flag: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The OS error.
        source: std::io::Error,
    },
    /// A `--record` or `--replay` file could not be opened.
    #[error("{flag} {}: {source}", .path.display())]
    File {
        /// The flag naming the file.
        flag: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
    /// NATS could not be reached, or the stream could not be opened.
    #[error(transparent)]
    Nats(#[from] NatsStartError),
    /// A thread or runtime could not start.
    #[error("could not start {what}: {source}")]
    Spawn {
        /// Which part.
        what: &'static str,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Relay {
    /// Binds the listeners and starts every thread.
    pub fn start(mut config: Config) -> Result<RelayHandle, StartError> {
        config.validate()?;
        roles::check(&config)?;
        let edge = config.scale.role == Role::Edge;
        // Resolve "one per CPU" now: once threads are pinned, a thread sees only its core.
        config.shards = config.shard_count();
        let bind =
            |flag, addr| listen(addr).map_err(|source| StartError::Bind { flag, addr, source });
        let http = bind("--listen", config.listen)?;
        let ingest = if edge {
            None
        } else {
            Some((
                bind("--ingest-tcp", config.ingest_tcp)?,
                bind("--ingest-tcp-protobuf", config.ingest_tcp_protobuf)?,
            ))
        };
        let local = |l: &StdTcpListener, flag, addr| {
            l.local_addr()
                .map_err(|source| StartError::Bind { flag, addr, source })
        };
        let http_addr = local(&http, "--listen", config.listen)?;
        let admin = match config.admin_listen {
            Some(addr) => Some(bind("--admin-listen", addr)?),
            None => None,
        };
        let admin_addr = match (&admin, config.admin_listen) {
            (Some(l), Some(addr)) => Some(local(l, "--admin-listen", addr)?),
            _ => None,
        };
        let (ingest_addr, ingest_protobuf_addr) = match &ingest {
            Some((json, proto)) => (
                local(json, "--ingest-tcp", config.ingest_tcp)?,
                local(proto, "--ingest-tcp-protobuf", config.ingest_tcp_protobuf)?,
            ),
            None => (NO_ADDR, NO_ADDR),
        };

        // Files next: a bad path fails before any thread starts.
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

        let auth = Auth::from_config(&config)?;
        let jwks_source = match (&config.jwks_url, &config.jwks_file) {
            (Some(url), _) => Some(jwks::Source::Url(jwks::parse_url(url).map_err(
                |reason| AuthConfigError::Key {
                    flag: "--jwks-url",
                    reason,
                },
            )?)),
            (None, Some(path)) => Some(jwks::Source::File(path.clone())),
            (None, None) => None,
        };
        let shards = config.shard_count();
        let (inbox, inbox_rx) = Inbox::bounded(INBOX_BATCHES);
        let tls = match (&config.tls_cert, &config.tls_key) {
            (Some(cert), Some(key)) => Some(Arc::new(crate::tls::Tls::load(cert, key)?)),
            _ => None,
        };
        let mut shared = Shared::with_access(config, inbox, auth, tls);
        // With NATS, the history (its epoch, its seqs) is the stream's, not this process's.
        let nats = NatsThread::spawn(&shared.config, shared.metrics.clone(), shared.epoch, &http)?;
        if let Some(nats) = &nats {
            shared.epoch = nats.epoch;
        }
        let shared = Arc::new(shared);
        let spawn_error = |what| move |source| StartError::Spawn { what, source };

        let cores = if shared.config.pin_shards {
            core_affinity::get_core_ids().unwrap_or_default()
        } else {
            Vec::new()
        };
        let mut threads = Vec::new();
        let mut senders = Vec::new();
        let mut handles = Vec::new();
        let mut requests = Vec::new();
        let mut workers = Vec::new();
        for id in 0..shards {
            let (sender, handle, request, inputs) = worker::channels(id);
            requests.push(request);
            workers.push(inputs);
            senders.push(sender);
            handles.push(handle);
        }

        if let Some((path, file)) = record {
            let (sender, thread) =
                sequencer::record::spawn(path, file).map_err(spawn_error("the recorder"))?;
            senders.push(sender);
            threads.push(thread);
        }
        if let Some(file) = replay {
            let (inbox, metrics, stop) = (
                shared.inbox.clone(),
                shared.metrics.clone(),
                shared.shutdown.clone(),
            );
            let speed = shared.config.replay_speed;
            threads.push(
                std::thread::Builder::new()
                    .name("replay".into())
                    .spawn(move || {
                        let runtime = tokio::runtime::Builder::new_current_thread()
                            .enable_time()
                            .build()
                            .expect(
                                "a current-thread runtime with only timers needs no OS resources",
                            );
                        let lines = std::io::BufReader::new(file);
                        runtime.block_on(ingest::replay::run(lines, inbox, speed, metrics, stop));
                    })
                    .map_err(spawn_error("the replay"))?,
            );
        }

        let (newest, nats) = match nats {
            Some(nats) => (nats.newest.clone(), Some(nats.start(&shared, &mut senders))),
            None => (Vec::new(), None),
        };
        threads.extend(nats);
        shared
            .shard_requests
            .set(requests)
            .expect("set once, before any connection is served");
        let mut sequencer = Sequencer::new(
            senders,
            shared.interest.clone(),
            shared.metrics.clone(),
            shared.config.max_symbols,
        );
        sequencer.continue_from(newest);
        if edge {
            sequencer = sequencer.following();
        }
        let mut head = Some(Head::new(shared.clone(), ingest, sequencer, inbox_rx));
        for (id, inputs) in workers.into_iter().enumerate() {
            let core = (!cores.is_empty()).then(|| cores[id % cores.len()]);
            let thread = worker::spawn(id, core, shared.clone(), inputs, head.take())
                .map_err(spawn_error("a shard"))?;
            threads.push(thread);
        }
        let control_shared = shared.clone();
        threads.push(
            std::thread::Builder::new()
                .name("control".into())
                .spawn(move || {
                    control(
                        control_shared,
                        Listeners { http, admin },
                        handles,
                        jwks_source,
                    )
                })
                .map_err(spawn_error("the control thread"))?,
        );
        info!(%http_addr, %ingest_addr, %ingest_protobuf_addr, shards, "tickrelay started");
        Ok(RelayHandle {
            http_addr,
            ingest_addr,
            ingest_protobuf_addr,
            admin_addr,
            shared,
            threads,
        })
    }
}

impl RelayHandle {
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

impl Drop for RelayHandle {
    fn drop(&mut self) {
        // A dropped handle must not leave threads serving forever (tests drop handles).
        self.shared.shutdown.trigger();
    }
}

/// The bound listeners the control thread serves.
struct Listeners {
    http: StdTcpListener,
    admin: Option<StdTcpListener>,
}

/// The control thread: client accept loops, JWKS reloads, TLS certificate reloads.
fn control(
    shared: Arc<Shared>,
    listeners: Listeners,
    handles: Vec<ShardHandle>,
    jwks_source: Option<jwks::Source>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            warn!(error = %e, "control runtime failed to start; stopping");
            shared.shutdown.trigger();
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let Listeners { http, admin } = listeners;
        let http = pipeline::registered(http);
        let mut tasks = tokio::task::JoinSet::new();
        if let (Some(source), Some(verifier)) = (jwks_source, &shared.auth.verifier) {
            tasks.spawn_local(auth::jwks::refresh(
                verifier.clone(),
                source,
                shared.config.jwks_refresh,
                shared.shutdown.clone(),
            ));
        }
        if let Some(tls) = &shared.tls {
            tasks.spawn_local(tls.clone().watch(shared.shutdown.clone()));
        }
        if let Some(admin) = admin {
            let admin = pipeline::registered(admin);
            tasks.spawn_local(listener::accept(
                admin,
                handles.clone(),
                shared.clone(),
                true,
            ));
        }
        tasks.spawn_local(listener::accept(http, handles, shared.clone(), false));
        tasks.spawn_local(report_suppressed_logs(shared.clone()));
        shared.shutdown.set_phase(Phase::Ready);
        while tasks.join_next().await.is_some() {}
    });
}

/// Every few seconds, one line per lifecycle log gate that dropped lines in a storm, so
/// the count is not left waiting for the next line let through.
async fn report_suppressed_logs(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(crate::limits::LOG_SUPPRESSED_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown first: nothing here is worth finishing.
            biased;
            () = shared.shutdown.wait() => return,
            _ = every.tick() => {}
        }
        for (message, gate) in shared.lifecycle_log.gates() {
            let suppressed = gate.take_suppressed();
            if suppressed > 0 {
                info!(
                    lines = message,
                    suppressed, "{suppressed} similar log lines suppressed"
                );
            }
        }
    }
}

/// Binds a non-blocking listener with a deep accept queue: std's fixed backlog of 128
/// makes a burst of connects wait for SYN retransmits (1 s, then 3 s) once it overflows.
fn listen(addr: SocketAddr) -> std::io::Result<StdTcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accept queue length asked of the kernel (capped by net.core.somaxconn, 4096 here).
const LISTEN_BACKLOG: i32 = 4096;

/// The address reported for ingest an edge does not take.
const NO_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);

/// Batches the sequencer's inbox holds before sources wait (each batch is one read).
const INBOX_BATCHES: usize = 1024;
