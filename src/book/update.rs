//! [`BookUpdate`]: one message of a book channel, and a publisher's update before it is
//! sequenced (seq 0, the full-book channel, its levels as published). A refusal reaches its
//! publisher like any item's, through the hand-off ([`crate::ingest::Publisher`]).

use super::{BookChannel, Level};
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
        }
    }

    /// Whether a client is sent it (a checkpoint is not).
    pub fn for_clients(&self) -> bool {
        self.kind != BookKind::Checkpoint
    }
}
