//! Bringing a run up: the relay (spawned or given), its endpoints, the watchdog's bound, the
//! client plan, the workers, and the wait for every welcome.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use crate::latency::now_ns;
use anyhow::{Context, Result, ensure};
use indicatif::ProgressBar;

use super::args::Batch;
use super::args::{BookLoad, Mix, Mode, RampArgs, RunArgs, SlowArgs};
use super::coordinator::{Collected, Ctx};
use super::plan::plan_clients;
use crate::client::{ClientPlan, Feed, Target, WorkerHandle};
use crate::procfs;
use crate::publisher::{IngestFormat, Publisher, Wire};
use crate::reference::{self, Server};
use crate::relay::http_get;
use crate::relay::{Launch, RelayProcess};
use crate::report::{BookMemory, ConnectReport};

/// The CPU and memory counters read before the clients open.
pub(super) struct Before {
    pub(super) harness_cpu: procfs::CpuTimes,
    pub(super) relay_cpu: Option<procfs::CpuTimes>,
    pub(super) relay_rss: Option<procfs::Memory>,
}

impl Before {
    pub(super) fn take(relay_pid: Option<u32>) -> Self {
        Self {
            harness_cpu: procfs::self_cpu().unwrap_or_default(),
            relay_cpu: relay_pid.and_then(|p| procfs::process_cpu(p).ok()),
            relay_rss: relay_pid.and_then(|p| procfs::memory(p).ok()),
        }
    }
}

/// `--max-time`, or by default 3 minutes more than the publishing takes.
pub(super) fn max_time(mode: Mode, args: &RunArgs, ramp: &RampArgs) -> Duration {
    let publish_time = match mode {
        Mode::Ramp => ramp.step_duration.mul_f64(f64::from(ramp.max_steps)),
        _ => args.duration,
    };
    args.max_time
        .unwrap_or(Duration::from_secs(180) + publish_time)
}

/// With `--spawn`: the server started on free ports, healthy. The relay is its own binary
/// (`--spawn PATH`); a floor or naive server is this harness binary run as `serve-floor` or
/// `serve-naive`; nats-server is `--nats-server`.
pub(super) fn spawn_relay(args: &RunArgs, bar: &ProgressBar) -> Result<Option<RelayProcess>> {
    let Some(path) = &args.spawn else {
        return Ok(None);
    };
    let extra: Vec<String> = args
        .relay_args
        .split_whitespace()
        .map(String::from)
        .collect();
    let launch = match args.server.subcommand() {
        Some(subcommand) => {
            Launch::with_relay_flags(&std::env::current_exe()?, &[subcommand.into()], &extra)?
        }
        None if args.server == Server::Nats => reference::nats_launch(&args.nats_server, &extra)?,
        None if path.as_os_str().is_empty() => {
            let harness = std::env::current_exe()?;
            let dir = harness
                .parent()
                .context("the harness binary has no directory")?;
            Launch::with_relay_flags(&dir.join("tickrelay"), &[], &extra)?
        }
        None => Launch::with_relay_flags(path, &[], &extra)?,
    };
    let log = args.relay_log.clone().unwrap_or_else(|| {
        let name = format!("loadtest-{}-{}.log", args.server.name(), std::process::id());
        std::env::temp_dir().join(name)
    });
    bar.set_message(format!("starting {}", launch.binary.display()));
    Ok(Some(RelayProcess::spawn(
        launch,
        &log,
        Duration::from_secs(20),
    )?))
}

/// Where the server under test is reached.
pub(super) struct Endpoints {
    /// Its WebSocket listener.
    pub(super) ws: SocketAddr,
    /// Where the publisher writes.
    pub(super) ingest: SocketAddr,
    /// Where its JSON stats are read at the end (`GET`).
    pub(super) stats: (SocketAddr, String),
}

/// The spawned server's endpoints, or the ones given.
pub(super) fn endpoints(args: &RunArgs, relay: Option<&RelayProcess>) -> Endpoints {
    match relay {
        Some(r) => Endpoints {
            ws: r.listen,
            ingest: match args.ingest_format {
                IngestFormat::Json => r.ingest_json,
                IngestFormat::Protobuf => r.ingest_protobuf,
            },
            stats: r.stats.clone(),
        },
        None => Endpoints {
            ws: args.relay,
            ingest: match args.ingest_format {
                IngestFormat::Json => args.ingest.unwrap_or(super::args::DEFAULT_INGEST),
                IngestFormat::Protobuf => args
                    .ingest_protobuf
                    .unwrap_or(super::args::DEFAULT_INGEST_PROTOBUF),
            },
            stats: (args.relay, "/stats".to_owned()),
        },
    }
}

/// The publisher for this run's server: NATS PUBs to nats-server, else `--ingest-format`.
pub(super) fn connect_publisher(args: &RunArgs, ingest: SocketAddr) -> Result<Publisher> {
    let wire = match (args.server, args.feeds.books) {
        (_, Some(books)) => Wire::BookJson {
            levels: books.levels,
        },
        (Server::Nats, None) => Wire::NatsPub,
        _ => Wire::from(args.ingest_format),
    };
    let mut publisher = Publisher::connect(ingest, wire, args.symbols)?;
    if args.acks {
        // An id of this run alone: a rerun's pseqs from 1 are not the last run's resends.
        publisher.acknowledged(&format!("loadtest-{}-{}", std::process::id(), now_ns()))?;
    }
    Ok(publisher)
}

