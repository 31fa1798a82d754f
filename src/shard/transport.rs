//! [`Transport`]: a client's socket, plain TCP or TLS, used without waiting.
//!
//! The shard writes and the session reads with non-blocking `try_*` calls on readiness, so
//! TLS is driven sans-IO: rustls's `ServerConnection` encrypts what the shard hands it and
//! the records go out through the same non-blocking TCP writes; incoming records are read
//! from the socket, decrypted, and handed up as plaintext. The plain path is one match
//! away from the `TcpStream` calls it always made.

use std::cell::RefCell;
use std::io::{self, IoSlice, Read, Write};

use bytes::BytesMut;
use rustls::ServerConnection;
use tokio::net::TcpStream;

/// A client's socket.
#[derive(Debug)]
pub enum Transport {
    /// Plain TCP (`ws://`).
    Plain(TcpStream),
    /// TLS over TCP (`wss://`), past its handshake.
    Tls {
        /// The socket.
        tcp: TcpStream,
        /// The TLS session (never borrowed across an `.await`).
        conn: Box<RefCell<ServerConnection>>,
    },
}

impl Transport {
    /// The TCP socket underneath (readiness, socket options).
    pub fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) | Self::Tls { tcp, .. } => tcp,
        }
    }

    /// Writes what the socket takes now of `slices`; returns how many of their bytes were
    /// taken (for TLS: encrypted, and written or held as records for the next call).
    pub fn try_write_vectored(&self, slices: &[IoSlice<'_>]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => send_gathered(tcp, slices),
            Self::Tls { tcp, conn } => {
                let mut conn = conn.borrow_mut();
                // Records already encrypted go first: plaintext taken now queues behind them.
                write_records(&mut conn, tcp)?;
                let taken = conn.writer().write_vectored(slices)?;
                match write_records(&mut conn, tcp) {
                    Ok(()) => Ok(taken),
                    // The bytes are taken (encrypted); the socket is full for their records.
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock && taken > 0 => Ok(taken),
                    Err(e) => Err(e),
                }
            }
        }
    }

    /// Whether encrypted records are waiting for the socket (TLS only).
    pub fn pending(&self) -> bool {
        match self {
            Self::Plain(_) => false,
            Self::Tls { conn, .. } => conn.borrow().wants_write(),
        }
    }

    /// Writes waiting records (TLS only); `WouldBlock` if the socket is full.
    pub fn flush_pending(&self) -> io::Result<()> {
        match self {
            Self::Plain(_) => Ok(()),
            Self::Tls { tcp, conn } => write_records(&mut conn.borrow_mut(), tcp),
        }
    }

    /// Reads what has arrived, as plaintext appended to `buf`; `Ok(0)` when the peer has
    /// closed. `WouldBlock` when nothing (complete) has arrived.
    pub fn try_read_buf(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.try_read_buf(buf),
            Self::Tls { tcp, conn } => {
                let mut conn = conn.borrow_mut();
                let read = conn.read_tls(&mut TcpIo(tcp))?;
                let state = conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                let available = state.plaintext_bytes_to_read();
                let closed = state.peer_has_closed();
                let taken = take_plaintext(&mut conn, buf, available)?;
                if taken > 0 {
                    Ok(taken)
                } else if read == 0 || closed {
                    Ok(0)
                } else {
                    // Part of a record: the rest is still on its way.
                    Err(io::ErrorKind::WouldBlock.into())
                }
            }
        }
    }

    /// Moves plaintext the TLS session already decrypted (before the session took the
    /// socket over) into `buf`.
    pub fn take_buffered(&self, buf: &mut BytesMut) -> io::Result<usize> {
        match self {
            Self::Plain(_) => Ok(0),
            Self::Tls { conn, .. } => {
                let mut conn = conn.borrow_mut();
                let available = conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                    .plaintext_bytes_to_read();
                take_plaintext(&mut conn, buf, available)
            }
        }
    }

    /// Starts a TLS close (`close_notify`) before the TCP half-close; nothing for plain TCP.
    pub fn send_close_notify(&self) {
        if let Self::Tls { tcp, conn } = self {
            let mut conn = conn.borrow_mut();
            conn.send_close_notify();
            // Best effort: the TCP close follows either way.
            let _ = write_records(&mut conn, tcp);
        }
    }
}

fn take_plaintext(
    conn: &mut ServerConnection,
    buf: &mut BytesMut,
    available: usize,
) -> io::Result<usize> {
    if available == 0 {
        return Ok(0);
    }
    let start = buf.len();
    buf.resize(start + available, 0);
    conn.reader().read_exact(&mut buf[start..])?;
    Ok(available)
}

