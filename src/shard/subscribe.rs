//! What a client is subscribed to, its snapshots, and resume from the replay rings. Part of
//! [`ShardCore`]'s impl; the index and the sequencer's interest count change together here
//! and nowhere else.

use std::sync::Arc;
use std::time::Instant;

use super::books::{self, BookCopies};
use super::feed::Feed;
use super::ring::{Ring, Since};
use super::{Added, SessionKey, ShardCore};
use crate::encode::{Frames, Message};
use crate::event::{Item, Key};
use crate::metrics::ShardMetrics;
use crate::tick::Seq;

impl ShardCore {
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
                .rings
                .iter()
                .filter(|(k, _)| k.in_wildcard())
                .filter_map(|(_, h)| h.last())
                .collect();
            all.sort_by(|a, b| a.key().cmp(b.key()));
            for frames in all {
                feed.send(&Message::Snapshot(frames.item()), now);
            }
        }
        let depths = &self.shared.config.book.book_depths;
        for name in &added.keys {
            // A book's snapshot is the book (the shard's copy), not its last delta.
            if let Some(channel) = books::channel_of(name, depths) {
                if let Some(snapshot) = self.books.snapshot(&channel) {
                    feed.send(&Message::Book(&snapshot), now);
                }
                continue;
            }
            let last = match name {
                Key::Tiered(_) => self.throttle.last(name),
                Key::Symbol(_) | Key::Channel(_) => self.rings.get(name).and_then(Ring::last),
            };
            if let Some(frames) = last {
                feed.send(&Message::Snapshot(frames.item()), now);
            }
        }
    }

    /// Subscribes each symbol and queues what the client missed after its position: the
    /// ticks from the ring, or a `gap` and a snapshot when the position is older than the
    /// ring. Runs between fan-out turns, so the replay ends exactly where the live stream
    /// resumes. A position that may be of another history gets a `reset` and a snapshot,
    /// never ticks: one with an `epoch` not this shard's, and one without an epoch at all (a
    /// restarted relay's seqs begin again, so a bare seq names no tick for sure), unless
    /// its seq is 0, which no history has reached yet: everything held is after it. So does
    /// a position of a key this shard holds no history of (never seen, or evicted): the
    /// client's seqs belong to no run it can continue.
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
        let current = self.epoch;
        let shared = self.shared.clone();
        let depths = &shared.config.book.book_depths;
        let foreign = |seq: Seq| match epoch {
            Some(epoch) => epoch != current,
            None => seq.0 > 0,
        };
        let (foreign, trusted): (Vec<_>, Vec<_>) =
            positions.iter().partition(|(_, seq)| foreign(*seq));
        for (symbol, _) in foreign {
            self.clients[key].feed.reset(symbol, current, now);
            if let Some(channel) = books::channel_of(symbol, depths) {
                if let Some(snapshot) = self.books.snapshot(&channel) {
                    self.clients[key].feed.send(&Message::Book(&snapshot), now);
                }
            } else if let Some(last) = self.last(symbol).cloned() {
                self.clients[key]
                    .feed
                    .send(&Message::Snapshot(last.item()), now);
            }
        }
        for (symbol, seq) in trusted {
            if let Some(channel) = books::channel_of(symbol, depths) {
                let depth = self.replay_depth();
                let metrics = shared.metrics.shard(self.id);
                let ring = self.rings.get(symbol);
                let book = (&self.books, &channel);
                let feed = &mut self.clients[key].feed;
                resume_book(feed, book, (symbol, *seq), ring, depth, metrics, now);
            } else if let Key::Tiered(_) = symbol {
                self.resume_tier(key, symbol, *seq, now);
            } else {
                self.resume_from_ring(key, symbol, *seq, now);
            }
        }
        self.clients[key].feed.allow_burst();
    }

    /// Queues what the client missed of `symbol` after `seq`: the items from the ring, or a
    /// `gap` and a snapshot when `seq` is older than the ring, or a snapshot when it is
    /// ahead of it, or a `reset` when the shard holds no history of it.
    fn resume_from_ring(&mut self, key: SessionKey, symbol: &Key, seq: Seq, now: Instant) {
        let depth = self.replay_depth();
        let metrics = self.shared.metrics.shard(self.id);
        let feed = &mut self.clients[key].feed;
        match self
            .rings
            .get(symbol)
            .and_then(|h| h.since_within(seq, depth))
        {
            // Seq 0: nothing read yet, and nothing here to send.
            None if seq.0 == 0 => {}
            // No history of the key here (never seen, or evicted): the client's seqs belong
            // to no run it can continue.
            None => feed.reset(symbol, self.epoch, now),
            Some(Since::Ticks(ticks)) => {
                for frames in ticks {
                    feed.push_tick(frames, now, metrics);
                }
            }
            Some(Since::Gap { from, to, last }) => {
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
            Some(Since::Ahead { last }) => feed.send(&Message::Snapshot(last.item()), now),
        }
    }

    /// Adds the client to (or removes it from) the index of `symbol` (`None`: `*`) and
    /// the sequencer's interest count for its encoding: the two always change together.
    ///
    /// A tiered key's interest is its base's (what an edge must follow from the stream), and
    /// its first subscriber here starts its throttle, its last one stops it.
    fn index(&mut self, key: SessionKey, symbol: Option<&Key>, add: bool) {
        let encoding = self.clients[key].feed.encoding();
        let interest = symbol.map(Key::base);
        if add {
            self.subscriptions.insert(symbol, key);
            self.shared.interest.add(interest, encoding);
        } else {
            self.subscriptions.remove(symbol, key);
            self.shared.interest.remove(interest, encoding);
        }
        if let Some(tiered @ Key::Tiered(_)) = symbol {
            let subscribers = self.subscriptions.count(tiered);
            if add && subscribers == 1 {
                // A book tier starts from the book itself, not from its last delta.
                let depths = &self.shared.config.book.book_depths;
                let book = books::channel_of(tiered.base(), depths).map(|channel| {
                    self.books
                        .snapshot(&channel)
                        .map(|whole| Arc::new(Frames::of(Item::Book(whole))))
                });
                let base_last = match &book {
                    Some(whole) => whole.as_ref(),
                    None => self.rings.get(tiered.base()).and_then(Ring::last),
                };
                self.throttle.open(tiered, base_last, Instant::now());
            } else if !add && subscribers == 0 {
                self.throttle.close(tiered);
            }
        }
    }
}

