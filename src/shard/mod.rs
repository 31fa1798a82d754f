//! Shards: the sessions' shard-side state and the fan-out, one [`ShardCore`] per shard
//! thread, owned outright (no locks, no shared maps).
//!
//! A shard receives the sequencer's batches ([`crate::sequencer::TickQueue`]) and keeps,
//! per key (symbol or channel), the replay ring whose newest entry is the last value; per client, a
//! `Client` (`shard/client.rs`: socket write side, [`Feed`], subscriptions, slow-consumer
//! policy).
//! The fan-out loop ([`fanout::run`]) and the session tasks above share the core through an
//! `Rc<RefCell<_>>` on the shard's thread, never across an `.await`; sessions reach it only
//! through the methods below, and every write to a client's socket happens here.

mod client;
pub mod fanout;
pub mod feed;
pub mod outbox;
pub mod replay;
pub mod subscriptions;
pub mod transport;

use std::cell::Cell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use slab::Slab;
use tokio::sync::Notify;
use tracing::info;

use crate::config::SlowPolicy;
use crate::encode::{Encoding, Frames, Message};
use crate::error::ErrorCode;
use crate::event::Key;
use crate::metrics::{self, ShardMetrics};
use crate::sequencer::Batch;
use crate::shared::{SessionInfo, Shared};
use crate::tick::{Seq, now_ns};
use client::Client;
pub use client::{CLOSE_ADMIN, CLOSE_SLOW, SLOW_CLOSE_GRACE};
pub use feed::{Feed, FeedPhase};
use replay::{History, Replay, effective_depth};
pub use subscriptions::{SessionKey, Subscriptions};
pub use transport::Transport;

/// A shard's index, `0..shards`.
pub type ShardId = usize;

/// Everything a shard owns, on its own thread.
#[derive(Debug)]
pub struct ShardCore {
    id: ShardId,
    shared: Arc<Shared>,
    clients: Slab<Client>,
    /// Who wants which symbol or channel.
    subscriptions: Subscriptions,
    /// Per key seen: the replay ring, whose newest entry is the last value (snapshots,
    /// `/price`, resume).
    history: HashMap<Key, History>,
    /// Clients with frames queued since the last flush.
    dirty: Vec<SessionKey>,
    /// This turn's ticks as (`recv_ns`, deliveries), for the latency histogram.
    turn: Vec<(u64, u64)>,
    /// The ring depth every ring was last trimmed to (see [`ShardCore::deliver`]).
    trimmed_depth: usize,
    /// Session tasks still running (a closing one lingers after its client has left).
    tasks: Cell<usize>,
    /// Notified whenever a session task ends (shutdown waits on it).
    task_left: Rc<Notify>,
}

/// What a subscribe added, for the snapshots that follow it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Added {
    /// `*` was added: every symbol.
    pub all: bool,
    /// These symbols and channels were added by name.
    pub keys: Vec<Key>,
}

/// What a session task needs to know of its client between two waits.
#[derive(Debug, Clone, Copy)]
pub struct ClientStatus {
    /// Live, closing (with its deadline) or dead.
    pub phase: FeedPhase,
    /// The socket was full at the last write: wait for writability.
    pub blocked: bool,
    /// Nothing is queued.
    pub flushed: bool,
}

impl ShardCore {
    /// An empty shard.
    pub fn new(id: ShardId, shared: Arc<Shared>) -> Self {
        let replay_depth = shared.config.replay_depth;
        Self {
            id,
            shared,
            clients: Slab::new(),
            subscriptions: Subscriptions::new(),
            history: HashMap::new(),
            dirty: Vec::new(),
            turn: Vec::new(),
            trimmed_depth: replay_depth,
            tasks: Cell::new(0),
            task_left: Rc::new(Notify::new()),
        }
    }