/// One non-blocking `sendmsg` of `slices`.
///
/// Not tokio's `try_write_vectored`, which is `writev(2)`: a write through the VFS pays for
/// the file checks (`fdget_pos`, `rw_verify_area`, the `vfs_writev` path) a socket never
/// needs. Profiled at 400k deliveries/s (perf, 2 cores), that path was ~8 % of the relay's
/// samples against ~5 % for the same data through `sendmsg`.
fn send_vectored(tcp: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    send_now(tcp, || socket2::SockRef::from(tcp).send_vectored(slices))
}

/// One non-blocking `send` of `buf`.
fn send_one(tcp: &TcpStream, buf: &[u8]) -> io::Result<usize> {
    send_now(tcp, || socket2::SockRef::from(tcp).send(buf))
}

/// One write of `slices`, as a single segment when they are small: the frames are copied
/// into a buffer kept per thread, then go out in one `send`.
///
/// The kernel copies a many-slice write slice by slice into its socket buffer; for the
/// relay's small frames (~150 B, a few per write) that per-slice walk cost more than one
/// user-space copy of the same bytes. Measured (`loadtest steady`, heavy clients, 4,000
/// ticks/s to 1,000 clients, 2 cores): relay CPU per delivery 1,400–1,475 ns against
/// 1,462–1,578 ns with the slices handed to the kernel as they are. A single buffer also
/// goes through `send(2)`, which skips `sendmsg`'s copy of the message header and the
/// iovec import. Writes above [`GATHER_MAX`] (a backlog, a snapshot) keep their slices:
/// the copy would not pay there.
fn send_gathered(tcp: &TcpStream, slices: &[IoSlice<'_>]) -> io::Result<usize> {
    match slices {
        [] => Ok(0),
        [one] => send_one(tcp, one),
        _ if slices.iter().map(|s| s.len()).sum::<usize>() > GATHER_MAX => {
            send_vectored(tcp, slices)
        }
        _ => GATHER.with(|scratch| {
            let mut scratch = scratch.borrow_mut();
            scratch.clear();
            for slice in slices {
                scratch.extend_from_slice(slice);
            }
            send_one(tcp, &scratch)
        }),
    }
}

/// Runs the non-blocking socket write `op`, asking the kernel before tokio's readiness.
///
/// tokio's `try_io` first loads the socket's readiness word, a cache miss per client per
/// turn (~1.5 % of the shard's samples). So `op` runs directly, and only a full socket goes
/// through `try_io`, which runs `op` once more and, if the socket is still full, clears the
/// readiness it saw: the next wait for writability really waits, and a readiness event that
/// arrived in between is not lost (tokio compares its tick).
fn send_now(tcp: &TcpStream, op: impl Fn() -> io::Result<usize>) -> io::Result<usize> {
    match op() {
        Err(e)
            if matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
            ) =>
        {
            tcp.try_io(tokio::io::Interest::WRITABLE, &op)
        }
        done => done,
    }
}

/// Largest write gathered into one buffer.
const GATHER_MAX: usize = 16 * 1024;

thread_local! {
    /// The gather buffer of this thread's shard (writes never overlap on one thread).
    static GATHER: RefCell<Vec<u8>> = RefCell::new(Vec::with_capacity(GATHER_MAX));
}

fn write_records(conn: &mut ServerConnection, tcp: &TcpStream) -> io::Result<()> {
    while conn.wants_write() {
        conn.write_tls(&mut TcpIo(tcp))?;
    }
    Ok(())
}

/// `Read`/`Write` over a tokio socket's non-blocking calls, for rustls.
struct TcpIo<'a>(&'a TcpStream);

impl Read for TcpIo<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.try_read(buf)
    }
}

