//! What an ingest connection writes back: error lines, in order, and the newest ack.
//!
//! Nothing here waits on the publisher: replies are written as far as its socket takes
//! them and the rest kept for when it is writable again, so a publisher that reads slowly
//! never stalls ingest. Acks are cumulative, so only the newest unwritten one is kept (after
//! the errors queued before it); error lines beyond [`MAX_PENDING`] bytes are dropped and
//! counted, as a publisher that reads none of them would otherwise grow the queue forever.

use std::io;

use bytes::{Buf, BytesMut};
use tokio::net::tcp::OwnedWriteHalf;

use crate::error::ErrorCode;

/// A connection's replies not yet written.
#[derive(Debug, Default)]
pub struct Replies {
    pending: BytesMut,
    /// The newest ack not yet rendered: (pseq, duplicates so far on this connection).
    ack: Option<(u64, u64)>,
    duplicates: u64,
    /// Error lines dropped (the publisher read none for too long).
    pub dropped: u64,
}

/// Unwritten error-line bytes kept per connection.
pub const MAX_PENDING: usize = 1 << 20;

#[derive(serde::Serialize)]
struct ErrorLine<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    line: u64,
    code: ErrorCode,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct AckLine {
    #[serde(rename = "type")]
    kind: &'static str,
    pseq: u64,
    duplicates: u64,
}

impl Replies {
    /// Queues `{"type":"error","line":..,"code":..,"message":..}`.
    pub fn error(&mut self, line: u64, code: ErrorCode, message: &str) {
        if self.pending.len() >= MAX_PENDING {
            self.dropped += 1;
            return;
        }
        let reply = ErrorLine {
            kind: "error",
            line,
            code,
            message,
        };
        self.pending
            .extend_from_slice(&crate::encode::json::to_vec(&reply));
        self.pending.extend_from_slice(b"\n");
    }

    /// Notes that every line up to `pseq` is settled, `duplicates` more of them resends.
    pub fn stored(&mut self, pseq: u64, duplicates: u64) {
        self.duplicates += duplicates;
        self.ack = Some((pseq, self.duplicates));
    }

    /// Whether anything waits to be written.
    pub fn is_empty(&self) -> bool {
        self.pending.is_empty() && self.ack.is_none()
    }

    /// Writes what the socket takes now; `Ok` with the rest kept when it is full.
    pub fn flush(&mut self, write: &OwnedWriteHalf) -> io::Result<()> {
        loop {
            if self.pending.is_empty() {
                let Some((pseq, duplicates)) = self.ack.take() else {
                    return Ok(());
                };
                let ack = AckLine {
                    kind: "ack",
                    pseq,
                    duplicates,
                };
                self.pending
                    .extend_from_slice(&crate::encode::json::to_vec(&ack));
                self.pending.extend_from_slice(b"\n");
            }
            match write.try_write(&self.pending) {
                Ok(n) => self.pending.advance(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
                Err(e) => {
                    self.pending.clear();
                    self.ack = None;
                    return Err(e);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn acks_coalesce_behind_the_errors_before_them() {
        let mut replies = Replies::default();
        replies.error(3, ErrorCode::BadJson, "nope");
        replies.stored(5, 1);
        replies.stored(9, 2);
        assert!(!replies.is_empty());
        let text = String::from_utf8(replies.pending.to_vec()).unwrap();
        assert!(text.starts_with(r#"{"type":"error","line":3,"code":"bad_json""#));
        assert_eq!(
            replies.ack,
            Some((9, 3)),
            "the newest ack, duplicates summed"
        );
    }

    #[test]
    fn error_lines_past_the_bound_are_dropped_and_counted() {
        let mut replies = Replies::default();
        let long = "x".repeat(4096);
        while replies.pending.len() < MAX_PENDING {
            replies.error(1, ErrorCode::BadJson, &long);
        }
        replies.error(2, ErrorCode::BadJson, "one more");
        assert_eq!(replies.dropped, 1);
    }
}
