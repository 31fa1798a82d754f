//! The modes, end to end: start (or find) the relay, open the clients, publish, drain, collect,
//! judge, report.
//!
//! ```text
//! plan_clients ──▶ workers (client/) ◀── collect ──┐
//!                    ▲ frames                       │
//! publisher ──ingest──▶ relay ──WebSocket───────────┘ coordinator: phases ──▶ verdict
//! ```
//!
//! `args` holds the options and their checks, `plan` who the clients are, `coordinator` a run in
//! progress (welcomes, phases, drain, collection), `verdict` what counts as clean, `bounds` the
//! open-file limit and the `--max-time` watchdog, `progress` the spinner; this file sequences
//! them.
//!
//! Expected deliveries are exact because every client is welcomed before the first tick is
//! published: a client expects every tick of its symbols published while it was open.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use crate::client::{ClientPlan, ClientState, Target, WorkerHandle};
use crate::procfs;
use crate::publisher::{IngestFormat, Publisher};
use crate::relay::{RelayProcess, http_get};
use crate::report::{
    ConnectReport, CrowdReport, HarnessReport, Host, PhaseReport, RampReport, RelayReport,
    RunConfig, RunReport,
};

mod args;
mod bounds;
mod coordinator;
mod plan;
mod progress;
mod verdict;

pub use args::{Mix, RampArgs, RunArgs, SlowArgs, parse_duration};
pub use plan::plan_clients;

use args::validate;
use bounds::{Watchdog, raise_nofile};
use coordinator::{Collected, Ctx};
use progress::progress_bar;
use verdict::{judge, step_failure};

/// Which load shape to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Steady,
    Ramp,
    Crowd,
    Slow,
}

impl Mode {
    fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Ramp => "ramp",
            Self::Crowd => "crowd",
            Self::Slow => "slow",
        }
    }
}

