//! [`Config`]: every knob of the relay, with its unit, default and the reason for the default.
//!
//! Parsed once by clap in `main.rs` and checked by [`Config::validate`]; tests build it in code
//! with [`Config::for_tests`].

use std::net::SocketAddr;
use std::time::Duration;

use clap::{Parser, ValueEnum};

/// What to do when a client's outbound budget is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlowPolicy {
    /// Close the connection with code 4008 "slow consumer"; the client may reconnect and resume.
    Disconnect,
    /// Keep only the latest tick per symbol while the client lags, then report the skipped seqs.
    Conflate,
}

impl SlowPolicy {
    /// The name used in the query string and in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnect => "disconnect",
            Self::Conflate => "conflate",
        }
    }
}

/// The relay's configuration.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "tickrelay",
    version,
    about = "Market-data edge relay: ticks in, WebSocket fan-out"
)]
pub struct Config {
    /// HTTP and WebSocket address (`/ws`, `/health`, `/stats`, ...).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,

    /// TCP ingest address for newline-delimited JSON ticks.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub ingest_tcp: SocketAddr,

    /// TCP ingest address for length-delimited protobuf ticks (varint length + `Tick`).
    #[arg(long, default_value = "127.0.0.1:7002")]
    pub ingest_tcp_protobuf: SocketAddr,

    /// Run the built-in simulated market (a random walk of trades and quotes).
    #[arg(long)]
    pub demo: bool,

    /// Ticks per second the simulated market publishes, over all its symbols.
    #[arg(long, default_value_t = 1000)]
    pub demo_rate: u32,

    /// How many symbols the simulated market quotes (at least 50 so fan-out is realistic).
    #[arg(long, default_value_t = 64)]
    pub demo_symbols: usize,

    /// Fan-out shards (one pinned OS thread each); 0 means one per core.
    #[arg(long, default_value_t = 0)]
    pub shards: usize,

    /// Pending outbound bytes a client may hold before its slow-consumer policy applies.
    /// 256 KiB is ~1,500 JSON ticks: a second of a busy symbol set, far beyond a healthy client.
    #[arg(long, default_value_t = 256 * 1024)]
    pub outbox_bytes: usize,

    /// Age of a client's oldest pending frame before its slow-consumer policy applies.
    #[arg(long, default_value = "2s", value_parser = parse_duration)]
    pub outbox_max_age: Duration,

    /// Kernel send buffer per client socket, in bytes (Linux doubles it; 0 lets the kernel
    /// autotune, up to 4 MiB per socket). 256 KiB holds ~3,500 ticks, seconds of any one
    /// client's feed, yet caps kernel memory per stuck client and lets the outbox budget,
    /// not the kernel, decide within a second that a client is slow.
    #[arg(long, default_value_t = 256 * 1024)]
    pub send_buffer_bytes: usize,

    /// Default slow-consumer policy (a client may choose with `?slow=`).
    #[arg(long, value_enum, default_value_t = SlowPolicy::Disconnect)]
    pub slow_policy: SlowPolicy,

    /// Ticks kept per symbol for `resume` (the replay ring). Memory is about
    /// depth × symbols × 400 bytes (the tick and its encoded frames): 1,024 × 64 demo
    /// symbols ≈ 26 MiB.
    #[arg(long, default_value_t = 1024)]
    pub replay_depth: usize,

    /// Ticks kept for `resume` over all symbols together. When depth × symbols would exceed
    /// it, every ring keeps budget ÷ symbols ticks (at least the last value), so memory stays
    /// bounded however many symbols ingest creates: ~400 bytes a tick, shared by the shards,
    /// so the default bounds the rings near 400 MiB.
    #[arg(long, default_value_t = 1_000_000)]
    pub replay_budget: usize,

    /// Most distinct symbols the relay tracks; ticks of further new symbols are refused
    /// (counted as `symbol_limit`), so hostile ingest cannot grow memory without bound.
    #[arg(long, default_value_t = 100_000)]
    pub max_symbols: usize,

    /// How often the relay pings each client (WebSocket ping frame).
    #[arg(long, default_value = "15s", value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A client that sends nothing (not even a pong) for this long is closed with 4009.
    #[arg(long, default_value = "45s", value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Control messages per second a client may send (token bucket, burst of the same size).
    #[arg(long, default_value_t = 50)]
    pub max_control_rate: u32,

