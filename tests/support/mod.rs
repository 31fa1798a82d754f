//! Shared helpers for the integration tests: an in-process relay on free ports, a real
//! WebSocket client (tokio-tungstenite), an ingest connection, and condition waits.
#![allow(dead_code, unreachable_pub)]

pub mod bars;

use std::collections::BTreeMap;
use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::Value;
use tickrelay::{Config, Relay};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// How long any single expectation may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(10);

/// Awaits `future` for at most [`WAIT`]; on timeout the test fails naming `what` it waited
/// for. Every wait in the tests goes through this or [`wait_for`], so a hang fails the test.
pub async fn within<F: std::future::Future>(what: &str, future: F) -> F::Output {
    match tokio::time::timeout(WAIT, future).await {
        Ok(output) => output,
        Err(_) => panic!("timed out after {WAIT:?} waiting for {what}"),
    }
}

/// A relay running in this process on free loopback ports; dropping it stops the relay
/// (shutdown now, its threads joined in the background so a test never blocks on them).
pub struct TestRelay {
    pub handle: Option<Relay>,
    pub http: std::net::SocketAddr,
    pub ingest: std::net::SocketAddr,
    pub ingest_protobuf: std::net::SocketAddr,
}

impl TestRelay {
    pub async fn start(config: Config) -> Self {
        let handle = Relay::start(config).expect("relay starts on free ports");
        let relay = Self {
            http: handle.http_addr,
            ingest: handle.ingest_addr,
            ingest_protobuf: handle.ingest_protobuf_addr,
            handle: Some(handle),
        };
        relay.wait_ready().await;
        // The readiness probe's connection holds a connection slot (and its address's) until
        // it ends: tests of the limits start from none.
        relay.wait_idle().await;
        relay
    }

    /// Waits until the relay holds no connection and no session (read from its counters, so
    /// the wait itself takes no slot).
    pub async fn wait_idle(&self) {
        wait_for("no connection left", || async {
            self.metrics().connections() + self.metrics().sessions() == 0
        })
        .await;
    }

    /// The epoch of the history this relay serves (what `welcome` names).
    pub fn epoch(&self) -> u64 {
        self.handle.as_ref().expect("running").shared.epoch
    }

    pub fn url(&self, query: &str) -> String {
        format!("ws://{}/ws{}", self.http, query)
    }

    /// A JSON client connected with `query` (e.g. `?symbols=A`), its welcome already read.
    pub async fn client(&self, query: &str) -> WsClient {
        let mut client = WsClient::connect(&self.url(query)).await;
        let welcome = client.next_json().await;
        assert_eq!(
            welcome["type"], "welcome",
            "first message is welcome: {welcome}"
        );
        client
    }

    /// An NDJSON ingest connection.
    pub async fn ingest(&self) -> Ingest {
        Ingest::connect(self.ingest).await
    }

    /// Publishes `count` ticks of `symbol` (price = 100 + seq/100, ts_ns = seq) over one
    /// ingest connection.
    pub async fn publish_many(&self, symbol: &str, count: u64) {
        let mut ingest = self.ingest().await;
        let lines: Vec<String> = (1..=count)
            .map(|i| tick_line(symbol, 100.0 + i as f64 / 100.0, i))
            .collect();
        ingest.send_lines(&lines).await;
    }

    pub async fn get(&self, path: &str) -> (u16, Value) {
        http(self.http, "GET", path, "").await
    }

    pub async fn post(&self, path: &str, body: &str) -> (u16, Value) {
        http(self.http, "POST", path, body).await
    }

    pub async fn wait_ready(&self) {
        wait_for("relay ready", || async {
            self.get("/ready").await.0 == 200
        })
        .await;
    }

    /// Asks the relay to stop (close 1001 to every client, drain) without waiting for it.
    pub fn begin_shutdown(&self) {
        self.handle.as_ref().expect("relay running").shutdown();
    }

    /// Stops the relay and waits for its threads; fails the test if they have not finished
    /// within [`WAIT`] (a drain deadline is 3 s at most in the tests).
    ///
    /// The join runs on a plain thread, not `spawn_blocking`: a runtime waits for its
    /// blocking tasks when it is dropped, so a hung join there would hang the test rather
    /// than fail it. A thread that never finishes is left behind; the test has failed.
    pub async fn stop(&mut self) {
        let Some(handle) = self.handle.take() else {
            return;
        };
        handle.shutdown();
        let (done_tx, done_rx) = tokio::sync::oneshot::channel();
        std::thread::Builder::new()
            .name("test-relay-join".into())
            .spawn(move || {
                handle.join();
                let _ = done_tx.send(());
            })
            .expect("spawn the join thread");
        within("the relay's threads to finish after shutdown", done_rx)
            .await
            .expect("the join thread reports before it ends");
    }

