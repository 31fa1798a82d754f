//! `soak`: the relay for `--duration` with steady ticks to `--clients` healthy clients (each
//! `--sample-every` window one phase, so every window's loss is exact) while the churn
//! (`churn.rs`) connects, resumes, stalls and drops clients beside them. Every window the
//! relay's RSS, open fds and sessions and the healthy clients' p99 are read; at the end the
//! slope of memory and fds after `--warmup` says whether anything grows.

use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, ensure};

use super::args::{Mode, RunArgs, SlowArgs};
use super::bounds::{Watchdog, raise_nofile};
use super::churn::{Churn, ChurnPlan};
use super::coordinator::Ctx;
use super::progress::progress_bar;
use super::setup::{
    Before, connect_publisher, endpoints, open_clients, plan_run, spawn_relay, start_workers,
};
use super::teardown::{host, stop_relay, wind_down};
use crate::procfs;
use crate::relay::http_get;
use crate::report::{SoakReport, SoakSample, slope_per_min};

/// `soak` options.
#[derive(Clone, Debug, clap::Args)]
pub struct SoakArgs {
    /// One sample (a publishing window, its p99 and loss; the relay's RSS, fds, sessions)
    /// per this much time.
    #[arg(long, default_value = "10s", value_parser = super::parse_duration)]
    pub sample_every: Duration,
    /// Samples before this are warm-up: left out of the slopes.
    #[arg(long, default_value = "60s", value_parser = super::parse_duration)]
    pub warmup: Duration,
    /// Churning clients at any moment (each slot one session after another).
    #[arg(long, default_value_t = 60)]
    pub churn: usize,
    /// Sign tokens for the churn's refreshing sessions: the spawned relay gets a key
    /// (`--jwt-secret-file`) and `--allow-anonymous`, so every other client stays anonymous.
    #[arg(long)]
    pub no_auth: bool,
}

