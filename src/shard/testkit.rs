//! A shard with real loopback clients, for the unit tests of [`ShardCore`]'s files: the
//! core as the fan-out loop and the session tasks drive it, and each client's socket read
//! back frame by frame.

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::{ClientOptions, SessionKey, ShardCore, Transport};
use crate::book::{BookChannel, BookKind, BookUpdate, input::level};
use crate::config::{Config, SlowPolicy};
use crate::encode::ws_frame::OpCode;
use crate::encode::{Encoding, Frames};
use crate::event::{Channel, Event, Item, Key, Tier, Tiered};
use crate::ingest::Inbox;
use crate::sequencer::Batch;
use crate::shared::Shared;
use crate::tick::{Seq, Symbol, sequenced};

/// A shard (index 1 of 2, so a fixed index 0 shows) and its clients' far ends.
pub(super) struct Bench {
    pub(super) core: ShardCore,
    listener: TcpListener,
}

/// A client's far end: what the relay wrote, parsed as JSON messages.
pub(super) struct Peer {
    pub(super) key: SessionKey,
    /// The relay-wide session id `open` gave it.
    pub(super) id: u64,
    socket: PeerSocket,
    unread: Vec<u8>,
}

/// The far end's socket: plain, or TLS decrypted by a rustls client.
enum PeerSocket {
    Plain(TcpStream),
    Tls(Box<tokio_rustls::client::TlsStream<TcpStream>>),
}

impl PeerSocket {
    fn tcp(&self) -> &TcpStream {
        match self {
            Self::Plain(tcp) => tcp,
            Self::Tls(tls) => tls.get_ref().0,
        }
    }

    async fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Self::Plain(tcp) => tcp.read(buf).await,
            Self::Tls(tls) => tls.read(buf).await,
        }
    }
}

impl Bench {
    pub(super) async fn new(config: Config) -> Self {
        let (inbox, _receiver) = Inbox::bounded(16);
        let shared = Arc::new(Shared::new(config, inbox));
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
        Self {
            core: ShardCore::new(1, shared),
            listener,
        }
    }

    /// A JSON client that disconnects when slow.
    pub(super) async fn client(&mut self) -> Peer {
        self.client_with(json()).await
    }

