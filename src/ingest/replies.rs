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

    /// A connected loopback pair, the relay's side with a small send buffer.
    async fn pair() -> (OwnedWriteHalf, tokio::net::TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let peer = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (relay, _) = listener.accept().await.unwrap();
        socket2::SockRef::from(&relay)
            .set_send_buffer_size(4096)
            .unwrap();
        socket2::SockRef::from(&peer)
            .set_recv_buffer_size(4096)
            .unwrap();
        (relay.into_split().1, peer)
    }

    /// Reads what `peer` has until it is quiet for 10 ms (a zero window may hold the rest
    /// longer; the callers loop until they have what they wait for).
    async fn read_some(peer: &mut tokio::net::TcpStream, bytes: &mut Vec<u8>) {
        use tokio::io::AsyncReadExt;
        let mut chunk = [0u8; 65536];
        let wait = std::time::Duration::from_millis(10);
        while let Ok(Ok(n @ 1..)) = tokio::time::timeout(wait, peer.read(&mut chunk)).await {
            bytes.extend_from_slice(&chunk[..n]);
        }
    }

    #[tokio::test]
    async fn what_the_socket_refuses_waits_and_the_ack_comes_after_the_errors() {
        let (write, mut peer) = pair().await;
        let mut replies = Replies::default();
        replies.stored(1, 0);
        assert!(!replies.is_empty(), "an ack alone waits too");
        let long = "x".repeat(1000);
        for line in 1..=100 {
            replies.error(line, ErrorCode::BadJson, &long);
        }
        replies.stored(100, 3);
        replies.flush(&write).expect("a full socket is no error");
        assert!(
            !replies.is_empty(),
            "100 KB do not fit a 4 KB buffer at once"
        );
        let mut bytes = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while !replies.is_empty() {
            assert!(
                tokio::time::Instant::now() < deadline,
                "the replies never drained"
            );
            read_some(&mut peer, &mut bytes).await;
            replies.flush(&write).expect("flush");
        }
        let ack = br#""duplicates":3}"#;
        while !bytes.ends_with(b"}\n") || !bytes[..bytes.len() - 1].ends_with(ack) {
            assert!(tokio::time::Instant::now() < deadline, "the ack never came");
            read_some(&mut peer, &mut bytes).await;
        }
        let text = String::from_utf8(bytes).expect("whole lines");
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 101, "every error line, then one ack");
        assert!(lines[99].starts_with(r#"{"type":"error","line":100,"#));
        assert_eq!(lines[100], r#"{"type":"ack","pseq":100,"duplicates":3}"#);
    }

    #[tokio::test]
    async fn a_gone_publisher_is_an_error_and_nothing_waits_for_it() {
        let (write, peer) = pair().await;
        drop(peer);
        let mut replies = Replies::default();
        let mut failed = false;
        // The first writes may land in the buffer before the reset is seen.
        for line in 1..=100 {
            replies.error(line, ErrorCode::BadJson, "gone");
            replies.stored(line, 0);
            if replies.flush(&write).is_err() {
                failed = true;
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
        assert!(failed, "writing to a closed connection fails");
        assert!(replies.is_empty(), "and drops what it held");
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
