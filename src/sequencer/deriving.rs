//! The sequencer's side of bars and tickers: where [`Derived`] is fed (each trade, the
//! timer, a restart's state) and how what it computes is sequenced and handed on.

use std::sync::Arc;
use std::time::Instant;

use super::Sequencer;
use super::bars::FollowedBars;
use super::derived::{Derived, Restored};
use crate::config::DerivedConfig;
use crate::encode::Frames;
use crate::event::Item;
use crate::metrics;
use crate::tick::now_ns;

impl Sequencer {
    /// Computes bars and tickers as `config` says (call after [`Sequencer::following`]: an
    /// edge computes none, it only keeps each bars channel's closed bars for snapshots).
    pub fn deriving(mut self, config: &DerivedConfig) -> Self {
        self.cadence = config.derived_interval;
        if self.follow {
            self.followed = Some(FollowedBars::new(config.bar_history));
        } else {
            self.derived = Derived::new(config, self.metrics.clone());
        }
        self
    }

    /// Continues the bars and tickers from what the stream held (a restarted sequencer).
    pub fn restore(&mut self, restored: Restored) {
        self.restored = Some(restored);
    }

    /// Hands on what the restored state says now (before the first batch).
    pub(super) async fn restore_derived(&mut self) {
        if let (Some(derived), Some(restored)) = (&mut self.derived, self.restored.take()) {
            let mut out = Vec::new();
            derived.restore(restored, now_ns(), &mut out);
            let batch = self.prepare_derived(out, Instant::now());
            self.hand_on(batch).await;
        }
    }

    /// Adds a sequenced source item to `batch`, followed by what a trade in it derived
    /// (the bars it closed): every shard sees a trade before the bar it moved.
    pub(super) fn push_sourced(
        &mut self,
        frames: Frames,
        now: Instant,
        batch: &mut Vec<Arc<Frames>>,
    ) {
        if let (Some(derived), Some(tick)) = (&mut self.derived, frames.tick()) {
            derived.trade(tick, &mut self.scratch);
        }
        batch.push(Arc::new(frames));
        if !self.scratch.is_empty() {
            let closed = std::mem::take(&mut self.scratch);
            batch.extend(self.prepare_derived(closed, now));
        }
    }

    /// The derived updates due now (closes, open bars, tickers), as one batch.
    pub(super) async fn timed(&mut self) {
        let Some(derived) = &mut self.derived else {
            return;
        };
        let mut out = std::mem::take(&mut self.scratch);
        derived.on_timer(now_ns(), &mut out);
        let batch = self.prepare_derived(out, Instant::now());
        self.hand_on(batch).await;
    }

    /// Sequences derived items (emptying `items`, whose allocation is kept for the next).
    fn prepare_derived(&mut self, mut items: Vec<Item>, now: Instant) -> Vec<Arc<Frames>> {
        metrics::add(&self.metrics.derived.messages, items.len() as u64);
        let batch = items
            .drain(..)
            .filter_map(|item| self.prepare(item, now).ok().flatten())
            .map(Arc::new)
            .collect();
        self.scratch = items;
        batch
    }
}
