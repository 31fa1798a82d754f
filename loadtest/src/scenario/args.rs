//! The command-line options of the modes, their parsers, and the checks made once at startup.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use anyhow::{Result, bail, ensure};

use crate::client::{ClientProfile, Encoding};
use crate::publisher::IngestFormat;
use crate::reference::Server;

/// Options shared by every mode.
#[derive(Clone, Debug, clap::Args)]
pub struct RunArgs {
    /// Relay WebSocket/HTTP address (ignored with --spawn).
    #[arg(long, default_value_t = DEFAULT_RELAY)]
    pub relay: SocketAddr,
    /// More relays to spread the clients over, round-robin with --relay (repeat the flag):
    /// the edges of a scaled-out deployment (docs/SCALING.md), publishing into the
    /// sequencer at --ingest. Not with --spawn.
    #[arg(long, value_name = "ADDR")]
    pub also_relay: Vec<SocketAddr>,
    /// Relay JSON-lines ingest address (ignored with --spawn). Default 127.0.0.1:7001, and
    /// required when --relay is not the default: ticks must reach the relay under test.
    #[arg(long)]
    pub ingest: Option<SocketAddr>,
    /// Relay protobuf ingest address (ignored with --spawn). Default 127.0.0.1:7002, and
    /// required with `--ingest-format protobuf` when --relay is not the default.
    #[arg(long)]
    pub ingest_protobuf: Option<SocketAddr>,
    /// Ingest wire format.
    #[arg(long, value_enum, default_value = "json")]
    pub ingest_format: IngestFormat,
    /// The publisher says hello (docs/PROTOCOL.md, "Acknowledged ingest"): the relay acks
    /// every tick once stored, and the report gives each batch's time from its write to its
    /// ack. JSON ingest into the relay only.
    #[arg(long)]
    pub acks: bool,
    /// Launch the relay binary at PATH (default: `tickrelay` next to this binary) on free ports.
    /// With `--server floor|naive`, this harness binary is launched as that server instead.
    // clap's PathBuf parser refuses the empty default of a bare `--spawn`; take it as text.
    #[arg(
        long,
        value_name = "PATH",
        num_args = 0..=1,
        default_missing_value = "",
        value_parser = clap::builder::TypedValueParser::map(
            clap::builder::OsStringValueParser::new(),
            PathBuf::from
        )
    )]
    pub spawn: Option<PathBuf>,
    /// Which server the run measures: the relay, or a reference server (JSON only).
    #[arg(long, value_enum, default_value = "relay")]
    pub server: Server,
    /// The relay's clients ask for several messages per frame (`&batch=on`): NDJSON text
    /// frames, `ServerBatch` protobuf frames, gzip frames inflating to NDJSON.
    #[arg(long, value_enum, default_value = "off")]
    pub batch: Batch,
    /// The nats-server binary `--server nats --spawn` starts.
    #[arg(long, value_name = "PATH", default_value = "nats-server")]
    pub nats_server: PathBuf,
    /// Client cost per message: `light` (default; `heavy` in `compare`) or `heavy` (at least
    /// 2 workers, one read per frame, full serde_json parse).
    #[arg(long, value_enum)]
    pub client_profile: Option<ClientProfile>,
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
    /// What the `tiers` and `books` modes add to a run (never on the command line).
    #[arg(skip)]
    pub feeds: Feeds,
}

/// Clients beside the tick clients, and what the publisher writes: set by the `tiers` and
/// `books` modes for each of their runs.
#[derive(Clone, Debug, Default)]
pub struct Feeds {
    /// The last this many of `--clients` follow their symbols at `tier` (JSON), uncounted as
    /// ticks.
    pub tier_clients: usize,
    /// The rate tier they follow (`1s`).
    pub tier: String,
    /// How long after the drain a tier client's last frame may take (one interval).
    pub tier_interval: std::time::Duration,
    /// Books instead of ticks: every client follows its symbols' books.
    pub books: Option<BookLoad>,
}

/// The order books of a `books` run.
#[derive(Clone, Copy, Debug)]
pub struct BookLoad {
    /// Levels a side of each book's snapshot.
    pub levels: u32,
    /// The first this many clients read `book:SYM:depth`; the others every level.
    pub depth_clients: usize,
    /// Their depth (one of the relay's `--book-depths`).
    pub depth: u32,
}