impl Write for TcpIo<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        send_one(self.0, buf)
    }

    fn write_vectored(&mut self, bufs: &[IoSlice<'_>]) -> io::Result<usize> {
        send_vectored(self.0, bufs)
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::AsyncReadExt;

    async fn pair() -> (TcpStream, TcpStream) {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let client = TcpStream::connect(listener.local_addr().unwrap());
        let (client, accepted) = tokio::join!(client, listener.accept());
        (accepted.unwrap().0, client.unwrap())
    }

    async fn read_exactly(peer: &mut TcpStream, len: usize) -> Vec<u8> {
        let mut got = vec![0; len];
        tokio::time::timeout(std::time::Duration::from_secs(5), peer.read_exact(&mut got))
            .await
            .expect("the bytes arrive")
            .unwrap();
        got
    }

    /// Reads from `transport` once it is readable, until an answer other than WouldBlock.
    async fn read_answer(transport: &Transport, buf: &mut BytesMut) -> io::Result<usize> {
        for _ in 0..100 {
            transport.tcp().readable().await.unwrap();
            match transport.try_read_buf(buf) {
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
                other => return other,
            }
        }
        panic!("nothing but WouldBlock");
    }

    #[tokio::test]
    async fn tls_plaintext_comes_by_whole_records_and_half_a_record_is_not_an_end() {
        use tokio::io::AsyncWriteExt;
        let (relay_side, client) = pair().await;
        let (mut client, transport) = super::super::testkit::tls(client, relay_side).await;
        // One record, encrypted by the client's session and sent in two halves.
        let (tcp, conn) = client.get_mut();
        conn.writer().write_all(b"hello").unwrap();
        let mut record = Vec::new();
        while conn.wants_write() {
            conn.write_tls(&mut record).unwrap();
        }
        let (first, rest) = record.split_at(record.len() / 2);
        tcp.write_all(first).await.unwrap();
        let mut buf = BytesMut::new();
        transport.tcp().readable().await.unwrap();
        let half = transport.try_read_buf(&mut buf);
        assert_eq!(
            half.unwrap_err().kind(),
            io::ErrorKind::WouldBlock,
            "not an end"
        );
        tcp.write_all(rest).await.unwrap();
        assert_eq!(read_answer(&transport, &mut buf).await.unwrap(), 5);
        assert_eq!(&buf[..], b"hello");
        // The client's close_notify is the end.
        client.shutdown().await.unwrap();
        assert_eq!(read_answer(&transport, &mut buf).await.unwrap(), 0);
        // So is a TCP FIN without one (a client that went without a word).
        let (relay_side, client) = pair().await;
        let (client, transport) = super::super::testkit::tls(client, relay_side).await;
        let (mut tcp, _) = client.into_inner();
        tcp.shutdown().await.unwrap();
        assert_eq!(read_answer(&transport, &mut buf).await.unwrap(), 0);
    }

    #[tokio::test]
    async fn plaintext_the_tls_session_holds_already_is_taken_first_and_once() {
        use tokio::io::AsyncWriteExt;
        let (relay_side, client) = pair().await;
        let (mut client, transport) = super::super::testkit::tls(client, relay_side).await;
        client.write_all(b"early").await.unwrap();
        client.flush().await.unwrap();
        // As the HTTP server's reads leave it: the record is in the TLS session, its
        // plaintext not taken.
        let Transport::Tls { tcp, conn } = &transport else {
            unreachable!("a TLS transport")
        };
        let mut record = vec![0u8; 4096];
        loop {
            tcp.readable().await.unwrap();
            if let Ok(n) = tcp.try_read(&mut record) {
                let mut conn = conn.borrow_mut();
                conn.read_tls(&mut &record[..n]).unwrap();
                let state = conn.process_new_packets().unwrap();
                if state.plaintext_bytes_to_read() == 5 {
                    break;
                }
            }
        }
        let mut buf = BytesMut::new();
        assert_eq!(transport.take_buffered(&mut buf).unwrap(), 5);
        assert_eq!(&buf[..], b"early");
        assert_eq!(transport.take_buffered(&mut buf).unwrap(), 0, "taken once");
        let (plain, _peer) = pair().await;
        let plain = Transport::Plain(plain);
        assert_eq!(
            plain.take_buffered(&mut buf).unwrap(),
            0,
            "TCP holds nothing back"
        );
    }

    #[tokio::test]
    async fn a_tls_close_is_announced_before_the_tcp_close() {
        use tokio::io::AsyncReadExt;
        let (relay_side, client) = pair().await;
        let (mut client, transport) = super::super::testkit::tls(client, relay_side).await;
        transport.send_close_notify();
        drop(transport);
        // A clean end for the client's TLS session, not a truncation.
        let mut rest = Vec::new();
        let read = client.read_to_end(&mut rest).await;
        assert_eq!(read.map_err(|e| e.kind()), Ok(0));
    }

    #[tokio::test]
    async fn gathered_and_sliced_writes_arrive_byte_for_byte() {
        let (server, mut peer) = pair().await;
        let transport = Transport::Plain(server);
        transport.tcp().writable().await.unwrap();
        // Small frames are gathered; a write above the limit goes out as its slices.
        let small: Vec<Vec<u8>> = (0..5u8).map(|i| vec![i; 150 + usize::from(i)]).collect();
        let big: Vec<Vec<u8>> = (0..3u8).map(|i| vec![b'a' + i; GATHER_MAX / 2]).collect();
        let again: Vec<Vec<u8>> = small.iter().rev().take(2).cloned().collect();
        // The second gathered write must not carry the first one's bytes.
        for frames in [&small, &big, &again] {
            let slices: Vec<IoSlice<'_>> = frames.iter().map(|f| IoSlice::new(f)).collect();
            let expected = frames.concat();
            let written = transport.try_write_vectored(&slices).unwrap();
            assert_eq!(written, expected.len(), "loopback takes it all at once");
            assert_eq!(read_exactly(&mut peer, written).await, expected);
        }
    }

    #[tokio::test]
    async fn a_full_socket_takes_a_prefix_and_reports_what_it_took() {
        let (server, mut peer) = pair().await;
        let transport = Transport::Plain(server);
        let frames: Vec<Vec<u8>> = (0..8u8).map(|i| vec![i; 1000]).collect();
        let stream = frames.concat();
        let mut sent = Vec::new();
        // Nobody reads: the write that finds the socket full must say so, never lose bytes.
        let full = loop {
            let at = sent.len() % stream.len();
            let rest = &stream[at..];
            let slices: Vec<IoSlice<'_>> = rest.chunks(1000).map(IoSlice::new).collect();
            match transport.try_write_vectored(&slices) {
                Ok(n) => sent.extend_from_slice(&rest[..n]),
                Err(e) => break e,
            }
            assert!(sent.len() < 64 << 20, "a socket that never fills");
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        // The full socket's readiness is cleared: waiting for writability waits (a stale
        // "writable" would spin the shard on a client that reads nothing).
        let wait = tokio::time::timeout(
            std::time::Duration::from_millis(100),
            transport.tcp().writable(),
        );
        assert!(wait.await.is_err(), "writable while the socket is full");
        assert_eq!(read_exactly(&mut peer, sent.len()).await, sent);
        tokio::time::timeout(
            std::time::Duration::from_secs(5),
            transport.tcp().writable(),
        )
        .await
        .expect("writable again once the peer has read")
        .unwrap();
    }

    #[tokio::test]
    async fn records_a_full_socket_refuses_are_pending_until_flushed() {
        let (relay_side, client) = pair().await;
        let (mut client, transport) = super::super::testkit::tls(client, relay_side).await;
        assert!(!transport.pending(), "nothing waits after the handshake");
        // The client reads nothing: the socket fills, and records encrypted past it wait.
        let chunk = vec![b'x'; 16 * 1024];
        let mut taken = 0;
        let full = loop {
            match transport.try_write_vectored(&[IoSlice::new(&chunk)]) {
                Ok(n) => taken += n,
                Err(e) => break e,
            }
            assert!(taken < 64 << 20, "a socket that never fills");
        };
        assert_eq!(full.kind(), io::ErrorKind::WouldBlock);
        // What marks the client blocked until the socket drains, even with every byte
        // handed to it taken.
        assert!(transport.pending(), "records wait for the socket");
        let read = async {
            let mut got = vec![0; taken];
            tokio::time::timeout(
                std::time::Duration::from_secs(5),
                client.read_exact(&mut got),
            )
            .await
            .expect("every byte taken arrives")
            .unwrap();
            got
        };
        let flush = async {
            loop {
                transport.tcp().writable().await.unwrap();
                match transport.flush_pending() {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    done => break done,
                }
            }
        };
        let (got, flushed) = tokio::join!(read, flush);
        flushed.unwrap();
        assert!(got.iter().all(|&b| b == b'x'));
        assert!(!transport.pending(), "nothing waits once flushed");
        let (plain, _peer) = pair().await;
        assert!(
            !Transport::Plain(plain).pending(),
            "plain TCP holds no records"
        );
    }

    /// rustls writes its records with `write_vectored` today, but `write` is the `Write`
    /// contract's own call: a single write must take the bytes it says it took.
    #[tokio::test]
    async fn the_rustls_socket_adapter_writes_what_it_reports_by_either_call() {
        let (server, mut peer) = pair().await;
        server.writable().await.unwrap();
        let mut io = TcpIo(&server);
        assert_eq!(io.write(b"one record").unwrap(), 10);
        let two = [IoSlice::new(b"and "), IoSlice::new(b"two")];
        assert_eq!(io.write_vectored(&two).unwrap(), 7);
        io.flush().unwrap();
        assert_eq!(read_exactly(&mut peer, 17).await, b"one recordand two");
    }
}
