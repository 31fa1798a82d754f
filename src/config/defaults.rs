//! Every default, written once: clap shows and applies them (and so
//! [`Config::for_tests`](super::Config::for_tests), which starts from what clap gives), and
//! the reason for each is on its flag's doc in `config.rs`.

use super::values::{LogFormat, Role, SlowPolicy, WsDeflate};

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
/// `--rate-tiers`.
pub const RATE_TIERS: &str = "100ms,250ms,1s,5s";
/// `--batch-max-bytes`.
pub const BATCH_MAX_BYTES: usize = 64 * 1024;
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
/// `--bar-intervals`.
pub const BAR_INTERVALS: &str = "1s,1m,5m,1h";
/// `--derived-interval`.
pub const DERIVED_INTERVAL: &str = "1s";
/// `--bar-grace`.
pub const BAR_GRACE: &str = "2s";
/// `--bar-history`.
pub const BAR_HISTORY: usize = 60;
/// `--bar-max-skew`.
pub const BAR_MAX_SKEW: &str = "10s";
/// `--book-depths`.
pub const BOOK_DEPTHS: &str = "10,25,100";
/// `--book-max-levels`.
pub const BOOK_MAX_LEVELS: usize = 1000;
/// `--book-checkpoint-updates`.
pub const BOOK_CHECKPOINT_UPDATES: u32 = 256;
/// `--book-checkpoint-interval`.
pub const BOOK_CHECKPOINT_INTERVAL: &str = "30s";
/// `--nats-replicas`.
pub const NATS_REPLICAS: usize = 1;
