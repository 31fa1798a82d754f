//! An acking NDJSON publisher: exactly-once ingest over the relay's NDJSON TCP port.
//!
//! # The wire contract
//!
//! - The connection's first line may be a hello:
//!   `{"type":"hello","publisher":"<id>","pseq":<first>}`. `<id>` is 1 to 64 bytes of ASCII
//!   letters, digits, `.`, `_`, `-`, `:`; `<first>` (1 to 2^63) is the publisher sequence
//!   (pseq) of the next line.
//! - Every later line (a tick, an event or a book update; blank and bad lines too) has the
//!   next pseq implicitly: the k-th line after the hello has pseq `first + k - 1`. The line
//!   itself carries nothing extra.
//! - The relay answers on the same connection, one JSON object a line:
//!   `{"type":"ack","pseq":N,"duplicates":D}` settles every line with pseq `<= N` (stored,
//!   or refused with an error line); `D` counts the lines of this connection, up to `N`,
//!   the relay had already stored (resends, not stored again), cumulative over the
//!   connection. `{"type":"error","line":L,"code":"...","message":"..."}` refuses line `L`,
//!   counted on the connection from 1 (the hello is line 1, so pseq `p` is line
//!   `p - first + 2`). A bad hello gets `bad_hello` and the relay closes the connection.
//!   Answers of other types are ignored.
//! - The relay dedupes by (publisher id, pseq), across failover: it keeps the highest pseq
//!   stored per id, and a line at or below it is acked, counted in `D` and not stored again.
//!
//! # What [`Publisher`] does
//!
//! A background task owns the connection and a buffer of the lines not yet acked. It
//! connects to [`PublisherConfig::addrs`] in order (a standby refuses connects, so the next
//! address is tried; after a full round without a connection it sleeps
//! [`PublisherConfig::reconnect_pause`]), sets `TCP_NODELAY`, and writes a hello whose pseq
//! is the first unacked line's (or the next line's, when all are acked), then every unacked
//! line in order, then new lines as [`Publisher::send`] queues them, coalescing whatever is
//! queued into one write. Acks drop lines from the buffer and wake senders waiting for room
//! ([`PublisherConfig::max_unacked`]). On EOF or an I/O error it reconnects and resends the
//! unacked lines under their original pseqs, so the relay stores each line exactly once. A
//! connection that ends before the relay said anything is followed by a pause, so a relay
//! that accepts and closes at once is not hammered.
//!
//! Error answers are kept per pseq ([`Publisher::errors`]). An error on line 1 means the
//! relay refused the hello (`bad_hello`, or a relay that does not know hellos): retrying
//! cannot help, so the task stops and [`Publisher::send`] and [`Publisher::flush`] return
//! [`PublisherError::HelloRefused`]. An answer line that does not parse is skipped and
//! counted ([`Publisher::garbled_answers`]); nothing the relay sends can panic the task.
//!
//! # Example
//!
//! ```no_run
//! use std::time::Duration;
//! use tickrelay_client::publisher::{Publisher, PublisherConfig};
//!
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! let publisher = Publisher::start(PublisherConfig {
//!     addrs: vec!["127.0.0.1:7001".parse()?],
//!     id: "feed-a".into(),
//!     ..PublisherConfig::default()
//! })
//! .await?;
//! publisher.send(r#"{"symbol":"BTC-USD","price":1.5,"ts_ns":1}"#.into()).await?;
//! publisher.flush(Duration::from_secs(5)).await?;
//! publisher.close().await;
//! # Ok(())
//! # }
//! ```

mod config;
mod connection;
mod handle;
mod state;
mod wire;

pub use config::{
    IdError, MAX_FIRST_PSEQ, MAX_ID_LEN, PublisherConfig, PublisherError, validate_id,
};
pub use handle::Publisher;