/// The clients of this run: slow ones only in slow mode, source addresses only on loopback.
pub(super) fn plan_run(
    mode: Mode,
    args: &RunArgs,
    slow: &SlowArgs,
    ws_addr: SocketAddr,
) -> Vec<ClientPlan> {
    let feeds = &args.feeds;
    let source_ips = if ws_addr.ip().is_loopback() {
        args.source_ips
    } else {
        1
    };
    let ticks = args.clients - feeds.tier_clients;
    let mut plans = plan_clients(
        ticks,
        args.symbols,
        args.symbols_per_client,
        &args.mix,
        &SlowArgs {
            slow_fraction: if mode == Mode::Slow {
                slow.slow_fraction
            } else {
                0.0
            },
            slow_rcvbuf: slow.slow_rcvbuf,
        },
        source_ips,
        args.seed,
    );
    // Tier clients after the tick clients, with the same symbol rotation, JSON: the tick
    // clients are the same with and without them.
    let tier = plan_clients(
        feeds.tier_clients,
        args.symbols,
        args.symbols_per_client,
        &Mix::json_only(),
        &SlowArgs::unused(),
        source_ips,
        args.seed,
    );
    plans.extend(tier.into_iter().map(|p| ClientPlan {
        id: ticks + p.id,
        feed: Feed::Tier(feeds.tier.clone()),
        ..p
    }));
    if let Some(books) = feeds.books {
        for p in &mut plans {
            p.feed = Feed::Book {
                depth: (p.id < books.depth_clients).then_some(books.depth),
            };
        }
    }
    plans
}

/// Starts the worker threads and hands each its share of the clients to connect.
pub(super) fn start_workers(
    args: &RunArgs,
    ws_addr: SocketAddr,
    plans: &[ClientPlan],
) -> Result<(Vec<WorkerHandle>, Instant)> {
    let target = Target {
        addr: ws_addr,
        more: args.also_relay.clone(),
        symbol_count: args.symbols,
        handshake_timeout: args.handshake_timeout,
        protocol: args.server.protocol(args.batch == Batch::On),
    };
    let workers: Vec<WorkerHandle> = (0..args.workers)
        .map(|w| WorkerHandle::spawn(w, target.clone(), args.profile()))
        .collect::<Result<_>>()?;
    let mut by_worker: Vec<Vec<ClientPlan>> = vec![Vec::new(); args.workers];
    for plan in plans {
        by_worker[plan.id % args.workers].push(plan.clone());
    }
    let connect_started = Instant::now();
    for (worker, share) in workers.iter().zip(by_worker) {
        worker.connect(share, args.connect_rate / args.workers as f64)?;
    }
    Ok((workers, connect_started))
}

/// Waits for the welcomes and the settle pause; the connect figures and a first collection.
pub(super) fn open_clients(
    ctx: &mut Ctx<'_>,
    connect_started: Instant,
    plans: &[ClientPlan],
) -> Result<(ConnectReport, Collected)> {
    let (welcomed, failed, connect_elapsed) = ctx.wait_welcomes(connect_started)?;
    // A run where nobody connected measured nothing: that is an error, not a clean exit 0.
    ensure!(
        welcomed > 0,
        "no client was welcomed ({failed} of {} failed to connect): is the relay running there?",
        ctx.args.clients
    );
    std::thread::sleep(ctx.args.settle);
    let last = ctx.collect(true)?;
    let mut by_encoding = BTreeMap::new();
    for p in plans {
        *by_encoding.entry(p.encoding.name().to_owned()).or_insert(0) += 1;
    }
    let connect = ConnectReport {
        requested: ctx.args.clients,
        welcomed,
        failed,
        elapsed_s: connect_elapsed.as_secs_f64(),
        handshakes_per_s: welcomed as f64 / connect_elapsed.as_secs_f64().max(1e-9),
        handshake_us: last.handshake.summary(),
        by_encoding,
    };
    Ok((connect, last))
}

/// A `books` run, before any client: connects the publisher, writes every symbol's book
/// snapshot, waits until the relay serves the last one (`GET /book/..`, in ingest order, so
/// all are applied), and reads the relay's memory before and after.
pub(super) fn load_books(
    args: &RunArgs,
    ends: &Endpoints,
    relay_pid: Option<u32>,
    books: BookLoad,
) -> Result<(Publisher, BookMemory)> {
    let rss = || {
        relay_pid
            .and_then(|p| procfs::memory(p).ok())
            .map_or(0, |m| m.rss_kb)
    };
    let before = rss();
    let mut publisher = connect_publisher(args, ends.ingest)?;
    publisher.load_books(books.levels)?;
    let last = crate::symbols::symbol_name(args.symbols - 1, args.symbols);
    let path = format!("/book/{last}?depth={}", books.depth);
    let started = Instant::now();
    loop {
        if let Ok((200, _)) = http_get(ends.ws, &path, Duration::from_secs(2)) {
            break;
        }
        let errors = publisher
            .errors
            .samples
            .lock()
            .map(|s| s.clone())
            .unwrap_or_default();
        ensure!(
            errors.is_empty(),
            "the relay refused a book snapshot: {}",
            errors.join(" / ")
        );
        ensure!(
            started.elapsed() < args.welcome_timeout,
            "GET {path} did not answer 200 within --welcome-timeout: the books were not applied"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    let after = rss();
    Ok((
        publisher,
        BookMemory {
            books: args.symbols,
            levels: books.levels,
            relay_rss_before_kb: before,
            relay_rss_after_kb: after,
            bytes_per_book: (after as f64 - before as f64) * 1024.0 / f64::from(args.symbols),
        },
    ))
}
