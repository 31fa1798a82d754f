//! [`Client`]: one WebSocket client as its shard holds it — the socket's write side, the
//! [`Feed`] the fan-out appends to, what it subscribed to, and its slow-consumer policy.
//!
//! Every frame to the client, replies included, goes through the outbox and out through
//! [`Client::flush`], so bytes on the socket are never interleaved. The session task above
//! owns the read side and is woken through `signal` when the shard changes what it waits
//! for (the socket is full, the client is closing, the socket failed).

use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::{Duration, Instant};

use tokio::sync::Notify;
use tracing::debug;

use super::feed::{Feed, FeedPhase};
use super::transport::Transport;
use crate::config::{Config, SlowPolicy};
use crate::encode::ws_frame;
use crate::error::CloseCode;
use crate::event::Key;
use crate::metrics::{self, ShardMetrics};

/// One client's state on its shard.
#[derive(Debug)]
pub(super) struct Client {
    /// Relay-wide session id (shown in `welcome`).
    pub(super) id: u64,
    stream: Rc<Transport>,
    /// Encoder, outbox and slow-consumer state: what the fan-out writes into.
    pub(super) feed: Feed,
    /// Symbols and channels subscribed to by name (no symbols while `all`).
    pub(super) symbols: BTreeSet<Key>,
    /// Subscribed to `*`.
    pub(super) all: bool,
    slow: SlowPolicy,
    /// The last write would have blocked; the task waits for writability.
    pub(super) blocked: bool,
    /// Wakes the session's task (blocked, closing, dead).
    signal: Rc<Notify>,
    /// The client's address, its token's subject and when it connected (for the sessions
    /// API; boxed: read by operators only, and idle clients are counted in bytes).
    pub(super) about: Box<About>,
}

/// What the sessions API shows of a client beyond its subscriptions.
#[derive(Debug)]
pub(super) struct About {
    pub(super) peer: Option<std::net::SocketAddr>,
    pub(super) user: Option<std::sync::Arc<str>>,
    pub(super) connected_ns: u64,
}

impl Client {
    /// A live client with nothing subscribed and nothing queued.
    pub(super) fn new(
        id: u64,
        stream: Rc<Transport>,
        signal: Rc<Notify>,
        feed: Feed,
        slow: SlowPolicy,
    ) -> Self {
        let about = Box::new(About {
            peer: stream.tcp().peer_addr().ok(),
            user: None,
            connected_ns: crate::tick::now_ns(),
        });
        Self {
            about,
            id,
            stream,
            feed,
            symbols: BTreeSet::new(),
            all: false,
            slow,
            blocked: false,
            signal,
        }
    }

    /// Queues a close frame and stops ticks. `discard_backlog` drops frames not yet started
    /// (a slow consumer will not read them; on shutdown they are flushed first).
    pub(super) fn close(
        &mut self,
        code: CloseCode,
        reason: &str,
        deadline: Instant,
        discard_backlog: bool,
    ) {
        if self.feed.phase != FeedPhase::Live {
            return;
        }
        if discard_backlog {
            self.feed.outbox.drop_unstarted();
        }
        self.feed
            .push_frame(ws_frame::close_frame(code, reason), Instant::now());
        self.feed.phase = FeedPhase::Closing { deadline };
        self.feed.lagging = None;
        self.signal.notify_one();
    }

