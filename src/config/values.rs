//! The value types of settings (enums with their names, durations): the bottom of the
//! `config` module, imported by the defaults, the flag groups and `Config` alike.

use std::time::Duration;

use clap::ValueEnum;

/// What to do when a client's outbound budget is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlowPolicy {
    /// Close the connection with code 4008 "slow consumer"; the client may reconnect and resume.
    Disconnect,
    /// Keep only the latest tick per symbol while the client lags, then report the skipped seqs.
    Conflate,
}

impl SlowPolicy {
    /// Every policy's name, as `?slow=` and `/stats` spell it (error messages list them).
    pub const NAMES: [&'static str; 2] = ["disconnect", "conflate"];
    const ALL: [Self; 2] = [Self::Disconnect, Self::Conflate];

    /// The name used in the query string and in `/stats`.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The policy named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What this process does in a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// One box: ingest, sequencer and clients (with `--nats`, it also publishes like a
    /// sequencer).
    All,
    /// Ingest and seq; publishes every sequenced tick once into the JetStream stream.
    Sequencer,
    /// No ingest: follows the stream from NATS and serves clients.
    Edge,
}

impl Role {
    /// The name on the command line and in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Sequencer => "sequencer",
            Self::Edge => "edge",
        }
    }
}

/// Whether the relay negotiates permessage-deflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WsDeflate {
    /// Never: offers are ignored and every client gets the shared, uncompressed frames.
    Off,
    /// Accept a client's permessage-deflate offer (up to `--ws-deflate-max-clients`).
    On,
}

/// Parses `500ms`, `5s`, `2m` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 5s or 500ms"))
}
