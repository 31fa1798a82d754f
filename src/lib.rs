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
//!   that has subscribers ([`encode::Frames`]) and hands every shard the same batch through
//!   its queue ([`sequencer::queue`]).
//! - [`shard`]: [`shard::ShardCore`], one per shard thread: each client's write side, outbox
//!   and subscriptions, the replay rings, and the fan-out loop that writes each client once
//!   per turn (its impl: the data path in `shard/mod.rs`, a client's lifecycle in
//!   `shard/lifecycle.rs`, subscriptions and resume in `shard/subscribe.rs`).
//! - [`session`]: one client's task: handshake parameters, the frame reader, control
//!   messages answered through the shard's methods, pings and closes.
//! - [`http`]: the routes on the WebSocket port — upgrade, health, stats and metrics (one
//!   list of readings), prices, publish, the dashboard.
//! - Wiring: [`relay`] starts the threads and binds the sockets, [`shard_thread`] runs each shard's
//!   thread (pinned with `--pin-shards`), [`pipeline`] starts the sources and the sequencer
//!   on shard 0's thread, [`listener`] accepts clients and picks their shard.
//! - Below them: [`shared`] (relay-wide state), [`encode`], and the leaf types [`auth`]
//!   (token verification, identities, per-user limits), [`tls`] (certificates, reload),
//!   [`tick`], [`book`] (order books: levels, checksums, book channels),
//!   [`event`] (channels, and the [`event::Key`] ticks and events share), [`config`], [`metrics`], [`error`], [`limits`] (token buckets, log gates, counted
//!   connection slots per IP and per user), [`shutdown`], [`proto`].
//!
//! Each module imports only the layers below its own (docs/ARCHITECTURE.md;
//! `tests/architecture.rs` keeps it so). Start at [`relay::Relay::start`], which wires it all.
#![forbid(unsafe_code)]

pub mod auth;
pub mod book;
pub mod config;
pub mod encode;
pub mod error;
pub mod event;
pub mod http;
pub mod ingest;
pub mod limits;
pub mod listener;
pub mod metrics;
pub mod nats;
pub mod pipeline;
pub mod proto;
pub mod relay;
pub mod roles;
pub mod sequencer;
pub mod session;
pub mod shard;
pub mod shard_thread;
pub mod shared;
pub mod shutdown;
pub mod tick;
pub mod tls;

pub use config::Config;
pub use relay::Relay;
