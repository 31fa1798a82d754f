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

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;
    use std::time::Instant;

    use super::super::ClientOptions;
    use super::super::testkit::{Bench, Peer, book, briefs, channel, json, symbol, tick};
    use crate::book::BookKind;
    use crate::config::{Config, SlowPolicy};
    use crate::encode::Message;

    /// A conflating client of `BTC`'s full book and of the `ETH` ticks, lagging.
    async fn lagging() -> (Bench, Peer) {
        let mut bench = Bench::new(Config::for_tests()).await;
        let options = ClientOptions {
            slow: SlowPolicy::Conflate,
            ..json()
        };
        let client = bench.client_with(options).await;
        bench
            .core
            .subscribe(client.key, false, &[channel("book:BTC"), symbol("ETH")]);
        bench.core.clients[client.key].feed.lagging = Some(BTreeMap::new());
        (bench, client)
    }

    /// A write catches the client up: `pong 1`, then what it skipped.
    async fn catch_up(
        bench: &mut Bench,
        client: &mut Peer,
        skipped: usize,
    ) -> Vec<serde_json::Value> {
        bench
            .core
            .send(client.key, &Message::Pong { id: 1 }, Instant::now());
        bench.core.flush(client.key);
        let got = client.messages(1 + skipped).await;
        assert_eq!(got[0]["type"], "pong");
        assert!(client.rest().await.is_empty());
        got[1..].to_vec()
    }

    #[tokio::test]
    async fn skipped_deltas_come_as_one_delta_holding_each_price_s_last_size() {
        let (mut bench, mut client) = lagging().await;
        bench.deliver(&[
            book(
                "BTC",
                2,
                BookKind::Delta,
                &[("100", "1"), ("99", "2")],
                &[("101", "3")],
            ),
            tick("ETH", 1),
            book("BTC", 3, BookKind::Delta, &[("100", "0")], &[("102", "1")]),
            book("BTC", 4, BookKind::Delta, &[("98", "5")], &[("101", "4")]),
        ]);
        assert!(client.rest().await.is_empty(), "nothing while it lags");
        let got = catch_up(&mut bench, &mut client, 2).await;
        assert_eq!(briefs(&got), ["book book:BTC 2..4", "tick ETH 1"]);
        assert_eq!(got[0]["snapshot"], serde_json::json!(false));
        // A delta keeps a price's zero: it removes the level the client holds.
        assert_eq!(
            got[0]["bids"],
            serde_json::json!([["100", "0"], ["99", "2"], ["98", "5"]])
        );
        assert_eq!(
            got[0]["asks"],
            serde_json::json!([["101", "4"], ["102", "1"]])
        );
    }

    #[tokio::test]
    async fn a_skipped_snapshot_makes_the_merge_a_snapshot_of_its_levels_and_later_changes() {
        let (mut bench, mut client) = lagging().await;
        bench.deliver(&[
            book("BTC", 2, BookKind::Delta, &[("97", "1")], &[("103", "1")]),
            book(
                "BTC",
                3,
                BookKind::Snapshot,
                &[("100", "1"), ("99", "2")],
                &[("101", "3")],
            ),
            book("BTC", 4, BookKind::Delta, &[("100", "0")], &[("102", "1")]),
        ]);
        let got = catch_up(&mut bench, &mut client, 1).await;
        assert_eq!(briefs(&got), ["book book:BTC 4 snapshot"]);
        assert_eq!(got[0]["from_seq"], 2);
        // The delta before the snapshot is gone; a snapshot holds no zero sizes.
        assert_eq!(got[0]["bids"], serde_json::json!([["99", "2"]]));
        assert_eq!(
            got[0]["asks"],
            serde_json::json!([["101", "3"], ["102", "1"]])
        );
    }

    #[tokio::test]
    async fn one_skipped_book_message_comes_as_itself() {
        let (mut bench, mut client) = lagging().await;
        bench.deliver(&[book(
            "BTC",
            5,
            BookKind::Delta,
            &[("100", "0")],
            &[("101", "2")],
        )]);
        let got = catch_up(&mut bench, &mut client, 1).await;
        assert_eq!(briefs(&got), ["book book:BTC 5"]);
        assert_eq!(got[0].get("from_seq"), None);
        assert_eq!(got[0]["bids"], serde_json::json!([["100", "0"]]));
        assert_eq!(got[0]["asks"], serde_json::json!([["101", "2"]]));
    }
}
