//! Sources: bytes → [`Tick`]s (and, on the NDJSON port, events), handed to the sequencer through the bounded [`Inbox`].
//!
//! Every source validates (through [`Tick::try_from`](crate::tick::Tick)) and answers,
//! counts and logs a bad tick without stopping. The inbox is bounded: when the sequencer
//! falls behind, a source waits on [`Inbox::publish`], and a TCP source stops reading, so
//! the publisher feels TCP backpressure and nothing accepted is dropped.

pub mod demo;
mod demo_books;
pub mod ndjson;
pub mod playback;
pub mod protobuf;
pub mod tcp;

use tokio::sync::mpsc;

use crate::book::BookError;
use crate::error::ErrorCode;
use crate::event::{EventError, Item};
use crate::tick::{Tick, TickError};

/// The sequencer's bounded input: batches of validated ticks and events, in arrival order
/// per source.
#[derive(Clone, Debug)]
pub struct Inbox {
    tx: mpsc::Sender<Vec<Item>>,
}

impl Inbox {
    /// An inbox holding at most `batches` batches, and its receiving end for the sequencer.
    pub fn bounded(batches: usize) -> (Self, mpsc::Receiver<Vec<Item>>) {
        let (tx, rx) = mpsc::channel(batches);
        (Self { tx }, rx)
    }

    /// Hands `ticks` to the sequencer, waiting while it is full (backpressure).
    pub async fn publish(&self, ticks: Vec<Tick>) -> Result<(), InboxClosed> {
        self.publish_items(ticks.into_iter().map(Item::Tick).collect())
            .await
    }

    /// Hands ticks and events to the sequencer, waiting while it is full (backpressure).
    pub async fn publish_items(&self, items: Vec<Item>) -> Result<(), InboxClosed> {
        if items.is_empty() {
            return Ok(());
        }
        self.tx.send(items).await.map_err(|_| InboxClosed)
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
        }
    }

    /// Whether a length-delimited (protobuf) stream cannot go on after this error: the
    /// next message boundary is unknown. (NDJSON resynchronises at the next newline.)
    pub fn ends_stream(&self) -> bool {
        matches!(self, Self::BadLengthPrefix | Self::TooLong { .. })
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
