//! Ending a run: the last figures, closing publisher, clients and relay, and the parts of the
//! report that describe the run rather than its phases.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::time::Duration;

use anyhow::Result;
use indicatif::ProgressBar;

use super::args::{Mode, RunArgs, SlowArgs};
use super::coordinator::Ctx;
use super::setup::Before;
use crate::client::{ClientPlan, ClientState};
use crate::procfs;
use crate::relay::{RelayProcess, http_get};
use crate::report::{HarnessReport, Host, RelayReport, RunConfig};

/// What the end of a run leaves for the report once clients and publisher are closed.
pub(super) struct Ending {
    pub(super) bar: ProgressBar,
    pub(super) closed_early: u64,
    pub(super) client_errors: BTreeMap<String, u64>,
    pub(super) ingest_error_samples: Vec<String>,
    pub(super) relay: Option<RelayReport>,
    /// Whether a spawned relay was still running at the end.
    pub(super) relay_alive: Option<Result<()>>,
}

/// Final figures (clients, ingest errors, the relay's CPU, memory and `/stats`), then closes
/// the publisher and the clients.
pub(super) fn wind_down(
    mut ctx: Ctx<'_>,
    plans: &[ClientPlan],
    stats_at: &(SocketAddr, String),
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
        .map(|pid| relay_report(pid, stats_at, before.relay_cpu));
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

/// The relay's memory, CPU since `cpu0` and its stats (`GET stats_at`: the relay's `/stats`,
/// nats-server's `/varz`), as seen at the end of the run.
pub(super) fn relay_report(
    pid: u32,
    stats_at: &(SocketAddr, String),
    cpu0: Option<procfs::CpuTimes>,
) -> RelayReport {
    let mem = procfs::memory(pid).unwrap_or_default();
    let stats = http_get(stats_at.0, &stats_at.1, Duration::from_secs(2))
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
pub(super) fn stop_relay(relay: RelayProcess, bar: &ProgressBar, report: Option<&mut RelayReport>) {
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
pub(super) fn harness_report(before: &Before, workers: usize) -> HarnessReport {
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
pub(super) fn host(nofile_limit: u64, load_avg_1m: f64) -> Host {
    Host {
        cores: std::thread::available_parallelism().map_or(0, |n| n.get()),
        nofile_limit,
        load_avg_1m,
    }
}

/// The parameters that shaped the load, for the report.
pub(super) fn run_config(mode: Mode, args: &RunArgs, slow: &SlowArgs, rate: f64) -> RunConfig {
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
        server: args.server.name().to_owned(),
        client_profile: args.profile().name().to_owned(),
    }
}
