//! A shard with real loopback clients, for the unit tests of [`ShardCore`]'s files: the
//! core as the fan-out loop and the session tasks drive it, and each client's socket read
//! back frame by frame.

use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::Notify;

use super::{ClientOptions, SessionKey, ShardCore, Transport};
use crate::config::{Config, SlowPolicy};
use crate::encode::{Encoding, Frames};
use crate::event::Key;
use crate::ingest::Inbox;
use crate::sequencer::Batch;
use crate::shared::Shared;
use crate::tick::sequenced;

/// A shard (index 1 of 2, so a fixed index 0 shows) and its clients' far ends.
pub(super) struct Bench {
    pub(super) core: ShardCore,
    listener: TcpListener,
}

/// A client's far end: what the relay wrote, parsed as JSON messages.
pub(super) struct Peer {
    pub(super) key: SessionKey,
    socket: TcpStream,
    unread: Vec<u8>,
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
        let transport = Rc::new(Transport::Plain(relay_side));
        let (key, _) = self.core.open(transport, Rc::new(Notify::new()), options);
        Peer {
            key,
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

    /// One whole unmasked server frame from the bytes read, as JSON.
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
        let message = serde_json::from_slice(&bytes[head..head + len]).expect("a JSON frame");
        self.unread.drain(..head + len);
        Some(message)
    }
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
