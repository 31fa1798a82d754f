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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tick::sequenced;

    fn refused(reason: Refusal) -> Refused {
        Refused { line: 3, reason }
    }

    #[test]
    fn a_refusal_has_its_code_and_field() {
        let symbols = refused(Refusal::SymbolLimit {
            key: "BTC-USD".into(),
            limit: 2,
        });
        assert_eq!(
            (symbols.code(), symbols.field()),
            (ErrorCode::SymbolLimit, None)
        );
        let publishers = refused(Refusal::PublisherLimit { limit: 4 });
        assert_eq!(
            (publishers.code(), publishers.field()),
            (ErrorCode::PublisherLimit, None)
        );
        let book = refused(Refusal::Book(BookError::NoSnapshot("BTC-USD".into())));
        assert_eq!(
            (book.code(), book.field()),
            (ErrorCode::BookNoSnapshot, Some("symbol"))
        );
        let missing = refused(Refusal::Book(BookError::MissingField("bids")));
        assert_eq!(missing.field(), Some("bids"));
    }

    #[test]
    fn decode_errors_name_their_field() {
        let field = DecodeError::Field {
            field: "price".into(),
            reason: "expected a number",
        };
        assert_eq!(field.field(), Some("price"));
        assert_eq!(
            DecodeError::UnknownField("colour".into()).field(),
            Some("colour")
        );
        assert_eq!(
            DecodeError::Tick(TickError::NotFinite("bid")).field(),
            Some("bid")
        );
        assert_eq!(
            DecodeError::Event(EventError::MissingData).field(),
            Some("data")
        );
        assert_eq!(
            DecodeError::Book(BookError::MissingField("asks")).field(),
            Some("asks")
        );
        for fieldless in [
            DecodeError::Json("eof".into()),
            DecodeError::BadLengthPrefix,
            DecodeError::Protobuf("wire type".into()),
            DecodeError::Hello("late".into()),
            DecodeError::TooLong { len: 9, limit: 8 },
            DecodeError::Event(EventError::Json("eof".into())),
            DecodeError::Book(BookError::Json("eof".into())),
        ] {
            assert_eq!(fieldless.field(), None, "{fieldless:?}");
        }
    }

    #[test]
    fn decode_errors_have_their_codes() {
        let cases = [
            (DecodeError::Json("eof".into()), ErrorCode::BadJson),
            (
                DecodeError::UnknownField("x".into()),
                ErrorCode::UnknownField,
            ),
            (DecodeError::BadLengthPrefix, ErrorCode::BadProtobuf),
            (DecodeError::Protobuf("x".into()), ErrorCode::BadProtobuf),
            (
                DecodeError::Tick(TickError::EmptySymbol),
                ErrorCode::InvalidSymbol,
            ),
            (
                DecodeError::Event(EventError::MissingData),
                ErrorCode::MissingField,
            ),
            (
                DecodeError::Book(BookError::NoSnapshot("A".into())),
                ErrorCode::BookNoSnapshot,
            ),
            (DecodeError::Hello("x".into()), ErrorCode::BadHello),
            (
                DecodeError::TooLong { len: 9, limit: 8 },
                ErrorCode::LineTooLong,
            ),
        ];
        for (error, code) in cases {
            assert_eq!(error.code(), code, "{error:?}");
        }
    }

    #[test]
    fn only_a_lost_boundary_or_a_bad_hello_ends_a_stream() {
        assert!(DecodeError::BadLengthPrefix.ends_stream());
        assert!(DecodeError::TooLong { len: 9, limit: 8 }.ends_stream());
        assert!(DecodeError::Hello("late".into()).ends_stream());
        assert!(!DecodeError::Json("eof".into()).ends_stream());
        assert!(!DecodeError::Protobuf("wire type".into()).ends_stream());
        assert!(!DecodeError::Tick(TickError::EmptySymbol).ends_stream());
    }

    /// The next hand-off, which must already be queued.
    fn next(rx: &mut InboxReceiver) -> Published {
        rx.try_recv().expect("a hand-off is queued")
    }

    #[tokio::test]
    async fn published_ticks_reach_the_sequencer_in_order() {
        let (inbox, mut rx) = Inbox::bounded(4);
        let ticks = vec![sequenced("A", 0), sequenced("B", 0)];
        inbox.publish(ticks.clone()).await.unwrap();
        let events = vec![Item::Tick(sequenced("C", 0))];
        inbox.publish_items(events.clone()).await.unwrap();
        let first = next(&mut rx);
        let want: Vec<Item> = ticks.into_iter().map(Item::Tick).collect();
        assert_eq!(first.items, want);
        assert!(first.publisher.is_none() && first.history.is_none());
        assert_eq!(next(&mut rx).items, events);
        assert!(rx.try_recv().is_err(), "two hand-offs, no more");
    }

    #[tokio::test]
    async fn an_empty_hand_off_is_not_sent_unless_tagged() {
        let (inbox, mut rx) = Inbox::bounded(4);
        inbox.publish(Vec::new()).await.unwrap();
        inbox.publish_items(Vec::new()).await.unwrap();
        let (answers, _answered) = mpsc::unbounded_channel();
        inbox
            .publish_from(Vec::new(), Publisher::new(Vec::new(), answers.clone()))
            .await
            .unwrap();
        assert!(rx.try_recv().is_err(), "nothing to sequence, nobody to ack");
        let mut tagged = Publisher::new(Vec::new(), answers);
        tagged.tagged = Some(Tagged {
            publisher: "p1".into(),
            pseqs: Vec::new(),
            through: 7,
        });
        inbox.publish_from(Vec::new(), tagged).await.unwrap();
        let handed = next(&mut rx);
        assert!(handed.items.is_empty());
        let publisher = handed.publisher.expect("its publisher, to ack");
        assert_eq!(publisher.tagged.map(|t| t.through), Some(7));
    }

    #[tokio::test]
    async fn a_publishers_items_carry_their_lines() {
        let (inbox, mut rx) = Inbox::bounded(4);
        let (answers, _answered) = mpsc::unbounded_channel();
        let items = vec![Item::Tick(sequenced("A", 0)), Item::Tick(sequenced("B", 0))];
        inbox
            .publish_from(items.clone(), Publisher::new(vec![2, 5], answers))
            .await
            .unwrap();
        let handed = next(&mut rx);
        assert_eq!(handed.items, items);
        let publisher = handed.publisher.expect("its publisher");
        assert_eq!(publisher.lines, [2, 5]);
        assert!(publisher.tagged.is_none());
        assert!(handed.history.is_none());
    }

    #[tokio::test]
    async fn a_new_history_is_handed_on_its_own() {
        let (inbox, mut rx) = Inbox::bounded(4);
        inbox.new_history(3).await.unwrap();
        let handed = next(&mut rx);
        assert_eq!(handed.history, Some(3));
        assert!(handed.items.is_empty() && handed.publisher.is_none());
    }

    #[tokio::test]
    async fn a_stopped_sequencer_refuses_every_hand_off() {
        let (inbox, rx) = Inbox::bounded(4);
        drop(rx);
        let (answers, _answered) = mpsc::unbounded_channel();
        let tick = || vec![sequenced("A", 0)];
        assert!(inbox.publish(tick()).await.is_err());
        assert!(
            inbox
                .publish_items(tick().into_iter().map(Item::Tick).collect())
                .await
                .is_err()
        );
        let publisher = Publisher::new(vec![1], answers);
        assert!(
            inbox
                .publish_from(vec![Item::Tick(sequenced("A", 0))], publisher)
                .await
                .is_err()
        );
        assert!(inbox.new_history(1).await.is_err());
    }
}
