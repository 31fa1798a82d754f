//! Sources: bytes → [`Tick`]s (and, on the NDJSON port, events), handed to the sequencer through the bounded [`Inbox`].
//!
//! Every source validates (through [`Tick::try_from`](crate::tick::Tick)) and answers,
//! counts and logs a bad tick without stopping. The inbox is bounded: when the sequencer
//! falls behind, a source waits on [`Inbox::publish`], and a TCP source stops reading, so
//! the publisher feels TCP backpressure and nothing accepted is dropped.

pub mod demo;
mod demo_books;
pub mod hello;
pub mod ndjson;
pub mod playback;
pub mod protobuf;
pub mod replies;
pub mod tcp;

use tokio::sync::mpsc;

use crate::book::BookError;
use crate::error::ErrorCode;
use crate::event::{EventError, Item};
use crate::tick::{Tick, TickError};
pub use hello::{Hello, Tagged, Tagging};

/// The sequencer's bounded input: batches of validated ticks and events, in arrival order
/// per source.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: mpsc::Sender<Published>,
}

/// The sequencer's end of the [`Inbox`].
pub type InboxReceiver = mpsc::Receiver<Published>;

/// One hand-off to the sequencer: items in arrival order, and who to tell about any of them
/// it refuses.
#[derive(Debug)]
pub struct Published {
    /// The ticks and events.
    pub items: Vec<Item>,
    /// Where refusals go; `None` for sources with nobody to answer (the demo, a replay, an
    /// edge's stream).
    pub publisher: Option<Publisher>,
    /// On an edge, `Some(epoch)` when the stream now holds another history: these items are
    /// of the history `epoch`, and everything handed before them was of the old one.
    pub history: Option<u64>,
}

/// A source that answers its publisher: the position of each item of a hand-off, and the
/// channel the sequencer answers on. The sequencer drops it once the hand-off is sequenced
/// (and, tagged, acknowledged), so a source that keeps no other sender learns then that
/// every answer is in.
#[derive(Debug)]
pub struct Publisher {
    /// Each item's line (or message, or array position) on its source, from 1, in order.
    pub lines: Vec<u64>,
    /// Where the sequencer sends what it refuses, and its acks.
    pub answers: mpsc::UnboundedSender<Answer>,
    /// The items' tags when the publisher asked for acks (its hello).
    pub tagged: Option<Tagged>,
}

impl Publisher {
    /// A publisher of items on `lines`, answered on `answers`, untagged.
    pub fn new(lines: Vec<u64>, answers: mpsc::UnboundedSender<Answer>) -> Self {
        Self {
            lines,
            answers,
            tagged: None,
        }
    }
}

/// What the sequencer tells a source about a hand-off.
#[derive(Debug, Clone, PartialEq)]
pub enum Answer {
    /// An item it refused.
    Refused(Refused),
    /// A tagged hand-off is durable (single box: sequenced; scaled out: acknowledged by
    /// JetStream): every line up to `pseq` is settled.
    Stored {
        /// The hand-off's [`Tagged::through`].
        pseq: u64,
        /// Its items the relay had stored before (resends), not stored again.
        duplicates: u64,
    },
}

/// An item the sequencer refused, and the line (or message, or position) it came on: the
/// one way every source hears of a refusal found after ingest moved on.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[error("{reason}")]
pub struct Refused {
    /// The item's line (or message, or position) on its source.
    pub line: u64,
    /// Why.
    pub reason: Refusal,
}

/// Why the sequencer refused an item.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum Refusal {
    /// The item is of a key new to the relay, and the relay already tracks `--max-symbols`
    /// keys of which none was idle long enough to evict.
    #[error(
        "`{key}` is new and the relay tracks {limit} symbols and channels, none idle for --evict-idle: not published"
    )]
    SymbolLimit {
        /// The symbol or channel.
        key: String,
        /// `--max-symbols`.
        limit: usize,
    },
    /// Only the book could tell: a delta before any snapshot, a crossed or too deep result.
    #[error(transparent)]
    Book(BookError),
    /// A tagged item of a publisher id new to the relay, which already remembers `limit`.
    #[error("the relay remembers {limit} publisher ids and this one is new: not published")]
    PublisherLimit {
        /// [`MAX_PUBLISHERS`](crate::limits::MAX_PUBLISHERS).
        limit: usize,
    },
}

impl Refused {
    /// Stable code for the publisher's answer and metrics.
    pub fn code(&self) -> ErrorCode {
        match &self.reason {
            Refusal::SymbolLimit { .. } => ErrorCode::SymbolLimit,
            Refusal::Book(error) => error.code(),
            Refusal::PublisherLimit { .. } => ErrorCode::PublisherLimit,
        }
    }

    /// The field at fault, when one is.
    pub fn field(&self) -> Option<&'static str> {
        match &self.reason {
            Refusal::SymbolLimit { .. } | Refusal::PublisherLimit { .. } => None,
            Refusal::Book(error) => error.field(),
        }
    }
}

