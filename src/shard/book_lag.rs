//! [`BooksBehind`]: the book messages a lagging `slow=conflate` client skipped, merged per
//! channel, so that when it catches up it gets one message standing for all of them
//! (`from_seq..=seq`) instead of the newest delta alone, which would leave its book silently
//! wrong.
//!
//! Merging is exact: every book message carries absolute sizes, so the last size each
//! skipped message gave a price is the price's size after all of them; a skipped snapshot
//! makes the merged message a snapshot (its levels, then the later changes on top).
//! The checksum and `seq` are the newest skipped message's.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

use rust_decimal::Decimal;

use super::outbox::Outbox;
use crate::book::{BookKind, BookUpdate, Level, Side};
use crate::encode::{Encoder, Frames, Message};
use crate::event::{Item, Key};
use crate::tick::Seq;

/// Skipped book messages per channel, while the client lags (empty and unallocated
/// otherwise: most clients never lag).
#[derive(Debug, Default)]
pub struct BooksBehind {
    // Boxed: every client carries this field, and idle clients are counted in bytes (8
    // here against the 24 of an empty map inline).
    #[allow(clippy::box_collection)]
    channels: Option<Box<BTreeMap<Key, Merged>>>,
}

#[derive(Debug)]
struct Merged {
    first: Seq,
    newest: Arc<Frames>,
    count: u64,
    snapshot: bool,
    bids: BTreeMap<Decimal, Decimal>,
    asks: BTreeMap<Decimal, Decimal>,
}

impl BooksBehind {
    /// Takes a skipped message if it is a book's (true), merging it into what the client
    /// missed of its channel; false for anything else (ticks and events conflate as before).
    pub fn absorb(&mut self, frames: &Arc<Frames>) -> bool {
        let Item::Book(update) = frames.item() else {
            return false;
        };
        let channels = self.channels.get_or_insert_with(Box::default);
        let merged = channels
            .entry(frames.key().clone())
            .or_insert_with(|| Merged {
                first: update.seq,
                newest: frames.clone(),
                count: 0,
                snapshot: false,
                bids: BTreeMap::new(),
                asks: BTreeMap::new(),
            });
        if update.kind == BookKind::Snapshot {
            merged.snapshot = true;
            merged.bids.clear();
            merged.asks.clear();
        }
        merged
            .bids
            .extend(update.bids.iter().map(|l| (l.price, l.size)));
        merged
            .asks
            .extend(update.asks.iter().map(|l| (l.price, l.size)));
        merged.newest = frames.clone();
        merged.count += 1;
        true
    }

    /// The client has caught up: queues one message per channel it missed messages of.
    pub fn catch_up(&mut self, encoder: &mut Encoder, outbox: &mut Outbox, now: Instant) {
        let Some(channels) = self.channels.take() else {
            return;
        };
        for (_, merged) in *channels {
            if merged.count == 1 {
                // One skipped message is its own merge: the shared frame.
                outbox.push(encoder.tick(&merged.newest), now);
                continue;
            }
            let Item::Book(newest) = merged.newest.item() else {
                continue;
            };
            let levels = |side: Side, map: &BTreeMap<Decimal, Decimal>| -> Vec<Level> {
                let kept = map
                    .iter()
                    .filter(|(_, size)| !(merged.snapshot && size.is_zero()))
                    .map(|(price, size)| Level {
                        price: *price,
                        size: *size,
                    });
                match side {
                    Side::Bids => kept.rev().collect(),
                    Side::Asks => kept.collect(),
                }
            };
            let message = BookUpdate {
                kind: if merged.snapshot {
                    BookKind::Snapshot
                } else {
                    BookKind::Delta
                },
                bids: levels(Side::Bids, &merged.bids),
                asks: levels(Side::Asks, &merged.asks),
                from_seq: Some(merged.first),
                ..newest.clone()
            };
            outbox.push(encoder.message(&Message::Book(&message)), now);
        }
    }
}