    /// Writes as much of the outbox as the socket takes now, without waiting.
    pub(super) fn flush(&mut self, metrics: &ShardMetrics, config: &Config) {
        if self.blocked || self.feed.phase == FeedPhase::Dead {
            return;
        }
        loop {
            // A batching client's messages become frames now: all that waits, in one.
            self.feed.seal();
            if self.feed.outbox.is_empty() {
                // TLS: records encrypted earlier may still wait for the socket.
                match self.stream.flush_pending() {
                    Ok(()) => break,
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        self.block();
                        return;
                    }
                    Err(e) => {
                        debug!(session = self.id, error = %e, "write failed; dropping session");
                        self.die();
                        return;
                    }
                }
            }
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let count = self.feed.outbox.slices(&mut slices);
            let offered: usize = slices[..count].iter().map(|s| s.len()).sum();
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(written) => {
                    self.feed.outbox.advance(written);
                    metrics::add(&metrics.bytes_out, written as u64);
                    metrics::add(&metrics.socket_writes, 1);
                    if let Some((fed, produced)) = self.feed.encoder.take_deflate_counts() {
                        metrics::add(&metrics.deflate_in, fed);
                        metrics::add(&metrics.deflate_out, produced);
                    }
                    self.feed.caught_up(config);
                    if written < offered || self.stream.pending() {
                        // The socket buffer is full: wait for writability.
                        self.block();
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.block();
                    return;
                }
                Err(e) => {
                    debug!(session = self.id, error = %e, "write failed; dropping session");
                    self.die();
                    return;
                }
            }
        }
        if matches!(self.feed.phase, FeedPhase::Closing { .. }) {
            // The close frame is out: let the task finish the close.
            self.signal.notify_one();
        }
    }

    /// Applies the slow-consumer policy if the outbox is over its budget; true if that
    /// closed the client.
    pub(super) fn enforce_budget(
        &mut self,
        config: &Config,
        metrics: &ShardMetrics,
        now: Instant,
    ) -> bool {
        if self.feed.phase != FeedPhase::Live || self.feed.lagging.is_some() {
            return false;
        }
        let max_bytes = config.outbox_bytes.max(self.feed.burst_allowance);
        if !self
            .feed
            .outbox
            .over_budget(max_bytes, config.outbox_max_age, now)
        {
            return false;
        }
        match self.slow {
            SlowPolicy::Disconnect => {
                metrics::add(&metrics.slow_disconnects, 1);
                debug!(
                    session = self.id,
                    pending = self.feed.outbox.bytes(),
                    "slow consumer disconnected"
                );
                let slow = CloseCode::SLOW_CONSUMER;
                self.close(slow, slow.reason(), now + SLOW_CLOSE_GRACE, true);
                true
            }
            SlowPolicy::Conflate => {
                debug!(
                    session = self.id,
                    pending = self.feed.outbox.bytes(),
                    "slow consumer conflating"
                );
                self.feed.lagging = Some(BTreeMap::new());
                false
            }
        }
    }

    /// The socket failed: the task will remove the client.
    pub(super) fn die(&mut self) {
        self.feed.phase = FeedPhase::Dead;
        self.signal.notify_one();
    }

    fn block(&mut self) {
        if !self.blocked {
            self.blocked = true;
            self.signal.notify_one();
        }
    }
}

impl std::borrow::Borrow<Feed> for Client {
    fn borrow(&self) -> &Feed {
        &self.feed
    }
}

impl std::borrow::BorrowMut<Feed> for Client {
    fn borrow_mut(&mut self) -> &mut Feed {
        &mut self.feed
    }
}