    pub(super) async fn client_with(&mut self, options: ClientOptions) -> Peer {
        let socket = TcpStream::connect(self.listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (relay_side, _) = self.listener.accept().await.expect("accept");
        self.attach(socket, relay_side, options)
    }

    /// A JSON client whose socket buffers are a few KiB each way, so a test fills them
    /// with little data ([`Bench::choke`]).
    pub(super) async fn narrow_client(&mut self) -> Peer {
        let (socket, relay_side) = self.narrow_pair().await;
        self.attach(socket, relay_side, json())
    }

    /// [`Bench::narrow_client`] over TLS: the handshake done by tokio-rustls (as the HTTP
    /// server does), then the relay's side driven sans-IO by the shard, as after an upgrade.
    pub(super) async fn narrow_tls_client(&mut self) -> Peer {
        let (socket, relay_side) = self.narrow_pair().await;
        let (client, transport) = tls(socket, relay_side).await;
        self.attach_transport(PeerSocket::Tls(Box::new(client)), transport, json())
    }

    /// A connected pair whose buffers are a few KiB each way.
    async fn narrow_pair(&mut self) -> (TcpStream, TcpStream) {
        let socket = tokio::net::TcpSocket::new_v4().expect("socket");
        socket.set_recv_buffer_size(4096).expect("receive buffer");
        let socket = socket
            .connect(self.listener.local_addr().expect("addr"))
            .await
            .expect("connect");
        let (relay_side, _) = self.listener.accept().await.expect("accept");
        socket2::SockRef::from(&relay_side)
            .set_send_buffer_size(4096)
            .expect("send buffer");
        (socket, relay_side)
    }

    fn attach(&mut self, socket: TcpStream, relay_side: TcpStream, options: ClientOptions) -> Peer {
        let socket = PeerSocket::Plain(socket);
        self.attach_transport(socket, Transport::Plain(relay_side), options)
    }

    fn attach_transport(
        &mut self,
        socket: PeerSocket,
        transport: Transport,
        options: ClientOptions,
    ) -> Peer {
        let (key, id) = self
            .core
            .open(Rc::new(transport), Rc::new(Notify::new()), options);
        Peer {
            key,
            id,
            socket,
            unread: Vec::new(),
        }
    }

    /// Delivers `items` as one batch, then flushes like the end of a fan-out turn.
    pub(super) fn deliver(&mut self, items: &[Arc<Frames>]) {
        let batch: Batch = items.iter().cloned().collect();
        let now = Instant::now();
        self.core.deliver(&batch, now);
        self.core.flush_dirty_and_enforce(now);
        self.core.finish_turn();
    }

    /// Queues 64 KiB data frames for the client (its peer reading none) until the socket
    /// takes no more and the client waits for writability; returns how many it queued.
    pub(super) fn choke(&mut self, key: SessionKey) -> usize {
        let filler = vec![b'x'; 65536];
        for queued in 1..=1024 {
            self.core
                .send_data(key, OpCode::Binary, &filler, Instant::now());
            self.core.allow_burst(key);
            self.core.flush(key);
            if self.core.status(key).blocked {
                return queued;
            }
        }
        panic!("the socket never filled");
    }
}

pub(super) fn json() -> ClientOptions {
    ClientOptions {
        encoding: Encoding::Json,
        slow: SlowPolicy::Disconnect,
        deflate: None,
        batch: false,
    }
}

/// Tick `seq` of `symbol`, sequenced.
pub(super) fn tick(symbol: &str, seq: u64) -> Arc<Frames> {
    Arc::new(Frames::new(sequenced(symbol, seq)))
}

pub(super) fn symbol(name: &str) -> Key {
    tick(name, 1).key().clone()
}

/// Event `seq` of `channel`, sequenced, its data `{"n":seq}`.
pub(super) fn event(channel: &str, seq: u64) -> Arc<Frames> {
    Arc::new(Frames::of(Item::Event(Event {
        channel: Channel::parse(channel).expect("a channel name"),
        data: format!("{{\"n\":{seq}}}").into(),
        ts_ns: seq,
        seq: Seq(seq),
        recv_ns: 0,
    })))
}

pub(super) fn channel(name: &str) -> Key {
    Key::Channel(Channel::parse(name).expect("a channel name"))
}

/// `base` at the rate tier of `period_ms`.
pub(super) fn tiered(base: Key, period_ms: u64) -> Key {
    Tiered::key(base, Tier::of(Duration::from_millis(period_ms)))
}

/// Message `seq` of `symbol`'s full book (`book:SYMBOL`), sequenced: its `bids` and `asks`
/// as `(price, size)`.
pub(super) fn book(
    symbol: &str,
    seq: u64,
    kind: BookKind,
    bids: &[(&str, &str)],
    asks: &[(&str, &str)],
) -> Arc<Frames> {
    let levels = |side: &[(&str, &str)]| {
        side.iter()
            .map(|(price, size)| level(price, size).expect("a level"))
            .collect()
    };
    let channel = BookChannel::full(Symbol::parse(symbol).expect("a symbol"));
    let mut update = BookUpdate::input(channel, kind, levels(bids), levels(asks), seq);
    update.seq = Seq(seq);
    Arc::new(Frames::of(Item::Book(update)))
}

impl Peer {
    /// The next `n` messages (waiting up to 10 s for them).
    pub(super) async fn messages(&mut self, n: usize) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut out = Vec::with_capacity(n);
        while out.len() < n {
            if let Some(message) = self.parse_one() {
                out.push(message);
                continue;
            }
            let mut chunk = [0u8; 65536];
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .unwrap_or_else(|_| panic!("only {} of {n} messages came: {out:?}", out.len()))
                .expect("read");
            assert!(
                read > 0,
                "closed after {} of {n} messages: {out:?}",
                out.len()
            );
            self.unread.extend_from_slice(&chunk[..read]);
        }
        out
    }

