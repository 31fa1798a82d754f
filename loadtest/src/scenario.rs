//! The modes, end to end: start (or find) the relay, open the clients, publish, drain, collect,
//! judge, report.
//!
//! ```text
//! plan_clients ──▶ workers (client.rs) ◀── collect ──┐
//!                    ▲ frames                        │
//! publisher ──ingest──▶ relay ──WebSocket────────────┘ coordinator (this file): phases, verdict
//! ```
//!
//! Expected deliveries are exact because every client is welcomed before the first tick is
//! published: a client expects every tick of its symbols published while it was open.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use anyhow::{Context, Result, bail, ensure};
use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{
    ClientPlan, ClientState, ClientStatus, Encoding, Target, WorkerHandle, WorkerProgress,
};
use crate::latency::LatencyHist;
use crate::procfs;
use crate::publisher::{IngestFormat, Publisher};
use crate::relay::{RelayProcess, http_get};
use crate::report::{
    ConnectReport, CrowdReport, Delivery, HarnessReport, Host, PhaseReport, RampReport,
    RelayReport, RunConfig, RunReport,
};

/// Options shared by every mode.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Relay WebSocket/HTTP address (ignored with --spawn).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub relay: SocketAddr,
    /// Relay JSON-lines ingest address (ignored with --spawn).
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub ingest: SocketAddr,
    /// Relay protobuf ingest address (ignored with --spawn).
    #[arg(long, default_value = "127.0.0.1:7002")]
    pub ingest_protobuf: SocketAddr,
    /// Ingest wire format.
    #[arg(long, value_enum, default_value = "json")]
    pub ingest_format: IngestFormat,
    /// Launch the relay binary at PATH (default: `tickrelay` next to this binary) on free ports.
    #[arg(long, value_name = "PATH", num_args = 0..=1, default_missing_value = "")]
    pub spawn: Option<PathBuf>,
    /// Extra relay flags with --spawn, one string (`--relay-args "--shards 2"`).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub relay_args: String,
    /// Where the spawned relay's output goes (default: a file in the temp dir).
    #[arg(long)]
    pub relay_log: Option<PathBuf>,
    /// PID of an already running relay, to read its CPU and memory (implied by --spawn).
    #[arg(long)]
    pub relay_pid: Option<u32>,
    /// Number of WebSocket clients.
    #[arg(long, default_value_t = 100)]
    pub clients: usize,
    /// New connections per second (0 = unpaced).
    #[arg(long, default_value_t = 2000.0)]
    pub connect_rate: f64,
    /// Spread clients over this many source addresses 127.0.0.2.. (1 = let the kernel pick),
    /// for when 28k ephemeral ports per address run short.
    #[arg(long, default_value_t = 1)]
    pub source_ips: u8,
    /// Number of symbols, named SYM000...
    #[arg(long, default_value_t = 100)]
    pub symbols: u32,
    /// Symbols per client (balanced: every symbol gets the same number of subscribers).
    #[arg(long, default_value_t = 10)]
    pub symbols_per_client: u32,
    /// Encoding mix by weight.
    #[arg(long, default_value = "json=70,protobuf=20,gzip=10")]
    pub mix: Mix,
    /// Published ticks per second over all symbols (default 1000; crowd: 0; ramp: first step).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Publishing time (`20`, `20s`, `500ms`, `2m`); crowd: how long the idle crowd is held.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub duration: Duration,
    /// Client worker threads (each a current-thread runtime driving many connections).
    #[arg(long, default_value_t = 1)]
    pub workers: usize,
    /// Pause between the last welcome and the first tick.
    #[arg(long, default_value = "500ms", value_parser = parse_duration)]
    pub settle: Duration,
    /// How long all clients may take to be welcomed.
    #[arg(long, default_value = "60s", value_parser = parse_duration)]
    pub welcome_timeout: Duration,
    /// How long one client's TCP connect + upgrade may take.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,
    /// After publishing, wait at most this long for the last deliveries.
    #[arg(long, default_value = "10s", value_parser = parse_duration)]
    pub drain_timeout: Duration,
    /// ... and stop waiting earlier when nothing arrives for this long.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub drain_idle: Duration,
    /// Hard bound on the whole run; past it the relay is killed and the harness exits 3
    /// (default: 3 min + publishing time).
    #[arg(long, value_parser = parse_duration)]
    pub max_time: Option<Duration>,
    /// Write the JSON report here.
    #[arg(long)]
    pub report_json: Option<PathBuf>,
    /// Write the latency-vs-rate SVG here (ramp).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// Exit non-zero on any loss, gap, duplicate, reordering, failed or dropped client.
    #[arg(long)]
    pub assert_clean: bool,
    /// Name of the run in reports (default: the mode).
    #[arg(long)]
    pub label: Option<String>,
    /// Seed for the encoding and slow-client assignment.
    #[arg(long, default_value_t = 1)]
    pub seed: u64,
    /// No progress display.
    #[arg(long)]
    pub no_progress: bool,
}

