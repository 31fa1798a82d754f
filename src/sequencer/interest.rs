//! [`Interest`]: how many sessions want each key (symbol or channel), per encoding, so the
//! sequencer encodes a tick or event only into the encodings its subscribers use.
//!
//! Sessions update the counts when they subscribe, unsubscribe or leave (rare; the map is
//! behind a `RwLock` that only those paths and `/stats` take). The sequencer caches each
//! key's [`SymbolInterest`] once and then reads its atomics per tick without a lock.
//! The counts are a hint: a shard that meets a subscriber whose encoding was not prepared
//! encodes it itself (see [`Frames`](crate::encode::Frames)).
//!
//! The map is also the record of which keys the sequencer holds: an evicted key leaves it
//! ([`Interest::retain`], under the write lock, so a subscribe never counts into an entry
//! being removed), and the shards drop the history of keys it no longer holds once
//! [`Interest::evictions`] moves.

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, AtomicU64, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use crate::encode::{Encoding, Wire};
use crate::event::Key;

/// Subscriber counts per key and encoding, plus the `*` subscribers (of every symbol).
#[derive(Debug, Default)]
pub struct Interest {
    by_symbol: RwLock<HashMap<Key, Arc<SymbolInterest>>>,
    wildcard: SymbolInterest,
    /// How many eviction sweeps removed keys (the shards compare it with what they saw).
    evictions: AtomicU64,
}

/// Subscriber counts of one key, per encoding.
#[derive(Debug, Default)]
pub struct SymbolInterest {
    counts: [AtomicU32; 3],
}

impl Interest {
    /// The counts of `symbol` (a symbol or channel key), created at zero on first use.
    pub fn entry(&self, symbol: &Key) -> Arc<SymbolInterest> {
        if let Some(found) = self.read().get(symbol) {
            return found.clone();
        }
        let mut map = self
            .by_symbol
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        map.entry(symbol.clone()).or_default().clone()
    }

    /// A session of `encoding` subscribed to `symbol` (`None`: to `*`).
    pub fn add(&self, symbol: Option<&Key>, encoding: Encoding) {
        self.counts(symbol, |c| c.counts[encoding.index()].fetch_add(1, Relaxed));
    }

    /// A session of `encoding` unsubscribed from `symbol` (`None`: from `*`).
    pub fn remove(&self, symbol: Option<&Key>, encoding: Encoding) {
        self.counts(symbol, |c| c.counts[encoding.index()].fetch_sub(1, Relaxed));
    }

    /// Whether any session wants `wire` frames of the key whose counts are `symbol`;
    /// `wildcard`: the key is a symbol, which `*` subscribers receive too.
    pub fn wants(&self, symbol: &SymbolInterest, wildcard: bool, wire: Wire) -> bool {
        Encoding::ALL
            .iter()
            .filter(|e| e.wire() == wire)
            .any(|e| symbol.count(*e) + if wildcard { self.wildcard.count(*e) } else { 0 } > 0)
    }

    /// Subscribers per key (all encodings, not counting `*`), and the `*` subscribers.
    pub fn totals(&self) -> (Vec<(Key, u32)>, u32) {
        let mut per_symbol: Vec<_> = self
            .read()
            .iter()
            .map(|(s, c)| (s.clone(), c.total()))
            .filter(|(_, n)| *n > 0)
            .collect();
        per_symbol.sort_by(|a, b| a.0.cmp(&b.0));
        (per_symbol, self.wildcard.total())
    }

    /// Keeps the entries for which `keep(key, subscribed)` holds (`subscribed`: a session
    /// subscribes to the key by name) and counts an eviction if any went. Runs under the
    /// write lock: no count changes meanwhile.
    pub fn retain(&self, mut keep: impl FnMut(&Key, bool) -> bool) {
        let mut map = self
            .by_symbol
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let before = map.len();
        map.retain(|key, counts| keep(key, counts.total() > 0));
        if map.len() < before {
            self.evictions.fetch_add(1, Relaxed);
        }
    }

    /// Whether the map holds `key` (a shard asks after an eviction whether its history of
    /// the key is still wanted).
    pub fn holds(&self, key: &Key) -> bool {
        self.read().contains_key(key)
    }

    /// How many sweeps have evicted keys so far.
    pub fn evictions(&self) -> u64 {
        self.evictions.load(Relaxed)
    }

