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

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant};

    use super::super::testkit::{Bench, Peer, briefs, channel, json, symbol, tick};
    use super::super::{ClientOptions, FeedPhase, SLOW_CLOSE_GRACE};
    use crate::config::Config;
    use crate::encode::ws_frame::{self, OpCode};
    use crate::encode::{Encoder, Encoding, Message};
    use crate::error::{CloseCode, ErrorCode};

    fn pong(bench: &mut Bench, peer: &Peer, id: u64) {
        bench
            .core
            .send(peer.key, &Message::Pong { id }, Instant::now());
    }

    /// The socket is full: the client waits for writability, and what it has queued stays.
    fn full(bench: &mut Bench, peer: &Peer) {
        bench.core.clients[peer.key].blocked = true;
    }

    #[tokio::test]
    async fn each_client_opens_with_its_own_key_and_session_id_and_is_counted() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let one = bench.client().await;
        let two = bench.client().await;
        assert_eq!((one.key, one.id), (0, 1));
        assert_eq!((two.key, two.id), (1, 2));
        let sessions = &bench.core.shared().metrics.shard(1).sessions;
        assert_eq!(sessions.load(Relaxed), 2);
        let status = bench.core.status(two.key);
        assert_eq!(
            (status.phase, status.blocked, status.flushed),
            (FeedPhase::Live, false, true)
        );
    }

    #[tokio::test]
    async fn sends_of_every_kind_go_out_in_order_on_flush() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        let now = Instant::now();
        pong(&mut bench, &client, 7);
        let ping = ws_frame::frame(OpCode::Ping, b"hi");
        bench.core.send_frame(client.key, ping, now);
        let echo = br#"{"type":"echo","n":1}"#;
        bench.core.send_data(client.key, OpCode::Text, echo, now);
        assert!(!bench.core.status(client.key).flushed, "queued");
        bench.core.flush(client.key);
        assert!(bench.core.status(client.key).flushed);
        assert_eq!(
            briefs(&client.messages(3).await),
            ["pong 7", "ping \"hi\"", "echo"]
        );
        pong(&mut bench, &client, 8);
        bench.core.flush(client.key);
        assert_eq!(briefs(&client.messages(1).await), ["pong 8"]);
        assert!(client.rest().await.is_empty());
        assert_eq!(bench.core.status(client.key).phase, FeedPhase::Live);
    }

    #[tokio::test]
    async fn a_waiting_client_gets_its_queue_once_writable_and_a_failed_socket_is_dead() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut waiting = bench.client().await;
        let mut failed = bench.client().await;
        full(&mut bench, &waiting);
        pong(&mut bench, &waiting, 1);
        bench.core.flush(waiting.key);
        let status = bench.core.status(waiting.key);
        assert_eq!(
            (status.blocked, status.flushed),
            (true, false),
            "not written"
        );
        bench.core.writable(waiting.key, true);
        let status = bench.core.status(waiting.key);
        assert_eq!((status.blocked, status.flushed), (false, true));
        assert_eq!(briefs(&waiting.messages(1).await), ["pong 1"]);

        pong(&mut bench, &failed, 2);
        bench.core.writable(failed.key, false);
        assert_eq!(bench.core.status(failed.key).phase, FeedPhase::Dead);
        bench.core.flush(failed.key);
        pong(&mut bench, &failed, 3);
        bench.core.flush(failed.key);
        assert!(failed.rest().await.is_empty(), "nothing more is written");
        assert!(
            !bench.core.leave(failed.key),
            "no close frame to linger for"
        );
    }

    #[tokio::test]
    async fn close_queues_its_frame_after_the_backlog_or_instead_of_it_and_only_once() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut keeps = bench.client().await;
        let mut drops = bench.client().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        for (peer, discard) in [(&keeps, false), (&drops, true)] {
            pong(&mut bench, peer, 1);
            let code = CloseCode::GOING_AWAY;
            bench.core.close(peer.key, code, "bye", deadline, discard);
            assert_eq!(
                bench.core.status(peer.key).phase,
                FeedPhase::Closing { deadline }
            );
            pong(&mut bench, peer, 2);
            bench.core.close(peer.key, code, "again", deadline, discard);
            bench.core.flush(peer.key);
        }
        assert_eq!(
            briefs(&keeps.messages(2).await),
            ["pong 1", "close 1001 bye"]
        );
        assert_eq!(briefs(&drops.messages(1).await), ["close 1001 bye"]);
        assert!(keeps.rest().await.is_empty());
        assert!(drops.rest().await.is_empty());
    }

    #[tokio::test]
    async fn leave_drops_the_client_its_subscriptions_and_its_socket() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut leaving = bench.client().await;
        let mut staying = bench.client().await;
        bench
            .core
            .subscribe(leaving.key, true, &[symbol("BTC"), channel("news")]);
        bench.core.subscribe(staying.key, false, &[symbol("BTC")]);
        assert!(
            !bench.core.leave(leaving.key),
            "live: nothing to linger for"
        );
        assert!(leaving.until_closed().await.is_empty());
        let interest = bench.core.shared().interest.totals();
        assert_eq!(interest, (vec![(symbol("BTC"), 1)], 0));
        let sessions = &bench.core.shared().metrics.shard(1).sessions;
        assert_eq!(sessions.load(Relaxed), 1);
        bench.deliver(&[tick("BTC", 1)]);
        assert_eq!(briefs(&staying.messages(1).await), ["tick BTC 1"]);
    }

    #[tokio::test]
    async fn leave_asks_to_linger_only_once_the_close_frame_is_written() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let unwritten = bench.client().await;
        let mut written = bench.client().await;
        let deadline = Instant::now() + Duration::from_secs(5);
        for peer in [&unwritten, &written] {
            let code = CloseCode::GOING_AWAY;
            bench.core.close(peer.key, code, "bye", deadline, false);
        }
        bench.core.flush(written.key);
        assert!(!bench.core.leave(unwritten.key), "its close frame waits");
        assert!(bench.core.leave(written.key));
        assert_eq!(briefs(&written.until_closed().await), ["close 1001 bye"]);
    }

    #[tokio::test]
    async fn close_all_closes_every_client_after_what_it_has_queued() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut one = bench.client().await;
        let mut two = bench.client().await;
        pong(&mut bench, &one, 1);
        pong(&mut bench, &two, 2);
        let deadline = Instant::now() + Duration::from_secs(5);
        bench
            .core
            .close_all(CloseCode::GOING_AWAY, "shutdown", deadline);
        assert_eq!(
            briefs(&one.messages(2).await),
            ["pong 1", "close 1001 shutdown"]
        );
        assert_eq!(
            briefs(&two.messages(2).await),
            ["pong 2", "close 1001 shutdown"]
        );
        assert_eq!(
            bench.core.status(two.key).phase,
            FeedPhase::Closing { deadline }
        );
    }

    #[tokio::test]
    async fn tasks_count_the_session_tasks_running_and_signal_each_end() {
        let bench = Bench::new(Config::for_tests()).await;
        assert_eq!(bench.core.tasks().0, 0);
        bench.core.task_started();
        bench.core.task_started();
        assert_eq!(bench.core.tasks().0, 2);
        let (_, left) = bench.core.tasks();
        bench.core.task_ended();
        assert_eq!(bench.core.tasks().0, 1);
        tokio::time::timeout(Duration::from_secs(10), left.notified())
            .await
            .expect("an end is signalled");
    }

    #[tokio::test]
    async fn a_burst_asked_for_may_exceed_the_budget_a_backlog_closes_the_client() {
        let config = Config {
            outbox_bytes: 4096,
            ..Config::for_tests()
        };
        let mut bench = Bench::new(config).await;
        let burst = bench.client().await;
        let backlog = bench.client().await;
        let closing = bench.client().await;
        let now = Instant::now();
        let big = vec![b'x'; 65536];
        for peer in [&burst, &backlog, &closing] {
            full(&mut bench, peer);
            bench.core.send_data(peer.key, OpCode::Binary, &big, now);
        }
        bench.core.allow_burst(burst.key);
        let later = now + Duration::from_secs(5);
        bench
            .core
            .close(closing.key, CloseCode::GOING_AWAY, "bye", later, false);
        for peer in [&burst, &backlog, &closing] {
            bench.core.clients[peer.key].feed.dirty = true;
            bench.core.dirty.push(peer.key);
        }
        bench.core.flush_dirty_and_enforce(now);
        let phase = |peer: &Peer| bench.core.status(peer.key).phase;
        assert_eq!(phase(&burst), FeedPhase::Live);
        assert_eq!(
            phase(&backlog),
            FeedPhase::Closing {
                deadline: now + SLOW_CLOSE_GRACE
            }
        );
        assert_eq!(phase(&closing), FeedPhase::Closing { deadline: later });
        let metrics = &bench.core.shared().metrics;
        assert_eq!(metrics.shard(1).slow_disconnects.load(Relaxed), 1);
        let errors: Vec<_> = metrics.errors().collect();
        assert_eq!(errors, [(ErrorCode::SlowConsumer, 1)]);
    }

    #[tokio::test]
    async fn released_encoders_drop_their_compressor_state() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let gzip = ClientOptions {
            encoding: Encoding::Gzip,
            ..json()
        };
        let client = bench.client_with(gzip).await;
        let holds = |bench: &Bench| match &bench.core.clients[client.key].feed.encoder {
            Encoder::Gzip(stream) => stream.holds_state(),
            other => panic!("a gzip encoder, got {other:?}"),
        };
        pong(&mut bench, &client, 1);
        assert!(holds(&bench));
        bench.core.release_encoder(client.key);
        assert!(!holds(&bench), "released at once");
        pong(&mut bench, &client, 2);
        bench.core.release_encoder_if_idle(client.key);
        assert!(holds(&bench), "used since the last check");
        bench.core.release_encoder_if_idle(client.key);
        assert!(!holds(&bench), "idle since the last check");
    }

    #[tokio::test]
    async fn the_sessions_api_lists_each_client_with_its_keys_user_and_backlog() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let named = bench.client().await;
        let every = bench.client().await;
        bench
            .core
            .subscribe(named.key, false, &[symbol("BTC"), channel("news")]);
        bench.core.subscribe(every.key, true, &[]);
        bench.core.set_user(named.key, Some(Arc::from("alice")));
        pong(&mut bench, &named, 1);
        let mut sessions = bench.core.sessions();
        sessions.sort_by_key(|s| s.id);
        let [first, second] = &sessions[..] else {
            panic!("two sessions: {sessions:?}");
        };
        assert_eq!(
            (first.id, first.shard, first.encoding, first.all),
            (named.id, 1, "json", false)
        );
        assert_eq!(first.user.as_deref(), Some("alice"));
        assert_eq!(first.peer, Some(named.address()));
        assert_eq!(
            (&first.symbols[..], &first.channels[..]),
            (&["BTC".to_owned()][..], &["news".to_owned()][..])
        );
        assert!(first.outbox_bytes > 0, "the pong waits");
        assert_eq!(
            (second.id, second.all, second.user.as_deref()),
            (every.id, true, None)
        );
        assert!(second.symbols.is_empty() && second.channels.is_empty());
        assert_eq!(second.outbox_bytes, 0);
    }

    #[tokio::test]
    async fn closing_a_session_by_id_closes_that_one_only_dropping_its_backlog() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let other = bench.client().await;
        let mut target = bench.client().await;
        pong(&mut bench, &target, 1);
        let before = Instant::now();
        assert!(bench.core.close_session(target.id, "bye"));
        assert!(!bench.core.close_session(99, "bye"), "no such session here");
        assert_eq!(briefs(&target.messages(1).await), ["close 4003 bye"]);
        match bench.core.status(target.key).phase {
            FeedPhase::Closing { deadline } => {
                let grace = bench.core.shared().config.drain_timeout;
                assert!(deadline >= before + grace, "the drain timeout to finish");
            }
            phase => panic!("closing, not {phase:?}"),
        }
        assert_eq!(bench.core.status(other.key).phase, FeedPhase::Live);
        assert!(target.rest().await.is_empty());
    }
}
