//! [`Config`]: every knob of the relay, with its unit, default and the reason for the default.
//!
//! Parsed once by clap in `main.rs` (through [`settings`], which merges `--config FILE` and
//! `TICKRELAY_*` variables under the flags) and checked by [`Config::validate`]; tests build
//! it in code with [`Config::for_tests`].

pub mod book;
mod check;
pub mod defaults;
pub mod deflate;
pub mod derived;
mod error;
mod exposure;
pub mod reloadable;
pub mod scale;
pub mod settings;
mod values;

pub use error::ConfigError;

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use clap::Parser;

pub use book::BookConfig;
pub use deflate::DeflateConfig;
pub use derived::{BarIntervals, DerivedConfig};
pub use reloadable::Reloadable;
pub use scale::Scale;
pub use values::{LogFormat, Role, SlowPolicy, WsDeflate, parse_addr, parse_duration, parse_size};

/// The relay's configuration.
#[derive(Clone, Debug, Parser)]
#[command(
    name = "tickrelay",
    version,
    about = "Market-data edge relay: ticks in, WebSocket fan-out"
)]
pub struct Config {
    /// HTTP and WebSocket address (`/ws`, `/health`, `/stats`, ...).
    #[arg(long, default_value = defaults::LISTEN, value_parser = parse_addr)]
    pub listen: SocketAddr,

    /// TCP ingest address for newline-delimited JSON ticks.
    #[arg(long, default_value = defaults::INGEST_TCP, value_parser = parse_addr)]
    pub ingest_tcp: SocketAddr,

    /// TCP ingest address for length-delimited protobuf ticks (varint length + `Tick`).
    #[arg(long, default_value = defaults::INGEST_TCP_PROTOBUF, value_parser = parse_addr)]
    pub ingest_tcp_protobuf: SocketAddr,

    /// Run the built-in simulated market (a random walk of trades and quotes).
    #[arg(long)]
    pub demo: bool,

    /// Ticks per second the simulated market publishes, over all its symbols.
    #[arg(long, default_value_t = defaults::DEMO_RATE)]
    pub demo_rate: u32,

    /// How many symbols the simulated market quotes (at least 50 so fan-out is realistic).
    #[arg(long, default_value_t = defaults::DEMO_SYMBOLS)]
    pub demo_symbols: usize,

    /// Fan-out shards (one OS thread each). 0 (the default): one per CPU this process may
    /// use (its affinity mask and cgroup quota) less one for the sequencer, ingest and the
    /// accept loop, at least one. On a box shared with other work (or with its clients) a
    /// shard per core starves those threads; see docs/perf/REPORT.md.
    #[arg(long, default_value_t = defaults::SHARDS)]
    pub shards: usize,

    /// Pin each shard thread to its own core. Off by default: a pinned shard cannot move
    /// away from a core that a busy neighbour (a client, the sequencer) also needs. Worth
    /// turning on for a box dedicated to the relay.
    #[arg(long)]
    pub pin_shards: bool,

    /// Pending outbound bytes a client may hold before its slow-consumer policy applies.
    /// 256 KiB is ~1,500 JSON ticks: a second of a busy symbol set, far beyond a healthy client.
    #[arg(long, default_value_t = defaults::OUTBOX_BYTES, value_parser = parse_size)]
    pub outbox_bytes: usize,

    /// Age of a client's oldest pending frame before its slow-consumer policy applies.
    #[arg(long, default_value = defaults::OUTBOX_MAX_AGE, value_parser = parse_duration)]
    pub outbox_max_age: Duration,

    /// Kernel send buffer per client socket, in bytes (Linux doubles it; 0 lets the kernel
    /// autotune, up to 4 MiB per socket). 256 KiB holds ~3,500 ticks, seconds of any one
    /// client's feed, yet caps kernel memory per stuck client and lets the outbox budget,
    /// not the kernel, decide within a second that a client is slow.
    #[arg(long, default_value_t = defaults::SEND_BUFFER_BYTES, value_parser = parse_size)]
    pub send_buffer_bytes: usize,

    /// Default slow-consumer policy (a client may choose with `?slow=`).
    #[arg(long, value_enum, default_value_t = defaults::SLOW_POLICY)]
    pub slow_policy: SlowPolicy,

