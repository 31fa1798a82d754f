//! The background task: connect to the first address that accepts, write the hello, the
//! unacked lines and new lines, read the answers; reconnect when the connection ends.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};

use super::config::PublisherConfig;
use super::state::Shared;
use super::wire::{Applied, apply, hello_line, parse_answer};

/// One write carries at most about this many bytes (the rest goes in the next write).
const MAX_BATCH_BYTES: usize = 1 << 20;

/// An answer line longer than this is skipped (and counted as garbled).
const MAX_ANSWER_BYTES: usize = 64 * 1024;

/// The task: connect, serve the connection, repeat; until the hello is refused or the
/// handle stops it.
pub(super) async fn run(shared: Arc<Shared>, config: PublisherConfig) {
    let mut connected_before = false;
    loop {
        let Some(stream) = connect_any(&config.addrs, config.connect_timeout).await else {
            tokio::time::sleep(config.reconnect_pause).await;
            continue;
        };
        if connected_before {
            shared.lock().reconnects += 1;
        }
        connected_before = true;
        let end = serve(&shared, &config.id, stream).await;
        {
            let mut state = shared.lock();
            state.duplicates_done += std::mem::take(&mut state.duplicates_now);
        }
        match end {
            End::Fatal => return,
            End::Lost { heard: true } => {}
            End::Lost { heard: false } => tokio::time::sleep(config.reconnect_pause).await,
        }
    }
}

/// The first address that accepts a connection, in order.
async fn connect_any(addrs: &[SocketAddr], timeout: Duration) -> Option<TcpStream> {
    for addr in addrs {
        if let Ok(Ok(stream)) = tokio::time::timeout(timeout, TcpStream::connect(addr)).await {
            return Some(stream);
        }
    }
    None
}

/// How a connection ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// EOF or an I/O error; `heard` when the relay sent anything first.
    Lost { heard: bool },
    /// The relay refused the hello: stop.
    Fatal,
}

/// One connection: hello, resend, then new lines, while reading the answers.
async fn serve(shared: &Shared, id: &str, stream: TcpStream) -> End {
    // Latency over throughput; a socket that refuses the option still works.
    let _ = stream.set_nodelay(true);
    let (read, write) = stream.into_split();
    let hello_pseq = {
        let state = shared.lock();
        state.unacked.first().unwrap_or(state.next_pseq)
    };
    // The last pseq handed to the socket: an ack beyond it is clamped, never trusted to drop
    // lines the relay cannot have seen.
    let written = AtomicU64::new(hello_pseq - 1);
    let heard = AtomicBool::new(false);
    let end = tokio::select! {
        _ = write_lines(shared, write, id, hello_pseq, &written) => End::Lost { heard: false },
        end = read_answers(shared, read, hello_pseq, &written, &heard) => end,
    };
    match end {
        End::Lost { .. } => End::Lost {
            heard: heard.load(Ordering::Relaxed),
        },
        End::Fatal => End::Fatal,
    }
}

/// Writes the hello, the unacked lines and then new lines as they are queued, until a
/// write fails.
async fn write_lines(
    shared: &Shared,
    mut write: OwnedWriteHalf,
    id: &str,
    hello_pseq: u64,
    written: &AtomicU64,
) -> std::io::Error {
    let mut buf = hello_line(id, hello_pseq).into_bytes();
    let mut next = hello_pseq;
    loop {
        next = shared
            .lock()
            .unacked
            .copy_from(next, &mut buf, MAX_BATCH_BYTES);
        if buf.is_empty() {
            // `notify_one` leaves a permit when nobody waits: a line queued between the copy
            // above and this await is not missed.
            shared.queued.notified().await;
            continue;
        }
        written.store(next - 1, Ordering::Relaxed);
        if let Err(error) = write.write_all(&buf).await {
            return error;
        }
        buf.clear();
    }
}

/// Reads answer lines until EOF, an error, or a refused hello.
async fn read_answers(
    shared: &Shared,
    mut read: OwnedReadHalf,
    hello_pseq: u64,
    written: &AtomicU64,
    heard: &AtomicBool,
) -> End {
    let mut buf = Vec::with_capacity(4096);
    // Inside an over-long answer line, skipping to its end.
    let mut skipping = false;
    loop {
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return End::Lost { heard: false },
            Ok(_) => heard.store(true, Ordering::Relaxed),
        }
        let mut start = 0;
        while let Some(len) = buf[start..].iter().position(|&b| b == b'\n') {
            let line = &buf[start..start + len];
            start += len + 1;
            if std::mem::take(&mut skipping) {
                continue;
            }
            let line = line.strip_suffix(b"\r").unwrap_or(line);
            if line.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            let answer = parse_answer(line);
            if apply(shared, answer, hello_pseq, written.load(Ordering::Relaxed)) == Applied::Fatal
            {
                return End::Fatal;
            }
        }
        buf.drain(..start);
        if buf.len() > MAX_ANSWER_BYTES {
            buf.clear();
            if !skipping {
                skipping = true;
                shared.lock().garbled += 1;
            }
        }
    }
}

