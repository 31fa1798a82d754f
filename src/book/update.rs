//! [`BookUpdate`]: one message of a book channel, and a publisher's update before it is
//! sequenced (seq 0, the full-book channel, its levels as published, and where to answer a
//! refusal: [`Origin`]).

use tokio::sync::mpsc;

use super::{BookChannel, BookError, Level};
use crate::tick::Seq;

/// What a book message is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BookKind {
    /// The levels that changed at `seq` (size 0: removed).
    Delta,
    /// The whole book (up to the channel's depth) at `seq`: replaces what the client holds.
    Snapshot,
    /// The whole book at `seq`, for the stream and the shards' copies only (a late edge or
    /// a restarted sequencer starts from the newest one); never sent to a client.
    Checkpoint,
}

/// A book channel's message, or (seq 0) a publisher's update of a book.
#[derive(Clone, Debug, PartialEq)]
pub struct BookUpdate {
    /// The channel (a publisher's update names the full book).
    pub channel: BookChannel,
    /// The book's seq: one per applied update, the same on every depth's channel;
    /// [`Seq(0)`](Seq) until the sequencer assigns it.
    pub seq: Seq,
    /// Delta, snapshot or checkpoint.
    pub kind: BookKind,
    /// Bids, best first.
    pub bids: Vec<Level>,
    /// Asks, best first.
    pub asks: Vec<Level>,
    /// CRC32 of the channel's top N after this update (docs/PROTOCOL.md).
    pub checksum: u32,
    /// Source event time, ns since the Unix epoch (the relay's receive time if the publisher
    /// gave none); passed through unchanged.
    pub ts_ns: u64,
    /// Relay ingest time, ns since the Unix epoch.
    pub recv_ns: u64,
    /// A merged message standing for `from_seq..=seq` (a client catching up), else `None`.
    pub from_seq: Option<Seq>,
    /// Where a publisher's update came from, to answer a refusal there.
    pub origin: Option<Origin>,
}

impl BookUpdate {
    /// A publisher's update of `channel`'s book, not yet sequenced.
    pub fn input(
        channel: BookChannel,
        kind: BookKind,
        bids: Vec<Level>,
        asks: Vec<Level>,
        ts_ns: u64,
    ) -> Self {
        Self {
            channel,
            seq: Seq(0),
            kind,
            bids,
            asks,
            checksum: 0,
            ts_ns,
            recv_ns: 0,
            from_seq: None,
            origin: None,
        }
    }

    /// Whether a client is sent it (a checkpoint is not).
    pub fn for_clients(&self) -> bool {
        self.kind != BookKind::Checkpoint
    }
}

/// Where a publisher's book update came from: its line (or message number) and the
/// connection's or request's reply channel, for a refusal only the book can decide (a delta
/// before any snapshot, a crossed result) that the sequencer finds after ingest has moved on.
#[derive(Clone, Debug)]
pub struct Origin {
    line: u64,
    replies: mpsc::Sender<Rejection>,
}

/// A book update the sequencer refused: the line it came on and why.
#[derive(Debug, Clone, PartialEq)]
pub struct Rejection {
    /// The line (or protobuf message, or array position), from 1.
    pub line: u64,
    /// Why.
    pub error: BookError,
}

impl Origin {
    /// The update on `line`, answered through `replies`.
    pub fn new(line: u64, replies: mpsc::Sender<Rejection>) -> Self {
        Self { line, replies }
    }

    /// Tells the publisher its update was refused. Best effort: a publisher that never reads
    /// its replies must not stall the sequencer (the refusal is counted and logged anyway).
    pub fn reject(&self, error: BookError) {
        let _ = self.replies.try_send(Rejection {
            line: self.line,
            error,
        });
    }
}

impl PartialEq for Origin {
    /// Two origins are the same line (the reply channel is not data).
    fn eq(&self, other: &Self) -> bool {
        self.line == other.line
    }
}