    /// Ticks kept per symbol for `resume` (the replay ring). Memory is about
    /// depth × symbols × 400 bytes (the tick and its encoded frames): 1,024 × 64 demo
    /// symbols ≈ 26 MiB.
    #[arg(long, default_value_t = defaults::REPLAY_DEPTH)]
    pub replay_depth: usize,

    /// Ticks kept for `resume` over all symbols together. When depth × symbols would exceed
    /// it, every ring keeps budget ÷ symbols ticks (at least the last value), so memory stays
    /// bounded however many symbols ingest creates: ~400 bytes a tick, shared by the shards,
    /// so the default bounds the rings near 400 MiB.
    #[arg(long, default_value_t = defaults::REPLAY_BUDGET)]
    pub replay_budget: usize,

    /// Most distinct symbols and channels the relay tracks, so hostile ingest cannot grow
    /// memory without bound. At the limit, keys nobody subscribes to by name that have been
    /// quiet for `--evict-idle` are evicted to make room; an item of a new key that still
    /// finds no room is refused (`symbol_limit`, answered to its publisher).
    #[arg(long, default_value_t = defaults::MAX_SYMBOLS)]
    pub max_symbols: usize,

    /// How long a symbol or channel must have been quiet (and subscribed by name by nobody)
    /// before it may be evicted at `--max-symbols`. 10 minutes keeps every key a market
    /// touches in a session's normal pauses, and frees a table filled by junk in minutes.
    #[arg(long, default_value = defaults::EVICT_IDLE, value_parser = parse_duration)]
    pub evict_idle: Duration,

    /// How often the relay pings each client (WebSocket ping frame).
    #[arg(long, default_value = defaults::PING_INTERVAL, value_parser = parse_duration)]
    pub ping_interval: Duration,

    /// A client that sends nothing (not even a pong) for this long is closed with 4009.
    #[arg(long, default_value = defaults::IDLE_TIMEOUT, value_parser = parse_duration)]
    pub idle_timeout: Duration,

    /// Control messages per second a client may send (token bucket, burst of the same size).
    #[arg(long, default_value_t = defaults::MAX_CONTROL_RATE)]
    pub max_control_rate: u32,

    /// Serve `/echo`: a WebSocket endpoint that echoes messages through the same stack and
    /// limits as `/ws`, for conformance fuzzers such as Autobahn|Testsuite. Off by default.
    #[arg(long)]
    pub conformance_echo: bool,

    /// Most symbols one client may subscribe to (`*` counts as one).
    #[arg(long, default_value_t = defaults::MAX_SYMBOLS_PER_CLIENT)]
    pub max_symbols_per_client: usize,

    /// Largest client message (one frame, or a reassembled fragmented message), in bytes.
    /// Control messages are small; 64 KiB leaves room for a 1,024-symbol subscribe.
    #[arg(long, default_value_t = defaults::MAX_MESSAGE_BYTES, value_parser = parse_size)]
    pub max_message_bytes: usize,

    /// The rate tiers a client may pick per subscription (`SYMBOL@TIER`, `CHANNEL@TIER`):
    /// at most one frame per interval with the newest value and what it stands for.
    /// Comma-separated durations, named as humantime writes them (`100ms`, `1s`, `5m`).
    /// The default matches the exchanges' fixed tiers (100 ms and 1 s depth streams, 5 s
    /// tickers) and a screen's refresh (250 ms).
    #[arg(long, value_delimiter = ',', default_value = defaults::RATE_TIERS, value_parser = parse_duration)]
    pub rate_tiers: Vec<Duration>,

    /// Largest frame a batching client (`?batch=on`) receives, in payload bytes: the
    /// messages pending at a write go out as one frame up to this size (always at least one
    /// message). 64 KiB is ~400 JSON ticks, far more than a client's share of one write at
    /// any rate measured, yet small enough that one frame never holds a client's reader for
    /// long.
    #[arg(long, default_value_t = defaults::BATCH_MAX_BYTES, value_parser = parse_size)]
    pub batch_max_bytes: usize,

    /// Longest accepted ingest line or protobuf message, in bytes.
    #[arg(long, default_value_t = defaults::MAX_INGEST_LINE, value_parser = parse_size)]
    pub max_ingest_line: usize,