#[cfg(test)]
pub(in crate::publisher) mod tests {
    use super::*;

    use tokio::io::{AsyncBufReadExt, BufReader};
    use tokio::net::TcpListener;

    use crate::publisher::Publisher;

    /// Reads one line (without its `\n`) within a few seconds (the handle's tests too).
    pub(in crate::publisher) async fn next_line(
        lines: &mut tokio::io::Lines<BufReader<OwnedReadHalf>>,
    ) -> String {
        tokio::time::timeout(Duration::from_secs(5), lines.next_line())
            .await
            .expect("a line in time")
            .expect("read")
            .expect("not EOF")
    }

    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        for _ in 0..500 {
            if check() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        panic!("timed out waiting for {what}");
    }

    #[tokio::test]
    async fn a_reconnect_resends_exactly_the_unacked_lines_under_their_pseqs() {
        let relay = TcpListener::bind("127.0.0.1:0").await.unwrap();
        // A standby: its port refuses connects, so the publisher moves on to the relay.
        let standby = {
            let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            listener.local_addr().unwrap()
        };
        let publisher = Publisher::start(PublisherConfig {
            addrs: vec![standby, relay.local_addr().unwrap()],
            id: "test-pub".into(),
            first_pseq: 10,
            reconnect_pause: Duration::from_millis(10),
            ..PublisherConfig::default()
        })
        .await
        .unwrap();
        for k in 0..5 {
            assert_eq!(publisher.send(format!("line-{k}")).await, Ok(10 + k));
        }
        assert_eq!(publisher.sent(), 14);

        // First connection: the hello, the five lines; ack up to 11 (1 duplicate), refuse
        // line 3 (pseq 11), then drop the connection.
        let (socket, _) = relay.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        assert_eq!(
            next_line(&mut lines).await,
            r#"{"type":"hello","publisher":"test-pub","pseq":10}"#
        );
        for k in 0..5 {
            assert_eq!(next_line(&mut lines).await, format!("line-{k}"));
        }
        write
            .write_all(
                b"{\"type\":\"error\",\"line\":3,\"code\":\"bad_tick\",\"message\":\"m\"}\n\
                  garbage\n{\"type\":\"welcome\"}\n\
                  {\"type\":\"ack\",\"pseq\":11,\"duplicates\":1}\n",
            )
            .await
            .unwrap();
        eventually("the ack", || publisher.acked() == 11).await;
        assert_eq!(publisher.garbled_answers(), 1);
        drop((lines, write));

        // Second connection: a hello at the first unacked pseq, then exactly 12..=14 in order,
        // then a line sent after the reconnect.
        let (socket, _) = relay.accept().await.unwrap();
        let (read, mut write) = socket.into_split();
        let mut lines = BufReader::new(read).lines();
        assert_eq!(
            next_line(&mut lines).await,
            r#"{"type":"hello","publisher":"test-pub","pseq":12}"#
        );
        for k in 2..5 {
            assert_eq!(next_line(&mut lines).await, format!("line-{k}"));
        }
        assert_eq!(publisher.send("line-5".into()).await, Ok(15));
        assert_eq!(next_line(&mut lines).await, "line-5");
        assert_eq!(publisher.reconnects(), 1);
        // Line 3 of this connection is pseq 13.
        write
            .write_all(
                b"{\"type\":\"error\",\"line\":3,\"code\":\"unknown_symbol\",\"message\":\"\"}\n\
                  {\"type\":\"ack\",\"pseq\":13,\"duplicates\":1}\n\
                  {\"type\":\"ack\",\"pseq\":15,\"duplicates\":2}\n",
            )
            .await
            .unwrap();
        publisher.flush(Duration::from_secs(5)).await.unwrap();
        assert_eq!((publisher.acked(), publisher.sent()), (15, 15));
        assert_eq!(publisher.duplicates(), 3);
        assert_eq!(
            publisher.errors(),
            [
                (11, "bad_tick".to_owned()),
                (13, "unknown_symbol".to_owned())
            ]
        );
        publisher.close().await;
    }
}
