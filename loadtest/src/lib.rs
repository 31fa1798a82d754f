//! Load-test harness for tickrelay.
//!
//! ```text
//! publisher ──TCP ingest──▶ relay ──WebSocket──▶ client workers ──▶ scenario ──▶ report
//! paced ticks, ts_ns        (under test)        frames → decode → seq,      phases,    table, JSON,
//! stamped at send                               latency, counts            verdict     SVG, Markdown
//! ```
//!
//! Measuring must cost far less than what is measured: a few worker threads each drive many
//! connections, read in 64 KiB batches and decode only `type`, `symbol`, `seq` and `ts_ns`.
//! [`reference`] holds the floor and naive servers the relay is compared with in the same run
//! (`--server`, `compare`); `--client-profile heavy` makes the clients cost what typical
//! application clients do.
#![forbid(unsafe_code)]

pub mod client;
pub mod decode;
pub mod latency;
pub mod procfs;
pub mod publisher;
pub mod reference;
pub mod relay;
pub mod report;
pub mod scenario;
pub mod seq;
pub mod symbols;
pub mod tier_seq;

/// Messages generated from `proto/tickrelay.proto` (package `tickrelay.v1`).
#[allow(missing_docs, clippy::all)]
pub mod proto {
    include!(concat!(env!("OUT_DIR"), "/tickrelay.v1.rs"));
}
