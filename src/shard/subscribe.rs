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