/// Ramp options.
#[derive(Clone, Debug, clap::Args)]
pub struct RampArgs {
    /// Stop doubling past this rate.
    #[arg(long, default_value_t = 1_024_000.0)]
    pub max_rate: f64,
    /// At most this many steps.
    #[arg(long, default_value_t = 10)]
    pub max_steps: u32,
    /// Publishing time of each step.
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub step_duration: Duration,
    /// A step holds while p99 stays at or under this (ms) and nothing is lost.
    #[arg(long, default_value_t = 10.0)]
    pub p99_bound_ms: f64,
}

/// Slow-mode options.
#[derive(Clone, Debug, clap::Args)]
pub struct SlowArgs {
    /// Fraction of clients that stop reading once welcomed.
    #[arg(long, default_value_t = 0.1)]
    pub slow_fraction: f64,
    /// SO_RCVBUF of the slow clients, bytes (the kernel doubles it). Small, so the relay's own
    /// outbox policy is what holds their backlog, not megabytes of loopback socket buffer.
    #[arg(long, default_value_t = 4096)]
    pub slow_rcvbuf: usize,
}

impl RampArgs {
    /// The placeholder for modes that do not ramp.
    pub fn unused() -> Self {
        Self {
            max_rate: 0.0,
            max_steps: 0,
            step_duration: Duration::ZERO,
            p99_bound_ms: 0.0,
        }
    }
}

impl SlowArgs {
    /// The placeholder for modes without stalled clients.
    pub fn unused() -> Self {
        Self {
            slow_fraction: 0.0,
            slow_rcvbuf: 0,
        }
    }
}

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

/// Encoding weights, `json=70,protobuf=20,gzip=10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(pub Vec<(Encoding, u32)>);

impl FromStr for Mix {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let mut parts = Vec::new();
        for part in s.split(',').filter(|p| !p.trim().is_empty()) {
            let (name, weight) = part
                .split_once('=')
                .ok_or_else(|| format!("`{part}` is not ENCODING=WEIGHT"))?;
            let enc: Encoding = name.trim().parse()?;
            let weight: u32 = weight
                .trim()
                .parse()
                .map_err(|_| format!("weight `{weight}` of {name} is not a whole number"))?;
            if parts.iter().any(|(e, _)| *e == enc) {
                return Err(format!("{name} given twice"));
            }
            parts.push((enc, weight));
        }
        if parts.iter().map(|p| p.1).sum::<u32>() == 0 {
            return Err("the mix needs a positive weight".into());
        }
        Ok(Self(parts))
    }
}

impl std::fmt::Display for Mix {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let parts: Vec<String> = self
            .0
            .iter()
            .map(|(e, w)| format!("{}={w}", e.name()))
            .collect();
        f.write_str(&parts.join(","))
    }
}

/// Parses `20`, `20s`, `1.5s`, `500ms`, `2m`.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let s = s.trim();
    let (num, scale) = if let Some(n) = s.strip_suffix("ms") {
        (n, 1e-3)
    } else if let Some(n) = s.strip_suffix('s') {
        (n, 1.0)
    } else if let Some(n) = s.strip_suffix('m') {
        (n, 60.0)
    } else {
        (s, 1.0)
    };
    let v: f64 = num
        .trim()
        .parse()
        .map_err(|_| format!("`{s}` is not a duration (20, 20s, 500ms, 2m)"))?;
    if !(v >= 0.0 && v.is_finite()) {
        return Err(format!("`{s}` is not a duration"));
    }
    Ok(Duration::from_secs_f64(v * scale))
}

