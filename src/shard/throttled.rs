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
