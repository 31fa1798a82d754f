//! A client for the tickrelay market-data relay that never loses a tick silently.
//!
//! [`Client::connect`] opens a WebSocket to the relay and returns a stream of [`Item`]s:
//! ticks, snapshots, events, and — whenever something could not be delivered — an explicit
//! [`Gap`] or [`Reset`]. For each symbol the application sees every seq exactly once, in
//! order, or is told which seqs it will not see. Behind the stream the client:
//!
//! - **reconnects** with jittered exponential backoff ([`Backoff`]) after an error, a close
//!   (4008 slow consumer, 4009 idle) or a silent connection, and at once (after a jitter of
//!   at most 50 ms) when the relay goes away (1001) or restarts (1012);
//! - **resumes** every symbol from the last seq it delivered (`?resume=SYM:SEQ`), so the
//!   relay replays exactly what was missed; older than the relay's replay ring, the relay
//!   says so and the client delivers a [`Gap`] (`not_replayable`) and the newest value;
//! - **checks liveness**: after half the [`Options::liveness_timeout`] without a frame it
//!   pings the relay, and after all of it reconnects;
//! - **handles a slow application** by the [`SlowConsumer`] policy: wait (then resume), conflate
//!   (newest value per symbol and a [`Gap`]), or end with [`Error::ConsumerTooSlow`].
//! - **never stops on one message**: event data is kept as published ([`RawJson`]), and a
//!   message that does not decode is an [`Item::Undecodable`], counted at its seq;
//! - **reads several messages per frame** when asked to ([`Options::batch`]).
//!
//! # Example
//!
//! ```no_run
//! use tickrelay_client::{Client, Encoding, Item, Options};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let options = Options::new()
//!     .symbols(["BTC-USD", "ETH-USD"])
//!     .encoding(Encoding::Protobuf);
//! let mut client = Client::connect("ws://127.0.0.1:8080/ws", options).await?;
//! while let Some(item) = client.next().await {
//!     match item? {
//!         Item::Tick(tick) | Item::Snapshot(tick) => {
//!             println!("{} #{} {:?}", tick.symbol, tick.seq, tick.price)
//!         }
//!         Item::Gap(gap) => eprintln!("missed {}..={} of {:?}", gap.from, gap.to, gap.key),
//!         Item::Reset(reset) => eprintln!("{:?} restarted at seq {}", reset.key, reset.seq),
//!         _ => {}
//!     }
//! }
//! # Ok(())
//! # }
//! ```
//!
//! # Relay restarts and epochs
//!
//! A relay's seqs start again at 1 when it restarts. When the relay's `welcome` carries an
//! `epoch` (planned with the NATS edges), the client resumes with `&epoch=E` and a changed
//! epoch turns the next item of every symbol into a [`Reset`]. Today's relay sends no epoch,
//! so the client detects a new history itself: it resumes from one seq *before* the last it
//! delivered, so the relay replays that tick again, and compares it (`ts_ns`, `recv_ns`) with
//! the one it delivered. The same tick is dropped as the duplicate it is; a different tick, or
//! a seq lower than the last delivered, is a [`Reset`]. One case stays a [`Gap`] rather than
//! a [`Reset`]: a new history already longer than the relay's replay ring past the client's
//! position; the application is still told that ticks are missing, never misled.
//!
//! # Channels, tokens and TLS
//!
//! [`Options::channels`] subscribes to event channels (`news`, or `user:<id>`: the private
//! channel of the token's user), delivered as [`Item::Event`] and resumed like symbols. The
//! channels the relay computes from trades are typed: `bars:1m:BTC-USD` arrives as
//! [`Item::Bar`] (and [`Item::BarSnapshot`] on subscribe), `ticker:BTC-USD` as
//! [`Item::Ticker`], seq-checked and resumed the same way.
//! A `book:SYMBOL` or `book:SYMBOL:DEPTH` channel is an order book: the client keeps it,
//! checks the relay's checksum after every message and delivers [`Item::Book`], or, when
//! the checksum fails or messages are missing, [`Item::BookResync`] while it fetches the
//! book again by itself (see [`Book`]).
//! [`Options::token`] sends a JWT as `Authorization: Bearer`; a token the relay refuses ends
//! the stream with [`ConnectError::Unauthorized`] or [`Error::Unauthorized`], never a
//! reconnect loop. `wss://` URLs connect over TLS (rustls) trusting Mozilla's roots and any
//! [`Options::ca_file`]. permessage-deflate is not offered.

#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod book;
mod client;
mod decode;
mod derived;
mod end;
mod error;
mod item;
mod json;
mod message;
mod open;
mod options;
mod proto;
mod protobuf;
// Exactly-once publishing into the relay's NDJSON ingest port, with acks and resends.
pub mod publisher;
mod queue;
mod seq_check;
mod task;
mod tls;
mod url;
mod wire;

pub use book::{Book, BookResync, Level, ResyncReason};
pub use client::Client;
pub use derived::{Bar, BarSnapshot, BarValues, Ticker};
pub use error::{ConnectError, Error};
pub use item::{
    Connected, Disconnected, Event, EventTier, Gap, GapReason, Item, Key, Kind, RawJson, Reset,
    ServerError, Tick, TickTier, Undecodable,
};
pub use options::{Backoff, Encoding, Options, SlowConsumer};

/// Compiles the examples in README.md as doctests, so the README cannot drift from the API.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