/// How long a slow or idle client's close frame may take before the socket is dropped.
pub const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// Most frames offered to one vectored write (Linux's IOV_MAX is 1024; 64 covers a turn).
const WRITE_SLICES: usize = 64;

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::FeedPhase;
    use super::super::testkit::{Bench, briefs, symbol, tick};
    use crate::config::Config;
    use crate::encode::Message;
    use crate::encode::ws_frame::OpCode;

    #[tokio::test]
    async fn a_full_socket_makes_the_client_wait_and_writing_again_too_early_waits_again() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.narrow_client().await;
        let queued = bench.choke(client.key);
        let status = bench.core.status(client.key);
        assert_eq!(
            (status.phase, status.blocked, status.flushed),
            (FeedPhase::Live, true, false)
        );
        // Woken though the peer read nothing: the socket takes little or nothing (a write
        // that would block), so it waits again, however often it is woken.
        for _ in 0..16 {
            bench.core.writable(client.key, true);
            let status = bench.core.status(client.key);
            assert_eq!((status.phase, status.blocked), (FeedPhase::Live, true));
        }
        // Once the peer reads, everything comes, in order.
        bench
            .core
            .send(client.key, &Message::Pong { id: 1 }, Instant::now());
        let mut got = Vec::new();
        while got.len() < queued + 1 {
            got.extend(client.read_some().await);
            bench.core.writable(client.key, true);
        }
        assert!(got[..queued].iter().all(|m| m["type"] == "binary"));
        assert_eq!(briefs(&got[queued..]), ["pong 1"]);
        assert!(!bench.core.status(client.key).blocked);
    }

    #[tokio::test]
    async fn a_tls_clients_waiting_records_wait_for_the_socket_and_a_reset_kills_it() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let client = bench.narrow_tls_client().await;
        let key = client.key;
        // Less than rustls buffers, more than the socket takes: all of it is encrypted at
        // once, and most of its records wait.
        let now = Instant::now();
        bench
            .core
            .send_data(key, OpCode::Binary, &[b'x'; 32 * 1024], now);
        bench.core.allow_burst(key);
        bench.core.flush(key);
        let status = bench.core.status(key);
        assert_eq!(
            (status.phase, status.blocked, status.flushed),
            (FeedPhase::Live, true, true),
            "nothing left to encrypt, records waiting"
        );
        // Woken while the socket is still full: only the records are left, and they wait.
        for _ in 0..4 {
            bench.core.writable(key, true);
            let status = bench.core.status(key);
            assert_eq!((status.phase, status.blocked), (FeedPhase::Live, true));
        }
        // The peer resets the connection: writing the records fails, and the client is dead.
        client.hang_up();
        for _ in 0..1000 {
            if bench.core.status(key).phase == FeedPhase::Dead {
                break;
            }
            tokio::task::yield_now().await;
            bench.core.writable(key, true);
        }
        let status = bench.core.status(key);
        assert_eq!((status.phase, status.blocked), (FeedPhase::Dead, false));
    }

    #[tokio::test]
    async fn a_tls_client_reading_slowly_gets_every_frame_in_order() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.narrow_tls_client().await;
        let queued = bench.choke(client.key);
        bench
            .core
            .send(client.key, &Message::Pong { id: 1 }, Instant::now());
        let mut got = Vec::new();
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while got.len() < queued + 1 {
            assert!(std::time::Instant::now() < deadline, "{} came", got.len());
            // A record is decrypted whole, and it can be larger than the narrow sockets
            // hold: read for a moment, then let the relay write more.
            got.extend(client.rest().await);
            bench.core.writable(client.key, true);
            assert_eq!(bench.core.status(client.key).phase, FeedPhase::Live);
        }
        assert!(got[..queued].iter().all(|m| m["type"] == "binary"));
        assert_eq!(briefs(&got[queued..]), ["pong 1"]);
    }

    #[tokio::test]
    async fn a_client_whose_peer_vanished_is_dead_once_a_write_fails() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let client = bench.client().await;
        let key = client.key;
        bench.core.subscribe(key, false, &[symbol("BTC")]);
        // Unread data makes the peer's close a reset.
        bench.deliver(&[tick("BTC", 1)]);
        client.hang_up();
        let mut seq = 2;
        while bench.core.status(key).phase == FeedPhase::Live && seq < 1000 {
            tokio::task::yield_now().await;
            bench.deliver(&[tick("BTC", seq)]);
            seq += 1;
        }
        assert_eq!(bench.core.status(key).phase, FeedPhase::Dead);
        assert!(!bench.core.status(key).blocked);
    }

    #[tokio::test]
    async fn each_turn_writes_what_it_queued_without_waiting_for_writability() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        bench.core.subscribe(client.key, false, &[symbol("BTC")]);
        for seq in 1..=3 {
            bench.deliver(&[tick("BTC", seq)]);
            assert!(!bench.core.status(client.key).blocked);
        }
        assert_eq!(
            briefs(&client.messages(3).await),
            ["tick BTC 1", "tick BTC 2", "tick BTC 3"]
        );
    }
}
