//! The shard side of a client's life: open, status, sends, close, leave, and the admin
//! API's view of the shard's sessions. Part of [`ShardCore`]'s impl (the struct and the data
//! path are in `shard/mod.rs`; subscriptions in `shard/subscribe.rs`).

use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use tokio::sync::Notify;
use tracing::info;

use super::client::Client;
use super::{ClientOptions, ClientStatus, Feed, FeedPhase, SessionKey, ShardCore, Transport};
use crate::encode::deflate::DeflateStream;
use crate::encode::ws_frame::OpCode;
use crate::encode::{Encoder, Message};
use crate::error::CloseCode;
use crate::event::Key;
use crate::metrics;
use crate::shared::SessionInfo;

impl ShardCore {
    // ---- clients: lifecycle ---------------------------------------------------------

    /// Registers a client writing to `stream` and woken through `signal`, in the encoding,
    /// slow-consumer policy and batching it asked for, compressing with permessage-deflate
    /// if that was negotiated; returns its key and relay-wide session id.
    pub fn open(
        &mut self,
        stream: Rc<Transport>,
        signal: Rc<Notify>,
        options: ClientOptions,
    ) -> (SessionKey, u64) {
        let ClientOptions {
            encoding,
            slow,
            deflate,
            batch,
        } = options;
        let id = self.shared.next_session_id();
        let peer = stream.tcp().peer_addr().ok();
        let mut feed = Feed::new(encoding);
        if batch {
            feed = feed.batching(self.shared.config.batch_max_bytes);
        }
        if let Some(params) = deflate {
            // permessage-deflate: `--ws-deflate-min-bytes` is the threshold.
            let min_bytes = self.shared.config.deflate.ws_deflate_min_bytes;
            feed.encoder = Encoder::deflate(encoding, DeflateStream::new(params, min_bytes));
        }
        let client = Client::new(id, stream, signal, feed, slow);
        let key = self.clients.insert(client);
        metrics::add(&self.metrics().sessions, 1);
        if let Some(suppressed) = self.shared.lifecycle_log.connect.admit(Instant::now()) {
            info!(session = id, shard = self.id, peer = %peer.map_or_else(|| "unknown".to_owned(), |p| p.to_string()), encoding = encoding.as_str(), deflate = deflate.is_some(), suppressed, "session connected");
        }
        (key, id)
    }

    /// Removes the client and its subscriptions; true if its close frame was fully
    /// written (then the socket should linger so the client reads it before the TCP close).
    pub fn leave(&mut self, key: SessionKey) -> bool {
        let named: Vec<Key> = self.clients[key].symbols.iter().cloned().collect();
        self.unsubscribe(key, true, &named);
        let client = self.clients.remove(key);
        metrics::sub(&self.metrics().sessions, 1);
        if let Some(suppressed) = self.shared.lifecycle_log.end.admit(Instant::now()) {
            let by = match client.feed.phase {
                FeedPhase::Live => "the client or the network",
                FeedPhase::Closing { .. } => "a close frame",
                FeedPhase::Dead => "a socket error",
            };
            info!(
                session = client.id,
                shard = self.id,
                ended_by = by,
                suppressed,
                "session ended"
            );
        }
        matches!(client.feed.phase, FeedPhase::Closing { .. }) && client.feed.outbox.is_empty()
    }

    /// Where the client is, for its session task.
    pub fn status(&self, key: SessionKey) -> ClientStatus {
        let client = &self.clients[key];
        ClientStatus {
            phase: client.feed.phase,
            blocked: client.blocked,
            flushed: client.feed.outbox.is_empty(),
        }
    }

    /// The socket became writable (`ok`) or failed while the client was blocked.
    pub fn writable(&mut self, key: SessionKey, ok: bool) {
        let metrics = self.shared.metrics.shard(self.id);
        let client = &mut self.clients[key];
        client.blocked = false;
        if ok {
            client.flush(metrics, &self.shared.config);
        } else {
            client.die();
        }
    }

    /// Queues a close frame and stops ticks; `discard_backlog` drops frames not yet started
    /// (a slow consumer will not read them; on shutdown they are flushed first).
    pub fn close(
        &mut self,
        key: SessionKey,
        code: CloseCode,
        reason: &str,
        deadline: Instant,
        discard_backlog: bool,
    ) {
        let client = &mut self.clients[key];
        if client.feed.phase == FeedPhase::Live
            && let Some(suppressed) = self.shared.lifecycle_log.close.admit(Instant::now())
        {
            info!(
                session = client.id,
                shard = self.id,
                code = code.value(),
                reason,
                suppressed,
                "session closing"
            );
        }
        client.close(code, reason, deadline, discard_backlog);
    }