    /// Whatever arrives within 50 ms (for "nothing more came").
    pub(super) async fn rest(&mut self) -> Vec<serde_json::Value> {
        let mut chunk = [0u8; 65536];
        while let Ok(Ok(n @ 1..)) =
            tokio::time::timeout(Duration::from_millis(50), self.socket.read(&mut chunk)).await
        {
            self.unread.extend_from_slice(&chunk[..n]);
        }
        std::iter::from_fn(|| self.parse_one()).collect()
    }

    /// The whole messages among what one read brings (waiting up to 10 s for it).
    pub(super) async fn read_some(&mut self) -> Vec<serde_json::Value> {
        let mut chunk = [0u8; 65536];
        let read = tokio::time::timeout(Duration::from_secs(10), self.socket.read(&mut chunk))
            .await
            .expect("something comes")
            .expect("read");
        self.unread.extend_from_slice(&chunk[..read]);
        std::iter::from_fn(|| self.parse_one()).collect()
    }

    /// Everything that arrives until the relay closes the socket (waiting up to 10 s).
    pub(super) async fn until_closed(&mut self) -> Vec<serde_json::Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        let mut chunk = [0u8; 65536];
        loop {
            let read = tokio::time::timeout_at(deadline, self.socket.read(&mut chunk))
                .await
                .expect("the relay closed the socket");
            match read {
                Ok(0) | Err(_) => break,
                Ok(n) => self.unread.extend_from_slice(&chunk[..n]),
            }
        }
        std::iter::from_fn(|| self.parse_one()).collect()
    }

    /// The client's own address (the relay's peer address for it).
    pub(super) fn address(&self) -> std::net::SocketAddr {
        self.socket.tcp().local_addr().expect("local address")
    }

    /// Drops the connection with a reset (linger 0), as a client that vanishes does.
    pub(super) fn hang_up(self) {
        socket2::SockRef::from(self.socket.tcp())
            .set_linger(Some(Duration::ZERO))
            .expect("linger");
    }

    /// One whole unmasked server frame from the bytes read: a text frame as its JSON (a
    /// batch of several as `{"type":"batch","messages":[..]}`), a
    /// close as `{"type":"close","code":..,"reason":..}`, a ping or pong as
    /// `{"type":"ping"|"pong","payload":..}`, a binary frame as `{"type":"binary","len":..}`.
    fn parse_one(&mut self) -> Option<serde_json::Value> {
        let bytes = &self.unread;
        if bytes.len() < 2 {
            return None;
        }
        let (len, head) = match bytes[1] & 0x7F {
            126 if bytes.len() >= 4 => (usize::from(u16::from_be_bytes([bytes[2], bytes[3]])), 4),
            127 if bytes.len() >= 10 => {
                let len = u64::from_be_bytes(bytes[2..10].try_into().expect("8 bytes"));
                (usize::try_from(len).expect("fits"), 10)
            }
            126 | 127 => return None,
            len => (usize::from(len), 2),
        };
        if bytes.len() < head + len {
            return None;
        }
        let payload = &bytes[head..head + len];
        let text = || String::from_utf8_lossy(payload).into_owned();
        let message = match bytes[0] & 0x0F {
            0x1 => {
                let mut values: Vec<serde_json::Value> =
                    serde_json::Deserializer::from_slice(payload)
                        .into_iter()
                        .collect::<Result<_, _>>()
                        .expect("a JSON frame");
                match values.len() {
                    1 => values.remove(0),
                    _ => serde_json::json!({"type": "batch", "messages": values}),
                }
            }
            0x8 => serde_json::json!({
                "type": "close",
                "code": u16::from_be_bytes([payload[0], payload[1]]),
                "reason": String::from_utf8_lossy(&payload[2..]),
            }),
            0x9 => serde_json::json!({"type": "ping", "payload": text()}),
            0xA => serde_json::json!({"type": "pong", "payload": text()}),
            _ => serde_json::json!({"type": "binary", "len": len}),
        };
        self.unread.drain(..head + len);
        Some(message)
    }
}