    /// Serve `/echo`: a WebSocket endpoint that echoes messages through the same stack and
    /// limits as `/ws`, for conformance fuzzers such as Autobahn|Testsuite. Off by default.
    #[arg(long)]
    pub conformance_echo: bool,

    /// Most symbols one client may subscribe to (`*` counts as one).
    #[arg(long, default_value_t = 1024)]
    pub max_symbols_per_client: usize,

    /// Largest client message (one frame, or a reassembled fragmented message), in bytes.
    /// Control messages are small; 64 KiB leaves room for a 1,024-symbol subscribe.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_message_bytes: usize,

    /// Longest accepted ingest line or protobuf message, in bytes.
    #[arg(long, default_value_t = 64 * 1024)]
    pub max_ingest_line: usize,

    /// Largest accepted HTTP request body (`POST /api/publish`), in bytes.
    #[arg(long, default_value_t = 1024 * 1024)]
    pub max_http_body: usize,

    /// Most WebSocket/HTTP connections held at once. The machines cap open files at 20,000
    /// per process; 19,000 leaves room for ingest, listeners and the runtime.
    #[arg(long, default_value_t = 19_000)]
    pub max_connections: usize,

    /// Most connections from one source IP (0: no limit).
    #[arg(long, default_value_t = 0)]
    pub max_connections_per_ip: usize,

    /// How long a client may take to send its HTTP request head (slowloris guard).
    #[arg(long, default_value = "5s", value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// On shutdown, how long to keep flushing to clients before closing their sockets.
    #[arg(long, default_value = "3s", value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// Tracing filter (as `RUST_LOG`), e.g. `info` or `tickrelay=debug`.
    #[arg(long, default_value = "info")]
    pub log: String,
}

impl Config {
    /// A config for in-process tests: free ports on loopback, two shards, no demo feed.
    pub fn for_tests() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        Self {
            listen: any,
            ingest_tcp: any,
            ingest_tcp_protobuf: any,
            demo: false,
            demo_rate: 1000,
            demo_symbols: 64,
            shards: 2,
            outbox_bytes: 256 * 1024,
            outbox_max_age: Duration::from_secs(2),
            slow_policy: SlowPolicy::Disconnect,
            send_buffer_bytes: 256 * 1024,
            replay_depth: 1024,
            replay_budget: 1_000_000,
            max_symbols: 100_000,
            ping_interval: Duration::from_secs(15),
            idle_timeout: Duration::from_secs(45),
            max_control_rate: 50,
            conformance_echo: false,
            max_symbols_per_client: 1024,
            max_message_bytes: 64 * 1024,
            max_ingest_line: 64 * 1024,
            max_http_body: 1024 * 1024,
            max_connections: 19_000,
            max_connections_per_ip: 0,
            handshake_timeout: Duration::from_secs(5),
            drain_timeout: Duration::from_secs(3),
            log: "info".into(),
        }
    }

    /// The number of shards to run: `--shards`, or one per core when it is 0.
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }

    /// Checks values clap cannot: returns the offending flag and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--outbox-bytes", self.outbox_bytes),
            ("--max-symbols-per-client", self.max_symbols_per_client),
            ("--max-message-bytes", self.max_message_bytes),
            ("--max-ingest-line", self.max_ingest_line),
            ("--max-connections", self.max_connections),
            ("--demo-symbols", self.demo_symbols),
            ("--replay-depth", self.replay_depth),
            ("--replay-budget", self.replay_budget),
            ("--max-symbols", self.max_symbols),
            ("--max-control-rate", self.max_control_rate as usize),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid {
                flag,
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if self.ping_interval.is_zero() || self.idle_timeout < self.ping_interval {
            return Err(ConfigError::Invalid {
                flag: "--idle-timeout",
                value: format!("{:?}", self.idle_timeout),
                reason: "must be at least --ping-interval (and the interval above zero)",
            });
        }
        if self.shards > 256 {
            return Err(ConfigError::Invalid {
                flag: "--shards",
                value: self.shards.to_string(),
                reason: "at most 256",
            });
        }
        Ok(())
    }
}

/// A flag value that parsed but makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `flag` has `value`, which is wrong for `reason`.
    #[error("{flag} {value}: {reason}")]
    Invalid {
        /// The flag, as typed on the command line.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}

/// Parses `500ms`, `5s`, `2m` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 5s or 500ms"))
}