    /// Shutdown: closes every client with `code` after what it has queued, and flushes.
    pub fn close_all(&mut self, code: CloseCode, reason: &str, deadline: Instant) {
        let metrics = self.shared.metrics.shard(self.id);
        // One line for all: per-client lines would be a storm at every shutdown.
        info!(
            shard = self.id,
            clients = self.clients.len(),
            code = code.value(),
            reason,
            "closing every session"
        );
        for (_, client) in &mut self.clients {
            client.close(code, reason, deadline, false);
            client.flush(metrics, &self.shared.config);
        }
    }

    /// A session task started on this shard.
    pub fn task_started(&self) {
        self.tasks.set(self.tasks.get() + 1);
    }

    /// A session task ended (however it ended).
    pub fn task_ended(&self) {
        self.tasks.set(self.tasks.get() - 1);
        self.task_left.notify_one();
    }

    /// Session tasks still running, and the signal that one has ended.
    pub fn tasks(&self) -> (usize, Rc<Notify>) {
        (self.tasks.get(), self.task_left.clone())
    }

    // ---- clients: what they are sent ------------------------------------------------

    /// Queues a server message in the client's encoding.
    pub fn send(&mut self, key: SessionKey, message: &Message<'_>, now: Instant) {
        self.clients[key].feed.send(message, now);
    }

    /// Queues a raw frame (ping, pong).
    pub fn send_frame(&mut self, key: SessionKey, frame: Bytes, now: Instant) {
        self.clients[key].feed.send_frame(frame, now);
    }

    /// Queues a data message given as bytes (an echo), compressed if the client deflates.
    pub fn send_data(&mut self, key: SessionKey, opcode: OpCode, payload: &[u8], now: Instant) {
        self.clients[key].feed.send_data(opcode, payload, now);
    }

    /// Lets what is queued now exceed the outbox budget until it drains: a burst the
    /// client asked for (a replay, an echo) is not a sign of slowness.
    pub fn allow_burst(&mut self, key: SessionKey) {
        self.clients[key].feed.allow_burst();
    }

    /// Drops the client's compressor state now (it is rebuilt on the next message).
    pub fn release_encoder(&mut self, key: SessionKey) {
        self.clients[key].feed.encoder.release();
    }

    /// Drops the client's compressor state if it sent nothing since the last call.
    pub fn release_encoder_if_idle(&mut self, key: SessionKey) {
        self.clients[key].feed.encoder.release_if_idle();
    }

    /// Writes what the client (and any other touched client) has queued.
    pub fn flush(&mut self, key: SessionKey) {
        let client = &mut self.clients[key];
        if !client.feed.dirty {
            client.feed.dirty = true;
            self.dirty.push(key);
        }
        self.flush_dirty_and_enforce(Instant::now());
    }

    // ---- the admin API ----------------------------------------------------------------

    /// Records the token subject of the client (shown by the sessions API).
    pub fn set_user(&mut self, key: SessionKey, user: Option<Arc<str>>) {
        self.clients[key].about.user = user;
    }

    /// Every session on this shard, for `GET /api/sessions`.
    pub fn sessions(&self) -> Vec<SessionInfo> {
        let now = Instant::now();
        self.clients
            .iter()
            .map(|(_, client)| {
                let pick = |channels: bool| {
                    client
                        .symbols
                        .iter()
                        .filter(|k| k.in_wildcard() != channels)
                        .map(|k| k.as_str().to_owned())
                        .collect()
                };
                SessionInfo {
                    id: client.id,
                    shard: self.id,
                    peer: client.about.peer,
                    user: client.about.user.as_deref().map(str::to_owned),
                    encoding: client.feed.encoding().as_str(),
                    all: client.all,
                    symbols: pick(false),
                    channels: pick(true),
                    outbox_bytes: client.feed.outbox.bytes(),
                    outbox_age_ms: client.feed.outbox.oldest_age(now).as_millis() as u64,
                    connected_ns: client.about.connected_ns,
                }
            })
            .collect()
    }

    /// Closes session `id` (4003, `reason`) if it is on this shard; true if it was.
    pub fn close_session(&mut self, id: u64, reason: &str) -> bool {
        let Some(key) = self
            .clients
            .iter()
            .find(|(_, c)| c.id == id)
            .map(|(k, _)| k)
        else {
            return false;
        };
        let now = Instant::now();
        let grace = self.shared.config.drain_timeout;
        self.clients[key].close(CloseCode::CLOSED_BY_OPERATOR, reason, now + grace, true);
        let metrics = self.shared.metrics.shard(self.id);
        self.clients[key].flush(metrics, &self.shared.config);
        true
    }
}
