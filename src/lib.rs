//! tickrelay: a market-data edge relay. Ticks come in from an ingest pipeline and go out over
//! WebSocket to thousands of clients, each in the encoding it asked for.
//!
//! The data path is the table of contents:
//!
//! ```text
//! ingest ──▶ sequencer ──────────────────▶ shard ─────────────▶ session
//! bytes→Tick  seq, encode once,           local subscribers,    handshake, control
//!             frame once (Frames)          last value, fan-out,  messages, the socket
//!                                          outboxes, one write
//! ```
//!
//! - [`ingest`]: TCP (NDJSON and protobuf), `POST /api/publish` and the demo market turn bytes
//!   into validated [`tick::Tick`]s and hand them to the sequencer's bounded inbox.
//! - [`sequencer`]: assigns the per-symbol [`tick::Seq`], encodes each tick once per encoding
//!   that has subscribers ([`encode::Frames`]) and hands every shard the same batch.
//! - [`shard`]: one pinned thread per core; its fan-out loop appends the shared frames to
//!   every local subscriber's outbox and writes each client once per turn.
//! - [`session`]: the WebSocket client: handshake parameters, control messages, the socket.
//! - [`http`]: health, stats, prices, publish and the dashboard, on the WebSocket port.
//!
//! Start at [`relay::Relay::start`], which wires it all.
#![forbid(unsafe_code)]

pub mod config;
pub mod encode;
pub mod error;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod proto;
pub mod relay;
pub mod sequencer;
pub mod session;
pub mod shard;
pub mod shared;
pub mod shutdown;
pub mod tick;
pub mod worker;

pub use config::Config;
pub use relay::{Relay, RelayHandle};
