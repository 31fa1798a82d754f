//! TCP ingest: one listener per format, one task per publisher connection.
//!
//! Per connection: read, split into lines (NDJSON) or length-delimited messages (protobuf),
//! decode, stamp `recv_ns`, and publish the batch. While [`Inbox::publish`] waits, nothing
//! is read, so a fast publisher is slowed by TCP backpressure instead of losing ticks. A bad
//! tick is answered on the connection with
//! `{"type":"error","line":N,"code":"...","message":"..."}\n`, counted and skipped; so is a
//! tick the sequencer refuses (a new symbol beyond `--max-symbols`), once it has been
//! sequenced (its line then may follow later lines' answers), and a book update only its
//! book can refuse (a delta before any snapshot, a crossed result), sent back by the
//! sequencer through the update's `Origin`. A connection cut mid-message loses only that
//! partial message; one the publisher half-closes gets every answer before the relay closes
//! it.

use std::sync::Arc;

use bytes::BytesMut;
use tokio::io::AsyncReadExt;
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use super::ndjson::LineDecoder;
use super::replies::Replies;
use super::{Answer, DecodeError, Hello, Inbox, Publisher, Tagged, Tagging, protobuf};
use crate::event::Item;
use crate::metrics::{self, Metrics};
use crate::shutdown::Shutdown;
use crate::tick::now_ns;

/// How a connection's bytes are framed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Newline-delimited JSON ticks.
    Ndjson,
    /// Varint length prefix + protobuf `Tick`.
    Protobuf,
}

impl Format {
    fn as_str(self) -> &'static str {
        match self {
            Self::Ndjson => "ndjson",
            Self::Protobuf => "protobuf",
        }
    }
}

/// Accepts publisher connections until shutdown.
pub async fn serve(
    listener: TcpListener,
    format: Format,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    max_message: usize,
    max_event: usize,
    shutdown: Shutdown,
) {
    let mut connections = tokio::task::JoinSet::new();
    loop {
        tokio::select! {
            // Shutdown wins over a waiting publisher: once draining, accept nobody.
            biased;
            () = shutdown.wait() => break,
            accepted = listener.accept() => match accepted {
                Ok((stream, peer)) => {
                    // Per connection, so debug: a publisher that reconnects often must not flood the log.
                    debug!(%peer, format = format.as_str(), "ingest connection");
                    let conn = Connection {
                        format,
                        inbox: inbox.clone(),
                        metrics: metrics.clone(),
                        max_message,
                        max_event,
                        peer: peer.to_string(),
                    };
                    connections.spawn_local(conn.run(stream, shutdown.clone()));
                }
                Err(e) => {
                    warn!(error = %e, "ingest accept failed; retrying");
                    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                }
            },
        }
    }
    // Each connection publishes what it already read, then ends on the same shutdown.
    while connections.join_next().await.is_some() {}
}

struct Connection {
    format: Format,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    max_message: usize,
    max_event: usize,
    peer: String,
}

impl Connection {
    async fn run(self, stream: TcpStream, shutdown: Shutdown) {
        metrics::add(&self.metrics.ingest_connections, 1);
        metrics::add(&self.metrics.ingest_connections_total, 1);
        let _ = stream.set_nodelay(true);
        let (mut read, write) = stream.into_split();
        let mut decoder = Decoder::new(self.format, self.max_message).event_limit(self.max_event);
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let mut replies = Replies::default();
        let (answers, mut answered) = mpsc::unbounded_channel::<Answer>();
        loop {
            make_room(&mut buf);
            let read = tokio::select! {
                // Shutdown first: stop reading; what was read is already published.
                biased;
                () = shutdown.wait() => break,
                Some(answer) = answered.recv() => {
                    self.answer(&write, &mut replies, answer);
                    continue;
                }
                Ok(()) = write.writable(), if !replies.is_empty() => {
                    self.flush(&write, &mut replies);
                    continue;
                }
                read = read.read_buf(&mut buf) => read,
            };
            match read {
                Ok(0) => {
                    if !buf.is_empty() {
                        debug!(peer = %self.peer, bytes = buf.len(), "ingest connection closed mid-message; partial message dropped");
                    }
                    break;
                }
                Ok(_) => {}
                Err(e) => {
                    debug!(peer = %self.peer, error = %e, "ingest read failed");
                    break;
                }
            }
            let (ticks, lines, fatal) = decoder.drain_numbered(&mut buf, |line, error| {
                self.reject(&mut replies, line, error);
            });
            self.flush(&write, &mut replies);
            let mut publisher = Publisher::new(lines, answers.clone());
            publisher.tagged = decoder.tagged(&publisher.lines);
            if self.inbox.publish_from(ticks, publisher).await.is_err() || fatal {
                break;
            }
        }
        // The sequencer drops each hand-off's sender once it is answered: with ours gone
        // too, the channel ends after the last answer to what this connection published.
        drop(answers);
        let mut answering = true;
        while answering || !replies.is_empty() {
            tokio::select! {
                biased;
                () = shutdown.wait() => break,
                answer = answered.recv(), if answering => match answer {
                    Some(answer) => self.answer(&write, &mut replies, answer),
                    None => answering = false,
                },
                writable = write.writable(), if !replies.is_empty() => {
                    if writable.is_err() {
                        break;
                    }
                    self.flush(&write, &mut replies);
                }
            }
        }
        metrics::sub(&self.metrics.ingest_connections, 1);
    }