/// A TLS session over `client` and `relay_side`, a self-signed certificate trusted by the
/// client: the client's stream, and the relay's side as the shard takes it after an upgrade.
pub(super) async fn tls(
    client: TcpStream,
    relay_side: TcpStream,
) -> (tokio_rustls::client::TlsStream<TcpStream>, Transport) {
    use rustls_pki_types::{PrivateKeyDer, PrivatePkcs8KeyDer, ServerName};
    let certified = rcgen::generate_simple_self_signed(vec!["localhost".into()])
        .expect("a self-signed certificate");
    let cert = certified.cert.der().clone();
    let key = PrivatePkcs8KeyDer::from(certified.signing_key.serialize_der());
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let server = rustls::ServerConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_no_client_auth()
        .with_single_cert(vec![cert.clone()], PrivateKeyDer::Pkcs8(key))
        .expect("a server configuration");
    let mut roots = rustls::RootCertStore::empty();
    roots.add(cert).expect("a root");
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .expect("versions")
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from("localhost").expect("a name");
    let (client, server) = tokio::join!(
        tokio_rustls::TlsConnector::from(Arc::new(config)).connect(name, client),
        tokio_rustls::TlsAcceptor::from(Arc::new(server)).accept(relay_side),
    );
    let (tcp, conn) = server.expect("the server's handshake").into_inner();
    let transport = Transport::Tls {
        tcp,
        conn: Box::new(RefCell::new(conn)),
    };
    (client.expect("the client's handshake"), transport)
}

/// The `(type, seq)` of each message (seq 0 where it has none).
pub(super) fn kinds(messages: &[serde_json::Value]) -> Vec<(String, u64)> {
    messages
        .iter()
        .map(|m| {
            (
                m["type"].as_str().unwrap_or("?").to_owned(),
                m["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect()
}

/// Each message in brief, for comparing sequences: `tick BTC 3`, `event news 2`, `snapshot
/// BTC@1s 2..5` (a tier frame: `from_seq..seq`), `gap BTC 3..9`, `reset BTC`,
/// `book book:BTC:10 4 snapshot`, `close 4003 bye`, `pong 7`; else its type.
pub(super) fn briefs(messages: &[serde_json::Value]) -> Vec<String> {
    messages.iter().map(brief).collect()
}

fn brief(m: &serde_json::Value) -> String {
    let kind = m["type"].as_str().unwrap_or("?");
    let name = m["symbol"]
        .as_str()
        .or_else(|| m["channel"].as_str())
        .unwrap_or("");
    let name = match m["tier"].as_str() {
        Some(tier) => format!("{name}@{tier}"),
        None => name.to_owned(),
    };
    let seq = &m["seq"];
    match kind {
        "gap" => format!("gap {name} {}..{}", m["from"], m["to"]),
        "reset" => format!("reset {name}"),
        "close" => format!("close {} {}", m["code"], m["reason"].as_str().unwrap_or("")),
        "pong" | "ping" if m.get("payload").is_some() => format!("{kind} {}", m["payload"]),
        "pong" => format!("pong {}", m["id"]),
        "book" if m["snapshot"] == true => format!("book {name} {seq} snapshot"),
        _ if seq.is_null() => kind.to_owned(),
        _ => match m["from_seq"].as_u64() {
            Some(from) => format!("{kind} {name} {from}..{seq}"),
            None => format!("{kind} {name} {seq}"),
        },
    }
}
