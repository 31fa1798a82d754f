//! [`Interest`]: how many sessions want each symbol, per encoding, so the sequencer encodes a
//! tick only into the encodings its subscribers use.
//!
//! Sessions update the counts when they subscribe, unsubscribe or leave (rare; the map is
//! behind a `RwLock` that only those paths and `/stats` take). The sequencer caches each
//! symbol's [`SymbolInterest`] once and then reads its atomics per tick without a lock.
//! The counts are a hint: a shard that meets a subscriber whose encoding was not prepared
//! encodes it itself (see [`Frames`](crate::encode::Frames)).

use std::collections::HashMap;
use std::sync::atomic::{AtomicU32, Ordering::Relaxed};
use std::sync::{Arc, RwLock};

use crate::encode::{Encoding, Wire};
use crate::tick::Symbol;

/// Subscriber counts per symbol and encoding, plus the `*` subscribers.
#[derive(Debug, Default)]
pub struct Interest {
    by_symbol: RwLock<HashMap<Symbol, Arc<SymbolInterest>>>,
    wildcard: SymbolInterest,
}

/// Subscriber counts of one symbol, per encoding.
#[derive(Debug, Default)]
pub struct SymbolInterest {
    counts: [AtomicU32; 3],
}

impl Interest {
    /// The counts of `symbol`, created at zero on first use.
    pub fn entry(&self, symbol: &Symbol) -> Arc<SymbolInterest> {
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
    pub fn add(&self, symbol: Option<&Symbol>, encoding: Encoding) {
        self.counts(symbol, |c| c.counts[encoding.index()].fetch_add(1, Relaxed));
    }

    /// A session of `encoding` unsubscribed from `symbol` (`None`: from `*`).
    pub fn remove(&self, symbol: Option<&Symbol>, encoding: Encoding) {
        self.counts(symbol, |c| c.counts[encoding.index()].fetch_sub(1, Relaxed));
    }

    /// Whether any session wants `wire` frames of the symbol whose counts are `symbol`.
    pub fn wants(&self, symbol: &SymbolInterest, wire: Wire) -> bool {
        Encoding::ALL
            .iter()
            .filter(|e| e.wire() == wire)
            .any(|e| symbol.count(*e) + self.wildcard.count(*e) > 0)
    }

    /// Subscribers per symbol (all encodings, not counting `*`), and the `*` subscribers.
    pub fn totals(&self) -> (Vec<(Symbol, u32)>, u32) {
        let mut per_symbol: Vec<_> = self
            .read()
            .iter()
            .map(|(s, c)| (s.clone(), c.total()))
            .filter(|(_, n)| *n > 0)
            .collect();
        per_symbol.sort_by(|a, b| a.0.cmp(&b.0));
        (per_symbol, self.wildcard.total())
    }

    fn counts(&self, symbol: Option<&Symbol>, f: impl FnOnce(&SymbolInterest) -> u32) {
        match symbol {
            None => {
                f(&self.wildcard);
            }
            Some(symbol) => {
                f(&self.entry(symbol));
            }
        }
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<Symbol, Arc<SymbolInterest>>> {
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
