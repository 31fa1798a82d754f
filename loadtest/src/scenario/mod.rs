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
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result};

use crate::client::{ClientPlan, ClientState, Target, WorkerHandle};
use crate::procfs;
use crate::publisher::{IngestFormat, Publisher};
use crate::relay::{RelayProcess, http_get};
use crate::report::{
    ConnectReport, CrowdReport, HarnessReport, Host, RampReport, RelayReport, RunConfig, RunReport,
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
use coordinator::Ctx;
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
    let publish_time = match mode {
        Mode::Ramp => ramp.step_duration.mul_f64(f64::from(ramp.max_steps)),
        _ => args.duration,
    };
    let max_time = args
        .max_time
        .unwrap_or(Duration::from_secs(180) + publish_time);
    let bar = progress_bar(!args.no_progress);

    // The relay under test.
    let mut relay = match &args.spawn {
        Some(path) => {
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
            Some(RelayProcess::spawn(
                &binary,
                &extra,
                &log,
                Duration::from_secs(20),
            )?)
        }
        None => None,
    };
    let relay_pid = relay.as_ref().map(|r| r.pid).or(args.relay_pid);
    let (ws_addr, ingest_addr) = match &relay {
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
    };
    let watchdog = Watchdog::arm(max_time, relay.as_ref().map(|r| r.pid));
    let harness_cpu0 = procfs::self_cpu().unwrap_or_default();
    let relay_cpu0 = relay_pid.and_then(|p| procfs::process_cpu(p).ok());
    let relay_rss_before = relay_pid.and_then(|p| procfs::memory(p).ok());

    // Clients.
    let plans = plan_clients(
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
    );
    let target = Target {
        addr: ws_addr,
        symbol_count: args.symbols,
        handshake_timeout: args.handshake_timeout,
    };
    let workers: Vec<WorkerHandle> = (0..args.workers)
        .map(|w| WorkerHandle::spawn(w, target.clone()))
        .collect::<Result<_>>()?;
    let mut by_worker: Vec<Vec<ClientPlan>> = vec![Vec::new(); args.workers];
    for plan in &plans {
        by_worker[plan.id % args.workers].push(plan.clone());
    }
    let connect_started = Instant::now();
    for (worker, share) in workers.iter().zip(by_worker) {
        worker.connect(share, args.connect_rate / args.workers as f64)?;
    }
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
    let (welcomed, failed, connect_elapsed) = ctx.wait_welcomes(connect_started)?;
    std::thread::sleep(args.settle);
    let mut last = ctx.collect(true)?;
    let welcomed_ids: Vec<bool> = last.clients.iter().map(|c| c.counts.welcomed).collect();
    let mut by_encoding = BTreeMap::new();
    for p in &plans {
        *by_encoding.entry(p.encoding.name().to_owned()).or_insert(0) += 1;
    }
    let connect = ConnectReport {
        requested: args.clients,
        welcomed,
        failed,
        elapsed_s: connect_elapsed.as_secs_f64(),
        handshakes_per_s: welcomed as f64 / connect_elapsed.as_secs_f64().max(1e-9),
        handshake_us: last.handshake.summary(),
        by_encoding,
    };
    let crowd = (mode == Mode::Crowd).then(|| {
        let after = relay_pid.and_then(|p| procfs::memory(p).ok());
        CrowdReport {
            clients: welcomed,
            relay_rss_before_kb: relay_rss_before.map_or(0, |m| m.rss_kb),
            relay_rss_after_kb: after.map_or(0, |m| m.rss_kb),
            bytes_per_connection: match (relay_rss_before, after) {
                (Some(b), Some(a)) if welcomed > 0 => {
                    (a.rss_kb as f64 - b.rss_kb as f64) * 1024.0 / welcomed as f64
                }
                _ => 0.0,
            },
            relay_open_fds: relay_pid.and_then(|p| procfs::open_fds(p).ok()),
            handshakes_per_s: connect.handshakes_per_s,
        }
    });

    // Publishing.
    let mut phases = Vec::new();
    let mut ramp_report = None;
    if rate > 0.0 {
        ctx.publisher = Some(Publisher::connect(
            ingest_addr,
            args.ingest_format,
            args.symbols,
        )?);
    }
    match mode {
        Mode::Steady => {
            phases.push(ctx.phase(rate, args.duration, &plans, &welcomed_ids, &mut last, "")?);
        }
        Mode::Slow => {
            let baseline = last.clone();
            let mut p = ctx.phase(rate, args.duration, &plans, &welcomed_ids, &mut last, "")?;
            p.slow = Some(ctx.wake_slow(&baseline, &plans, &welcomed_ids)?);
            phases.push(p);
        }
        Mode::Crowd if rate > 0.0 => {
            phases.push(ctx.phase(rate, args.duration, &plans, &welcomed_ids, &mut last, "")?);
        }
        Mode::Crowd => ctx.hold(args.duration)?,
        Mode::Ramp => {
            let bound_us = (ramp.p99_bound_ms * 1000.0) as u64;
            let mut step_rate = rate;
            let mut held_rate = None;
            let mut stop_reason = format!("reached --max-steps {}", ramp.max_steps);
            for step in 0..ramp.max_steps {
                let label = format!("step {}/{} ", step + 1, ramp.max_steps);
                let mut p = ctx.phase(
                    step_rate,
                    ramp.step_duration,
                    &plans,
                    &welcomed_ids,
                    &mut last,
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
            ramp_report = Some(RampReport {
                p99_bound_us: bound_us,
                highest_rate_held: held_rate,
                stop_reason,
            });
        }
    }

    // The end: final figures, then close clients and relay.
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
    let mut relay_report = relay_pid.map(|pid| {
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
            cpu_s: match (relay_cpu0, procfs::process_cpu(pid).ok()) {
                (Some(a), Some(b)) => b.since(&a).total().as_secs_f64(),
                _ => 0.0,
            },
            exit: "still running (not spawned by the harness)".into(),
            stats,
            log: None,
        }
    });
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
    if let Some(r) = relay.take() {
        let log = r.log.display().to_string();
        let command = r.command.clone();
        bar.set_message("stopping relay");
        let exit = r.stop(Duration::from_secs(10));
        if let Some(rep) = relay_report.as_mut() {
            rep.exit = exit;
            rep.command = command;
            rep.log = Some(log);
        }
    }
    watchdog.disarm();
    bar.finish_and_clear();
    let harness_mem = procfs::memory(std::process::id()).unwrap_or_default();

    let mut report = RunReport {
        label: args.label.clone().unwrap_or_else(|| mode.name().to_owned()),
        mode: mode.name().to_owned(),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host: Host {
            cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
            nofile_limit: nofile,
            load_avg_1m: load_avg,
        },
        config: RunConfig {
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
        },
        connect,
        phases,
        ramp: ramp_report,
        crowd,
        relay: relay_report,
        harness: HarnessReport {
            cpu_s: procfs::self_cpu()
                .unwrap_or_default()
                .since(&harness_cpu0)
                .total()
                .as_secs_f64(),
            peak_rss_kb: harness_mem.hwm_kb,
            workers: args.workers,
        },
        closed_early,
        client_errors: end.errors,
        ingest_error_samples,
        clean: false,
        problems: Vec::new(),
    };
    if let Some(Err(e)) = relay_alive {
        report.problems.push(format!("{e:#}"));
    }
    judge(&mut report);
    Ok(report)
}
