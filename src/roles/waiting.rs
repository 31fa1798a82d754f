//! While a relay waits for NATS at start-up (the first connect, or an edge's wait for the
//! stream's epoch), its `--listen` socket is bound but the HTTP server is not built yet:
//! [`NotReady`] answers every request on it with `503 {"status":"starting"}`, so `/ready`
//! tells a load balancer or a script "not yet" instead of leaving it hanging.

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::mpsc;
use std::thread::JoinHandle;
use std::time::Duration;

use tracing::debug;

/// The thread answering 503 on the bound listener until [`NotReady::stop`].
#[derive(Debug)]
pub(super) struct NotReady {
    stop: mpsc::Sender<()>,
    thread: JoinHandle<()>,
}

impl NotReady {
    /// Answers on (a handle of) `listener`, saying `reason`, until stopped. `None` when the
    /// listener cannot be shared or the thread not started: start-up goes on, unanswered.
    pub(super) fn serve(listener: &TcpListener, reason: &'static str) -> Option<Self> {
        let listener = listener.try_clone().ok()?;
        let (stop, stopped) = mpsc::channel();
        let thread = std::thread::Builder::new()
            .name("starting".into())
            .spawn(move || answer(&listener, &stopped, reason))
            .ok()?;
        Some(Self { stop, thread })
    }

    /// Stops answering and waits for the thread: connections not yet accepted stay queued
    /// for the real server.
    pub(super) fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.thread.join();
    }
}

fn answer(listener: &TcpListener, stopped: &mpsc::Receiver<()>, reason: &'static str) {
    let go_on = |wait: Duration| {
        matches!(
            stopped.recv_timeout(wait),
            Err(mpsc::RecvTimeoutError::Timeout)
        )
    };
    loop {
        match listener.accept() {
            Ok((stream, peer)) => {
                debug!(%peer, "HTTP request while starting: 503");
                respond(stream, reason);
                if !go_on(Duration::ZERO) {
                    return;
                }
            }
            // The listener is non-blocking (relay.rs binds it so): nobody is waiting (or
            // accept failed for a moment); look again after a pause, unless told to stop.
            Err(_) => {
                if !go_on(POLL) {
                    return;
                }
            }
        }
    }
}

fn respond(mut stream: TcpStream, reason: &'static str) {
    // Accepted sockets are blocking; a client that sends nothing is dropped after a second.
    let _ = stream.set_nonblocking(false);
    let _ = stream.set_read_timeout(Some(Duration::from_secs(1)));
    let _ = stream.set_write_timeout(Some(Duration::from_secs(1)));
    let mut head = [0u8; 4096];
    let mut read = 0;
    while read < head.len() {
        match stream.read(&mut head[read..]) {
            Ok(0) | Err(_) => break,
            Ok(n) => read += n,
        }
        if head[..read].windows(4).any(|w| w == b"\r\n\r\n") {
            break;
        }
    }
    let body = format!(r#"{{"status":"starting","reason":"{reason}"}}"#);
    let _ = write!(
        stream,
        "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\n\
         retry-after: 1\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
        body.len()
    );
}

/// How often the answering thread looks for a stop signal while nobody connects.
const POLL: Duration = Duration::from_millis(50);
