//! The client side: many WebSocket sessions per worker thread, a few hundred ns per delivery.
//!
//! A [`WorkerHandle`] owns one worker thread running a current-thread tokio runtime. Each
//! session is a local task holding its socket, its unparsed tail and its per-symbol seq state;
//! the 64 KiB read buffer, the inflate buffer, the histograms and the per-client counters are
//! the thread's, shared by all its sessions (one `RefCell` borrow per read, never across an
//! `.await`). A read takes whatever the kernel has, every complete frame in it is decoded
//! ([`crate::decode`]) and checked ([`crate::seq`]), and the receive time is taken once per read.
//!
//! The coordinator talks to a worker through commands: connect these clients at this rate,
//! collect (and reset) the figures, shut down. Progress counters are atomics it can poll.
//!
//! The WebSocket client is the minimum RFC 6455 asks of one: the upgrade request with a random
//! key and a checked `Sec-WebSocket-Accept`, server frames parsed unmasked, and the only frames
//! we send (pong, close) masked.
//!
//! `worker` is the thread, its command protocol and each client's life, `thread_state` what
//! the sessions of one thread share, `conn` one session's read loop, `reassembly` its bytes →
//! whole messages, `tally` its messages → counts, `nats` the NATS side of a client of
//! nats-server, `handshake` the TCP connect and HTTP upgrade, `frame` the RFC 6455 frame
//! codec; this file holds the types they share with the coordinator.

use std::net::{Ipv4Addr, SocketAddr};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::seq::SeqCounts;
use crate::tier_seq::TierCounts;

mod conn;
mod frame;
mod handshake;
mod nats;
mod reassembly;
mod tally;
mod thread_state;
mod worker;

pub use frame::{FrameError, FrameHeader, encode_client_frame, parse_frame_header};
pub use handshake::accept_key;
pub use nats::subject as nats_subject;
pub use thread_state::{WorkerProgress, WorkerSnapshot};
pub use worker::WorkerHandle;

/// How a session asks the relay to encode its messages (`?encoding=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Protobuf,
    Gzip,
}

impl Encoding {
    /// Every encoding, in report order.
    pub const ALL: [Self; 3] = [Self::Json, Self::Protobuf, Self::Gzip];

    /// The query-string value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
            Self::Gzip => "gzip",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown encoding `{s}` (json, protobuf, gzip)"))
    }
}

/// How much work a client does per message: the harness's own cheap path, or what a typical
/// application client costs (the reference for comparative runs).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
pub enum ClientProfile {
    /// 64 KiB reads, every frame in a read decoded by the field scanner.
    #[default]
    Light,
    /// At least 2 worker threads, one read per frame, a full `serde_json` parse of every JSON
    /// message (protobuf frames keep the field walk).
    Heavy,
}

impl ClientProfile {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Light => "light",
            Self::Heavy => "heavy",
        }
    }
}

/// One client to open: what it subscribes to and how it behaves.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    /// Global client index.
    pub id: usize,
    /// Symbol indexes (`SYM` + index), distinct.
    pub symbols: Vec<u32>,
    pub encoding: Encoding,
    /// Local address to bind before connecting (spreads ephemeral ports over 127.0.0.x).
    pub source: Option<Ipv4Addr>,
    /// Stops reading once welcomed (the `slow` mode's stuck consumers).
    pub slow: bool,
    /// SO_RCVBUF to ask for before connecting (slow clients: a small one, so the kernel does
    /// not absorb megabytes on the relay's behalf).
    pub recv_buffer: Option<usize>,
    /// What the client follows of its symbols.
    pub feed: Feed,
}

/// What a client follows of each of its symbols.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub enum Feed {
    /// Every tick (`?symbols=SYM000,..`): counted, seq-checked and timed.
    #[default]
    Ticks,
    /// A rate tier (`?symbols=SYM000@1s,..`): frames counted and checked for continuity,
    /// never counted as ticks (the `tiers` mode's second half).
    Tier(String),
    /// The order book (`?channels=book:SYM000:10,..`, `None`: every level): each book
    /// message counted like a tick of its symbol (its `seq` is the book's, gap-free).
    Book { depth: Option<u32> },
}

impl Feed {
    /// Whether the client's deliveries count as ticks (expected, lost, timed).
    pub fn counts_as_ticks(&self) -> bool {
        !matches!(self, Self::Tier(_))
    }
}

/// What the server at the other end of a client speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Protocol {
    /// tickrelay's WebSocket API (the relay, and the floor and naive servers):
    /// `/ws?symbols=..&encoding=..`, a welcome, a message per tick. With `batch`, the client
    /// adds `&batch=on` and a frame may hold several messages.
    Relay { batch: bool },
    /// NATS over WebSocket (nats-server's `websocket { }` listener): CONNECT, a SUB per
    /// symbol, a PING whose PONG stands for the welcome, then a MSG per tick, several to a
    /// frame.
    Nats,
}

/// Where the relay's WebSocket endpoint is, and how to talk to it.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Further relays (edges of one deployment): client `i` connects to
    /// `[addr, more..][i % (1 + more.len())]`.
    pub more: Vec<SocketAddr>,
    /// Symbols in the run, for naming them (`SYM000`.. or wider).
    pub symbol_count: u32,
    /// How long TCP connect + upgrade may take.
    pub handshake_timeout: Duration,
    pub protocol: Protocol,
}

impl Target {
    /// The relay client `id` connects to (round-robin over `addr` and `more`).
    pub fn addr_of(&self, id: usize) -> SocketAddr {
        match id % (1 + self.more.len()) {
            0 => self.addr,
            n => self.more[n - 1],
        }
    }
}

/// Where a client is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientState {
    #[default]
    Connecting,
    /// TCP connect or upgrade failed.
    Failed,
    /// Upgraded (welcomed once `counts.welcomed`).
    Open,
    /// The connection ended before shutdown.
    Closed,
}

/// What one client saw.
#[derive(Clone, Debug, Default)]
pub struct ClientCounts {
    pub welcomed: bool,
    pub ticks: u64,
    pub snapshots: u64,
    pub seq: SeqCounts,
    /// `gap` messages from the relay and the ticks they cover.
    pub relay_gaps: u64,
    pub relay_gap_ticks: u64,
    pub error_msgs: u64,
    pub other_msgs: u64,
    pub decode_errors: u64,
    /// Ticks of a symbol this client did not subscribe to.
    pub unexpected_symbol: u64,
    /// A tier client's frames and their continuity.
    pub tier: TierCounts,
    /// Messages decoded (or not) of every kind: with several messages per frame, more than
    /// the data frames.
    pub messages: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Read syscalls that returned data.
    pub reads: u64,
}

/// One client's state and counts, as the coordinator receives them.
#[derive(Clone, Debug, Default)]
pub struct ClientStatus {
    pub id: usize,
    pub state: ClientState,
    pub counts: ClientCounts,
}
