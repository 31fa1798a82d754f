//! One open session's read loop: socket → [`Reassembler`] → [`Tally`] (through the NATS
//! stream for a client of nats-server), the pings and the close answered, and why the session
//! ended.

use std::ops::ControlFlow;
use std::sync::atomic::Ordering;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::frame::{FrameError, OP_CLOSE, OP_PONG, encode_client_frame, random_mask};
use super::reassembly::{Piece, Reassembler};
use super::tally::Tally;
use super::thread_state::ThreadState;
use super::{ClientProfile, Protocol, nats};
use crate::decode::NatsStream;
use crate::latency::now_ns;

/// Why a session ended before shutdown.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionEnd {
    #[error("relay closed the connection (EOF)")]
    Eof,
    #[error("relay sent close {0}")]
    CloseFrame(String),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from relay: {0}")]
    Frame(#[from] FrameError),
}

/// One open session: its frames in progress, its tally, and what it owes the server.
pub(super) struct Conn {
    frames: Reassembler,
    /// A client of nats-server: the operations split across its frames.
    nats: Option<NatsStream>,
    tally: Tally,
    /// Frames to send (pong, close), written after the read is processed.
    replies: Vec<u8>,
    close: Option<String>,
}

impl Conn {
    /// A session speaking `protocol` that counts into `tally`.
    pub(super) fn new(tally: Tally, protocol: Protocol) -> Self {
        Self {
            frames: Reassembler::default(),
            nats: (protocol == Protocol::Nats).then(NatsStream::default),
            tally,
            replies: Vec::new(),
            close: None,
        }
    }

    /// Reads until the session ends; `leftover` is what the upgrade read past its head.
    pub(super) async fn run(
        &mut self,
        stream: &mut TcpStream,
        threads: &ThreadState,
        leftover: &[u8],
    ) -> SessionEnd {
        if !leftover.is_empty()
            && let Err(e) = self.process(leftover, threads)
        {
            return e;
        }
        loop {
            if let Some(code) = self.close.take() {
                let _ = stream.write_all(&self.replies).await;
                return SessionEnd::CloseFrame(code);
            }
            if !self.replies.is_empty() {
                if let Err(e) = stream.write_all(&self.replies).await {
                    return e.into();
                }
                self.replies.clear();
            }
            if self.tally.slow() && self.tally.welcomed() && !threads.slow_awake.get() {
                // A stuck consumer: hold the socket unread until woken (or shut down). On this
                // single thread nothing runs between the check and the wait, so no wake is lost.
                threads.wake.notified().await;
                continue;
            }
            if let Err(e) = stream.readable().await {
                return e.into();
            }
            let mut buf = threads.read_buf.borrow_mut();
            let want = match threads.profile {
                ClientProfile::Light => buf.len(),
                ClientProfile::Heavy => self.frames.frame_at_a_time(buf.len()),
            };
            match read_drained(stream, &mut buf[..want]) {
                Ok(0) => return SessionEnd::Eof,
                Ok(n) => {
                    if let Err(e) = self.process(&buf[..n], threads) {
                        return e;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return e.into(),
            }
        }
    }

    /// Parses and counts every complete frame of one read; keeps the incomplete tail.
    fn process(&mut self, data: &[u8], threads: &ThreadState) -> Result<(), SessionEnd> {
        let now = now_ns();
        let mut figures = threads.figures.borrow_mut();
        let fig = &mut *figures;
        let local = self.tally.local();
        fig.clients[local].counts.reads += 1;
        let ticks_before = fig.clients[local].counts.ticks;
        let (tally, replies, close) = (&mut self.tally, &mut self.replies, &mut self.close);
        let nats_stream = &mut self.nats;
        let result = self.frames.feed(data, |len, piece| {
            let counts = &mut fig.clients[local].counts;
            counts.frames += 1;
            counts.bytes += len as u64;
            match piece {
                Piece::Message(payload) => match nats_stream {
                    Some(stream) => {
                        nats::on_payload(stream, payload, tally, now, fig, threads, replies);
                    }
                    None => tally.message(payload, now, fig, threads),
                },
                Piece::Ping(payload) => {
                    encode_client_frame(OP_PONG, payload, random_mask(), replies);
                }
                Piece::Close(payload) => {
                    *close = Some(close_reason(payload));
                    encode_client_frame(
                        OP_CLOSE,
                        payload.get(..2).unwrap_or(&[]),
                        random_mask(),
                        replies,
                    );
                    return ControlFlow::Break(());
                }
                Piece::Fragment | Piece::Pong => {}
            }
            ControlFlow::Continue(())
        });
        let delivered = fig.clients[local].counts.ticks - ticks_before;
        if delivered > 0 {
            threads
                .progress
                .ticks
                .fetch_add(delivered, Ordering::Relaxed);
            if !self.tally.slow() {
                threads
                    .progress
                    .ticks_fast
                    .fetch_add(delivered, Ordering::Relaxed);
            }
        }
        result.map_err(SessionEnd::from)
    }
}

/// `1000 reason` from a close frame's payload.
fn close_reason(payload: &[u8]) -> String {
    match payload {
        [a, b, reason @ ..] => format!(
            "{} {}",
            u16::from_be_bytes([*a, *b]),
            String::from_utf8_lossy(reason)
        ),
        _ => "(no code)".to_owned(),
    }
}

/// One read syscall per wakeup: a read shorter than the buffer emptied the socket, so
/// readiness is cleared right away instead of by a second read that would return WouldBlock.
/// No wakeup is lost: data arriving later is a new epoll edge, and tokio ignores a clear made
/// with an older readiness tick.
fn read_drained(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read(buf)?;
        if n > 0 && n < buf.len() {
            got = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match got {
        Some(n) => Ok(n),
        None => result,
    }
}