/// The clients of a run: balanced symbols, the encoding mix and slow flags shuffled over them.
pub fn plan_clients(
    n: usize,
    symbols: u32,
    per_client: u32,
    mix: &Mix,
    slow: &SlowArgs,
    source_ips: u8,
    seed: u64,
) -> Vec<ClientPlan> {
    let mut rng = SplitMix(seed);
    // Exact counts per encoding (largest remainder), then shuffled so encodings do not line up
    // with the symbol rotation.
    let total: u64 = mix.0.iter().map(|p| u64::from(p.1)).sum();
    let mut encodings: Vec<Encoding> = Vec::with_capacity(n);
    let mut quotas: Vec<(Encoding, usize, u64)> = mix
        .0
        .iter()
        .map(|&(e, w)| {
            let exact = n as u64 * u64::from(w);
            (e, (exact / total) as usize, exact % total)
        })
        .collect();
    let mut short = n - quotas.iter().map(|q| q.1).sum::<usize>();
    quotas.sort_by_key(|q| std::cmp::Reverse(q.2));
    for q in &mut quotas {
        if short > 0 && q.2 > 0 {
            q.1 += 1;
            short -= 1;
        }
    }
    for (e, count, _) in &quotas {
        encodings.extend(std::iter::repeat_n(*e, *count));
    }
    rng.shuffle(&mut encodings);
    let slow_count = ((n as f64) * slow.slow_fraction.clamp(0.0, 1.0)).round() as usize;
    let mut is_slow: Vec<bool> = (0..n).map(|i| i < slow_count).collect();
    rng.shuffle(&mut is_slow);
    let per_client = per_client.min(symbols);
    (0..n)
        .map(|i| ClientPlan {
            id: i,
            symbols: (0..per_client)
                .map(|j| {
                    ((i as u64 * u64::from(per_client) + u64::from(j)) % u64::from(symbols)) as u32
                })
                .collect(),
            encoding: encodings[i],
            source: (source_ips > 1)
                .then(|| Ipv4Addr::new(127, 0, 0, 2 + (i % usize::from(source_ips)) as u8)),
            slow: is_slow[i],
            recv_buffer: is_slow[i].then_some(slow.slow_rcvbuf),
        })
        .collect()
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

/// Everything a phase needs while the run is on.
struct Ctx<'a> {
    args: &'a RunArgs,
    bar: ProgressBar,
    workers: Vec<WorkerHandle>,
    relay_pid: Option<u32>,
    relay: Option<&'a mut RelayProcess>,
    publisher: Option<Publisher>,
    sent: Arc<AtomicU64>,
    /// Ticks per symbol published in the last phase.
    last_delta: Vec<u64>,
}

/// Merged worker figures, clients indexed by id.
#[derive(Clone)]
struct Collected {
    clients: Vec<ClientStatus>,
    latency: LatencyHist,
    handshake: LatencyHist,
    worker_cpu: Duration,
    worker_cpu_split: procfs::CpuTimes,
    errors: BTreeMap<String, u64>,
}

