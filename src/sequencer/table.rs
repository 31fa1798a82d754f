//! The key table: each key's next seq, and room for new keys within `--max-symbols`
//! (eviction of idle keys nobody subscribes to by name).

use std::time::Instant;

use tracing::debug;

use super::{SWEEP_EVERY, Sequencer, SymbolSeq};
use crate::encode::{Frames, Wire};
use crate::error::ErrorCode;
use crate::event::{Item, Key};
use crate::metrics;
use crate::tick::Seq;

impl Sequencer {
    /// Assigns the item its seq and pre-encodes it; `Ok(None)` for an edge's repeat, `Err`
    /// with its key if it is a new key and the table (symbols, channels and books together)
    /// stays full after a sweep (counted as `symbol_limit`).
    pub(super) fn prepare(&mut self, mut item: Item, now: Instant) -> Result<Option<Frames>, Key> {
        let key = item.key();
        let known = self.symbols.contains_key(&key);
        let full = |s: &Self| s.symbols.len() + s.books.len() >= s.max_symbols;
        // A derived key's symbol passed the limit already; its channels are bounded by it.
        if !known && !item.is_derived() && full(self) {
            self.sweep(now);
            if full(self) {
                self.metrics.count_error(ErrorCode::SymbolLimit);
                debug!(
                    key = key.as_str(),
                    limit = self.max_symbols,
                    "item of a new symbol or channel refused: --max-symbols reached"
                );
                return Err(key);
            }
        }
        let interest = &self.interest;
        // After an eviction, a new key starts two above every evicted seq: a client holding
        // seq N of an evicted key resumes into a gap (N+1 is never issued), never a run.
        let first = match self.evicted_high {
            0 => Seq::FIRST,
            high => Seq(high.saturating_add(2)),
        };
        let state = self
            .symbols
            .entry(key.clone())
            .or_insert_with(|| SymbolSeq {
                next: first,
                interest: interest.entry(&key),
                last: now,
            });
        state.last = now;
        if self.follow {
            let seq = item.seq();
            if known && seq < state.next {
                metrics::add(&self.metrics.nats.duplicates, 1);
                return Ok(None);
            }
            if known && seq > state.next {
                metrics::add(&self.metrics.nats.gaps, seq.0 - state.next.0);
            }
            state.next = seq.next();
            if let (Item::Bar(bar), Some(followed)) = (&mut item, &mut self.followed) {
                followed.attach(bar);
            }
        } else {
            item.set_seq(state.next);
            state.next = state.next.next();
        }
        let wildcard = key.in_wildcard();
        let frames = Frames::of(item);
        for wire in [Wire::Json, Wire::Protobuf] {
            if self.interest.wants(&state.interest, wildcard, wire) {
                frames.frame(wire);
            }
        }
        Ok(Some(frames))
    }

    /// Evicts every key nobody subscribes to by name that has been quiet for
    /// `--evict-idle`, at most once per [`SWEEP_EVERY`] (a full table under a flood of new
    /// keys costs one pass a second). The shards learn of it through the interest map.
    pub(super) fn sweep(&mut self, now: Instant) {
        if self
            .swept
            .is_some_and(|t| now.saturating_duration_since(t) < SWEEP_EVERY)
        {
            return;
        }
        self.swept = Some(now);
        let (symbols, idle) = (&mut self.symbols, self.evict_idle);
        let mut high = self.evicted_high;
        let before = symbols.len();
        self.interest
            .retain(|key, subscribed| match symbols.get(key) {
                Some(state) if !subscribed && now.saturating_duration_since(state.last) >= idle => {
                    high = high.max(state.next.0.saturating_sub(1));
                    symbols.remove(key);
                    false
                }
                Some(_) => true,
                // Counts of a key the table does not hold (subscribed before any item): kept
                // while someone subscribes.
                None => subscribed,
            });
        self.evicted_high = high;
        debug!(
            evicted = before - self.symbols.len(),
            kept = self.symbols.len(),
            "key table full: idle keys evicted"
        );
    }
}