    /// Largest event payload (`data`, as published JSON), in bytes. Events are headlines,
    /// alerts and status changes; 16 KiB holds a long article summary, and keeps one event
    /// at 1/16 of a client's outbox budget so a burst of them is not mistaken for slowness.
    #[arg(long, default_value_t = defaults::MAX_EVENT_BYTES, value_parser = parse_size)]
    pub max_event_bytes: usize,

    /// Largest accepted HTTP request body (`POST /api/publish`), in bytes.
    #[arg(long, default_value_t = defaults::MAX_HTTP_BODY, value_parser = parse_size)]
    pub max_http_body: usize,

    /// How long a request body (`POST /api/publish`, `/api/events`) may take to arrive once
    /// its head has: a body trickled a byte at a time would hold the connection. 10 s moves
    /// `--max-http-body` (1 MiB) over a 1 Mbit/s link.
    #[arg(long, default_value = defaults::BODY_TIMEOUT, value_parser = parse_duration)]
    pub body_timeout: Duration,

    /// Most WebSocket/HTTP connections held at once. The machines cap open files at 20,000
    /// per process; 19,000 leaves room for ingest, listeners and the runtime.
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS)]
    pub max_connections: usize,

    /// Most connections from one source IP (0: no limit).
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS_PER_IP)]
    pub max_connections_per_ip: usize,

    /// How long a client may take to send its HTTP request head (slowloris guard).
    #[arg(long, default_value = defaults::HANDSHAKE_TIMEOUT, value_parser = parse_duration)]
    pub handshake_timeout: Duration,

    /// How long to keep flushing to a client before closing its socket: on shutdown, and
    /// after its close or a fatal protocol error.
    #[arg(long, default_value = defaults::DRAIN_TIMEOUT, value_parser = parse_duration)]
    pub drain_timeout: Duration,

    /// HS256 secret for client tokens (a file holding at least 32 bytes; surrounding
    /// whitespace is trimmed). Any key flag turns auth on: clients then need a valid JWT.
    #[arg(long)]
    pub jwt_secret_file: Option<PathBuf>,

    /// PEM public key for client tokens: RSA (RS256), EC P-256 (ES256) or Ed25519 (EdDSA);
    /// the key accepts that one algorithm only.
    #[arg(long)]
    pub jwt_public_key_file: Option<PathBuf>,

    /// JWKS file of token keys, chosen by `kid`; re-read every `--jwks-refresh`.
    #[arg(long)]
    pub jwks_file: Option<PathBuf>,

    /// JWKS URL (plain `http://`, e.g. a local identity sidecar), fetched at start and every
    /// `--jwks-refresh`, so a rotated key is accepted without a restart.
    #[arg(long)]
    pub jwks_url: Option<String>,

    /// How often the JWKS file or URL is reloaded. Identity providers publish a new key
    /// well before signing with it; 5 minutes picks it up long before first use.
    #[arg(long, default_value = defaults::JWKS_REFRESH, value_parser = parse_duration)]
    pub jwks_refresh: Duration,

    /// Required `aud` claim of client tokens (unchecked when not given).
    #[arg(long)]
    pub jwt_audience: Option<String>,

    /// Required `iss` claim of client tokens (unchecked when not given).
    #[arg(long)]
    pub jwt_issuer: Option<String>,

    /// Clock skew allowed on `exp`. 30 s covers NTP-synced hosts without keeping a leaked,
    /// expired token useful for long.
    #[arg(long, default_value = defaults::JWT_LEEWAY, value_parser = parse_duration)]
    pub jwt_leeway: Duration,

    /// With auth on, let clients without a token read public symbols and channels (never a
    /// `user:` channel). A present but invalid token is still refused.
    #[arg(long)]
    pub allow_anonymous: bool,

    /// Most connections one token subject may hold at once (0: no limit).
    #[arg(long, default_value_t = defaults::MAX_CONNECTIONS_PER_USER)]
    pub max_connections_per_user: usize,

    /// File holding the bearer token of the admin routes (`POST /api/publish`,
    /// `POST /api/events`, `/api/sessions`); at least 32 bytes. Without it those routes
    /// answer loopback peers only, so the demo works on one machine and nothing else can
    /// publish.
    #[arg(long)]
    pub admin_token_file: Option<PathBuf>,

    /// Serve the admin routes, `/stats` and `/metrics` on this address instead of
    /// `--listen` (where they then answer 404), e.g. an address only operators reach.
    #[arg(long, value_parser = parse_addr)]
    pub admin_listen: Option<SocketAddr>,

    /// Without `--admin-token-file`, a `Host` the admin routes accept besides `localhost`
    /// and loopback addresses with the relay's port (repeat for several), written as the
    /// header carries it, e.g. `relay.internal:8080`. Other names are refused: a page that
    /// rebinds its own name to 127.0.0.1 must not become an operator.
    #[arg(long)]
    pub admin_allow_host: Vec<String>,

    /// A browser `Origin` allowed to open a WebSocket (repeat for several, e.g.
    /// `https://app.example.com`). When any is given, an upgrade from another Origin gets
    /// 403; requests without an Origin (not from a browser page) are unaffected.
    #[arg(long)]
    pub allowed_origin: Vec<String>,

    /// PEM certificate chain: serve `wss://` and `https://` on `--listen` (with
    /// `--tls-key`). Reloaded on SIGHUP or when the file changes, without a restart.
    #[arg(long, requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// PEM private key of `--tls-cert` (PKCS#8, PKCS#1 or SEC1).
    #[arg(long, requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Tracing filter, e.g. `info` or `tickrelay=debug` (`RUST_LOG` sets it when neither
    /// this flag nor `TICKRELAY_LOG` does). Reloads on SIGHUP.
    #[arg(long, default_value = defaults::LOG)]
    pub log: String,

    /// Write every sequenced tick to this file as NDJSON (the JSON tick a json client
    /// receives, one per line), for `--replay` later. The file is truncated at start-up.
    #[arg(long, value_name = "FILE")]
    pub record: Option<PathBuf>,

    /// Play a `--record`ed file (or plain NDJSON ticks) in as a source, keeping the recorded
    /// gaps between ticks (scaled by `--replay-speed`); `ts_ns` is kept, seqs are new.
    #[arg(long, value_name = "FILE")]
    pub replay: Option<PathBuf>,

    /// How fast `--replay` plays: 1 is the recorded pace, 10 ten times faster, 0 as fast
    /// as the relay takes ticks.
    #[arg(long, default_value_t = defaults::REPLAY_SPEED)]
    pub replay_speed: f64,

    /// Log line format on stderr: `text` for people (colours only on a terminal), `json`
    /// (one object per line) for log collectors.
    #[arg(long, value_enum, default_value_t = defaults::LOG_FORMAT)]
    pub log_format: LogFormat,

    /// permessage-deflate: `--ws-deflate`, `--ws-deflate-min-bytes`, `--ws-deflate-max-clients`.
    #[command(flatten)]
    pub deflate: DeflateConfig,
    /// Role and NATS (docs/SCALING.md).
    #[command(flatten)]
    pub scale: Scale,
    /// Bars and 24-hour tickers (`--bar-*`, `--derived-interval`).
    #[command(flatten)]
    pub derived: DerivedConfig,
    /// Order books: `--book-depths`, `--book-max-levels`, the checkpoint cadence.
    #[command(flatten)]
    pub book: BookConfig,
}

impl Config {
    /// A config for in-process tests: the command line's defaults (so they cannot drift),
    /// with free ports on loopback and two shards.
    pub fn for_tests() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let defaults =
            Self::try_parse_from(["tickrelay"]).expect("every flag has a default or is optional");
        Self {
            listen: any,
            ingest_tcp: any,
            ingest_tcp_protobuf: any,
            shards: 2,
            ..defaults
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn for_tests_uses_the_same_defaults_as_the_command_line() {
        let parsed = Config::try_parse_from(["tickrelay"]).expect("no flags parse");
        let tests = Config::for_tests();
        let same_but_test_overrides = Config {
            listen: tests.listen,
            ingest_tcp: tests.ingest_tcp,
            ingest_tcp_protobuf: tests.ingest_tcp_protobuf,
            shards: tests.shards,
            ..parsed
        };
        assert_eq!(format!("{same_but_test_overrides:?}"), format!("{tests:?}"));
        assert!(Config::for_tests().validate().is_ok());
    }
}
