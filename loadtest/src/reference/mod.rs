//! Reference servers the relay is measured against in the same run, sharing no code with it.
//!
//! ```text
//! publisher ──NDJSON──▶ floor ──one write per wake-up──▶ clients   (the least work possible)
//!                    ╲▶ naive ──broadcast, a filter task per client (tokio-tungstenite)──▶
//!           ──NATS PUB──▶ nats-server ──MSGs over WebSocket, several per frame──▶  (production)
//! ```
//!
//! `nats` is not ours: it starts Debian's `nats-server` with a `websocket { }` listener and its
//! default limits, and the harness's clients and publisher speak NATS to it.
//!
//! Both speak as much of tickrelay's protocol as the harness's JSON clients need: `GET
//! /ws?symbols=A,B` (only `encoding=json`), a `welcome` text message, then every tick of the
//! subscribed symbols as `{"type":"tick","symbol":..,"seq":..,..,"ts_ns":..}` with `seq` per
//! symbol from 1, gap-free; NDJSON ingest on `--ingest-tcp`; `GET /health` and `GET /ready`
//! answer 200. They take the relay's address flags, so `--spawn` starts them the same way
//! (`loadtest serve-floor --listen .. --ingest-tcp ..`), each a process of its own whose CPU and
//! memory the harness reads from /proc. No snapshots, no control messages, no slow-consumer
//! policy beyond dropping a client whose backlog passes 64 MiB (floor) or who lags the
//! broadcast ring (naive): what they measure is fan-out.

use std::net::SocketAddr;

use crate::client::Protocol;

mod floor;
mod http;
mod naive;
mod nats;

pub use floor::serve as serve_floor;
pub use naive::serve as serve_naive;
pub use nats::launch as nats_launch;

/// Which server a run measures.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, clap::ValueEnum)]
pub enum Server {
    /// tickrelay, the server under test.
    Relay,
    /// The floor: ingest bytes forwarded as pre-built text frames, one write per wake-up.
    Floor,
    /// The naive server: tokio-tungstenite, one broadcast channel, a filter task per client.
    Naive,
    /// nats-server with a WebSocket listener, its default limits: a production broker.
    Nats,
    /// tickrelay again, its clients asking for several messages per frame (`batch=on`), for
    /// the batched ÷ unbatched figures beside `relay` in one `compare`.
    #[value(name = "relay-batched")]
    RelayBatched,
}

impl Server {
    /// The name in reports and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            Self::Relay => "relay",
            Self::Floor => "floor",
            Self::Naive => "naive",
            Self::Nats => "nats",
            Self::RelayBatched => "relay-batched",
        }
    }

    /// The loadtest subcommand that runs this server, for the ones this binary serves.
    pub fn subcommand(self) -> Option<&'static str> {
        match self {
            Self::Floor => Some("serve-floor"),
            Self::Naive => Some("serve-naive"),
            Self::Relay | Self::Nats | Self::RelayBatched => None,
        }
    }

    /// Whether this is tickrelay (batched or not).
    pub fn is_relay(self) -> bool {
        matches!(self, Self::Relay | Self::RelayBatched)
    }

    /// What its clients speak; `batch` is `--batch`, which only the plain `relay` follows.
    pub fn protocol(self, batch: bool) -> Protocol {
        match self {
            Self::Relay => Protocol::Relay { batch },
            Self::RelayBatched => Protocol::Relay { batch: true },
            Self::Floor | Self::Naive => Protocol::Relay { batch: false },
            Self::Nats => Protocol::Nats,
        }
    }
}

/// Options of `serve-floor` and `serve-naive`: the relay's flag names, so `--spawn` passes the
/// same ones.
#[derive(Clone, Debug, clap::Args)]
pub struct ServeArgs {
    /// WebSocket and HTTP address (`/ws`, `/health`, `/ready`).
    #[arg(long, default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// NDJSON ingest address.
    #[arg(long, default_value = "127.0.0.1:7001")]
    pub ingest_tcp: SocketAddr,
    /// Accepted so `--spawn` can pass it; nothing is served there (JSON ingest only).
    #[arg(long)]
    pub ingest_tcp_protobuf: Option<SocketAddr>,
    /// Threads (floor: fan-out shards; naive: tokio workers); 0 = one per core, like the
    /// relay's `--shards`.
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
}

impl ServeArgs {
    /// `--threads`, or one per core.
    fn thread_count(&self) -> usize {
        if self.threads > 0 {
            self.threads
        } else {
            std::thread::available_parallelism().map_or(1, |n| n.get())
        }
    }
}