    pub fn metrics(&self) -> &tickrelay::metrics::Metrics {
        &self.handle.as_ref().expect("relay running").shared.metrics
    }

    /// `GET /stats` field `shards[shard][field]` as a number (0 if absent).
    pub async fn shard_stat(&self, shard: usize, field: &str) -> u64 {
        self.get("/stats").await.1["shards"][shard][field]
            .as_u64()
            .unwrap_or(0)
    }

    /// Waits until `/price/{symbol}` reports `seq` (on a one-shard relay: that shard has
    /// fanned out every tick up to `seq`).
    pub async fn wait_sequenced(&self, symbol: &str, seq: u64) {
        wait_for(&format!("{symbol} sequenced up to seq {seq}"), || async {
            self.get(&format!("/price/{symbol}")).await.1["seq"] == seq
        })
        .await;
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
            // Joined off the test's thread: a drop must not block the runtime it runs on.
            let _ = std::thread::Builder::new()
                .name("test-relay-drop".into())
                .spawn(move || handle.join());
        }
    }
}

/// `{"symbol":S,"price":P,"size":1.0,"ts_ns":T}`
pub fn tick_line(symbol: &str, price: f64, ts_ns: u64) -> String {
    format!(r#"{{"symbol":"{symbol}","price":{price},"size":1.0,"ts_ns":{ts_ns}}}"#)
}

/// A real WebSocket client.
pub struct WsClient {
    pub ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

impl WsClient {
    pub async fn connect(url: &str) -> Self {
        let (ws, _) = within(
            &format!("the WebSocket handshake with {url}"),
            tokio_tungstenite::connect_async(url),
        )
        .await
        .expect("websocket handshake");
        Self { ws }
    }

    /// The next data message (text or binary), skipping pings/pongs.
    pub async fn next_message(&mut self) -> Message {
        self.next_message_within(WAIT).await
    }

    /// [`WsClient::next_message`], waiting up to `bound` (a wait the design says may be
    /// longer than [`WAIT`], such as a cluster's failover).
    pub async fn next_message_within(&mut self, bound: Duration) -> Message {
        loop {
            let msg = match tokio::time::timeout(bound, self.ws.next()).await {
                Ok(next) => next.expect("stream open").expect("valid frame"),
                Err(_) => {
                    panic!("timed out after {bound:?} waiting for the next message from the relay")
                }
            };
            match msg {
                Message::Ping(_) | Message::Pong(_) => continue,
                other => return other,
            }
        }
    }

    /// The next message as JSON (panics on a close or binary frame).
    pub async fn next_json(&mut self) -> Value {
        self.next_json_within(WAIT).await
    }

    /// [`WsClient::next_json`], waiting up to `bound`.
    pub async fn next_json_within(&mut self, bound: Duration) -> Value {
        match self.next_message_within(bound).await {
            Message::Text(text) => serde_json::from_str(&text).expect("server sends valid JSON"),
            other => panic!("expected a text message, got {other:?}"),
        }
    }

    /// The next message whose `type` is not `tick`.
    pub async fn next_non_tick(&mut self) -> Value {
        loop {
            let msg = self.next_json().await;
            if msg["type"] != "tick" {
                return msg;
            }
        }
    }

    pub async fn send_binary(&mut self, bytes: Vec<u8>) {
        within(
            "a binary client message to be sent",
            self.ws.send(Message::binary(bytes)),
        )
        .await
        .expect("send");
    }

    pub async fn send_json(&mut self, text: &str) {
        within(
            "a client message to be sent",
            self.ws.send(Message::text(text)),
        )
        .await
        .expect("send");
    }

    /// Reads ticks until every symbol in `last` reached its seq; returns the seqs seen per symbol.
    pub async fn ticks_until(
        &mut self,
        last: &BTreeMap<String, u64>,
    ) -> BTreeMap<String, Vec<u64>> {
        let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
        let done = |seen: &BTreeMap<String, Vec<u64>>| {
            last.iter()
                .all(|(s, n)| seen.get(s).and_then(|v| v.last()) == Some(n))
        };
        while !done(&seen) {
            let msg = self.next_json().await;
            if msg["type"] == "tick" {
                let symbol = msg["symbol"].as_str().unwrap().to_owned();
                seen.entry(symbol)
                    .or_default()
                    .push(msg["seq"].as_u64().unwrap());
            }
        }
        seen
    }

    /// Waits for the close frame; returns its code and reason.
    pub async fn expect_close(&mut self) -> (u16, String) {
        loop {
            match within("a close frame", self.ws.next()).await {
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return (code.into(), reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (1005, String::new()),
                Some(Ok(_)) => continue,
                Some(Err(e)) => panic!("connection failed before a close frame: {e}"),
                None => panic!("connection ended without a close frame"),
            }
        }
    }

    /// Reads every data message up to the close frame; returns them (as JSON) with the
    /// close code and reason. Unlike [`WsClient::expect_close`] nothing is skipped, so a
    /// test can check what arrived before the close.
    pub async fn messages_until_close(&mut self) -> (Vec<Value>, u16, String) {
        let mut messages = Vec::new();
        loop {
            match within("messages up to a close frame", self.ws.next()).await {
                Some(Ok(Message::Text(text))) => {
                    messages.push(serde_json::from_str(&text).expect("server sends valid JSON"))
                }
                Some(Ok(Message::Close(Some(CloseFrame { code, reason })))) => {
                    return (messages, code.into(), reason.to_string());
                }
                Some(Ok(Message::Close(None))) => return (messages, 1005, String::new()),
                Some(Ok(Message::Ping(_) | Message::Pong(_))) => {}
                Some(Ok(other)) => panic!("expected JSON text, got {other:?}"),
                Some(Err(e)) => panic!(
                    "connection failed after {} messages, before a close frame: {e}",
                    messages.len()
                ),
                None => panic!(
                    "connection ended after {} messages without a close frame",
                    messages.len()
                ),
            }
        }
    }
}

/// An NDJSON ingest connection; reads back the relay's error lines.
pub struct Ingest {
    pub write: tokio::net::tcp::OwnedWriteHalf,
    pub replies: tokio::io::Lines<BufReader<tokio::net::tcp::OwnedReadHalf>>,
}

impl Ingest {
    pub async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = within("the ingest connection", TcpStream::connect(addr))
            .await
            .expect("ingest connect");
        let (read, write) = stream.into_split();
        Self {
            write,
            replies: BufReader::new(read).lines(),
        }
    }

    pub async fn send_lines(&mut self, lines: &[String]) {
        let mut text = lines.join("\n");
        text.push('\n');
        self.send_raw(text.as_bytes()).await;
    }

    /// Writes `bytes`; a relay that stops reading (backpressure that never ends) fails the
    /// test after [`WAIT`].
    pub async fn send_raw(&mut self, bytes: &[u8]) {
        within(
            "the relay to read the ingest bytes",
            self.write.write_all(bytes),
        )
        .await
        .expect("ingest write");
    }

    pub async fn next_reply(&mut self) -> Value {
        let line = within(
            "a reply line on the ingest connection",
            self.replies.next_line(),
        )
        .await
        .expect("read reply")
        .expect("a reply line");
        serde_json::from_str(&line).expect("reply is JSON")
    }
}

/// A minimal HTTP/1.1 request over a fresh connection; returns status and JSON body.
pub async fn http(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, Value) {
    let (status, text) = http_raw(addr, method, path, body).await;
    let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, json)
}

pub async fn http_raw(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
) -> (u16, String) {
    let host = addr.to_string();
    http_with(addr, method, path, &[("host", &host)], body).await
}

/// Like [`http_raw`], with exactly these request headers (besides `connection: close` and
/// `content-length`): the caller chooses `host` too, or sends none.
pub async fn http_with(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, String) {
    let mut stream = within(
        &format!("the HTTP connection for {path}"),
        TcpStream::connect(addr),
    )
    .await
    .expect("http connect");
    let headers: String = headers
        .iter()
        .map(|(name, value)| format!("{name}: {value}\r\n"))
        .collect();
    let request = format!(
        "{method} {path} HTTP/1.1\r\n{headers}connection: close\r\ncontent-length: {}\r\n\r\n{body}",
        body.len()
    );
    within(
        &format!("the HTTP request for {path} to be sent"),
        stream.write_all(request.as_bytes()),
    )
    .await
    .expect("http write");
    let mut response = Vec::new();
    let read = within(
        &format!("the HTTP response to {method} {path}"),
        tokio::io::AsyncReadExt::read_to_end(&mut stream, &mut response),
    )
    .await;
    // A server that refuses a body it has not read (413) may reset the connection after its
    // answer; read_to_end keeps what arrived before the reset, and that is the answer.
    if let Err(e) = read {
        assert!(
            response.windows(4).any(|w| w == b"\r\n\r\n"),
            "http read failed before a response: {e}"
        );
    }
    let text = String::from_utf8_lossy(&response).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status line");
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// Polls `cond` every 10 ms until it holds, failing after [`WAIT`].
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A WebSocket client whose socket has a tiny receive buffer and that never reads unless
/// asked: the relay sees it as a slow consumer within a few KiB.
pub async fn slow_client(relay: &TestRelay, query: &str) -> WsClient {
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket
        .set_recv_buffer_size(4096)
        .expect("small receive buffer");
    let stream = within("the slow client's connection", socket.connect(relay.http))
        .await
        .expect("connect");
    let (ws, _) = within(
        "the slow client's WebSocket handshake",
        tokio_tungstenite::client_async(relay.url(query), MaybeTlsStream::Plain(stream)),
    )
    .await
    .expect("handshake");
    WsClient { ws }
}

/// A raw TCP connection that has completed the WebSocket upgrade on `path` (e.g.
/// `/ws?symbols=A`); what follows is up to the test (hostile frames, partial frames).
pub async fn raw_upgrade(addr: std::net::SocketAddr, path: &str) -> (TcpStream, Vec<u8>) {
    let mut stream = within("the raw upgrade connection", TcpStream::connect(addr))
        .await
        .expect("connect");
    let request = format!(
        "GET {path} HTTP/1.1\r\nhost: test\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
         sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n\r\n"
    );
    within(
        "the upgrade request to be sent",
        stream.write_all(request.as_bytes()),
    )
    .await
    .expect("write upgrade");
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        let n = within(
            "the upgrade answer",
            tokio::io::AsyncReadExt::read(&mut stream, &mut byte),
        )
        .await
        .expect("read");
        assert_eq!(n, 1, "connection closed during the upgrade");
        head.push(byte[0]);
    }
    assert!(
        head.starts_with(b"HTTP/1.1 101"),
        "{}",
        String::from_utf8_lossy(&head)
    );
    (stream, head)
}

/// Reads raw server frames until a close frame; returns its code (panics on timeout).
pub async fn read_until_close(stream: &mut TcpStream) -> u16 {
    let mut buf = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // Parse whole unmasked server frames off the front of `buf`.
        while buf.len() >= 2 {
            let (len, head) = match buf[1] & 0x7F {
                126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
                127 if buf.len() >= 10 => (
                    u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                    10,
                ),
                126 | 127 => break,
                n => (n as usize, 2),
            };
            if buf.len() < head + len {
                break;
            }
            if buf[0] & 0x0F == 0x8 {
                return if len >= 2 {
                    u16::from_be_bytes([buf[head], buf[head + 1]])
                } else {
                    1005
                };
            }
            buf.drain(..head + len);
        }
        let n = within(
            "a close frame on the raw connection",
            tokio::io::AsyncReadExt::read(stream, &mut chunk),
        )
        .await
        .expect("read");
        assert!(n > 0, "connection ended without a close frame");
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Fails unless none of `messages` is a `gap` or a `reset`.
pub fn assert_no_gap_or_reset(messages: &[Value]) {
    assert!(
        messages
            .iter()
            .all(|m| !["gap", "reset"].contains(&m["type"].as_str().unwrap_or(""))),
        "{messages:?}"
    );
}

/// Reads until the tick stamped `ts_ns` = `last`: (seq, ts_ns) of every tick, and every
/// other message.
pub async fn until_stamp(client: &mut WsClient, last: u64) -> (Vec<(u64, u64)>, Vec<Value>) {
    until_stamp_within(client, last, WAIT).await
}

/// [`until_stamp`], each message waited for up to `bound`.
pub async fn until_stamp_within(
    client: &mut WsClient,
    last: u64,
    bound: Duration,
) -> (Vec<(u64, u64)>, Vec<Value>) {
    let (mut ticks, mut other) = (Vec::new(), Vec::new());
    loop {
        let message = client.next_json_within(bound).await;
        if message["type"] == "tick" {
            let seen = (
                message["seq"].as_u64().expect("seq"),
                message["ts_ns"].as_u64().expect("ts_ns"),
            );
            ticks.push(seen);
            if seen.1 == last {
                return (ticks, other);
            }
        } else {
            other.push(message);
        }
    }
}