/// Runs one mode and returns its report (already printed, written and plotted as asked).
pub fn run(mode: Mode, args: &RunArgs, ramp: &RampArgs, slow: &SlowArgs) -> Result<RunReport> {
    validate(mode, args)?;
    let load_avg = procfs::load_avg_1m().unwrap_or(0.0);
    let nofile = raise_nofile(args.clients)?;
    let rate = args
        .rate
        .unwrap_or(if mode == Mode::Crowd { 0.0 } else { 1000.0 });
    let bar = progress_bar(!args.no_progress);

    // The relay under test.
    let mut relay = spawn_relay(args, &bar)?;
    let relay_pid = relay.as_ref().map(|r| r.pid).or(args.relay_pid);
    let (ws_addr, ingest_addr) = endpoints(args, relay.as_ref());
    let watchdog = Watchdog::arm(max_time(mode, args, ramp), relay.as_ref().map(|r| r.pid));
    let before = Before::take(relay_pid);

    // Clients.
    let plans = plan_run(mode, args, slow, ws_addr);
    let (workers, connect_started) = start_workers(args, ws_addr, &plans)?;
    let mut ctx = Ctx {
        args,
        bar,
        workers,
        relay_pid,
        relay: relay.as_mut(),
        publisher: None,
        sent: Arc::new(AtomicU64::new(0)),
        last_delta: Vec::new(),
    };
    let (connect, mut last) = open_clients(&mut ctx, connect_started, &plans)?;
    let welcomed_ids: Vec<bool> = last.clients.iter().map(|c| c.counts.welcomed).collect();
    let crowd = (mode == Mode::Crowd).then(|| crowd_report(relay_pid, &before, &connect));

    // Publishing.
    if rate > 0.0 {
        ctx.publisher = Some(Publisher::connect(
            ingest_addr,
            args.ingest_format,
            args.symbols,
        )?);
    }
    let (phases, ramp_report) =
        publish(&mut ctx, mode, rate, ramp, &plans, &welcomed_ids, &mut last)?;

    // The end: final figures, then close clients and relay.
    let mut end = wind_down(ctx, &plans, ws_addr, &before)?;
    if let Some(r) = relay.take() {
        stop_relay(r, &end.bar, end.relay.as_mut());
    }
    watchdog.disarm();
    end.bar.finish_and_clear();

    let mut report = RunReport {
        label: args.label.clone().unwrap_or_else(|| mode.name().to_owned()),
        mode: mode.name().to_owned(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host: host(nofile, load_avg),
        config: run_config(mode, args, slow, rate),
        connect,
        phases,
        ramp: ramp_report,
        crowd,
        relay: end.relay,
        harness: harness_report(&before, args.workers),
        closed_early: end.closed_early,
        client_errors: end.client_errors,
        ingest_error_samples: end.ingest_error_samples,
        clean: false,
        problems: Vec::new(),
    };
    if let Some(Err(e)) = end.relay_alive {
        report.problems.push(format!("{e:#}"));
    }
    judge(&mut report);
    Ok(report)
}

/// The CPU and memory counters read before the clients open.
struct Before {
    harness_cpu: procfs::CpuTimes,
    relay_cpu: Option<procfs::CpuTimes>,
    relay_rss: Option<procfs::Memory>,
}

impl Before {
    fn take(relay_pid: Option<u32>) -> Self {
        Self {
            harness_cpu: procfs::self_cpu().unwrap_or_default(),
            relay_cpu: relay_pid.and_then(|p| procfs::process_cpu(p).ok()),
            relay_rss: relay_pid.and_then(|p| procfs::memory(p).ok()),
        }
    }
}

/// What the end of a run leaves for the report once clients and publisher are closed.
struct Ending {
    bar: ProgressBar,
    closed_early: u64,
    client_errors: BTreeMap<String, u64>,
    ingest_error_samples: Vec<String>,
    relay: Option<RelayReport>,
    /// Whether a spawned relay was still running at the end.
    relay_alive: Option<Result<()>>,
}

/// `--max-time`, or by default 3 minutes more than the publishing takes.
fn max_time(mode: Mode, args: &RunArgs, ramp: &RampArgs) -> Duration {
    let publish_time = match mode {
        Mode::Ramp => ramp.step_duration.mul_f64(f64::from(ramp.max_steps)),
        _ => args.duration,
    };
    args.max_time
        .unwrap_or(Duration::from_secs(180) + publish_time)
}

/// With `--spawn`: the relay binary started on free ports, healthy.
fn spawn_relay(args: &RunArgs, bar: &ProgressBar) -> Result<Option<RelayProcess>> {
    let Some(path) = &args.spawn else {
        return Ok(None);
    };
    let binary = if path.as_os_str().is_empty() {
        std::env::current_exe()?
            .parent()
            .context("the harness binary has no directory")?
            .join("tickrelay")
    } else {
        path.clone()
    };
    let log = args.relay_log.clone().unwrap_or_else(|| {
        std::env::temp_dir().join(format!("loadtest-relay-{}.log", std::process::id()))
    });
    let extra: Vec<String> = args
        .relay_args
        .split_whitespace()
        .map(String::from)
        .collect();
    bar.set_message(format!("starting {}", binary.display()));
    Ok(Some(RelayProcess::spawn(
        &binary,
        &extra,
        &log,
        Duration::from_secs(20),
    )?))
}

/// The WebSocket and ingest addresses: the spawned relay's, or the ones given.
fn endpoints(args: &RunArgs, relay: Option<&RelayProcess>) -> (SocketAddr, SocketAddr) {
    match relay {
        Some(r) => (
            r.listen,
            match args.ingest_format {
                IngestFormat::Json => r.ingest_json,
                IngestFormat::Protobuf => r.ingest_protobuf,
            },
        ),
        None => (
            args.relay,
            match args.ingest_format {
                IngestFormat::Json => args.ingest,
                IngestFormat::Protobuf => args.ingest_protobuf,
            },
        ),
    }
}

/// The clients of this run: slow ones only in slow mode, source addresses only on loopback.
fn plan_run(mode: Mode, args: &RunArgs, slow: &SlowArgs, ws_addr: SocketAddr) -> Vec<ClientPlan> {
    plan_clients(
        args.clients,
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
        if ws_addr.ip().is_loopback() {
            args.source_ips
        } else {
            1
        },
        args.seed,
    )
}

/// Starts the worker threads and hands each its share of the clients to connect.
fn start_workers(
    args: &RunArgs,
    ws_addr: SocketAddr,
    plans: &[ClientPlan],
) -> Result<(Vec<WorkerHandle>, Instant)> {
    let target = Target {
        addr: ws_addr,
        symbol_count: args.symbols,
        handshake_timeout: args.handshake_timeout,
    };
    let workers: Vec<WorkerHandle> = (0..args.workers)
        .map(|w| WorkerHandle::spawn(w, target.clone()))
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
fn open_clients(
    ctx: &mut Ctx<'_>,
    connect_started: Instant,
    plans: &[ClientPlan],
) -> Result<(ConnectReport, Collected)> {
    let (welcomed, failed, connect_elapsed) = ctx.wait_welcomes(connect_started)?;
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

/// Relay memory per idle connection, from RSS before the clients and after their welcomes.
fn crowd_report(relay_pid: Option<u32>, before: &Before, connect: &ConnectReport) -> CrowdReport {
    let welcomed = connect.welcomed;
    let after = relay_pid.and_then(|p| procfs::memory(p).ok());
    CrowdReport {
        clients: welcomed,
        relay_rss_before_kb: before.relay_rss.map_or(0, |m| m.rss_kb),
        relay_rss_after_kb: after.map_or(0, |m| m.rss_kb),
        bytes_per_connection: match (before.relay_rss, after) {
            (Some(b), Some(a)) if welcomed > 0 => {
                (a.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / welcomed as f64
            }
            _ => 0.0,
        },
        relay_open_fds: relay_pid.and_then(|p| procfs::open_fds(p).ok()),
        handshakes_per_s: connect.handshakes_per_s,
    }
}

/// The publishing phases of `mode`, and for a ramp its verdict.
fn publish(
    ctx: &mut Ctx<'_>,
    mode: Mode,
    rate: f64,
    ramp: &RampArgs,
    plans: &[ClientPlan],
    welcomed_ids: &[bool],
    last: &mut Collected,
) -> Result<(Vec<PhaseReport>, Option<RampReport>)> {
    let duration = ctx.args.duration;
    let mut phases = Vec::new();
    match mode {
        Mode::Steady => {
            phases.push(ctx.phase(rate, duration, plans, welcomed_ids, last, "")?);
        }
        Mode::Slow => {
            let baseline = last.clone();
            let mut p = ctx.phase(rate, duration, plans, welcomed_ids, last, "")?;
            p.slow = Some(ctx.wake_slow(&baseline, plans, welcomed_ids)?);
            phases.push(p);
        }
        Mode::Crowd if rate > 0.0 => {
            phases.push(ctx.phase(rate, duration, plans, welcomed_ids, last, "")?);
        }
        Mode::Crowd => ctx.hold(duration)?,
        Mode::Ramp => {
            let report = ramp_steps(ctx, rate, ramp, plans, welcomed_ids, last, &mut phases)?;
            return Ok((phases, Some(report)));
        }
    }
    Ok((phases, None))
}

/// Doubles the rate each step until one does not hold, `--max-rate` or `--max-steps`.
fn ramp_steps(
    ctx: &mut Ctx<'_>,
    rate: f64,
    ramp: &RampArgs,
    plans: &[ClientPlan],
    welcomed_ids: &[bool],
    last: &mut Collected,
    phases: &mut Vec<PhaseReport>,
) -> Result<RampReport> {
    let bound_us = (ramp.p99_bound_ms * 1000.0) as u64;
    let mut step_rate = rate;
    let mut held_rate = None;
    let mut stop_reason = format!("reached --max-steps {}", ramp.max_steps);
    for step in 0..ramp.max_steps {
        let label = format!("step {}/{} ", step + 1, ramp.max_steps);
        let mut p = ctx.phase(
            step_rate,
            ramp.step_duration,
            plans,
            welcomed_ids,
            last,
            &label,
        )?;
        let failure = step_failure(&p, bound_us);
        p.held = Some(failure.is_none());
        phases.push(p);
        if let Some(why) = failure {
            stop_reason = format!("{why} at {step_rate:.0}/s");
            break;
        }
        held_rate = Some(step_rate);
        if step_rate * 2.0 > ramp.max_rate {
            stop_reason = format!("reached --max-rate {:.0}", ramp.max_rate);
            break;
        }
        step_rate *= 2.0;
    }
    Ok(RampReport {
        p99_bound_us: bound_us,
        highest_rate_held: held_rate,
        stop_reason,
    })
}

/// Final figures (clients, ingest errors, the relay's CPU, memory and `/stats`), then closes
/// the publisher and the clients.
fn wind_down(
    mut ctx: Ctx<'_>,
    plans: &[ClientPlan],
    ws_addr: SocketAddr,
    before: &Before,
) -> Result<Ending> {
    ctx.bar.set_message("collecting");
    let end = ctx.collect(false)?;
    let closed_early = end
        .clients
        .iter()
        .filter(|c| c.state == ClientState::Closed && !plans[c.id].slow)
        .count() as u64;
    let ingest_error_samples = ctx
        .publisher
        .as_ref()
        .and_then(|p| p.errors.samples.lock().ok().map(|s| s.clone()))
        .unwrap_or_default();
    let relay_alive = ctx.relay.as_mut().map(|r| r.check_alive());
    let relay = ctx
        .relay_pid
        .map(|pid| relay_report(pid, ws_addr, before.relay_cpu));
    let Ctx {
        bar,
        workers,
        publisher,
        ..
    } = ctx;
    drop(publisher);
    bar.set_message("closing clients");
    for w in workers {
        w.shutdown();
    }
    Ok(Ending {
        bar,
        closed_early,
        client_errors: end.errors,
        ingest_error_samples,
        relay,
        relay_alive,
    })
}

/// The relay's memory, CPU since `cpu0` and `GET /stats`, as seen at the end of the run.
fn relay_report(pid: u32, ws_addr: SocketAddr, cpu0: Option<procfs::CpuTimes>) -> RelayReport {
    let mem = procfs::memory(pid).unwrap_or_default();
    let stats = http_get(ws_addr, "/stats", Duration::from_secs(2))
        .ok()
        .and_then(|(status, body)| (status == 200).then_some(body))
        .and_then(|body| serde_json::from_str(&body).ok());
    RelayReport {
        pid,
        command: Vec::new(),
        peak_rss_kb: mem.hwm_kb,
        rss_end_kb: mem.rss_kb,
        cpu_s: match (cpu0, procfs::process_cpu(pid).ok()) {
            (Some(a), Some(b)) => b.since(&a).total().as_secs_f64(),
            _ => 0.0,
        },
        exit: "still running (not spawned by the harness)".into(),
        stats,
        log: None,
    }
}

/// Stops a relay the harness spawned and notes how it ended in its report.
fn stop_relay(relay: RelayProcess, bar: &ProgressBar, report: Option<&mut RelayReport>) {
    let log = relay.log.display().to_string();
    let command = relay.command.clone();
    bar.set_message("stopping relay");
    let exit = relay.stop(Duration::from_secs(10));
    if let Some(rep) = report {
        rep.exit = exit;
        rep.command = command;
        rep.log = Some(log);
    }
}

/// The harness's own CPU since `before` and its peak memory.
fn harness_report(before: &Before, workers: usize) -> HarnessReport {
    let mem = procfs::memory(std::process::id()).unwrap_or_default();
    HarnessReport {
        cpu_s: procfs::self_cpu()
            .unwrap_or_default()
            .since(&before.harness_cpu)
            .total()
            .as_secs_f64(),
        peak_rss_kb: mem.hwm_kb,
        workers,
    }
}

/// This machine, with the open-file limit and load average read at the start.
fn host(nofile_limit: u64, load_avg_1m: f64) -> Host {
    Host {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        nofile_limit,
        load_avg_1m,
    }
}

/// The parameters that shaped the load, for the report.
fn run_config(mode: Mode, args: &RunArgs, slow: &SlowArgs, rate: f64) -> RunConfig {
    RunConfig {
        clients: args.clients,
        symbols: args.symbols,
        symbols_per_client: args.symbols_per_client,
        mix: args.mix.to_string(),
        rate,
        duration_s: args.duration.as_secs_f64(),
        workers: args.workers,
        source_ips: args.source_ips,
        connect_rate: args.connect_rate,
        ingest_format: format!("{:?}", args.ingest_format).to_lowercase(),
        slow_fraction: if mode == Mode::Slow {
            slow.slow_fraction
        } else {
            0.0
        },
        spawned_relay: args.spawn.is_some(),
    }
}
