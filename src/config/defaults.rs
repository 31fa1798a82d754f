//! Every default, written once: clap shows and applies them, [`Config::for_tests`] uses
//! them, and the reason for each is on its flag's doc in `config.rs`.

use std::net::SocketAddr;

use super::scale::{Role, Scale};
use super::{Config, DeflateConfig, LogFormat, SlowPolicy, WsDeflate, parse_duration};

/// `--listen`.
pub const LISTEN: &str = "127.0.0.1:8080";
/// `--ingest-tcp`.
pub const INGEST_TCP: &str = "127.0.0.1:7001";
/// `--ingest-tcp-protobuf`.
pub const INGEST_TCP_PROTOBUF: &str = "127.0.0.1:7002";
/// `--demo-rate`.
pub const DEMO_RATE: u32 = 1000;
/// `--demo-symbols`.
pub const DEMO_SYMBOLS: usize = 64;
/// `--shards`.
pub const SHARDS: usize = 0;
/// `--outbox-bytes`.
pub const OUTBOX_BYTES: usize = 256 * 1024;
/// `--outbox-max-age`.
pub const OUTBOX_MAX_AGE: &str = "2s";
/// `--send-buffer-bytes`.
pub const SEND_BUFFER_BYTES: usize = 256 * 1024;
/// `--slow-policy`.
pub const SLOW_POLICY: SlowPolicy = SlowPolicy::Disconnect;
/// `--replay-depth`.
pub const REPLAY_DEPTH: usize = 1024;
/// `--replay-budget`.
pub const REPLAY_BUDGET: usize = 1_000_000;
/// `--max-symbols`.
pub const MAX_SYMBOLS: usize = 100_000;
/// `--evict-idle`.
pub const EVICT_IDLE: &str = "10m";
/// `--ping-interval`.
pub const PING_INTERVAL: &str = "15s";
/// `--idle-timeout`.
pub const IDLE_TIMEOUT: &str = "45s";
/// `--max-control-rate`.
pub const MAX_CONTROL_RATE: u32 = 50;
/// `--max-symbols-per-client`.
pub const MAX_SYMBOLS_PER_CLIENT: usize = 1024;
/// `--max-message-bytes`.
pub const MAX_MESSAGE_BYTES: usize = 64 * 1024;
/// `--max-ingest-line`.
pub const MAX_INGEST_LINE: usize = 64 * 1024;
/// `--max-event-bytes`.
pub const MAX_EVENT_BYTES: usize = 16 * 1024;
/// `--max-http-body`.
pub const MAX_HTTP_BODY: usize = 1024 * 1024;
/// `--body-timeout`.
pub const BODY_TIMEOUT: &str = "10s";
/// `--max-connections`.
pub const MAX_CONNECTIONS: usize = 19_000;
/// `--max-connections-per-ip`.
pub const MAX_CONNECTIONS_PER_IP: usize = 0;
/// `--handshake-timeout`.
pub const HANDSHAKE_TIMEOUT: &str = "5s";
/// `--drain-timeout`.
pub const DRAIN_TIMEOUT: &str = "3s";
/// `--jwks-refresh`.
pub const JWKS_REFRESH: &str = "5m";
/// `--jwt-leeway`.
pub const JWT_LEEWAY: &str = "30s";
/// `--max-connections-per-user`.
pub const MAX_CONNECTIONS_PER_USER: usize = 0;
/// `--log`.
pub const LOG: &str = "info";
/// `--replay-speed`.
pub const REPLAY_SPEED: f64 = 1.0;
/// `--log-format`.
pub const LOG_FORMAT: LogFormat = LogFormat::Text;
/// `--ws-deflate`.
pub const WS_DEFLATE: WsDeflate = WsDeflate::Off;
/// `--ws-deflate-min-bytes`.
pub const WS_DEFLATE_MIN_BYTES: usize = 0;
/// `--ws-deflate-max-clients`.
pub const WS_DEFLATE_MAX_CLIENTS: usize = 1000;
/// `--role`.
pub const ROLE: Role = Role::All;
/// `--nats-stream`.
pub const NATS_STREAM: &str = "tickrelay";
/// `--nats-linger`.
pub const NATS_LINGER: &str = "5s";

impl Config {
    /// A config for in-process tests: free ports on loopback, two shards, no demo feed.
    pub fn for_tests() -> Self {
        let any = SocketAddr::from(([127, 0, 0, 1], 0));
        let duration =
            |text| parse_duration(text).expect("the default durations are valid humantime");
        Self {
            listen: any,
            ingest_tcp: any,
            ingest_tcp_protobuf: any,
            demo: false,
            demo_rate: DEMO_RATE,
            demo_symbols: DEMO_SYMBOLS,
            shards: 2,
            pin_shards: false,
            outbox_bytes: OUTBOX_BYTES,
            outbox_max_age: duration(OUTBOX_MAX_AGE),
            slow_policy: SLOW_POLICY,
            send_buffer_bytes: SEND_BUFFER_BYTES,
            replay_depth: REPLAY_DEPTH,
            replay_budget: REPLAY_BUDGET,
            max_symbols: MAX_SYMBOLS,
            evict_idle: duration(EVICT_IDLE),
            ping_interval: duration(PING_INTERVAL),
            idle_timeout: duration(IDLE_TIMEOUT),
            max_control_rate: MAX_CONTROL_RATE,
            conformance_echo: false,
            max_symbols_per_client: MAX_SYMBOLS_PER_CLIENT,
            max_message_bytes: MAX_MESSAGE_BYTES,
            max_ingest_line: MAX_INGEST_LINE,
            max_event_bytes: MAX_EVENT_BYTES,
            max_http_body: MAX_HTTP_BODY,
            body_timeout: duration(BODY_TIMEOUT),
            max_connections: MAX_CONNECTIONS,
            max_connections_per_ip: MAX_CONNECTIONS_PER_IP,
            handshake_timeout: duration(HANDSHAKE_TIMEOUT),
            drain_timeout: duration(DRAIN_TIMEOUT),
            jwt_secret_file: None,
            jwt_public_key_file: None,
            jwks_file: None,
            jwks_url: None,
            jwks_refresh: duration(JWKS_REFRESH),
            jwt_audience: None,
            jwt_issuer: None,
            jwt_leeway: duration(JWT_LEEWAY),
            allow_anonymous: false,
            max_connections_per_user: MAX_CONNECTIONS_PER_USER,
            admin_token_file: None,
            admin_listen: None,
            admin_allow_host: Vec::new(),
            allowed_origin: Vec::new(),
            tls_cert: None,
            tls_key: None,
            log: LOG.into(),
            log_format: LOG_FORMAT,
            record: None,
            replay: None,
            replay_speed: REPLAY_SPEED,
            deflate: DeflateConfig::new(),
            scale: Scale::single_box(),
        }
    }
}
