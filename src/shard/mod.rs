//! Shards: the sessions' shard-side state and the fan-out, one [`ShardCore`] per shard
//! thread, owned outright (no locks, no shared maps).
//!
//! A shard receives the sequencer's batches ([`crate::sequencer::TickQueue`]) and keeps,
//! per key (symbol or channel), the replay ring whose newest entry is the last value; per client, a
//! `Client` (`shard/client.rs`: socket write side, [`Feed`], subscriptions, slow-consumer
//! policy).
//! The fan-out loop ([`run`]) and the session tasks above share the core through an
//! `Rc<RefCell<_>>` on the shard's thread, never across an `.await`; sessions reach it only
//! through [`ShardCore`]'s methods, and every write to a client's socket happens here.
//! Its impl lives in this module only, in four files: the data path and shard-local reads
//! (here), a client's lifecycle and sends (`lifecycle.rs`), subscriptions, snapshots and
//! resume (`subscribe.rs`), and an edge's switch to a new history (`history.rs`).

pub mod book_lag;
mod books;
mod client;
pub mod fanout;
pub mod feed;
mod history;
mod lifecycle;
pub mod outbox;
pub mod ring;
mod subscribe;
pub mod subscriptions;
#[cfg(test)]
mod testkit;
mod throttled;
pub mod tiers;
pub mod transport;

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Instant;

use crossbeam_channel::TryRecvError;
use slab::Slab;
use tokio::sync::Notify;
use tracing::info;

use crate::config::SlowPolicy;
use crate::encode::deflate::DeflateParams;
use crate::encode::{Encoding, Frames};
use crate::error::ErrorCode;
use crate::event::Key;
use crate::metrics::{self, ShardMetrics};
use crate::sequencer::{Batch, Handed, TickQueue};
use crate::shared::Shared;
use crate::tick::{Seq, now_ns};
use books::BookCopies;
use client::Client;
pub use client::SLOW_CLOSE_GRACE;
pub use feed::{Feed, FeedPhase};
use ring::{Ring, effective_depth};
pub use subscriptions::{SessionKey, Subscriptions};
use tiers::Throttle;
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
    rings: HashMap<Key, Ring>,
    /// Per book: the shard's copy (book snapshots of any depth, `/book`).
    books: BookCopies,
    /// Clients with frames queued since the last flush.
    dirty: Vec<SessionKey>,
    /// This turn's ticks as (`recv_ns`, deliveries), for the latency histogram.
    turn: Vec<(u64, u64)>,
    /// The ring depth every ring was last trimmed to (see [`ShardCore::deliver`]).
    trimmed_depth: usize,
    /// The rate tiers of the keys this shard's clients follow at a tier.
    throttle: Throttle,
    /// The sequencer's eviction count when this shard last dropped evicted keys.
    evictions_seen: u64,
    /// Session tasks still running (a closing one lingers after its client has left).
    tasks: Cell<usize>,
    /// Notified whenever a session task ends (shutdown waits on it).
    task_left: Rc<Notify>,
    /// The history this shard's rings hold (`welcome`, resumes): the relay's, or on an edge
    /// the one the stream holds, as of the items handed so far (`history.rs`).
    epoch: u64,
}

/// What a subscribe added, for the snapshots that follow it.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct Added {
    /// `*` was added: every symbol.
    pub all: bool,
    /// These symbols and channels were added by name.
    pub keys: Vec<Key>,
}