    fn answer(&self, write: &OwnedWriteHalf, replies: &mut Replies, answer: Answer) {
        match answer {
            Answer::Refused(refused) => {
                replies.error(refused.line, refused.code(), &refused.to_string());
            }
            Answer::Stored { pseq, duplicates } => replies.stored(pseq, duplicates),
        }
        self.flush(write, replies);
    }

    /// Writes what the publisher's socket takes now. A publisher that reads nothing must
    /// not stall ingest: error lines past the bound are dropped (each was counted and
    /// logged when it was found).
    fn flush(&self, write: &OwnedWriteHalf, replies: &mut Replies) {
        if let Err(e) = replies.flush(write) {
            debug!(peer = %self.peer, error = %e, "ingest reply not written");
        }
    }

    fn reject(&self, replies: &mut Replies, line: u64, error: &DecodeError) {
        self.metrics.count_error(error.code());
        debug!(peer = %self.peer, line, code = error.code().as_str(), %error, "ingest tick rejected");
        replies.error(line, error.code(), &error.to_string());
    }
}

/// Splits a byte stream into messages and decodes them, counting messages from 1.
#[derive(Debug)]
pub struct Decoder {
    format: Format,
    max_message: usize,
    lines: LineDecoder,
    line: u64,
    /// Skipping the rest of an over-long line, up to its `\n`.
    discarding: bool,
    /// After a publisher's hello: the pseq of each line.
    tagging: Option<Tagging>,
}

impl Decoder {
    /// Refuses event `data` over `max_event` bytes (NDJSON; the default is
    /// `--max-event-bytes`'s).
    pub fn event_limit(mut self, max_event: usize) -> Self {
        self.lines = LineDecoder::with_event_limit(max_event);
        self
    }

    /// A decoder for `format` that rejects messages over `max_message` bytes.
    pub fn new(format: Format, max_message: usize) -> Self {
        Self {
            format,
            max_message,
            lines: LineDecoder::new(),
            line: 0,
            discarding: false,
            tagging: None,
        }
    }

    /// The tags of the items just drained (on `lines`), when the publisher said hello.
    pub fn tagged(&self, lines: &[u64]) -> Option<Tagged> {
        self.tagging.as_ref()?.tagged(lines, self.line)
    }

    /// Takes a hello read on the current line: only the connection's first line may be one.
    fn hello(&mut self, hello: Result<Hello, DecodeError>) -> Result<(), DecodeError> {
        if self.line != 1 {
            return Err(DecodeError::Hello(
                "a hello must be the connection's first line".into(),
            ));
        }
        self.tagging = Some(Tagging::new(hello?, self.line));
        Ok(())
    }

    /// Decodes every complete message in `buf` (leaving a partial one), reporting bad ones to
    /// `reject(line, error)`. Returns the ticks (stamped with `recv_ns`) and whether the
    /// stream cannot continue (a protobuf length over the limit: no way to resynchronise).
    pub fn drain(
        &mut self,
        buf: &mut BytesMut,
        reject: impl FnMut(u64, &DecodeError),
    ) -> (Vec<Item>, bool) {
        let (items, _, fatal) = self.drain_numbered(buf, reject);
        (items, fatal)
    }

