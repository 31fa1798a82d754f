//! The rate tiers' side of [`ShardCore`]: the tier clock firing frames to their subscribers,
//! and what a resume on a tier gets. Part of [`ShardCore`]'s impl (the throttle itself is
//! `shard/tiers.rs`; subscriptions open and close its keys in `shard/subscribe.rs`).

use std::sync::Arc;
use std::time::Instant;

use super::books;
use super::fanout;
use super::ring::Since;
use super::tiers::Throttle;
use super::{SessionKey, ShardCore};
use crate::encode::{Frames, Message};
use crate::event::Key;
use crate::tick::Seq;

impl ShardCore {
    /// When the next tier fires (`None`: no client here follows a tier).
    pub fn tier_deadline(&self) -> Option<Instant> {
        self.throttle.next_deadline()
    }

    /// Fires the tiers whose interval ended by `now`: each changed key's frame goes to its
    /// subscribers (after a `gap` for seqs this shard never saw), then every touched
    /// client gets its write.
    pub fn fire_tiers(&mut self, now: Instant) {
        if self.throttle.next_deadline().is_none_or(|d| d > now) {
            return;
        }
        let depths = &self.shared.config.book.book_depths;
        let copies = &self.books;
        let fired = self.throttle.fire(now, |base| {
            books::channel_of(base, depths).and_then(|channel| copies.snapshot(&channel))
        });
        if fired.is_empty() {
            return;
        }
        let metrics = self.shared.metrics.shard(self.id);
        let mut delivered = 0;
        for fire in &fired {
            if let Some(gap) = fire.gap {
                fanout::announce_gap(
                    &fire.frames,
                    gap,
                    &self.subscriptions,
                    &mut self.clients,
                    now,
                );
            }
            delivered += fanout::fan_out_batch(
                std::slice::from_ref(&fire.frames),
                &self.subscriptions,
                &mut self.clients,
                &mut self.dirty,
                now,
                metrics,
            );
        }
        crate::metrics::add(&metrics.deliveries, delivered);
        self.flush_dirty_and_enforce(now);
    }