/// How a client asked to receive, fixed when it opens.
#[derive(Debug, Clone, Copy)]
pub struct ClientOptions {
    /// The negotiated encoding.
    pub encoding: Encoding,
    /// What happens when it falls behind.
    pub slow: SlowPolicy,
    /// permessage-deflate as negotiated (`None`: plain frames).
    pub deflate: Option<DeflateParams>,
    /// Several messages per frame (`?batch=on`).
    pub batch: bool,
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
            clients: Slab::new(),
            subscriptions: Subscriptions::new(),
            rings: HashMap::new(),
            books: BookCopies::default(),
            dirty: Vec::new(),
            turn: Vec::new(),
            throttle: Throttle::default(),
            trimmed_depth: replay_depth,
            evictions_seen: 0,
            tasks: Cell::new(0),
            task_left: Rc::new(Notify::new()),
            epoch: shared.epoch,
            shared,
        }
    }

    /// This shard's index.
    pub fn id(&self) -> ShardId {
        self.id
    }

    /// The identity of the history this shard serves (sent in `welcome`).
    pub fn epoch(&self) -> u64 {
        self.epoch
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
        if self.shared.interest.evictions() != self.evictions_seen {
            self.forget_evicted(now);
        }
        let config = &self.shared.config;
        let depth = effective_depth(config.replay_depth, config.replay_budget, self.rings.len());
        // Seqs an edge's stream no longer held (rare): announced before the tick after them.
        let mut jumps = Vec::new();
        for (i, frames) in batch.iter().enumerate() {
            // A book checkpoint updates the shard's copy only.
            if !self.books.observe(frames) {
                continue;
            }
            let key = frames.key();
            if let Some(last) = self.rings.get(key).and_then(Ring::last)
                && last.seq().next() < frames.seq()
            {
                jumps.push((i, (last.seq().next(), Seq(frames.seq().0 - 1))));
            }
            match self.rings.get_mut(key) {
                Some(history) => history.push(frames.clone(), depth),
                None => self
                    .rings
                    .entry(key.clone())
                    .or_insert_with(|| Ring::new(config.replay_depth))
                    .push(frames.clone(), depth),
            }
            if !self.throttle.is_empty() {
                self.throttle.observe(frames);
            }
        }
        self.trim_rings();
        let metrics = self.shared.metrics.shard(self.id);
        let mut delivered = 0;
        let mut jumps = jumps.into_iter().peekable();
        for (i, frames) in batch.iter().enumerate() {
            if !books::for_clients(frames) {
                continue;
            }
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
    /// beyond the share ([`Ring::since_within`]).
    fn trim_rings(&mut self) {
        let depth = self.replay_depth();
        if depth * 2 <= self.trimmed_depth {
            for ring in self.rings.values_mut() {
                ring.truncate(depth);
            }
            self.trimmed_depth = depth;
        }
    }

    /// Drops the history of every key the sequencer has evicted (its interest entry is
    /// gone): memory follows the key table. A local client still following such a key (`*`,
    /// or a subscribe that raced the eviction) gets a `reset` for it first: the key's seqs
    /// start again higher, and it must not take them for a continuation.
    fn forget_evicted(&mut self, now: Instant) {
        self.evictions_seen = self.shared.interest.evictions();
        let interest = &self.shared.interest;
        let evicted: Vec<Key> = self
            .rings
            .keys()
            .filter(|key| !interest.holds(key))
            .cloned()
            .collect();
        let epoch = self.epoch;
        for key in &evicted {
            self.rings.remove(key);
            for session in self.subscriptions.of(key) {
                let feed = &mut self.clients[session].feed;
                feed.reset(key, epoch, now);
                if !feed.dirty {
                    feed.dirty = true;
                    self.dirty.push(session);
                }
            }
        }
    }

    /// The ring depth a resume may use now: the configured depth, or each symbol's share
    /// of the replay budget.
    fn replay_depth(&self) -> usize {
        let config = &self.shared.config;
        effective_depth(config.replay_depth, config.replay_budget, self.rings.len())
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

    // ---- shard-local reads ----------------------------------------------------------

    /// The last tick (or event, or a tier's frame) of `key` this shard has seen.
    pub fn last(&self, key: &Key) -> Option<&Arc<Frames>> {
        match key {
            Key::Tiered(_) => self.throttle.last(key),
            Key::Symbol(_) | Key::Channel(_) => self.rings.get(key).and_then(Ring::last),
        }
    }

    /// The last item of every symbol and channel seen, in no particular order.
    pub fn last_values(&self) -> impl Iterator<Item = &Arc<Frames>> {
        self.rings.values().filter_map(Ring::last)
    }

    /// A snapshot of `symbol`'s book at `depth` from this shard's copy (`/book`), if it has
    /// the book.
    pub fn book_snapshot(
        &self,
        symbol: &crate::tick::Symbol,
        depth: crate::book::Depth,
    ) -> Option<crate::book::BookUpdate> {
        self.books
            .snapshot(&crate::book::BookChannel::new(symbol.clone(), depth))
    }

    /// How many books this shard holds a copy of.
    pub fn book_count(&self) -> usize {
        self.books.len()
    }

    /// How many symbols this shard has seen (every shard sees every tick).
    pub fn symbol_count(&self) -> usize {
        self.rings.keys().filter(|k| k.in_wildcard()).count()
    }
}

/// Fans out batches until the sequencer closes the queue (shutdown).
pub async fn run(core: &Rc<RefCell<ShardCore>>, queue: &TickQueue) {
    loop {
        let mut batches = 0;
        let mut closed = false;
        {
            let mut core = core.borrow_mut();
            let now = Instant::now();
            while batches < MAX_BATCHES_PER_TURN {
                match queue.try_next() {
                    Ok(Handed::Batch(batch)) => {
                        core.deliver(&batch, now);
                        batches += 1;
                    }
                    Ok(Handed::History(epoch)) => {
                        core.new_history(epoch, now);
                        batches += 1;
                    }
                    Err(TryRecvError::Empty) => break,
                    Err(TryRecvError::Disconnected) => {
                        closed = true;
                        break;
                    }
                }
            }
            if batches > 0 {
                core.flush_dirty_and_enforce(now);
                core.finish_turn();
            }
            // The tiers whose interval ended: after the turn's ticks, so a tier frame holds
            // the newest of them.
            core.fire_tiers(Instant::now());
        }
        if closed {
            return;
        }
        if batches > 0 {
            // Let session tasks run between turns; the queue keeps filling meanwhile, so
            // the next turn batches more.
            tokio::task::yield_now().await;
        } else {
            let deadline = core.borrow().tier_deadline();
            match deadline {
                Some(deadline) => {
                    tokio::select! {
                        () = queue.wake.notified() => {}
                        () = tokio::time::sleep_until(deadline.into()) => {}
                    }
                }
                None => queue.wake.notified().await,
            }
        }
    }
}

/// Most sequencer batches handled per turn before yielding to the session tasks.
const MAX_BATCHES_PER_TURN: usize = 64;

#[cfg(test)]
mod tests {
    use super::testkit::{Bench, briefs, kinds, symbol, tick};
    use super::*;
    use crate::config::Config;
    use std::sync::atomic::Ordering::Relaxed;

    fn t(kind: &str, seq: u64) -> (String, u64) {
        (kind.to_owned(), seq)
    }

    #[tokio::test]
    async fn each_tick_reaches_its_subscribers_in_order_and_is_counted_on_this_shard() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut btc = bench.client().await;
        let mut every = bench.client().await;
        bench.core.subscribe(btc.key, false, &[symbol("BTC")]);
        bench.core.subscribe(every.key, true, &[]);
        bench.deliver(&[tick("BTC", 1), tick("ETH", 1), tick("BTC", 2)]);
        assert_eq!(kinds(&btc.messages(2).await), [t("tick", 1), t("tick", 2)]);
        let all = every.messages(3).await;
        assert_eq!(all[1]["symbol"], "ETH");
        assert!(btc.rest().await.is_empty(), "no ETH for the BTC client");
        let shards = &bench.core.shared().metrics;
        assert_eq!(bench.core.id(), 1);
        assert_eq!(shards.shard(1).deliveries.load(Relaxed), 5);
        assert_eq!(
            shards.shard(0).deliveries.load(Relaxed),
            0,
            "another shard's count"
        );
        assert_eq!(
            bench.core.last(&symbol("BTC")).map(|f| f.seq()),
            Some(Seq(2))
        );
        assert_eq!(bench.core.symbol_count(), 2);
        assert_eq!(bench.core.last_values().count(), 2);
    }

    #[tokio::test]
    async fn a_books_snapshot_comes_from_the_shards_copy_at_the_depth_asked() {
        use crate::book::{BookKind, Depth, decimal};
        let mut bench = Bench::new(Config::for_tests()).await;
        let bids = [("100", "1"), ("99", "2")];
        bench.deliver(&[testkit::book(
            "BTC",
            3,
            BookKind::Snapshot,
            &bids,
            &[("101", "4")],
        )]);
        assert_eq!(bench.core.book_count(), 1);
        let top = bench
            .core
            .book_snapshot(&crate::tick::Symbol::parse("BTC").unwrap(), Depth::Top(1))
            .expect("the copy");
        let prices: Vec<String> = top.bids.iter().map(|l| decimal::text(&l.price)).collect();
        assert_eq!((top.seq, prices), (Seq(3), vec!["100".to_owned()]));
        assert_eq!(top.asks.len(), 1);
        assert!(
            bench
                .core
                .book_snapshot(&crate::tick::Symbol::parse("ETH").unwrap(), Depth::Top(1))
                .is_none()
        );
        bench.deliver(&[testkit::book(
            "ETH",
            1,
            BookKind::Snapshot,
            &[("10", "1")],
            &[("11", "1")],
        )]);
        assert_eq!(bench.core.book_count(), 2, "a copy per book");
    }

    #[tokio::test]
    async fn seqs_the_stream_no_longer_held_are_announced_as_a_gap_before_the_next_tick() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        bench
            .core
            .subscribe(client.key, false, &[symbol("BTC"), symbol("ETH")]);
        bench.deliver(&[tick("BTC", 1), tick("ETH", 1)]);
        bench.deliver(&[tick("ETH", 2), tick("BTC", 5), tick("BTC", 6)]);
        let messages = client.messages(6).await;
        assert_eq!(
            kinds(&messages),
            [
                t("tick", 1),
                t("tick", 1),
                t("tick", 2),
                t("gap", 0),
                t("tick", 5),
                t("tick", 6)
            ]
        );
        let gap = &messages[3];
        assert_eq!(
            (
                gap["symbol"].as_str(),
                gap["from"].as_u64(),
                gap["to"].as_u64()
            ),
            (Some("BTC"), Some(2), Some(4))
        );
        assert!(client.rest().await.is_empty());
    }

    #[tokio::test]
    async fn quiet_rings_are_cut_each_time_their_share_of_the_budget_halves() {
        let config = Config {
            replay_depth: 100,
            replay_budget: 1000,
            ..Config::for_tests()
        };
        let mut bench = Bench::new(config).await;
        let burst: Vec<_> = (1..=100).map(|seq| tick("QUIET", seq)).collect();
        bench.deliver(&burst);
        let held = |bench: &Bench| bench.core.rings[&symbol("QUIET")].held();
        assert_eq!(held(&bench), 100);
        // 11 to 19 rings: a share of 90 to 52, more than half of 100: not cut yet.
        for n in 1..19 {
            bench.deliver(&[tick(&format!("S{n}"), 1)]);
        }
        assert_eq!(bench.core.rings.len(), 19);
        assert_eq!(held(&bench), 100, "cut only once the share halves");
        bench.deliver(&[tick("S19", 1)]);
        assert_eq!(held(&bench), 50, "20 rings: a share of 50, cut at once");
        for n in 20..40 {
            bench.deliver(&[tick(&format!("S{n}"), 1)]);
        }
        assert_eq!(held(&bench), 25, "40 rings: 25");
    }

    #[tokio::test]
    async fn each_delivery_records_its_ingest_to_write_latency_in_microseconds() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let client = bench.client().await;
        bench.core.subscribe(client.key, false, &[symbol("BTC")]);
        let mut old = crate::tick::sequenced("BTC", 1);
        old.recv_ns = now_ns() - 2_000_000_000;
        bench.deliver(&[Arc::new(Frames::new(old))]);
        let latency = &bench.core.shared().metrics.shard(1).latency;
        assert_eq!(latency.counts().iter().sum::<u64>(), 1, "one delivery");
        let sum = latency.sum_us();
        assert!(
            (2_000_000..3_000_000).contains(&sum),
            "2 s ago, in µs: {sum}"
        );
    }

    /// Closes the fan-out loop's queue and waits (10 s at most) for the loop to end.
    async fn ends_with_its_queue(
        sender: crate::sequencer::TickSender,
        fan_out: tokio::task::JoinHandle<()>,
    ) {
        // Idle first, waiting on the queue with no wake-up pending: only the sender's drop
        // can wake it now.
        for _ in 0..100 {
            tokio::task::yield_now().await;
        }
        drop(sender);
        let ended = tokio::time::timeout(std::time::Duration::from_secs(10), fan_out);
        ended
            .await
            .expect("it ends with the queue")
            .expect("no panic");
    }

    #[tokio::test]
    async fn a_batching_client_gets_what_waits_at_a_write_as_one_frame() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let options = ClientOptions {
            batch: true,
            ..super::testkit::json()
        };
        let mut client = bench.client_with(options).await;
        bench.core.subscribe(client.key, false, &[symbol("BTC")]);
        bench.deliver(&[tick("BTC", 1), tick("BTC", 2), tick("BTC", 3)]);
        // One frame holding the three, in order (the write seals what waits).
        let frame = client.messages(1).await;
        assert_eq!(frame[0]["type"], "batch", "{frame:?}");
        let seqs: Vec<u64> = frame[0]["messages"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["seq"].as_u64().unwrap_or(0))
            .collect();
        assert_eq!(seqs, [1, 2, 3]);
    }

    #[tokio::test]
    async fn an_evicted_keys_history_goes_and_its_followers_are_told_to_reset() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut all = bench.client().await;
        bench.core.subscribe(all.key, true, &[]);
        let (btc, eth) = (symbol("BTC"), symbol("ETH"));
        let mut named = bench.client().await;
        bench
            .core
            .subscribe(named.key, false, std::slice::from_ref(&btc));
        let interest = bench.core.shared().interest.clone();
        interest.entry(&btc);
        interest.entry(&eth);
        bench.deliver(&[tick("BTC", 1), tick("ETH", 1)]);
        assert_eq!(briefs(&all.messages(2).await), ["tick BTC 1", "tick ETH 1"]);
        assert_eq!(briefs(&named.messages(1).await), ["tick BTC 1"]);
        // The sequencer evicts BTC (its seqs will start again): the shard learns of it
        // at its next delivery, which need not be of BTC.
        interest.retain(|key, _| *key != btc);
        bench.deliver(&[tick("ETH", 2)]);
        assert_eq!(briefs(&all.messages(2).await), ["reset BTC", "tick ETH 2"]);
        assert_eq!(briefs(&named.messages(1).await), ["reset BTC"]);
        assert_eq!(
            bench.core.symbol_count(),
            1,
            "BTC's ring is gone, ETH's kept"
        );
        bench.deliver(&[tick("ETH", 3)]);
        assert_eq!(briefs(&all.messages(1).await), ["tick ETH 3"], "once");
    }

    #[tokio::test]
    async fn a_turn_hands_on_at_most_its_batch_limit_before_the_session_tasks_run() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let mut bench = Bench::new(Config::for_tests()).await;
                let mut client = bench.client().await;
                bench.core.subscribe(client.key, false, &[symbol("BTC")]);
                let shared = bench.core.shared().clone();
                let shard = bench.core.id();
                let counts = move || {
                    let metrics = shared.metrics.shard(shard);
                    (
                        metrics.deliveries.load(Relaxed),
                        metrics.bytes_out.load(Relaxed),
                    )
                };
                let core = Rc::new(RefCell::new(bench.core));
                let (sender, queue) = crate::sequencer::tick_queue(MAX_BATCHES_PER_TURN * 2);
                let all = u64::try_from(MAX_BATCHES_PER_TURN).unwrap() + 1;
                for seq in 1..=all {
                    sender.deliver(vec![tick("BTC", seq)].into()).await;
                }
                let fan_out = {
                    let core = core.clone();
                    tokio::task::spawn_local(async move { run(&core, &queue).await })
                };
                // Queued behind the loop's first turn, as a session task would be.
                let seen = tokio::task::spawn_local(async move { counts() });
                let (delivered, written) = seen.await.expect("no panic");
                assert_eq!(
                    delivered,
                    all - 1,
                    "one turn's batches, then the sessions' turn"
                );
                assert!(
                    written > 0,
                    "the turn's deliveries written before it yields"
                );
                let seqs: Vec<u64> = client
                    .messages(usize::try_from(all).unwrap())
                    .await
                    .iter()
                    .map(|m| m["seq"].as_u64().unwrap_or(0))
                    .collect();
                assert_eq!(seqs, (1..=all).collect::<Vec<_>>(), "the rest next turn");
                ends_with_its_queue(sender, fan_out).await;
            })
            .await;
    }

    #[tokio::test]
    async fn the_fan_out_loop_delivers_each_batch_and_ends_with_its_queue() {
        tokio::task::LocalSet::new()
            .run_until(async {
                let mut bench = Bench::new(Config::for_tests()).await;
                let mut client = bench.client().await;
                bench.core.subscribe(client.key, false, &[symbol("BTC")]);
                let core = Rc::new(RefCell::new(bench.core));
                let (sender, queue) = crate::sequencer::tick_queue(4);
                let polls = Rc::new(std::cell::Cell::new(0_usize));
                let fan_out = {
                    let (core, polls) = (core.clone(), polls.clone());
                    let mut turn = Box::pin(async move { run(&core, &queue).await });
                    tokio::task::spawn_local(std::future::poll_fn(move |cx| {
                        polls.set(polls.get() + 1);
                        turn.as_mut().poll(cx)
                    }))
                };
                for seq in 1..=3 {
                    sender.deliver(vec![tick("BTC", seq)].into()).await;
                }
                let seqs: Vec<u64> = client
                    .messages(3)
                    .await
                    .iter()
                    .map(|m| m["seq"].as_u64().unwrap_or(0))
                    .collect();
                assert_eq!(seqs, [1, 2, 3], "each batch, flushed");
                // Idle, the loop waits for the queue: it is not polled while others run.
                let before = polls.get();
                for _ in 0..100 {
                    tokio::task::yield_now().await;
                }
                assert!(
                    polls.get() - before <= 1,
                    "idle, polled {} times",
                    polls.get() - before
                );
                // A new history goes through the loop as a hand-off of its own, written out
                // in its turn even when nothing follows it.
                let epoch = core.borrow().epoch() + 1;
                sender.new_history(epoch).await;
                assert_eq!(briefs(&client.messages(1).await), ["reset BTC"]);
                sender.deliver(vec![tick("BTC", 1)].into()).await;
                assert_eq!(briefs(&client.messages(1).await), ["tick BTC 1"]);
                ends_with_its_queue(sender, fan_out).await;
            })
            .await;
    }
}