impl Inbox {
    /// An inbox holding at most `batches` batches, and its receiving end for the sequencer.
    pub fn bounded(batches: usize) -> (Self, InboxReceiver) {
        let (tx, rx) = mpsc::channel(batches);
        (Self { tx }, rx)
    }

    /// Hands `ticks` to the sequencer, waiting while it is full (backpressure).
    pub async fn publish(&self, ticks: Vec<Tick>) -> Result<(), InboxClosed> {
        self.publish_items(ticks.into_iter().map(Item::Tick).collect())
            .await
    }

    /// Hands ticks and events to the sequencer, waiting while it is full (backpressure);
    /// nobody is told of a refusal (it is counted).
    pub async fn publish_items(&self, items: Vec<Item>) -> Result<(), InboxClosed> {
        self.send(Published {
            items,
            publisher: None,
            history: None,
        })
        .await
    }

    /// On an edge: what is handed after this is of the history `epoch` (the stream was
    /// replaced), what was handed before of the old one. Sent by the follower once nothing
    /// of the old history can follow it.
    pub async fn new_history(&self, epoch: u64) -> Result<(), InboxClosed> {
        let published = Published {
            items: Vec::new(),
            publisher: None,
            history: Some(epoch),
        };
        self.tx.send(published).await.map_err(|_| InboxClosed)
    }

    /// Like [`Inbox::publish_items`], for a source that answers its publisher: a refused
    /// item is sent to `publisher.answers` with its line, and a tagged hand-off is
    /// acknowledged there (even one with no item: its lines were all bad, and are settled).
    pub async fn publish_from(
        &self,
        items: Vec<Item>,
        publisher: Publisher,
    ) -> Result<(), InboxClosed> {
        debug_assert_eq!(items.len(), publisher.lines.len(), "a line per item");
        self.send(Published {
            items,
            publisher: Some(publisher),
            history: None,
        })
        .await
    }

    async fn send(&self, published: Published) -> Result<(), InboxClosed> {
        let tagged = matches!(&published.publisher, Some(p) if p.tagged.is_some());
        if published.items.is_empty() && !tagged {
            return Ok(());
        }
        self.tx.send(published).await.map_err(|_| InboxClosed)
    }
}

/// The sequencer has stopped (the relay is shutting down).
#[derive(Debug, thiserror::Error)]
#[error("the relay is shutting down and accepts no more ticks")]
pub struct InboxClosed;

/// Why a line or message from a source is not a tick.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum DecodeError {
    /// Not JSON, or JSON of the wrong shape.
    #[error("invalid JSON tick: {0}")]
    Json(String),
    /// A field of the wrong type, or a required one missing.
    #[error("field `{field}`: {reason}")]
    Field {
        /// The field.
        field: String,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// A field the tick contract does not have (its name).
    #[error("unknown field `{0}`")]
    UnknownField(String),
    /// A length prefix that is not a varint: a length-delimited stream cannot resynchronise.
    #[error("length prefix is not a varint (10 bytes without an end)")]
    BadLengthPrefix,
    /// Not a valid protobuf `Tick`.
    #[error("invalid protobuf tick: {0}")]
    Protobuf(String),
    /// Parsed, but not a valid tick.
    #[error(transparent)]
    Tick(#[from] TickError),
    /// A line with `channel` that is not a valid event.
    #[error(transparent)]
    Event(#[from] EventError),
    /// A book update (`"type":"book"`, or a protobuf `IngestBook`) that is not valid.
    #[error(transparent)]
    Book(#[from] BookError),
    /// A publisher's hello that is bad or not its connection's first line.
    #[error("hello: {0}")]
    Hello(String),
    /// A line or message longer than `--max-ingest-line`.
    #[error("{len} bytes without a message end, the limit is {limit}")]
    TooLong {
        /// Bytes seen so far.
        len: usize,
        /// The limit.
        limit: usize,
    },
}

impl DecodeError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Json(_) | Self::Field { .. } => ErrorCode::BadJson,
            Self::UnknownField(_) => ErrorCode::UnknownField,
            Self::Protobuf(_) | Self::BadLengthPrefix => ErrorCode::BadProtobuf,
            Self::Tick(e) => e.code(),
            Self::Event(e) => e.code(),
            Self::Book(e) => e.code(),
            Self::TooLong { .. } => ErrorCode::LineTooLong,
            Self::Hello(_) => ErrorCode::BadHello,
        }
    }

    /// Whether a length-delimited (protobuf) stream cannot go on after this error: the
    /// next message boundary is unknown. (NDJSON resynchronises at the next newline.) A bad
    /// hello ends either: the publisher believes its lines are tagged, and they are not.
    pub fn ends_stream(&self) -> bool {
        matches!(
            self,
            Self::BadLengthPrefix | Self::TooLong { .. } | Self::Hello(_)
        )
    }

    /// The field the error is about, when one is to blame.
    pub fn field(&self) -> Option<&str> {
        match self {
            Self::Field { field, .. } | Self::UnknownField(field) => Some(field),
            Self::Tick(e) => Some(e.field()),
            Self::Event(e) => e.field(),
            Self::Book(e) => e.field(),
            _ => None,
        }
    }
}