    /// [`Decoder::drain`], with each item's line (or message) number beside it.
    pub fn drain_numbered(
        &mut self,
        buf: &mut BytesMut,
        mut reject: impl FnMut(u64, &DecodeError),
    ) -> (Vec<Item>, Vec<u64>, bool) {
        let recv_ns = now_ns();
        let mut ticks = Vec::new();
        let mut lines = Vec::new();
        let mut accept = |result: Result<Item, DecodeError>, line: u64| match result {
            Ok(mut item) => {
                item.stamp(recv_ns);
                ticks.push(item);
                lines.push(line);
            }
            Err(error) => reject(line, &error),
        };
        match self.format {
            Format::Ndjson => {
                while let Some(end) = memchr(b'\n', buf) {
                    let mut line = buf.split_to(end + 1);
                    if std::mem::take(&mut self.discarding) {
                        continue;
                    }
                    self.line += 1;
                    if end > self.max_message {
                        let error = DecodeError::TooLong {
                            len: end,
                            limit: self.max_message,
                        };
                        accept(Err(error), self.line);
                        continue;
                    }
                    if let Some(hello) = Hello::from_json(&line[..end]) {
                        if let Err(error) = self.hello(hello) {
                            accept(Err(error), self.line);
                            return (ticks, lines, true);
                        }
                        continue;
                    }
                    if let Some(result) = self.lines.decode(&mut line[..end]) {
                        accept(result, self.line);
                    }
                }
                if buf.len() > self.max_message {
                    if !self.discarding {
                        self.line += 1;
                        let error = DecodeError::TooLong {
                            len: buf.len(),
                            limit: self.max_message,
                        };
                        accept(Err(error), self.line);
                    }
                    self.discarding = true;
                    buf.clear();
                }
                (ticks, lines, false)
            }
            Format::Protobuf => {
                while let Some(body) = protobuf::next_body(buf, self.max_message) {
                    self.line += 1;
                    let hello = body.as_ref().ok().and_then(|b| Hello::from_protobuf(b));
                    if let Some(hello) = hello {
                        if let Err(error) = self.hello(hello) {
                            accept(Err(error), self.line);
                            return (ticks, lines, true);
                        }
                        continue;
                    }
                    let result = body.and_then(|body| protobuf::decode_item(&body));
                    let fatal = matches!(&result, Err(e) if e.ends_stream());
                    accept(result, self.line);
                    if fatal {
                        return (ticks, lines, true);
                    }
                }
                (ticks, lines, false)
            }
        }
    }
}

fn memchr(needle: u8, haystack: &[u8]) -> Option<usize> {
    haystack.iter().position(|b| *b == needle)
}

/// Bytes read per call; large enough that a busy publisher costs few syscalls.
const READ_CHUNK: usize = 64 * 1024;