    /// What a client resuming the tiered `key` from `seq` gets, so that the key's next frame
    /// chains onto what it has: nothing when it holds the last frame's seq (or more); else
    /// one frame of its own standing for `seq + 1..=` the last frame's seq when the base's
    /// ring still holds them (not for a book), or a `gap` and the last frame as a snapshot.
    pub(super) fn resume_tier(&mut self, client: SessionKey, key: &Key, seq: Seq, now: Instant) {
        let Some(last) = self.throttle.last(key).cloned() else {
            return;
        };
        if seq >= last.seq() {
            return;
        }
        let depth = self.replay_depth();
        // A book tier's frames are whole books: a resume gets the last one, never a frame
        // made of the deltas in the ring.
        let is_book = books::channel_of(key.base(), &self.shared.config.book.book_depths);
        let held: Option<Vec<&Arc<Frames>>> = match self
            .rings
            .get(key.base())
            .filter(|_| is_book.is_none())
            .and_then(|ring| ring.since_within(seq, depth))
        {
            Some(Since::Ticks(items)) => {
                let items: Vec<_> = items
                    .into_iter()
                    .filter(|f| f.seq() <= last.seq())
                    .collect();
                (items.first().map(|f| f.seq()) == Some(seq.next())).then_some(items)
            }
            _ => None,
        };
        let metrics = self.shared.metrics.shard(self.id);
        let feed = &mut self.clients[client].feed;
        match held.and_then(|items| Throttle::catch_up(key, &items, seq.next())) {
            Some(frames) => {
                feed.push_tick(&frames, now, metrics);
            }
            None => {
                if seq.next() < last.seq() {
                    let to = Seq(last.seq().0 - 1);
                    feed.send(
                        &Message::Gap {
                            key,
                            from: seq.next(),
                            to,
                        },
                        now,
                    );
                }
                feed.send(&Message::Snapshot(last.item()), now);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;
    use std::time::{Duration, Instant};

    use super::super::testkit::{Bench, Peer, briefs, symbol, tick, tiered};
    use crate::config::Config;
    use crate::event::Key;
    use crate::tick::Seq;

    fn ticks(bench: &mut Bench, seqs: std::ops::RangeInclusive<u64>) {
        bench.deliver(&seqs.map(|seq| tick("BTC", seq)).collect::<Vec<_>>());
    }

    /// Fires the tiers at their deadline exactly.
    fn fire(bench: &mut Bench) {
        let at = bench.core.tier_deadline().expect("a tier is followed");
        bench.core.fire_tiers(at);
    }

    /// BTC@100ms, followed since BTC's tick 1 (the base's last value then) by the client
    /// returned (kept open by the caller).
    async fn followed_from_tick_1(bench: &mut Bench) -> (Key, Peer) {
        ticks(bench, 1..=1);
        let tier = tiered(symbol("BTC"), 100);
        let follower = bench.client().await;
        bench
            .core
            .subscribe(follower.key, false, std::slice::from_ref(&tier));
        (tier, follower)
    }

    async fn resumed(bench: &mut Bench, tier: &Key, seq: u64) -> Peer {
        let peer = bench.client().await;
        let epoch = Some(bench.core.epoch());
        let positions = [(tier.clone(), Seq(seq))];
        bench
            .core
            .resume(peer.key, &positions, epoch, Instant::now());
        bench.core.flush(peer.key);
        peer
    }

    #[tokio::test]
    async fn a_tier_fires_at_its_deadline_one_frame_per_subscriber_and_counts_them() {
        let mut bench = Bench::new(Config::for_tests()).await;
        ticks(&mut bench, 1..=1);
        let tier = tiered(symbol("BTC"), 100);
        let mut one = bench.client().await;
        let mut two = bench.client().await;
        bench
            .core
            .subscribe(one.key, false, std::slice::from_ref(&tier));
        bench.core.subscribe(two.key, false, &[tier]);
        ticks(&mut bench, 2..=3);
        let metrics = bench.core.shared().metrics.clone();
        let count = || metrics.shard(1).deliveries.load(Relaxed);
        let before = count();
        let deadline = bench.core.tier_deadline().expect("a tier");
        bench.core.fire_tiers(deadline - Duration::from_millis(1));
        assert_eq!(count(), before, "not before its deadline");
        bench.core.fire_tiers(deadline);
        assert_eq!(count(), before + 2);
        for peer in [&mut one, &mut two] {
            let got = peer.messages(1).await;
            assert_eq!(briefs(&got), ["tick BTC@100ms 2..3"]);
            assert_eq!(got[0]["trades"].as_u64(), Some(2));
        }
        ticks(&mut bench, 4..=4);
        let next = bench.core.tier_deadline().expect("a tier");
        assert!(next > deadline, "the next interval");
        bench.core.fire_tiers(next + Duration::from_millis(1));
        assert_eq!(count(), before + 4, "late is fired too");
        for peer in [&mut one, &mut two] {
            assert_eq!(briefs(&peer.messages(1).await), ["tick BTC@100ms 4..4"]);
            assert!(peer.rest().await.is_empty());
        }
    }

    #[tokio::test]
    async fn a_tier_resume_gets_one_frame_for_what_it_missed_up_to_the_last_frame() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let (tier, _follower) = followed_from_tick_1(&mut bench).await;
        ticks(&mut bench, 2..=3);
        fire(&mut bench);
        // Pending for the next frame: not the resumed client's yet.
        ticks(&mut bench, 4..=5);
        let mut behind = resumed(&mut bench, &tier, 1).await;
        let got = behind.messages(1).await;
        assert_eq!(briefs(&got), ["tick BTC@100ms 2..3"]);
        assert_eq!(got[0]["trades"].as_u64(), Some(2));
        let mut current = resumed(&mut bench, &tier, 3).await;
        let mut ahead = resumed(&mut bench, &tier, 5).await;
        fire(&mut bench);
        for peer in [&mut behind, &mut current, &mut ahead] {
            assert_eq!(
                briefs(&peer.rest().await),
                ["tick BTC@100ms 4..5"],
                "the next frame chains on"
            );
        }
    }

    #[tokio::test]
    async fn a_tier_resume_older_than_the_ring_gets_a_gap_and_the_last_frame() {
        let config = Config {
            replay_depth: 2,
            ..Config::for_tests()
        };
        let mut bench = Bench::new(config).await;
        let (tier, _follower) = followed_from_tick_1(&mut bench).await;
        ticks(&mut bench, 2..=6);
        fire(&mut bench);
        // The ring holds 7 and 8 only.
        ticks(&mut bench, 7..=8);
        let mut far = resumed(&mut bench, &tier, 1).await;
        assert_eq!(
            briefs(&far.messages(2).await),
            ["gap BTC@100ms 2..5", "snapshot BTC@100ms 2..6"]
        );
        let mut near = resumed(&mut bench, &tier, 5).await;
        assert_eq!(
            briefs(&near.messages(1).await),
            ["snapshot BTC@100ms 2..6"],
            "6 is in the snapshot: no gap"
        );
        assert!(far.rest().await.is_empty());
        assert!(near.rest().await.is_empty());
    }
}