impl Ctx<'_> {
    fn progress(&self) -> ProgressTotals {
        let mut t = ProgressTotals::default();
        for w in &self.workers {
            t.add(&w.progress);
        }
        t
    }

    fn wait_welcomes(&mut self, started: Instant) -> Result<(u64, u64, Duration)> {
        let n = self.args.clients as u64;
        let mut last_change = started;
        let mut seen = 0;
        loop {
            let p = self.progress();
            self.bar.set_message(format!(
                "connecting: {}/{n} welcomed, {} failed, {} closed",
                p.welcomed, p.failed, p.closed
            ));
            if p.welcomed != seen {
                seen = p.welcomed;
                last_change = Instant::now();
            }
            if p.welcomed + p.failed + p.closed >= n {
                return Ok((p.welcomed, p.failed + p.closed, last_change - started));
            }
            if started.elapsed() > self.args.welcome_timeout {
                return Ok((p.welcomed, n - p.welcomed, last_change - started));
            }
            if let Some(r) = self.relay.as_mut() {
                r.check_alive()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    fn collect(&self, reset_latency: bool) -> Result<Collected> {
        let mut out = Collected {
            clients: vec![ClientStatus::default(); self.args.clients],
            latency: LatencyHist::new(),
            handshake: LatencyHist::new(),
            worker_cpu: Duration::ZERO,
            worker_cpu_split: procfs::CpuTimes::default(),
            errors: BTreeMap::new(),
        };
        for w in &self.workers {
            let snap = w.collect(reset_latency)?;
            out.latency.merge(&snap.latency);
            out.handshake.merge(&snap.handshake);
            out.worker_cpu += snap.cpu;
            out.worker_cpu_split.user += snap.cpu_split.user;
            out.worker_cpu_split.system += snap.cpu_split.system;
            for (e, n) in snap.errors {
                *out.errors.entry(e).or_default() += n;
            }
            for c in snap.clients {
                let id = c.id;
                out.clients[id] = c;
            }
        }
        Ok(out)
    }

    /// Idles for `duration` (crowd without publishing), watching the relay.
    fn hold(&mut self, duration: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < duration {
            let p = self.progress();
            self.bar.set_message(format!(
                "holding {} idle clients {:.0}/{:.0}s, {} closed, relay RSS {}",
                p.welcomed,
                start.elapsed().as_secs_f64(),
                duration.as_secs_f64(),
                p.closed,
                self.relay_rss()
                    .map_or("-".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
            ));
            if let Some(r) = self.relay.as_mut() {
                r.check_alive()?;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn relay_rss(&self) -> Option<u64> {
        self.relay_pid
            .and_then(|p| procfs::memory(p).ok())
            .map(|m| m.rss_kb)
    }

    /// Publishes `rate` for `duration`, drains, and reports what the clients got.
    fn phase(
        &mut self,
        rate: f64,
        duration: Duration,
        plans: &[ClientPlan],
        welcomed: &[bool],
        last: &mut Collected,
        label: &str,
    ) -> Result<PhaseReport> {
        let relay_cpu0 = self.relay_pid.and_then(|p| procfs::process_cpu(p).ok());
        let self_cpu0 = procfs::self_cpu().unwrap_or_default();
        let fast_before = self.progress().ticks_fast;
        let stop = AtomicBool::new(false);
        let sent = Arc::clone(&self.sent);
        let sent_before = sent.load(Ordering::Relaxed);
        let mut rss_max = self.relay_rss();
        let publisher = self
            .publisher
            .as_mut()
            .context("publishing needs a rate > 0")?;
        let published_before = publisher.published().to_vec();
        let errors_before = publisher.errors.lines.load(Ordering::Relaxed);
        let started = Instant::now();

        // Publish on a scoped thread while this one shows progress and watches the relay.
        let outcome = std::thread::scope(|s| -> Result<_> {
            let publishing = s.spawn(|| publisher.run(rate, duration, &sent, &stop));
            while !publishing.is_finished() {
                let p = ProgressTotals::sum(&self.workers);
                let rss = self
                    .relay_pid
                    .and_then(|pid| procfs::memory(pid).ok())
                    .map(|m| m.rss_kb);
                rss_max = rss_max.max(rss);
                self.bar.set_message(format!(
                    "{label}{rate:.0}/s {:.1}/{:.0}s: published {}, delivered {}, closed {}, relay RSS {}",
                    started.elapsed().as_secs_f64(),
                    duration.as_secs_f64(),
                    sent.load(Ordering::Relaxed) - sent_before,
                    p.ticks,
                    p.closed,
                    rss.map_or("-".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
                ));
                if let Some(r) = self.relay.as_mut()
                    && let Err(e) = r.check_alive()
                {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            publishing
                .join()
                .map_err(|_| anyhow::anyhow!("publisher thread panicked"))?
        })?;
        let publisher = self.publisher.as_ref().expect("checked above");
        let delta: Vec<u64> = publisher
            .published()
            .iter()
            .zip(&published_before)
            .map(|(a, b)| a - b)
            .collect();
        let expected_fast: u64 = plans
            .iter()
            .filter(|p| !p.slow && welcomed[p.id])
            .map(|p| p.symbols.iter().map(|&s| delta[s as usize]).sum::<u64>())
            .sum();

        // Drain: until every expected tick is in, or nothing arrives for a while.
        let drain_start = Instant::now();
        let mut last_seen = self.progress().ticks_fast;
        let mut last_change = drain_start;
        let drain_timed_out = loop {
            let got = self.progress().ticks_fast;
            if got - fast_before >= expected_fast {
                break false;
            }
            if got != last_seen {
                last_seen = got;
                last_change = Instant::now();
            }
            if last_change.elapsed() > self.args.drain_idle
                || drain_start.elapsed() > self.args.drain_timeout
            {
                break true;
            }
            self.bar.set_message(format!(
                "{label}draining: {}/{expected_fast}",
                got - fast_before
            ));
            rss_max = rss_max.max(self.relay_rss());
            std::thread::sleep(Duration::from_millis(10));
        };

        let now = self.collect(true)?;
        let relay_cpu = match (
            relay_cpu0,
            self.relay_pid.and_then(|p| procfs::process_cpu(p).ok()),
        ) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        let mut fast = group(last, &now, plans, welcomed, &delta, false);
        fast.latency_us = now.latency.summary();
        let slow = plans
            .iter()
            .any(|p| p.slow)
            .then(|| group(last, &now, plans, welcomed, &delta, true));
        let deliveries = fast.received + slow.as_ref().map_or(0, |s| s.received);
        let worker_cpu = now.worker_cpu.saturating_sub(last.worker_cpu);
        let worker_split = now.worker_cpu_split.since(&last.worker_cpu_split);
        let elapsed = outcome.elapsed.as_secs_f64().max(1e-9);
        let rss_end = self.relay_rss();
        let report = PhaseReport {
            target_rate: rate,
            achieved_rate: outcome.sent as f64 / elapsed,
            duration_s: elapsed,
            published: outcome.sent,
            ingest_error_lines: publisher.errors.lines.load(Ordering::Relaxed) - errors_before,
            deliveries_per_s: deliveries as f64 / elapsed,
            fast,
            slow,
            harness_worker_cpu_s: worker_cpu.as_secs_f64(),
            harness_worker_ns_per_delivery: per_delivery(worker_cpu.as_secs_f64(), deliveries),
            harness_worker_user_ns_per_delivery: per_delivery(
                worker_split.user.as_secs_f64(),
                deliveries,
            ),
            harness_worker_system_ns_per_delivery: per_delivery(
                worker_split.system.as_secs_f64(),
                deliveries,
            ),
            harness_process_cpu_s: procfs::self_cpu()
                .unwrap_or_default()
                .since(&self_cpu0)
                .total()
                .as_secs_f64(),
            relay_cpu_s: relay_cpu.map(|c| c.total().as_secs_f64()),
            relay_user_cpu_s: relay_cpu.map(|c| c.user.as_secs_f64()),
            relay_ns_per_delivery: relay_cpu
                .map(|c| per_delivery(c.total().as_secs_f64(), deliveries)),
            relay_user_ns_per_delivery: relay_cpu
                .map(|c| per_delivery(c.user.as_secs_f64(), deliveries)),
            relay_rss_max_kb: rss_max.max(rss_end),
            relay_rss_end_kb: rss_end,
            held: None,
            drain_timed_out,
        };
        *last = now;
        self.last_delta = delta;
        Ok(report)
    }

    /// Lets the slow clients read what the relay still holds for them, and reports them over
    /// the last phase: what reached them at all, the gap notices, who was disconnected.
    fn wake_slow(
        &mut self,
        baseline: &Collected,
        plans: &[ClientPlan],
        welcomed: &[bool],
    ) -> Result<Delivery> {
        for w in &self.workers {
            w.wake_slow()?;
        }
        let start = Instant::now();
        let mut seen = self.progress();
        let mut last_change = start;
        while last_change.elapsed() < self.args.drain_idle
            && start.elapsed() < self.args.drain_timeout
        {
            std::thread::sleep(Duration::from_millis(50));
            let p = self.progress();
            if (p.ticks, p.closed) != (seen.ticks, seen.closed) {
                last_change = Instant::now();
            }
            seen = p;
            self.bar.set_message(format!(
                "slow clients reading again: {} ticks in total, {} closed",
                p.ticks, p.closed
            ));
        }
        let now = self.collect(false)?;
        Ok(group(
            baseline,
            &now,
            plans,
            welcomed,
            &self.last_delta,
            true,
        ))
    }
}

/// Deliveries of one group (slow or not) between two collections.
fn group(
    before: &Collected,
    after: &Collected,
    plans: &[ClientPlan],
    welcomed: &[bool],
    delta: &[u64],
    slow: bool,
) -> Delivery {
    let mut d = Delivery::default();
    for plan in plans.iter().filter(|p| p.slow == slow && welcomed[p.id]) {
        let (b, a) = (&before.clients[plan.id], &after.clients[plan.id]);
        let (bc, ac) = (&b.counts, &a.counts);
        d.clients += 1;
        d.expected += plan.symbols.iter().map(|&s| delta[s as usize]).sum::<u64>();
        d.received += ac.ticks - bc.ticks;
        d.seq.add(&ac.seq.since(&bc.seq));
        d.relay_gaps += ac.relay_gaps - bc.relay_gaps;
        d.relay_gap_ticks += ac.relay_gap_ticks - bc.relay_gap_ticks;
        d.snapshots += ac.snapshots - bc.snapshots;
        d.error_msgs += ac.error_msgs - bc.error_msgs;
        d.decode_errors += ac.decode_errors - bc.decode_errors;
        d.unexpected_symbol += ac.unexpected_symbol - bc.unexpected_symbol;
        d.closed += u64::from(a.state == ClientState::Closed && b.state != ClientState::Closed);
        d.frames += ac.frames - bc.frames;
        d.bytes += ac.bytes - bc.bytes;
        d.reads += ac.reads - bc.reads;
    }
    d.lost = d.expected.saturating_sub(d.received);
    d.extra = d.received.saturating_sub(d.expected);
    d
}

/// Why a ramp step did not hold, if it did not.
fn step_failure(p: &PhaseReport, bound_us: u64) -> Option<String> {
    let f = &p.fast;
    if f.lost > 0 || f.relay_gap_ticks > 0 {
        return Some(format!(
            "{} ticks lost ({} announced by gap notices)",
            f.lost, f.relay_gap_ticks
        ));
    }
    if !f.seq.is_clean() {
        return Some(format!("sequence errors {:?}", f.seq));
    }
    if f.latency_us.p99_us > bound_us {
        return Some(format!(
            "p99 {} µs > bound {bound_us} µs",
            f.latency_us.p99_us
        ));
    }
    if p.achieved_rate < p.target_rate * 0.95 {
        return Some(format!(
            "publisher reached only {:.0}/s of {:.0}/s (ingest backpressure)",
            p.achieved_rate, p.target_rate
        ));
    }
    None
}

/// Fills `clean` and `problems`.
fn judge(r: &mut RunReport) {
    let mut problems = std::mem::take(&mut r.problems);
    if r.connect.failed > 0 || r.connect.welcomed < r.connect.requested as u64 {
        problems.push(format!(
            "{} of {} clients not welcomed ({} failed)",
            r.connect.requested as u64 - r.connect.welcomed.min(r.connect.requested as u64),
            r.connect.requested,
            r.connect.failed
        ));
    }
    if r.closed_early > 0 {
        problems.push(format!(
            "{} clients disconnected during the run",
            r.closed_early
        ));
    }
    let ramp_last_failed =
        r.ramp.is_some() && r.phases.last().is_some_and(|p| p.held == Some(false));
    let n = r.phases.len();
    for (i, p) in r.phases.iter().enumerate() {
        if ramp_last_failed && i + 1 == n && n > 1 {
            continue; // the step that ended the ramp is its result, not a fault
        }
        let f = &p.fast;
        let at = format!("at {:.0}/s", p.target_rate);
        let checks = [
            (f.lost, "ticks lost"),
            (f.extra, "ticks more than expected"),
            (f.seq.gaps, "seq gaps"),
            (f.seq.dups, "duplicates"),
            (f.seq.out_of_order, "out-of-order ticks"),
            (f.relay_gap_ticks, "ticks announced lost by gap notices"),
            (f.decode_errors, "undecodable messages"),
            (f.error_msgs, "error messages"),
            (f.unexpected_symbol, "ticks of unsubscribed symbols"),
            (p.ingest_error_lines, "ingest error lines"),
        ];
        for (count, what) in checks {
            if count > 0 {
                problems.push(format!("{count} {what} {at}"));
            }
        }
        if p.achieved_rate < p.target_rate * 0.95 {
            problems.push(format!(
                "publisher reached only {:.0}/s of {:.0}/s",
                p.achieved_rate, p.target_rate
            ));
        }
    }
    r.clean = problems.is_empty();
    r.problems = problems;
}

fn per_delivery(cpu_s: f64, deliveries: u64) -> f64 {
    if deliveries == 0 {
        0.0
    } else {
        cpu_s * 1e9 / deliveries as f64
    }
}

fn validate(mode: Mode, args: &RunArgs) -> Result<()> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(args.workers > 0, "--workers must be at least 1");
    ensure!(args.symbols > 0, "--symbols must be at least 1");
    ensure!(
        args.symbols_per_client > 0 && args.symbols_per_client <= args.symbols,
        "--symbols-per-client {} must be 1..=--symbols {}",
        args.symbols_per_client,
        args.symbols
    );
    ensure!(
        (1..=250).contains(&args.source_ips),
        "--source-ips {} must be 1..=250",
        args.source_ips
    );
    if let Some(rate) = args.rate {
        ensure!(
            rate >= 0.0 && rate.is_finite(),
            "--rate {rate} must be >= 0"
        );
        ensure!(
            rate > 0.0 || mode == Mode::Crowd,
            "--rate 0 publishes nothing; only crowd mode runs without ticks"
        );
    }
    if args.source_ips > 1 && !args.relay.ip().is_loopback() && args.spawn.is_none() {
        bail!("--source-ips spreads over 127.0.0.x and needs a loopback relay");
    }
    Ok(())
}

/// Raises the open-file soft limit to the hard limit and checks `clients` fit under it.
fn raise_nofile(clients: usize) -> Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    let needed = clients as u64 + 64;
    ensure!(
        needed <= limit,
        "{clients} clients need about {needed} open files, the limit is {limit} \
         (the relay needs as many: stay under it on both sides)"
    );
    Ok(limit)
}

fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
            .expect("the template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[derive(Clone, Copy, Debug, Default)]
struct ProgressTotals {
    welcomed: u64,
    failed: u64,
    closed: u64,
    ticks: u64,
    ticks_fast: u64,
}

impl ProgressTotals {
    fn add(&mut self, p: &WorkerProgress) {
        self.welcomed += p.welcomed.load(Ordering::Relaxed);
        self.failed += p.failed.load(Ordering::Relaxed);
        self.closed += p.closed.load(Ordering::Relaxed);
        self.ticks += p.ticks.load(Ordering::Relaxed);
        self.ticks_fast += p.ticks_fast.load(Ordering::Relaxed);
    }

    fn sum(workers: &[WorkerHandle]) -> Self {
        let mut t = Self::default();
        for w in workers {
            t.add(&w.progress);
        }
        t
    }
}

/// Bounds the whole run: past the deadline it kills the relay it spawned and exits 3.
struct Watchdog {
    disarmed: Arc<AtomicBool>,
}

impl Watchdog {
    fn arm(after: Duration, relay_pid: Option<u32>) -> Self {
        let disarmed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&disarmed);
        let spawned = std::thread::Builder::new()
            .name("lt-watchdog".into())
            .spawn(move || {
                let deadline = Instant::now() + after;
                while Instant::now() < deadline {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                eprintln!("loadtest: run exceeded --max-time {after:?}; aborting");
                if let Some(pid) = relay_pid.and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                // The run is stuck somewhere we cannot unwind from; the relay is gone already.
                #[allow(clippy::exit)]
                std::process::exit(3);
            });
        if let Err(e) = spawned {
            eprintln!("loadtest: no watchdog thread ({e}); the run is not time-bounded");
        }
        Self { disarmed }
    }

    fn disarm(&self) {
        self.disarmed.store(true, Ordering::Relaxed);
    }
}

/// A small deterministic PRNG (SplitMix64) for shuffles that repeat with the same `--seed`.
struct SplitMix(u64);

impl SplitMix {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = (self.next() % (i as u64 + 1)) as usize;
            items.swap(i, j);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations() {
        assert_eq!(parse_duration("20"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("20s"), Ok(Duration::from_secs(20)));
        assert_eq!(parse_duration("500ms"), Ok(Duration::from_millis(500)));
        assert_eq!(parse_duration("2m"), Ok(Duration::from_secs(120)));
        assert_eq!(parse_duration("1.5s"), Ok(Duration::from_millis(1500)));
        assert!(parse_duration("x").is_err());
        assert!(parse_duration("-1").is_err());
    }

    #[test]
    fn mixes() {
        let m: Mix = "json=70,protobuf=20,gzip=10".parse().unwrap();
        assert_eq!(m.0.len(), 3);
        assert_eq!(m.to_string(), "json=70,protobuf=20,gzip=10");
        assert!("json=0".parse::<Mix>().is_err());
        assert!("json".parse::<Mix>().is_err());
        assert!("xml=1".parse::<Mix>().is_err());
        assert!("json=1,json=2".parse::<Mix>().is_err());
    }

    #[test]
    fn plans_are_balanced_and_exact() {
        let mix: Mix = "json=70,protobuf=20,gzip=10".parse().unwrap();
        let slow = SlowArgs {
            slow_fraction: 0.1,
            slow_rcvbuf: 4096,
        };
        let plans = plan_clients(1000, 100, 10, &mix, &slow, 4, 7);
        assert_eq!(
            plans.iter().filter(|p| p.recv_buffer == Some(4096)).count(),
            100
        );
        let mut per_symbol = vec![0; 100];
        for p in &plans {
            let mut s = p.symbols.clone();
            s.dedup();
            assert_eq!(s.len(), 10);
            for &sym in &p.symbols {
                per_symbol[sym as usize] += 1;
            }
        }
        assert!(per_symbol.iter().all(|&n| n == 100));
        let count = |e| plans.iter().filter(|p| p.encoding == e).count();
        assert_eq!(
            (
                count(Encoding::Json),
                count(Encoding::Protobuf),
                count(Encoding::Gzip)
            ),
            (700, 200, 100)
        );
        assert_eq!(plans.iter().filter(|p| p.slow).count(), 100);
        assert_eq!(plans[0].source, Some(Ipv4Addr::new(127, 0, 0, 2)));
        assert_eq!(plans[5].source, Some(Ipv4Addr::new(127, 0, 0, 3)));
        // Encodings do not line up with the symbol rotation.
        let first_block: Vec<Encoding> = plans
            .iter()
            .filter(|p| p.symbols[0] == 0)
            .map(|p| p.encoding)
            .collect();
        assert!(first_block.contains(&Encoding::Json) && first_block.len() == 100);
        assert!(first_block.iter().any(|&e| e != Encoding::Json));
    }

    #[test]
    fn odd_mixes_still_sum_to_n() {
        let mix: Mix = "json=1,protobuf=1,gzip=1".parse().unwrap();
        for n in [1, 2, 5, 7, 100] {
            let none = SlowArgs {
                slow_fraction: 0.0,
                slow_rcvbuf: 0,
            };
            assert_eq!(plan_clients(n, 10, 3, &mix, &none, 1, 1).len(), n);
        }
    }

    #[test]
    fn ramp_step_verdicts() {
        let mut p = PhaseReport {
            target_rate: 1000.0,
            achieved_rate: 1000.0,
            ..PhaseReport::default()
        };
        p.fast.latency_us.p99_us = 900;
        assert_eq!(step_failure(&p, 1000), None);
        p.fast.latency_us.p99_us = 1100;
        assert!(step_failure(&p, 1000).unwrap().contains("p99"));
        p.fast.lost = 3;
        assert!(step_failure(&p, 1000).unwrap().contains("lost"));
    }
}
