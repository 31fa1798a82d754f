//! Server message → the few fields the harness checks (type, symbol, seq, ts_ns).
//!
//! Receives one complete WebSocket message payload in the session's encoding and hands back a
//! borrowed [`Message`]; nothing is allocated per message. `json_scan` reads JSON by hand,
//! `json_value` reads the same fields from a full `serde_json` parse (the heavy client
//! profile), `protobuf` walks the fields of a `tickrelay.v1.ServerMessage`, `gzip` inflates
//! a gzip session's frames into JSON, `batch` splits the frames of a client that asked for
//! several messages per frame, and `nats` splits a nats-server stream into operations.

mod batch;
mod gzip;
mod json_scan;
mod json_value;
mod nats;
mod protobuf;

pub use batch::{ndjson_lines, server_batch};
pub use gzip::GzipStream;
pub use json_scan::{from_seq, scan_json};
pub use json_value::from_value;
pub use nats::{BadOp, NatsOp, NatsStream};
pub use protobuf::scan_protobuf;

/// One decoded server message: only the fields the harness needs, borrowed from the payload.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Message<'a> {
    /// A delivery: counted, seq-checked and timed.
    Tick {
        symbol: &'a [u8],
        seq: u64,
        ts_ns: u64,
    },
    /// Last known value on subscribe: not a delivery, but its seq is the baseline.
    Snapshot { symbol: &'a [u8], seq: u64 },
    /// The relay says ticks `from..=to` of `symbol` will not arrive.
    Gap {
        symbol: &'a [u8],
        from: u64,
        to: u64,
    },
    /// First message of every session.
    Welcome,
    /// A typed error from the relay.
    Error,
    /// subscribed / unsubscribed / pong / heartbeat / anything else: counted only.
    Other,
}

/// Why a payload could not be decoded.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum DecodeError {
    #[error("JSON message has no `{0}` field")]
    MissingField(&'static str),
    #[error("JSON field `{0}` is not of the expected type")]
    BadField(&'static str),
    #[error("message is not JSON")]
    NotJson,
    #[error("not a NATS protocol operation")]
    NotNats,
    #[error("protobuf message is truncated or malformed")]
    BadProtobuf,
    #[error("inflate failed: {0}")]
    Inflate(String),
}
