//! One mode, end to end: start (or find) the relay, open the clients, publish, drain,
//! collect, judge, report.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::Result;

use super::args::{Mode, RampArgs, RunArgs, SlowArgs};
use super::bounds::{Watchdog, raise_nofile};
use super::coordinator::{Collected, Ctx};
use super::progress::progress_bar;
use super::setup::{
    Before, connect_publisher, endpoints, load_books, max_time, open_clients, plan_run,
    spawn_relay, start_workers,
};
use super::teardown::{harness_report, host, run_config, stop_relay, wind_down};
use super::verdict::{judge, step_failure};
use crate::client::ClientPlan;
use crate::procfs;
use crate::report::{ConnectReport, CrowdReport, PhaseReport, RampReport, RunReport};

/// Runs one mode and returns its report (already printed, written and plotted as asked).
pub fn run(mode: Mode, args: &RunArgs, ramp: &RampArgs, slow: &SlowArgs) -> Result<RunReport> {
    let args = &args.checked(mode)?;
    let load_avg = procfs::load_avg_1m().unwrap_or(0.0);
    let nofile = raise_nofile(args.clients)?;
    let rate = args
        .rate
        .unwrap_or(if mode == Mode::Crowd { 0.0 } else { 1000.0 });
    let bar = progress_bar(!args.no_progress);

    // The relay under test.
    let mut relay = spawn_relay(args, &bar)?;
    let relay_pid = relay.as_ref().map(|r| r.pid).or(args.relay_pid);
    let ends = endpoints(args, relay.as_ref());
    let watchdog = Watchdog::arm(max_time(mode, args, ramp), relay.as_ref().map(|r| r.pid));
    let before = Before::take(relay_pid);
    let books = match args.feeds.books {
        Some(b) => Some(load_books(args, &ends, relay_pid, b)?),
        None => None,
    };

    // Clients.
    let plans = plan_run(mode, args, slow, ends.ws);
    let (workers, connect_started) = start_workers(args, ends.ws, &plans)?;
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
    let book_memory = books.map(|(publisher, memory)| {
        ctx.publisher = Some(publisher);
        memory
    });
    if rate > 0.0 && ctx.publisher.is_none() {
        ctx.publisher = Some(connect_publisher(args, ends.ingest)?);
    }
    let (phases, ramp_report) =
        publish(&mut ctx, mode, rate, ramp, &plans, &welcomed_ids, &mut last)?;

    // The end: final figures, then close clients and relay.
    let mut end = wind_down(ctx, &plans, &ends.stats, &before)?;
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
        books: book_memory,
        relay: end.relay,
        harness: harness_report(&before, args.workers),
        closed_early: end.closed_early,
        client_errors: end.client_errors,
        ingest_error_samples: end.ingest_error_samples,
        clean: false,
        problems: Vec::new(),
        caveats: Vec::new(),
    };
    if let Some(Err(e)) = end.relay_alive {
        report.problems.push(format!("{e:#}"));
    }
    judge(&mut report);
    Ok(report)
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

/// Raises the rate by `--step-factor` each step until one does not hold, `--max-rate` or
/// `--max-steps`.
fn ramp_steps(
    ctx: &mut Ctx<'_>,
    rate: f64,
    ramp: &RampArgs,
    plans: &[ClientPlan],
    welcomed_ids: &[bool],
    last: &mut Collected,
    phases: &mut Vec<PhaseReport>,
) -> Result<RampReport> {
    anyhow::ensure!(
        ramp.step_factor > 1.0 && ramp.step_factor.is_finite(),
        "--step-factor {} must be > 1",
        ramp.step_factor
    );
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
        if step_rate * ramp.step_factor > ramp.max_rate {
            stop_reason = format!("reached --max-rate {:.0}", ramp.max_rate);
            break;
        }
        step_rate *= ramp.step_factor;
    }
    Ok(RampReport {
        p99_bound_us: bound_us,
        highest_rate_held: held_rate,
        stop_reason,
    })
}