/// Resumes a book channel after `seq`: the messages after it from the ring when it still
/// holds them, else the book itself (the shard's copy) as a snapshot, after a `gap` naming
/// the seqs it stands for.
fn resume_book(
    feed: &mut Feed,
    (copies, channel): (&BookCopies, &crate::book::BookChannel),
    (key, seq): (&Key, Seq),
    ring: Option<&Ring>,
    depth: usize,
    metrics: &ShardMetrics,
    now: Instant,
) {
    if let Some(Since::Ticks(messages)) = ring.and_then(|r| r.since_within(seq, depth)) {
        for frames in messages {
            feed.push_tick(frames, now, metrics);
        }
        return;
    }
    let Some(snapshot) = copies.snapshot(channel) else {
        return;
    };
    if seq == snapshot.seq {
        return;
    }
    if seq.next() < snapshot.seq {
        let to = Seq(snapshot.seq.0 - 1);
        feed.send(
            &Message::Gap {
                key,
                from: seq.next(),
                to,
            },
            now,
        );
    }
    feed.send(&Message::Book(&snapshot), now);
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testkit::{Bench, Peer, book, briefs, channel, event, symbol, tick, tiered};
    use super::super::{Added, SessionKey};
    use crate::book::BookKind;
    use crate::config::Config;
    use crate::event::Key;
    use crate::tick::Seq;

    /// Sends the client what is queued for it.
    fn flush(bench: &mut Bench, peer: &Peer) {
        bench.core.flush(peer.key);
    }

    fn resume(bench: &mut Bench, key: SessionKey, at: &[(Key, u64)], epoch: Option<u64>) {
        let positions: Vec<(Key, Seq)> = at.iter().map(|(k, s)| (k.clone(), Seq(*s))).collect();
        bench.core.resume(key, &positions, epoch, Instant::now());
        bench.core.flush(key);
    }

    /// The interest the sequencer sees: per key (not `*`), and the `*` subscribers.
    fn interest(bench: &Bench) -> (Vec<(Key, u32)>, u32) {
        bench.core.shared().interest.totals()
    }

    /// Fires the tiers at their deadline.
    fn fire(bench: &mut Bench) {
        let at = bench.core.tier_deadline().expect("a tier is followed");
        bench.core.fire_tiers(at);
    }

    #[tokio::test]
    async fn a_named_subscribe_adds_each_key_once_and_delivers_only_those_keys() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        let added = bench
            .core
            .subscribe(client.key, false, &[symbol("BTC"), channel("news")]);
        let want = Added {
            all: false,
            keys: vec![symbol("BTC"), channel("news")],
        };
        assert_eq!(added, want);
        assert_eq!(
            bench.core.subscribe(client.key, false, &[symbol("BTC")]),
            Added::default(),
            "already held: nothing added"
        );
        assert_eq!(
            bench.core.subscribed(client.key),
            (false, vec![symbol("BTC"), channel("news")])
        );
        assert_eq!(
            interest(&bench),
            (vec![(symbol("BTC"), 1), (channel("news"), 1)], 0)
        );
        bench.deliver(&[tick("BTC", 1), tick("ETH", 1), event("news", 1)]);
        assert_eq!(
            briefs(&client.messages(2).await),
            ["tick BTC 1", "event news 1"]
        );
        assert!(client.rest().await.is_empty(), "no ETH");
    }

    #[tokio::test]
    async fn star_replaces_the_named_symbols_so_each_tick_comes_once_and_channels_stay_named() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        bench
            .core
            .subscribe(client.key, false, &[symbol("BTC"), channel("news")]);
        let added = bench
            .core
            .subscribe(client.key, true, &[symbol("ETH"), channel("alerts")]);
        let want = Added {
            all: true,
            keys: vec![channel("alerts")],
        };
        assert_eq!(added, want, "ETH is covered by *");
        assert_eq!(
            bench.core.subscribe(client.key, true, &[]),
            Added::default()
        );
        assert_eq!(
            bench.core.subscribed(client.key),
            (true, vec![channel("alerts"), channel("news")])
        );
        assert_eq!(
            interest(&bench),
            (vec![(channel("alerts"), 1), (channel("news"), 1)], 1),
            "BTC is counted through * only"
        );
        bench.deliver(&[
            tick("BTC", 1),
            tick("ETH", 1),
            event("news", 1),
            event("x", 1),
        ]);
        assert_eq!(
            briefs(&client.messages(3).await),
            ["tick BTC 1", "tick ETH 1", "event news 1"]
        );
        assert!(client.rest().await.is_empty(), "BTC once, no channel x");
    }

    #[tokio::test]
    async fn receives_is_star_for_symbols_and_the_names_for_the_rest() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let every = bench.client().await;
        let named = bench.client().await;
        bench.core.subscribe(every.key, true, &[channel("news")]);
        bench.core.subscribe(named.key, false, &[symbol("A")]);
        let receives = |key, name: &Key| bench.core.receives(key, name);
        assert!(receives(every.key, &symbol("ANY")));
        assert!(receives(every.key, &channel("news")));
        assert!(!receives(every.key, &channel("alerts")), "* is no channel");
        assert!(receives(named.key, &symbol("A")));
        assert!(!receives(named.key, &symbol("B")));
        assert!(!receives(named.key, &channel("news")));
    }

    #[tokio::test]
    async fn unsubscribing_stops_exactly_what_is_named() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        bench.core.subscribe(client.key, true, &[channel("news")]);
        bench
            .core
            .unsubscribe(client.key, false, &[channel("news")]);
        assert_eq!(bench.core.subscribed(client.key), (true, vec![]), "* stays");
        bench.deliver(&[tick("BTC", 1), event("news", 1)]);
        assert_eq!(briefs(&client.messages(1).await), ["tick BTC 1"]);
        bench.core.unsubscribe(client.key, true, &[]);
        assert_eq!(bench.core.subscribed(client.key), (false, vec![]));
        assert_eq!(interest(&bench), (vec![], 0));
        // Not subscribed to either: changes nothing, counts nothing.
        bench.core.unsubscribe(client.key, true, &[symbol("BTC")]);
        assert_eq!(interest(&bench), (vec![], 0));
        bench.deliver(&[tick("BTC", 2), event("news", 2)]);
        assert!(client.rest().await.is_empty());
    }

    #[tokio::test]
    async fn subscriptions_after_counts_star_as_one_and_drops_the_symbols_it_covers() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let named = bench.client().await;
        let every = bench.client().await;
        let (a, b, c) = (symbol("A"), symbol("B"), symbol("C"));
        let (news, alerts) = (channel("news"), channel("alerts"));
        bench
            .core
            .subscribe(named.key, false, &[a.clone(), b.clone(), news.clone()]);
        bench
            .core
            .subscribe(every.key, true, std::slice::from_ref(&news));
        let after = |key, all, keys: &[Key]| bench.core.subscriptions_after(key, all, keys);
        assert_eq!(after(named.key, false, &[]), 3);
        assert_eq!(
            after(named.key, false, &[b, c.clone(), alerts.clone()]),
            5,
            "B is held"
        );
        assert_eq!(
            after(named.key, true, &[c.clone(), alerts.clone()]),
            3,
            "*, news, alerts"
        );
        assert_eq!(
            after(every.key, false, &[a, news, alerts]),
            3,
            "*, news, alerts"
        );
        assert_eq!(after(every.key, true, &[c]), 2, "*, news");
    }

    #[tokio::test]
    async fn snapshots_give_the_last_value_of_each_added_key_symbols_in_order_first() {
        let mut bench = Bench::new(Config::for_tests()).await;
        bench.deliver(&[
            tick("ETH", 1),
            tick("ETH", 2),
            tick("ETH", 3),
            tick("BTC", 1),
        ]);
        bench.deliver(&[tick("BTC", 2), event("news", 4), event("news", 5)]);
        bench.deliver(&[book(
            "BTC",
            1,
            BookKind::Snapshot,
            &[("100", "1")],
            &[("101", "2")],
        )]);
        let mut client = bench.client().await;
        let keys = [
            channel("news"),
            channel("quiet"),
            tiered(symbol("BTC"), 1000),
            channel("book:BTC:10"),
        ];
        let added = bench.core.subscribe(client.key, true, &keys);
        bench
            .core
            .send_snapshots(client.key, &added, Instant::now());
        flush(&mut bench, &client);
        let got = client.messages(5).await;
        assert_eq!(
            briefs(&got),
            [
                "snapshot BTC 2",
                "snapshot ETH 3",
                "snapshot news 5",
                "snapshot BTC@1s 2..2",
                "book book:BTC:10 1 snapshot",
            ],
            "the tier's first snapshot is its base's last value; quiet has none"
        );
        assert_eq!(got[4]["bids"], serde_json::json!([["100", "1"]]));
        assert!(client.rest().await.is_empty());
    }

    #[tokio::test]
    async fn a_resume_in_this_epoch_replays_the_ring_after_the_position_then_goes_live() {
        let mut bench = Bench::new(Config::for_tests()).await;
        bench.deliver(&(1..=5).map(|seq| tick("BTC", seq)).collect::<Vec<_>>());
        let mut client = bench.client().await;
        let epoch = bench.core.epoch();
        resume(&mut bench, client.key, &[(symbol("BTC"), 2)], Some(epoch));
        bench.deliver(&[tick("BTC", 6)]);
        assert_eq!(
            briefs(&client.messages(4).await),
            ["tick BTC 3", "tick BTC 4", "tick BTC 5", "tick BTC 6"]
        );
        assert!(client.rest().await.is_empty());
    }

    #[tokio::test]
    async fn a_resume_older_than_the_ring_gets_a_gap_and_a_snapshot_and_one_ahead_a_snapshot() {
        let config = Config {
            replay_depth: 3,
            ..Config::for_tests()
        };
        let mut bench = Bench::new(config).await;
        bench.deliver(&(1..=10).map(|seq| tick("BTC", seq)).collect::<Vec<_>>());
        let epoch = Some(bench.core.epoch());
        let mut old = bench.client().await;
        resume(&mut bench, old.key, &[(symbol("BTC"), 2)], epoch);
        let got = old.messages(2).await;
        assert_eq!(briefs(&got), ["gap BTC 3..9", "snapshot BTC 10"]);
        let mut ahead = bench.client().await;
        resume(&mut bench, ahead.key, &[(symbol("BTC"), 50)], epoch);
        assert_eq!(briefs(&ahead.messages(1).await), ["snapshot BTC 10"]);
        assert!(old.rest().await.is_empty());
        assert!(ahead.rest().await.is_empty());
    }

    #[tokio::test]
    async fn a_position_of_another_epoch_or_none_gets_a_reset_and_a_snapshot_never_ticks() {
        let mut bench = Bench::new(Config::for_tests()).await;
        bench.deliver(&(1..=5).map(|seq| tick("BTC", seq)).collect::<Vec<_>>());
        bench.deliver(&[event("news", 1), event("news", 2)]);
        let epoch = bench.core.epoch();
        let mut bare = bench.client().await;
        resume(&mut bench, bare.key, &[(symbol("BTC"), 3)], None);
        let got = bare.messages(2).await;
        assert_eq!(briefs(&got), ["reset BTC", "snapshot BTC 5"]);
        assert_eq!(got[0]["epoch"], epoch, "the shard's epoch");
        let mut other = bench.client().await;
        let positions = [
            (symbol("BTC"), 3),
            (channel("news"), 1),
            (channel("quiet"), 4),
        ];
        resume(&mut bench, other.key, &positions, Some(epoch + 1));
        assert_eq!(
            briefs(&other.messages(5).await),
            [
                "reset BTC",
                "snapshot BTC 5",
                "reset news",
                "snapshot news 2",
                "reset quiet"
            ]
        );
        assert!(bare.rest().await.is_empty());
        assert!(other.rest().await.is_empty());
    }

    #[tokio::test]
    async fn seq_zero_without_an_epoch_replays_everything_held() {
        let mut bench = Bench::new(Config::for_tests()).await;
        bench.deliver(&[tick("BTC", 1), tick("BTC", 2)]);
        let mut client = bench.client().await;
        resume(&mut bench, client.key, &[(symbol("BTC"), 0)], None);
        assert_eq!(
            briefs(&client.messages(2).await),
            ["tick BTC 1", "tick BTC 2"]
        );
        assert!(client.rest().await.is_empty());
    }

    #[tokio::test]
    async fn a_key_never_seen_is_reset_unless_the_position_is_zero_and_is_followed_live() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut client = bench.client().await;
        let epoch = Some(bench.core.epoch());
        resume(
            &mut bench,
            client.key,
            &[(symbol("NEW"), 4), (symbol("FRESH"), 0)],
            epoch,
        );
        assert_eq!(briefs(&client.messages(1).await), ["reset NEW"]);
        bench.deliver(&[tick("FRESH", 1), tick("NEW", 1)]);
        assert_eq!(
            briefs(&client.messages(2).await),
            ["tick FRESH 1", "tick NEW 1"]
        );
        assert!(client.rest().await.is_empty());
    }

    #[tokio::test]
    async fn a_book_resume_replays_its_ring_or_sends_a_gap_and_the_book_itself() {
        let mut bench = Bench::new(Config::for_tests()).await;
        bench.deliver(&[
            book(
                "BTC",
                1,
                BookKind::Snapshot,
                &[("100", "1"), ("99", "2")],
                &[("101", "3")],
            ),
            book("BTC", 2, BookKind::Delta, &[("100", "0")], &[]),
            book("BTC", 3, BookKind::Delta, &[], &[("102", "1")]),
        ]);
        let epoch = Some(bench.core.epoch());
        let top = channel("book:BTC:10");
        // The full book's own messages are in its ring.
        let mut full = bench.client().await;
        resume(&mut bench, full.key, &[(channel("book:BTC"), 1)], epoch);
        assert_eq!(
            briefs(&full.messages(2).await),
            ["book book:BTC 2", "book book:BTC 3"]
        );
        // Depth 10's are not: the shard's copy, at seq 3.
        let mut far = bench.client().await;
        resume(&mut bench, far.key, &[(top.clone(), 1)], epoch);
        let got = far.messages(2).await;
        assert_eq!(
            briefs(&got),
            ["gap book:BTC:10 2..2", "book book:BTC:10 3 snapshot"]
        );
        assert_eq!(got[1]["bids"], serde_json::json!([["99", "2"]]));
        assert_eq!(
            got[1]["asks"],
            serde_json::json!([["101", "3"], ["102", "1"]])
        );
        let mut near = bench.client().await;
        resume(&mut bench, near.key, &[(top.clone(), 2)], epoch);
        assert_eq!(
            briefs(&near.messages(1).await),
            ["book book:BTC:10 3 snapshot"]
        );
        let mut current = bench.client().await;
        resume(&mut bench, current.key, &[(top.clone(), 3)], epoch);
        let mut foreign = bench.client().await;
        resume(&mut bench, foreign.key, &[(top, 3)], None);
        assert_eq!(
            briefs(&foreign.messages(2).await),
            ["reset book:BTC:10", "book book:BTC:10 3 snapshot"]
        );
        for peer in [&mut full, &mut far, &mut near, &mut current, &mut foreign] {
            assert!(peer.rest().await.is_empty());
        }
    }

    #[tokio::test]
    async fn a_tier_runs_from_its_first_subscriber_here_until_its_last_leaves() {
        let mut bench = Bench::new(Config::for_tests()).await;
        bench.deliver(&[tick("BTC", 1)]);
        let tier = tiered(symbol("BTC"), 100);
        let mut first = bench.client().await;
        let mut second = bench.client().await;
        assert!(bench.core.tier_deadline().is_none());
        bench
            .core
            .subscribe(first.key, false, std::slice::from_ref(&tier));
        bench
            .core
            .subscribe(second.key, false, std::slice::from_ref(&tier));
        assert_eq!(
            interest(&bench),
            (vec![(symbol("BTC"), 2)], 0),
            "the base's"
        );
        bench.deliver(&[tick("BTC", 2), tick("BTC", 3)]);
        fire(&mut bench);
        for peer in [&mut first, &mut second] {
            assert_eq!(briefs(&peer.messages(1).await), ["tick BTC@100ms 2..3"]);
        }
        bench
            .core
            .unsubscribe(first.key, false, std::slice::from_ref(&tier));
        bench.deliver(&[tick("BTC", 4)]);
        fire(&mut bench);
        assert_eq!(
            briefs(&second.messages(1).await),
            ["tick BTC@100ms 4..4"],
            "still throttled for the one left"
        );
        bench.core.unsubscribe(second.key, false, &[tier]);
        assert!(bench.core.tier_deadline().is_none(), "the last one left");
        assert_eq!(interest(&bench), (vec![], 0));
        assert!(first.rest().await.is_empty());
        assert!(second.rest().await.is_empty());
    }
}