    fn counts(&self, symbol: Option<&Key>, f: impl FnOnce(&SymbolInterest) -> u32) {
        match symbol {
            None => {
                f(&self.wildcard);
            }
            Some(symbol) => {
                // Counted under the lock, so an eviction sweep (write lock) never removes
                // an entry between its lookup here and the count.
                if let Some(found) = self.read().get(symbol) {
                    f(found);
                    return;
                }
                let mut map = self
                    .by_symbol
                    .write()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                f(map.entry(symbol.clone()).or_default());
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Key, Arc<SymbolInterest>>> {
        // A panic while holding the lock leaves plain counters behind: still usable.
        self.by_symbol
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl SymbolInterest {
    /// Subscribers of this symbol using `encoding`.
    pub fn count(&self, encoding: Encoding) -> u32 {
        self.counts[encoding.index()].load(Relaxed)
    }

    fn total(&self) -> u32 {
        Encoding::ALL.iter().map(|e| self.count(*e)).sum()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Channel;
    use crate::tick::Symbol;

    fn symbol(name: &str) -> Key {
        Key::Symbol(Symbol::parse(name).expect("a valid symbol"))
    }

    fn channel(name: &str) -> Key {
        Key::Channel(Channel::parse(name).expect("a valid channel"))
    }

    #[test]
    fn subscribes_and_unsubscribes_move_the_count_of_their_key_and_encoding() {
        let interest = Interest::default();
        let a = symbol("A");
        interest.add(Some(&a), Encoding::Json);
        interest.add(Some(&a), Encoding::Json);
        interest.add(Some(&a), Encoding::Gzip);
        interest.add(Some(&a), Encoding::Gzip);
        interest.add(Some(&a), Encoding::Gzip);
        interest.remove(Some(&a), Encoding::Gzip);
        let counts = interest.entry(&a);
        assert_eq!(counts.count(Encoding::Json), 2);
        assert_eq!(counts.count(Encoding::Protobuf), 0);
        assert_eq!(counts.count(Encoding::Gzip), 2);
        assert_eq!(interest.entry(&symbol("B")).count(Encoding::Json), 0);
    }

    #[test]
    fn an_entry_taken_before_any_subscriber_sees_later_subscribes() {
        let interest = Interest::default();
        let news = channel("news");
        let cached = interest.entry(&news);
        interest.add(Some(&news), Encoding::Protobuf);
        assert_eq!(cached.count(Encoding::Protobuf), 1);
        assert!(
            Arc::ptr_eq(&cached, &interest.entry(&news)),
            "one entry a key"
        );
    }

    #[test]
    fn a_wire_is_wanted_when_an_encoding_built_from_it_has_a_subscriber() {
        let interest = Interest::default();
        let a = interest.entry(&symbol("A"));
        for wire in [Wire::Json, Wire::Protobuf] {
            assert!(!interest.wants(&a, true, wire), "nobody subscribes");
        }
        interest.add(Some(&symbol("A")), Encoding::Gzip);
        assert!(
            interest.wants(&a, false, Wire::Json),
            "gzip is built from JSON"
        );
        assert!(!interest.wants(&a, false, Wire::Protobuf));
        interest.add(Some(&symbol("A")), Encoding::Gzip);
        interest.add(Some(&symbol("A")), Encoding::Protobuf);
        assert!(interest.wants(&a, false, Wire::Json), "two subscribers");
        assert!(interest.wants(&a, false, Wire::Protobuf));
    }

    #[test]
    fn wildcard_subscribers_want_symbols_only_when_asked_for() {
        let interest = Interest::default();
        let a = interest.entry(&symbol("A"));
        interest.add(None, Encoding::Protobuf);
        assert!(interest.wants(&a, true, Wire::Protobuf));
        assert!(!interest.wants(&a, false, Wire::Protobuf), "not a symbol");
        assert!(!interest.wants(&a, true, Wire::Json));
        interest.add(Some(&symbol("A")), Encoding::Protobuf);
        interest.remove(None, Encoding::Protobuf);
        assert!(
            interest.wants(&a, true, Wire::Protobuf),
            "its own subscriber"
        );
        assert_eq!(interest.totals().1, 0, "the `*` subscriber left");
    }

    #[test]
    fn totals_list_subscribed_keys_in_order_and_the_wildcard_apart() {
        let interest = Interest::default();
        interest.add(Some(&symbol("B")), Encoding::Json);
        interest.add(Some(&symbol("B")), Encoding::Protobuf);
        interest.add(Some(&symbol("B")), Encoding::Gzip);
        interest.add(Some(&symbol("A")), Encoding::Gzip);
        interest.entry(&symbol("C"));
        interest.add(Some(&channel("news")), Encoding::Json);
        interest.remove(Some(&channel("news")), Encoding::Json);
        interest.add(None, Encoding::Json);
        interest.add(None, Encoding::Gzip);
        let (per_key, wildcard) = interest.totals();
        assert_eq!(per_key, vec![(symbol("A"), 1), (symbol("B"), 3)]);
        assert_eq!(wildcard, 2);
    }

    #[test]
    fn retain_tells_which_keys_are_subscribed_and_counts_a_sweep_that_removed_any() {
        let interest = Interest::default();
        interest.add(Some(&symbol("A")), Encoding::Json);
        interest.entry(&symbol("B"));
        interest.entry(&channel("news"));
        let mut seen = Vec::new();
        interest.retain(|key, subscribed| {
            seen.push((key.clone(), subscribed));
            true
        });
        seen.sort_by(|a, b| a.0.cmp(&b.0));
        let mut want = vec![
            (symbol("A"), true),
            (symbol("B"), false),
            (channel("news"), false),
        ];
        want.sort_by(|a, b| a.0.cmp(&b.0));
        assert_eq!(seen, want);
        assert_eq!(interest.evictions(), 0, "nothing went");
        interest.retain(|key, _| *key != symbol("B"));
        assert!(!interest.holds(&symbol("B")));
        assert!(interest.holds(&symbol("A")) && interest.holds(&channel("news")));
        assert_eq!(interest.evictions(), 1);
        interest.retain(|_, subscribed| subscribed);
        assert!(!interest.holds(&channel("news")) && interest.holds(&symbol("A")));
        assert_eq!(interest.evictions(), 2);
    }
}