/// Runs the soak and returns its report.
pub fn soak(args: &RunArgs, soak: &SoakArgs) -> Result<SoakReport> {
    ensure!(
        soak.sample_every >= Duration::from_secs(1),
        "--sample-every must be at least 1s"
    );
    let secret = tempfile::tempdir().context("a directory for the relay's key")?;
    let key = b"tickrelay-soak-secret-of-at-least-32-bytes".to_vec();
    let mut relay_args = args.relay_args.clone();
    if !relay_args.contains("--ws-deflate") {
        relay_args.push_str(" --ws-deflate on");
    }
    let token = if soak.no_auth || args.spawn.is_none() {
        None
    } else {
        let path = secret.path().join("jwt.secret");
        std::fs::write(&path, &key).context("writing the relay's key")?;
        relay_args.push_str(&format!(
            " --jwt-secret-file {} --allow-anonymous",
            path.display()
        ));
        Some(signer(key))
    };
    let args = &RunArgs {
        relay_args,
        ..args.checked(Mode::Steady)?
    };
    let load_avg = procfs::load_avg_1m().unwrap_or(0.0);
    let nofile = raise_nofile(args.clients + 4 * soak.churn)?;
    let rate = args.rate.unwrap_or(1000.0);
    let bar = progress_bar(!args.no_progress);
    let mut relay = spawn_relay(args, &bar)?;
    let relay_pid = relay.as_ref().map(|r| r.pid).or(args.relay_pid);
    let ends = endpoints(args, relay.as_ref());
    let watchdog = Watchdog::arm(
        args.max_time
            .unwrap_or(args.duration + Duration::from_secs(180)),
        relay_pid,
    );
    let before = Before::take(relay_pid);
    let plans = plan_run(Mode::Steady, args, &SlowArgs::unused(), ends.ws);
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
    let (_, mut last) = open_clients(&mut ctx, connect_started, &plans)?;
    let welcomed: Vec<bool> = last.clients.iter().map(|c| c.counts.welcomed).collect();
    ctx.publisher = Some(connect_publisher(args, ends.ingest)?);
    let churn = Churn::start(ChurnPlan {
        ws: ends.ws,
        ingest: ends.ingest,
        slots: soak.churn,
        symbols: args.symbols,
        seed: args.seed,
        token,
    })?;

    let started = Instant::now();
    let mut samples = Vec::new();
    eprintln!("{}", SoakSample::header());
    while started.elapsed() < args.duration {
        let label = format!("soak {:.0}s ", started.elapsed().as_secs_f64());
        let phase = ctx.phase(
            rate,
            soak.sample_every,
            &plans,
            &welcomed,
            &mut last,
            &label,
        )?;
        let sample = SoakSample {
            t_s: started.elapsed().as_secs_f64(),
            rss_kb: relay_pid
                .and_then(|p| procfs::memory(p).ok())
                .map_or(0, |m| m.rss_kb),
            open_fds: relay_pid
                .and_then(|p| procfs::open_fds(p).ok())
                .unwrap_or(0) as u64,
            sessions: sessions(&ends.stats.0),
            p50_us: phase.fast.latency_us.p50_us,
            p99_us: phase.fast.latency_us.p99_us,
            published: phase.published,
            expected: phase.fast.expected,
            received: phase.fast.received,
            lost: phase.fast.lost,
            seq_errors: phase.fast.seq.gaps
                + phase.fast.seq.dups
                + phase.fast.seq.out_of_order
                + phase.fast.relay_gaps
                + phase.fast.error_msgs
                + phase.fast.decode_errors
                + phase.fast.unexpected_symbol,
            closed: phase.fast.closed,
            drain_timed_out: phase.drain_timed_out,
            churn: churn.counts.totals(),
        };
        eprintln!("{}", sample.line());
        samples.push(sample);
    }
    let churn_totals = churn.stop();
    let mut end = wind_down(ctx, &plans, &ends.stats, &before)?;
    if let Some(r) = relay.take() {
        stop_relay(r, &end.bar, end.relay.as_mut());
    }
    watchdog.disarm();
    end.bar.finish_and_clear();

    let warm: Vec<&SoakSample> = samples
        .iter()
        .filter(|s| s.t_s >= soak.warmup.as_secs_f64())
        .collect();
    let mut report = SoakReport {
        label: args.label.clone().unwrap_or_else(|| "soak".to_owned()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        unix_time: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        host: host(nofile, load_avg),
        clients: args.clients,
        symbols: args.symbols,
        symbols_per_client: args.symbols_per_client,
        rate,
        churn_slots: soak.churn,
        warmup_s: soak.warmup.as_secs_f64(),
        rss_slope_kib_per_min: slope_per_min(warm.iter().map(|s| (s.t_s, s.rss_kb as f64))),
        fd_slope_per_min: slope_per_min(warm.iter().map(|s| (s.t_s, s.open_fds as f64))),
        sessions_slope_per_min: slope_per_min(warm.iter().map(|s| (s.t_s, s.sessions as f64))),
        samples,
        churn: churn_totals,
        closed_early: end.closed_early,
        clean: false,
        problems: Vec::new(),
    };
    if let Some(Err(e)) = end.relay_alive {
        report.problems.push(format!("{e:#}"));
    }
    report.judge();
    Ok(report)
}

/// The relay's live WebSocket sessions (`/stats` `sessions`), 0 if unreadable.
fn sessions(addr: &std::net::SocketAddr) -> u64 {
    http_get(*addr, "/stats", Duration::from_secs(5))
        .ok()
        .and_then(|(_, body)| serde_json::from_str::<serde_json::Value>(&body).ok())
        .and_then(|v| v["sessions"].as_u64())
        .unwrap_or(0)
}

/// HS256 tokens for one user, valid for 10 minutes from when each is signed.
fn signer(key: Vec<u8>) -> Arc<dyn Fn() -> String + Send + Sync> {
    let key = jsonwebtoken::EncodingKey::from_secret(&key)
        .expect("an HMAC key of any length is a valid HS256 key");
    Arc::new(move || {
        let exp = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
            + 600;
        let claims = serde_json::json!({ "sub": "soak", "exp": exp });
        jsonwebtoken::encode(&jsonwebtoken::Header::default(), &claims, &key)
            .expect("HS256 signing of a small JSON object cannot fail")
    })
}
