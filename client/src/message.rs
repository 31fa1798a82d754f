//! [`Message`]: one server message as the client reads it, whatever its encoding.

use crate::derived::Derived;
use crate::item::{Event, ServerError, Tick, Undecodable};

/// A decoded server message.
#[derive(Debug, PartialEq)]
pub(crate) enum Message {
    Welcome {
        session: u64,
        epoch: Option<String>,
    },
    Tick(Tick),
    Snapshot(Tick),
    Event(Event),
    /// A bar, a bars snapshot or a ticker.
    Derived(Derived),
    /// A `book:` channel's message.
    Book(crate::book::BookMessage),
    Gap {
        symbol: Option<String>,
        channel: Option<String>,
        /// The rate tier whose frames are missing (`None`: the raw stream).
        tier: Option<String>,
        from: u64,
        to: u64,
    },
    Error(ServerError),
    /// A message that could not be decoded, with its key and seq when they could be read.
    Undecodable(Undecodable),
    /// Acks, pongs, heartbeats: signs of life with nothing to deliver.
    Other,
}

impl Message {
    /// A message of which nothing could be read.
    pub(crate) fn undecodable(reason: impl Into<String>) -> Self {
        Self::Undecodable(Undecodable {
            key: None,
            seq: None,
            tier: None,
            reason: reason.into(),
        })
    }
}