/// Whether the relay's clients ask for several messages per frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Batch {
    On,
    Off,
}

/// Ramp options.
#[derive(Clone, Debug, clap::Args)]
pub struct RampArgs {
    /// Stop doubling past this rate.
    #[arg(long, default_value_t = 1_024_000.0)]
    pub max_rate: f64,
    /// Each step's rate is the last one's times this (`1.4142` for √2 steps).
    #[arg(long, default_value_t = 2.0)]
    pub step_factor: f64,
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
            step_factor: 2.0,
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

/// Encoding weights, `json=70,protobuf=20,gzip=10`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Mix(pub Vec<(Encoding, u32)>);

impl Mix {
    /// JSON only: tier and book clients read their frames from JSON.
    pub fn json_only() -> Self {
        Self(vec![(Encoding::Json, 1)])
    }
}

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

/// `--relay` when not given.
pub(super) const DEFAULT_RELAY: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    8080,
));
/// `--ingest` when not given (only with the default `--relay`).
pub(super) const DEFAULT_INGEST: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7001,
));
/// `--ingest-protobuf` when not given (only with the default `--relay`).
pub(super) const DEFAULT_INGEST_PROTOBUF: SocketAddr = SocketAddr::V4(std::net::SocketAddrV4::new(
    std::net::Ipv4Addr::LOCALHOST,
    7002,
));

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

impl RunArgs {
    /// The options as a run uses them, once checked: the client profile decided (`light`
    /// unless given) and a heavy profile's at least 2 workers.
    pub(super) fn checked(&self, mode: Mode) -> Result<Self> {
        validate(mode, self)?;
        let profile = self.client_profile.unwrap_or_default();
        Ok(Self {
            client_profile: Some(profile),
            workers: match profile {
                ClientProfile::Light => self.workers,
                ClientProfile::Heavy => self.workers.max(2),
            },
            ..self.clone()
        })
    }

    /// The profile `checked` decided.
    pub(super) fn profile(&self) -> ClientProfile {
        self.client_profile.unwrap_or_default()
    }
}

fn validate(mode: Mode, args: &RunArgs) -> Result<()> {
    ensure!(args.clients > 0, "--clients must be at least 1");
    ensure!(
        args.also_relay.is_empty() || args.spawn.is_none(),
        "--also-relay names running relays: not with --spawn"
    );
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
    if args.spawn.is_none() && args.relay != DEFAULT_RELAY {
        let (given, flag) = match args.ingest_format {
            IngestFormat::Json => (args.ingest.is_some(), "--ingest"),
            IngestFormat::Protobuf => (args.ingest_protobuf.is_some(), "--ingest-protobuf"),
        };
        ensure!(
            given || args.rate == Some(0.0),
            "--relay {} without {flag}: the ticks would go to whatever listens on the default \
             ingest port, not to that relay; give {flag} ADDR (the relay's --ingest-tcp)",
            args.relay
        );
    }
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
    ensure!(
        args.batch == Batch::Off || args.server == Server::Relay,
        "--batch on asks the relay for several messages per frame; --server {} {}",
        args.server.name(),
        if args.server == Server::Nats {
            "batches on its own"
        } else {
            "sends one message per frame"
        }
    );
    if !args.server.is_relay() {
        ensure!(
            args.mix
                .0
                .iter()
                .all(|&(e, w)| e == Encoding::Json || w == 0),
            "--server {} speaks JSON only: give --mix json=1 (not {})",
            args.server.name(),
            args.mix
        );
        ensure!(
            args.ingest_format == IngestFormat::Json,
            "--server {} has JSON ingest only: drop --ingest-format",
            args.server.name()
        );
    }
    ensure!(
        !args.acks
            || (args.server.is_relay()
                && args.ingest_format == IngestFormat::Json
                && args.feeds.books.is_none()),
        "--acks is the relay's acknowledged JSON ingest of ticks: not with --server {}, \
         protobuf ingest or books",
        args.server.name()
    );
    if args.source_ips > 1 && !args.relay.ip().is_loopback() && args.spawn.is_none() {
        bail!("--source-ips spreads over 127.0.0.x and needs a loopback relay");
    }
    Ok(())
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
    /// The name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Steady => "steady",
            Self::Ramp => "ramp",
            Self::Crowd => "crowd",
            Self::Slow => "slow",
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
}