    /// This shard's index.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The relay-wide state.
    pub fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }

    fn metrics(&self) -> &ShardMetrics {
        self.shared.metrics.shard(self.id)
    }

    // ---- the data path -------------------------------------------------------------

    /// Records every tick of `batch` as its symbol's newest (replay ring, last value), then
    /// appends it to its subscribers' outboxes.
    pub fn deliver(&mut self, batch: &Batch, now: Instant) {
        let config = &self.shared.config;
        let depth = effective_depth(
            config.replay_depth,
            config.replay_budget,
            self.history.len(),
        );
        // Seqs an edge's stream no longer held (rare): announced before the tick after them.
        let mut jumps = Vec::new();
        for (i, frames) in batch.iter().enumerate() {
            let key = frames.key();
            if let Some(last) = self.history.get(key).and_then(History::last)
                && last.seq().next() < frames.seq()
            {
                jumps.push((i, (last.seq().next(), Seq(frames.seq().0 - 1))));
            }
            match self.history.get_mut(key) {
                Some(history) => history.push(frames.clone(), depth),
                None => self
                    .history
                    .entry(key.clone())
                    .or_insert_with(|| History::new(config.replay_depth))
                    .push(frames.clone(), depth),
            }
        }
        self.trim_rings();
        let metrics = self.shared.metrics.shard(self.id);
        let mut delivered = 0;
        let mut jumps = jumps.into_iter().peekable();
        for (i, frames) in batch.iter().enumerate() {
            if let Some((_, gap)) = jumps.next_if(|(at, _)| *at == i) {
                fanout::announce_gap(frames, gap, &self.subscriptions, &mut self.clients, now);
            }
            // One tick at a time, to know each tick's deliveries for the latency histogram.
            let n = fanout::fan_out_batch(
                std::slice::from_ref(frames),
                &self.subscriptions,
                &mut self.clients,
                &mut self.dirty,
                now,
                metrics,
            );
            if n > 0 {
                self.turn.push((frames.item().recv_ns(), n));
            }
            delivered += n;
        }
        metrics::add(&metrics.deliveries, delivered);
    }

    /// Keeps the rings within the replay budget as symbols arrive: each ring's share is
    /// budget ÷ symbols. A ring shrinks to its share when it next ticks; a quiet one is cut
    /// here, in a pass over every ring each time the share halves (at most log2(depth)
    /// passes), so the rings hold at most twice the budget, and resumes never replay
    /// beyond the share ([`History::since_within`]).
    fn trim_rings(&mut self) {
        let depth = self.replay_depth();
        if depth * 2 <= self.trimmed_depth {
            for history in self.history.values_mut() {
                history.truncate(depth);
            }
            self.trimmed_depth = depth;
        }
    }

    /// The ring depth a resume may use now: the configured depth, or each symbol's share
    /// of the replay budget.
    fn replay_depth(&self) -> usize {
        let config = &self.shared.config;
        effective_depth(
            config.replay_depth,
            config.replay_budget,
            self.history.len(),
        )
    }

    /// Ends a fan-out turn (its writes done): records each delivered tick's ingest →
    /// socket-write latency, once per delivery.
    pub fn finish_turn(&mut self) {
        if self.turn.is_empty() {
            return;
        }
        let now = now_ns();
        let latency = &self.shared.metrics.shard(self.id).latency;
        for (recv_ns, deliveries) in self.turn.drain(..) {
            latency.record(now.saturating_sub(recv_ns) / 1_000, deliveries);
        }
    }

    /// Flushes every touched client, then applies the slow-consumer policy to those still
    /// over budget after the write.
    pub fn flush_dirty_and_enforce(&mut self, now: Instant) {
        let metrics = self.shared.metrics.shard(self.id);
        let config = &self.shared.config;
        for key in self.dirty.drain(..) {
            if let Some(client) = self.clients.get_mut(key) {
                client.feed.dirty = false;
                client.flush(metrics, config);
                if client.enforce_budget(config, metrics, now) {
                    self.shared.metrics.count_error(ErrorCode::SlowConsumer);
                    if let Some(suppressed) = self.shared.lifecycle_log.slow.admit(now) {
                        info!(
                            session = client.id,
                            shard = self.id,
                            suppressed,
                            "slow consumer closed with 4008"
                        );
                    }
                }
            }
        }
    }

    // ---- clients: lifecycle ---------------------------------------------------------

    /// Registers a client writing to `stream` and woken through `signal`; returns its key
    /// and relay-wide session id.
    pub fn open(
        &mut self,
        stream: Rc<Transport>,
        signal: Rc<Notify>,
        encoding: Encoding,
        slow: SlowPolicy,
    ) -> (SessionKey, u64) {
        let id = self.shared.next_session_id();
        let peer = stream.tcp().peer_addr().ok();
        let client = Client::new(id, stream, signal, Feed::new(encoding), slow);
        let key = self.clients.insert(client);
        metrics::add(&self.metrics().sessions, 1);
        if let Some(suppressed) = self.shared.lifecycle_log.connect.admit(Instant::now()) {
            info!(session = id, shard = self.id, peer = ?peer, encoding = encoding.as_str(), suppressed, "session connected");
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
        code: u16,
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
                code,
                reason,
                suppressed,
                "session closing"
            );
        }
        client.close(code, reason, deadline, discard_backlog);
    }

    /// Shutdown: closes every client with `code` after what it has queued, and flushes.
    pub fn close_all(&mut self, code: u16, reason: &str, deadline: Instant) {
        let metrics = self.shared.metrics.shard(self.id);
        // One line for all: per-client lines would be a storm at every shutdown.
        info!(
            shard = self.id,
            clients = self.clients.len(),
            code,
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

    /// Queues a raw frame (ping, pong, echo).
    pub fn send_frame(&mut self, key: SessionKey, frame: Bytes, now: Instant) {
        self.clients[key].feed.send_frame(frame, now);
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

    // ---- clients: subscriptions -----------------------------------------------------

    /// Subscribes the client to `*` (`all`) and to `keys` by name. `*` subsumes named
    /// symbols (their index entries are dropped so no tick is delivered twice); channels
    /// are always named.
    pub fn subscribe(&mut self, key: SessionKey, all: bool, keys: &[Key]) -> Added {
        let mut added = Added::default();
        if all && !self.clients[key].all {
            let named: Vec<Key> = self.clients[key]
                .symbols
                .iter()
                .filter(|k| k.in_wildcard())
                .cloned()
                .collect();
            for symbol in &named {
                self.clients[key].symbols.remove(symbol);
                self.index(key, Some(symbol), false);
            }
            self.clients[key].all = true;
            self.index(key, None, true);
            added.all = true;
        }
        let covered = self.clients[key].all;
        for name in keys {
            if covered && name.in_wildcard() {
                continue;
            }
            if self.clients[key].symbols.insert(name.clone()) {
                self.index(key, Some(name), true);
                added.keys.push(name.clone());
            }
        }
        added
    }

    /// Unsubscribes the client from `*` (`all`) and from `keys`.
    pub fn unsubscribe(&mut self, key: SessionKey, all: bool, keys: &[Key]) {
        if all && self.clients[key].all {
            self.clients[key].all = false;
            self.index(key, None, false);
        }
        for name in keys {
            if self.clients[key].symbols.remove(name) {
                self.index(key, Some(name), false);
            }
        }
    }

    /// How many subscriptions (`*` counting as one) the client would hold after
    /// subscribing to `all` and `keys`.
    pub fn subscriptions_after(&self, key: SessionKey, all: bool, keys: &[Key]) -> usize {
        let client = &self.clients[key];
        let all_after = client.all || all;
        let held = usize::from(client.all)
            + client
                .symbols
                .iter()
                .filter(|k| !(all_after && k.in_wildcard()))
                .count();
        let new = usize::from(all && !client.all)
            + keys
                .iter()
                .filter(|k| !(client.symbols.contains(*k) || all_after && k.in_wildcard()))
                .count();
        held + new
    }

    /// Whether the client receives `name` live (by name or, a symbol, through `*`).
    pub fn receives(&self, key: SessionKey, name: &Key) -> bool {
        let client = &self.clients[key];
        (client.all && name.in_wildcard()) || client.symbols.contains(name)
    }

    /// What the client is subscribed to: `*`, and the symbols and channels by name.
    pub fn subscribed(&self, key: SessionKey) -> (bool, Vec<Key>) {
        let client = &self.clients[key];
        (client.all, client.symbols.iter().cloned().collect())
    }

    /// Queues the last value of what `added` added, as `snapshot` messages.
    pub fn send_snapshots(&mut self, key: SessionKey, added: &Added, now: Instant) {
        let feed = &mut self.clients[key].feed;
        if added.all {
            let mut all: Vec<_> = self
                .history
                .iter()
                .filter(|(k, _)| k.in_wildcard())
                .filter_map(|(_, h)| h.last())
                .collect();
            all.sort_by(|a, b| a.key().cmp(b.key()));
            for frames in all {
                feed.send(&Message::Snapshot(frames.item()), now);
            }
        }
        let known = added.keys.iter().filter_map(|s| self.history.get(s));
        for frames in known.filter_map(History::last) {
            feed.send(&Message::Snapshot(frames.item()), now);
        }
    }

    /// Subscribes each symbol and queues what the client missed after its position: the
    /// ticks from the ring, or a `gap` and a snapshot when the position is older than the
    /// ring. Runs between fan-out turns, so the replay ends exactly where the live stream
    /// resumes. A position in another history (`epoch` given and not this relay's) gets a
    /// `reset` and a snapshot, never ticks.
    pub fn resume(
        &mut self,
        key: SessionKey,
        positions: &[(Key, Seq)],
        epoch: Option<u64>,
        now: Instant,
    ) {
        if positions.is_empty() {
            return;
        }
        let symbols: Vec<Key> = positions.iter().map(|(s, _)| s.clone()).collect();
        self.subscribe(key, false, &symbols);
        let current = self.shared.epoch;
        let depth = self.replay_depth();
        let metrics = self.shared.metrics.shard(self.id);
        let feed = &mut self.clients[key].feed;
        if epoch.is_some_and(|e| e != current) {
            for (symbol, _) in positions {
                feed.send(
                    &Message::Reset {
                        key: symbol,
                        epoch: current,
                    },
                    now,
                );
                if let Some(last) = self.history.get(symbol).and_then(History::last) {
                    feed.send(&Message::Snapshot(last.item()), now);
                }
            }
            return;
        }
        for (symbol, seq) in positions {
            match self
                .history
                .get(symbol)
                .and_then(|h| h.since_within(*seq, depth))
            {
                None => {}
                Some(Replay::Ticks(ticks)) => {
                    for frames in ticks {
                        feed.push_tick(frames, now, metrics);
                    }
                }
                Some(Replay::Gap { from, to, last }) => {
                    feed.send(
                        &Message::Gap {
                            key: symbol,
                            from,
                            to,
                        },
                        now,
                    );
                    feed.send(&Message::Snapshot(last.item()), now);
                }
                Some(Replay::Ahead { last }) => feed.send(&Message::Snapshot(last.item()), now),
            }
        }
        feed.allow_burst();
    }

    /// Adds the client to (or removes it from) the index of `symbol` (`None`: `*`) and
    /// the sequencer's interest count for its encoding: the two always change together.
    fn index(&mut self, key: SessionKey, symbol: Option<&Key>, add: bool) {
        let encoding = self.clients[key].feed.encoding();
        if add {
            self.subscriptions.insert(symbol, key);
            self.shared.interest.add(symbol, encoding);
        } else {
            self.subscriptions.remove(symbol, key);
            self.shared.interest.remove(symbol, encoding);
        }
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
        self.clients[key].close(CLOSE_ADMIN, reason, now + grace, true);
        let metrics = self.shared.metrics.shard(self.id);
        self.clients[key].flush(metrics, &self.shared.config);
        true
    }

    // ---- shard-local reads ----------------------------------------------------------

    /// The last tick (or event) of `key` this shard has seen.
    pub fn last(&self, key: &Key) -> Option<&Arc<Frames>> {
        self.history.get(key).and_then(History::last)
    }

    /// The last item of every symbol and channel seen, in no particular order.
    pub fn last_values(&self) -> impl Iterator<Item = &Arc<Frames>> {
        self.history.values().filter_map(History::last)
    }

    /// How many symbols this shard has seen (every shard sees every tick).
    pub fn symbol_count(&self) -> usize {
        self.history.keys().filter(|k| k.in_wildcard()).count()
    }
}