/// Before a read: once less than a quarter chunk is free, room for a whole chunk more
/// (fewer, larger reads); until then the read goes into what is left.
fn make_room(buf: &mut BytesMut) {
    if buf.capacity() - buf.len() < READ_CHUNK / 4 {
        buf.reserve(READ_CHUNK);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BufMut;

    #[test]
    fn the_read_buffer_grows_by_a_chunk_only_once_less_than_a_quarter_is_free() {
        let mut buf = BytesMut::with_capacity(READ_CHUNK);
        let capacity = buf.capacity();
        buf.put_bytes(b'x', capacity - READ_CHUNK / 4);
        make_room(&mut buf);
        assert_eq!(
            buf.capacity(),
            capacity,
            "a quarter chunk free is read into"
        );
        buf.put_u8(b'x');
        make_room(&mut buf);
        assert!(
            buf.capacity() - buf.len() >= READ_CHUNK,
            "room for a whole chunk"
        );
        let full = buf.len();
        buf.put_bytes(b'x', buf.capacity() - full);
        make_room(&mut buf);
        assert!(
            buf.capacity() - buf.len() >= READ_CHUNK,
            "a full buffer grows"
        );
    }

    #[test]
    fn partial_lines_wait_and_bad_lines_are_numbered() {
        let mut d = Decoder::new(Format::Ndjson, 1024);
        let mut buf = BytesMut::from(
            &b"{\"symbol\":\"A\",\"price\":1,\"ts_ns\":1}\nnope\n{\"symbol\":\"A\",\"pr"[..],
        );
        let mut rejected = Vec::new();
        let (ticks, fatal) = d.drain(&mut buf, |line, e| rejected.push((line, e.code().as_str())));
        assert_eq!(ticks.len(), 1);
        assert!(!fatal);
        assert_eq!(rejected, vec![(2, "bad_json")]);
        buf.extend_from_slice(b"ice\":2,\"ts_ns\":2}\n");
        let (ticks, _) = d.drain(&mut buf, |_, _| panic!("valid"));
        assert_eq!(ticks[0].tick().unwrap().price, Some(2.0));
    }

    #[test]
    fn an_overlong_line_is_rejected_once_and_skipped() {
        let mut d = Decoder::new(Format::Ndjson, 40);
        let mut buf = BytesMut::from(&[b'x'; 60][..]);
        let mut rejected = Vec::new();
        d.drain(&mut buf, |line, e| rejected.push((line, e.code().as_str())));
        buf.extend_from_slice(b"xxxx\n{\"symbol\":\"A\",\"price\":1,\"ts_ns\":1}\n");
        let (ticks, _) = Decoder::drain(&mut d, &mut buf, |line, e| {
            rejected.push((line, e.code().as_str()))
        });
        assert_eq!(rejected, vec![(1, "line_too_long")]);
        assert_eq!(ticks.len(), 1);
        // A whole line over the limit, arriving in one piece: refused as well.
        let mut whole = BytesMut::from(&[b'y'; 45][..]);
        whole.extend_from_slice(b"\n");
        let (ticks, _) = Decoder::drain(&mut d, &mut whole, |line, e| {
            rejected.push((line, e.code().as_str()))
        });
        assert!(ticks.is_empty());
        assert_eq!(rejected[1], (3, "line_too_long"));
        // A line of exactly the limit is taken.
        let exact = br#"{"symbol":"A","price":1,"ts_ns":2      }"#;
        assert_eq!(exact.len(), 40);
        let mut line = BytesMut::from(&exact[..]);
        line.extend_from_slice(b"\n");
        let (ticks, _) = Decoder::drain(&mut d, &mut line, |line, e| {
            rejected.push((line, e.code().as_str()))
        });
        assert_eq!((ticks.len(), rejected.len()), (1, 2));
        // And so is one that arrives without its newline first: the limit, not over it.
        let mut part = BytesMut::from(&exact[..]);
        let (ticks, _) = Decoder::drain(&mut d, &mut part, |line, e| {
            rejected.push((line, e.code().as_str()))
        });
        assert!(ticks.is_empty(), "not a whole line yet");
        part.extend_from_slice(b"\n");
        let (ticks, _) = Decoder::drain(&mut d, &mut part, |line, e| {
            rejected.push((line, e.code().as_str()))
        });
        assert_eq!((ticks.len(), rejected.len()), (1, 2));
    }

    /// A protobuf tick of `A`, length-delimited as a publisher sends it.
    fn proto_tick() -> Vec<u8> {
        use prost::Message as _;
        crate::proto::Tick {
            symbol: "A".into(),
            price: Some(1.0),
            ts_ns: 1,
            ..Default::default()
        }
        .encode_length_delimited_to_vec()
    }

    /// A protobuf hello of publisher `feed-1` at `pseq`, length-delimited.
    fn proto_hello(pseq: u64) -> Vec<u8> {
        use prost::Message as _;
        crate::proto::IngestHello {
            hello: Some(crate::proto::PublisherHello {
                publisher: "feed-1".into(),
                pseq,
            }),
        }
        .encode_length_delimited_to_vec()
    }

    #[test]
    fn protobuf_messages_are_numbered_and_a_hello_tags_those_after_it() {
        let (tick, hello) = (proto_tick(), proto_hello(10));
        let mut d = Decoder::new(Format::Protobuf, 1024);
        let mut buf = BytesMut::from(&hello[..]);
        for body in [&tick[..], &[0x02, 0xff, 0xff][..], &tick[..], &tick[..]] {
            buf.extend_from_slice(body);
        }
        let mut rejected = Vec::new();
        let (items, lines, fatal) =
            d.drain_numbered(&mut buf, |line, e| rejected.push((line, e.code().as_str())));
        assert_eq!(
            (items.len(), lines.clone(), fatal),
            (3, vec![2, 4, 5], false)
        );
        assert_eq!(rejected, vec![(3, "bad_protobuf")]);
        let tagged = d.tagged(&lines).expect("after a hello");
        assert_eq!((tagged.pseqs, tagged.through), (vec![10, 12, 13], 13));
        // A hello later than the first message ends the stream, numbered where it stood.
        buf.extend_from_slice(&hello);
        let (items, _, fatal) =
            d.drain_numbered(&mut buf, |line, e| rejected.push((line, e.code().as_str())));
        assert!(items.is_empty() && fatal);
        assert_eq!(rejected[1], (6, "bad_hello"));
    }

    /// What the publisher reads back, line by line, until `n` lines came (10 s at most).
    async fn replies(socket: &mut TcpStream, n: usize) -> Vec<serde_json::Value> {
        let mut bytes = Vec::new();
        let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
        while bytes.iter().filter(|b| **b == b'\n').count() < n {
            let mut chunk = [0u8; 4096];
            let read = tokio::time::timeout_at(deadline, socket.read(&mut chunk))
                .await
                .expect("the replies in time")
                .expect("read");
            assert!(
                read > 0,
                "closed early: {}",
                String::from_utf8_lossy(&bytes)
            );
            bytes.extend_from_slice(&chunk[..read]);
        }
        bytes
            .split(|b| *b == b'\n')
            .filter(|line| !line.is_empty())
            .map(|line| serde_json::from_slice(line).expect("a JSON line"))
            .collect()
    }

    /// The next hand-off the connection made (10 s at most).
    async fn next_hand_off(
        received: &mut crate::ingest::InboxReceiver,
    ) -> crate::ingest::Published {
        tokio::time::timeout(std::time::Duration::from_secs(10), received.recv())
            .await
            .expect("handed on in time")
            .expect("a hand-off")
    }

    /// An ingest listener of `format` serving on loopback (inside the caller's `LocalSet`),
    /// and a publisher connected to it.
    struct Served {
        socket: TcpStream,
        received: crate::ingest::InboxReceiver,
        metrics: Arc<Metrics>,
        shutdown: Shutdown,
        serving: tokio::task::JoinHandle<()>,
    }

    async fn served(format: Format) -> Served {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (inbox, received) = Inbox::bounded(8);
        let metrics = Arc::new(Metrics::new(1));
        let shutdown = Shutdown::new();
        let serving = tokio::task::spawn_local(serve(
            listener,
            format,
            inbox,
            metrics.clone(),
            1024,
            1024,
            shutdown.clone(),
        ));
        let socket = TcpStream::connect(addr).await.expect("connect");
        Served {
            socket,
            received,
            metrics,
            shutdown,
            serving,
        }
    }

    #[tokio::test]
    async fn a_protobuf_stream_that_cannot_be_resynchronised_is_closed() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let (tick, hello) = (proto_tick(), proto_hello(1));
        tokio::task::LocalSet::new()
            .run_until(async {
                let Served {
                    mut socket,
                    mut received,
                    shutdown,
                    serving,
                    ..
                } = served(Format::Protobuf).await;
                // A tick, then a hello where only the first message may be one: fatal.
                let mut bytes = tick.clone();
                bytes.extend_from_slice(&hello);
                bytes.extend_from_slice(&tick);
                socket.write_all(&bytes).await.expect("write");
                let published = next_hand_off(&mut received).await;
                assert_eq!(published.items.len(), 1, "the tick before it");
                // Answered (as the sequencer does once it is sequenced): nothing left to wait for.
                drop(published);
                let mut said = Vec::new();
                let closed = tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    socket.read_to_end(&mut said),
                )
                .await;
                assert!(closed.is_ok(), "the relay closes the connection");
                let said = String::from_utf8_lossy(&said);
                assert!(said.contains("bad_hello"), "{said}");
                shutdown.trigger();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
            })
            .await;
    }

    #[tokio::test]
    async fn a_connection_hands_on_its_lines_answers_errors_and_acks_its_hello() {
        use tokio::io::AsyncWriteExt;
        tokio::task::LocalSet::new()
            .run_until(async {
                let Served {
                    mut socket,
                    mut received,
                    metrics,
                    shutdown,
                    serving,
                } = served(Format::Ndjson).await;
                let lines = concat!(
                    r#"{"type":"hello","publisher":"p1","pseq":10}"#,
                    "\n",
                    r#"{"symbol":"A","price":1,"ts_ns":1}"#,
                    "\nnope\n",
                    r#"{"symbol":"B","price":2,"ts_ns":2}"#,
                    "\n"
                );
                socket.write_all(lines.as_bytes()).await.expect("write");
                let mut items = Vec::new();
                let mut publisher = None;
                while items.len() < 2 {
                    let published = next_hand_off(&mut received).await;
                    items.extend(published.items);
                    publisher = published.publisher;
                }
                let symbols: Vec<String> =
                    items.iter().map(|i| i.key().as_str().to_owned()).collect();
                assert_eq!(symbols, ["A", "B"]);
                let publisher = publisher.expect("answered");
                let tagged = publisher.tagged.as_ref().expect("tagged after the hello");
                assert_eq!((tagged.publisher.as_ref(), tagged.through), ("p1", 12));
                assert_eq!(
                    metrics
                        .ingest_connections
                        .load(std::sync::atomic::Ordering::Relaxed),
                    1
                );
                let error = &replies(&mut socket, 1).await[0];
                assert_eq!(
                    (error["type"].as_str(), error["line"].as_u64()),
                    (Some("error"), Some(3))
                );
                publisher
                    .answers
                    .send(Answer::Stored {
                        pseq: 12,
                        duplicates: 0,
                    })
                    .expect("the connection listens");
                let ack = &replies(&mut socket, 1).await[0];
                assert_eq!(
                    ack,
                    &serde_json::json!({"type":"ack","pseq":12,"duplicates":0})
                );
                drop(publisher);
                drop(socket);
                shutdown.trigger();
                tokio::time::timeout(std::time::Duration::from_secs(10), serving)
                    .await
                    .expect("serve ends on shutdown")
                    .expect("no panic");
                assert_eq!(
                    metrics
                        .ingest_connections
                        .load(std::sync::atomic::Ordering::Relaxed),
                    0
                );
            })
            .await;
    }

    #[tokio::test]
    async fn a_publisher_that_half_closes_still_gets_the_acks_of_what_it_sent() {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        tokio::task::LocalSet::new()
            .run_until(async {
                let Served {
                    mut socket,
                    mut received,
                    shutdown,
                    serving,
                    ..
                } = served(Format::Ndjson).await;
                let lines = concat!(
                    r#"{"type":"hello","publisher":"p1","pseq":4}"#,
                    "\n",
                    r#"{"symbol":"A","price":1,"ts_ns":1}"#,
                    "\n"
                );
                socket.write_all(lines.as_bytes()).await.expect("write");
                // All sent: the publisher closes its side and waits for the ack.
                socket.shutdown().await.expect("half-close");
                let published = next_hand_off(&mut received).await;
                let publisher = published.publisher.expect("answered");
                // The answer comes late, as the stream's ack does: the connection has read
                // the end by then, and must still be there to write it. (Answered at once,
                // it could be written before the end is read; waiting changes nothing for
                // a connection that waits as it should.)
                tokio::time::sleep(std::time::Duration::from_millis(200)).await;
                publisher
                    .answers
                    .send(Answer::Stored {
                        pseq: 4,
                        duplicates: 0,
                    })
                    .expect("the connection still listens for its answers");
                let ack = &replies(&mut socket, 1).await[0];
                assert_eq!(
                    ack,
                    &serde_json::json!({"type":"ack","pseq":4,"duplicates":0})
                );
                // The last answer given: the relay closes its side too.
                drop(publisher);
                let mut rest = Vec::new();
                tokio::time::timeout(
                    std::time::Duration::from_secs(10),
                    socket.read_to_end(&mut rest),
                )
                .await
                .expect("closed once answered")
                .expect("read");
                assert!(rest.is_empty(), "{}", String::from_utf8_lossy(&rest));
                shutdown.trigger();
                let _ = tokio::time::timeout(std::time::Duration::from_secs(10), serving).await;
            })
            .await;
    }
}
