//! [`consume`]: one ordered pull consumer on a filter of the stream, re-created from the next
//! stream sequence whenever it ends, feeding what it reads into the sequencer's inbox; and
//! the check that the stream still holds the history the edge serves ([`successor`]).

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::{FutureExt, StreamExt};
use tokio::sync::oneshot;
use tracing::{debug, info, warn};

use super::History;
use super::wire;
use crate::error::ErrorCode;
use crate::event::{Item, Key};
use crate::ingest::Inbox;
use crate::metrics::{self, Metrics};
use crate::tick::Seq;

/// Reads `filter` from `policy` on, forever: an ordered consumer, re-created from the next
/// stream sequence whenever it ends (NATS restarted, the consumer was lost). Answers
/// `caught_up` with the newest seq per key once the messages pending at its creation are read.
/// It hands on items of `history` only: when the stream holds another history, the
/// follower stops this consumer and starts one on the new history (`follow.rs`).
pub(super) async fn consume(
    history: History,
    filter: String,
    mut policy: DeliverPolicy,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    mut caught_up: Option<oneshot::Sender<Vec<(Key, Seq)>>>,
) {
    let mut newest: HashMap<Key, Seq> = HashMap::new();
    let mut backoff = BACKOFF_MIN;
    let mut disturbed = history.disturbed.subscribe();
    // Re-created after a loss: what it reads until caught up is back-fill.
    let mut refilling = false;
    loop {
        let created = history
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: filter.clone(),
                deliver_policy: policy,
                ..Default::default()
            })
            .await;
        let consumer = match created {
            Ok(consumer) => consumer,
            Err(e) => {
                metrics.count_error(ErrorCode::NatsUnavailable);
                debug!(filter, error = %e, "cannot create the consumer; retrying");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(BACKOFF_MAX);
                continue;
            }
        };
        if consumer.cached_info().num_pending == 0
            && let Some(reply) = caught_up.take()
        {
            let _ = reply.send(Vec::new());
        }
        let mut messages = match consumer.messages().await {
            Ok(messages) => messages,
            Err(e) => {
                metrics.count_error(ErrorCode::NatsUnavailable);
                debug!(filter, error = %e, "cannot read the consumer; retrying");
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        backoff = BACKOFF_MIN;
        let mut batch: Vec<Item> = Vec::new();
        disturbed.borrow_and_update();
        loop {
            // Take what is ready without waiting; what was taken goes on as one batch
            // before waiting, or before leaving a stream that ended, so the batch is
            // always empty when the loop ends.
            let ready = messages.next().now_or_never();
            if !matches!(ready, Some(Some(_)))
                && !batch.is_empty()
                && inbox
                    .publish_items(std::mem::take(&mut batch))
                    .await
                    .is_err()
            {
                return;
            }
            let next = match ready {
                Some(next) => next,
                None => tokio::select! {
                    next = messages.next() => next,
                    // A restarted server or a dead cluster node may have lost the
                    // consumer: re-create it now from the next stream sequence rather
                    // than after the client's missed heartbeats (30 s and more).
                    _ = disturbed.changed() => None,
                },
            };
            let message = match next {
                Some(Ok(message)) => message,
                Some(Err(e)) => {
                    metrics.count_error(ErrorCode::NatsUnavailable);
                    debug!(filter, error = %e, "consumer error");
                    continue;
                }
                None => break,
            };
            metrics::add(&metrics.nats.received, 1);
            if refilling {
                metrics::add(&metrics.nats.backfilled, 1);
            }
            let (stream_seq, pending) = match message.info() {
                Ok(info) => (info.stream_sequence, info.pending),
                Err(_) => (0, 1),
            };
            match wire::decode(
                &history.subjects,
                &message.subject,
                message.headers.as_ref(),
                &message.payload,
            ) {
                Ok(incoming) if incoming.epoch == history.epoch => {
                    if caught_up.is_some() {
                        newest.insert(incoming.item.key(), incoming.item.seq());
                    }
                    batch.push(incoming.item);
                }
                // Another history (the follower switches to it; its items are not this
                // consumer's), or a bad header: the stream's epoch subject decides.
                Ok(incoming) => {
                    if successor(&history).await.is_none() {
                        metrics.count_error(ErrorCode::BadNatsMessage);
                        warn!(subject = %message.subject, epoch = incoming.epoch, ours = history.epoch,
                            "a message of another epoch on the stream; skipped");
                    }
                }
                Err(e) => {
                    metrics.count_error(ErrorCode::BadNatsMessage);
                    debug!(subject = %message.subject, error = %e, "malformed message skipped");
                }
            }
            if stream_seq > 0 {
                policy = DeliverPolicy::ByStartSequence {
                    start_sequence: stream_seq + 1,
                };
            }
            if pending == 0 {
                refilling = false;
                if let Some(reply) = caught_up.take() {
                    let _ = reply.send(newest.drain().collect());
                }
            }
        }
        debug_assert!(batch.is_empty(), "handed on before the loop ends");
        refilling = true;
        info!(
            filter,
            "consumer ended; re-creating it from the next message"
        );
    }
}

/// The history the stream holds now, when it is another than `history` (the stream was
/// deleted and a sequencer started a new one, with a new epoch); `None` while it still holds
/// `history`, or has no epoch yet, or cannot be read. The edge then switches its shards and
/// its clients to the new history (`follow.rs`): clients get `reset` and stay connected.
pub(super) async fn successor(history: &History) -> Option<History> {
    let epoch = match super::read_epoch(&history.stream, &history.subjects).await {
        Ok(Some(epoch)) if epoch != history.epoch => epoch,
        _ => return None,
    };
    // The stream was made again: a handle of the new one, not of the one deleted.
    let name = history.stream.cached_info().config.name.clone();
    let stream = history.js.get_stream(&name).await.ok()?;
    Some(History {
        stream,
        epoch,
        ..history.clone()
    })
}

const BACKOFF_MIN: Duration = Duration::from_millis(100);
const BACKOFF_MAX: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::error::ErrorCode;
    use crate::ingest::InboxReceiver;
    use crate::nats::tests::{setup, store};
    use crate::tick::sequenced;

    fn tick(symbol: &str, seq: u64) -> Item {
        Item::Tick(sequenced(symbol, seq))
    }

    /// The next `n` items handed to the inbox, as (key, seq).
    async fn handed(inbox: &mut InboxReceiver, n: usize) -> Vec<(String, u64)> {
        let mut out = Vec::new();
        while out.len() < n {
            let published = tokio::time::timeout(Duration::from_secs(10), inbox.recv())
                .await
                .unwrap_or_else(|_| panic!("only {out:?} of {n} items came"))
                .expect("the consumer runs");
            assert!(published.history.is_none() && published.publisher.is_none());
            out.extend(
                published
                    .items
                    .iter()
                    .map(|item| (item.key().as_str().to_owned(), item.seq().0)),
            );
        }
        out
    }

    fn pairs(list: &[(&str, u64)]) -> Vec<(String, u64)> {
        list.iter().map(|(k, s)| ((*k).to_owned(), *s)).collect()
    }

    /// A consumer of every tick of `history` from the start, on a task of its own.
    fn consuming_ticks(
        history: &History,
        inbox: Inbox,
        metrics: &Arc<Metrics>,
        caught_up: Option<oneshot::Sender<Vec<(Key, Seq)>>>,
    ) -> tokio::task::JoinHandle<()> {
        tokio::spawn(consume(
            history.clone(),
            history.subjects.all_ticks(),
            DeliverPolicy::All,
            inbox,
            metrics.clone(),
            caught_up,
        ))
    }

    #[tokio::test]
    async fn a_consumer_hands_on_this_historys_items_once_in_order_across_a_re_creation() {
        let Some((_server, config, connection, metrics)) = setup("consume").await else {
            return;
        };
        let history = History::open_or_create(connection, &config, 3)
            .await
            .expect("create");
        for item in [tick("A", 1), tick("A", 2), tick("B", 1)] {
            store(&history, &item, 3).await;
        }
        store(&history, &tick("C", 9), 4).await;
        let subject = history.subjects.of(&tick("D", 1).key());
        let ack = history
            .js
            .publish(subject, "junk".into())
            .await
            .expect("publish");
        ack.await.expect("stored");
        store(&history, &tick("A", 3), 3).await;

        let (inbox, mut received) = Inbox::bounded(16);
        let (reply, caught_up) = oneshot::channel();
        let consumer = consuming_ticks(&history, inbox, &metrics, Some(reply));
        let mut newest = caught_up.await.expect("caught up");
        newest.sort_by(|a, b| a.0.as_str().cmp(b.0.as_str()));
        let newest: Vec<(String, u64)> = newest
            .into_iter()
            .map(|(k, s)| (k.as_str().to_owned(), s.0))
            .collect();
        assert_eq!(
            newest,
            pairs(&[("A", 3), ("B", 1)]),
            "the newest seq per key"
        );
        let want = pairs(&[("A", 1), ("A", 2), ("B", 1), ("A", 3)]);
        assert_eq!(handed(&mut received, 4).await, want);
        let bad = metrics
            .errors()
            .find(|(code, _)| *code == ErrorCode::BadNatsMessage);
        assert_eq!(
            bad,
            Some((ErrorCode::BadNatsMessage, 2)),
            "another epoch's and junk"
        );

        store(&history, &tick("B", 2), 3).await;
        assert_eq!(handed(&mut received, 1).await, pairs(&[("B", 2)]), "live");
        // The connection came back (a server restart may have lost the consumer): it is
        // made again from the next stream sequence, nothing read twice.
        history.disturbed.send_modify(|n| *n += 1);
        store(&history, &tick("B", 3), 3).await;
        assert_eq!(handed(&mut received, 1).await, pairs(&[("B", 3)]));
        assert_eq!(metrics.nats.received.load(Relaxed), 8);
        consumer.abort();
    }

    #[tokio::test]
    async fn a_consumer_that_cannot_be_made_is_tried_again_ever_more_slowly() {
        let Some((_server, history)) = crate::nats::tests::history("gone", 3, 16).await else {
            return;
        };
        let metrics = Arc::new(Metrics::new(1));
        history.js.delete_stream("gone").await.expect("delete");
        let (inbox, _received) = Inbox::bounded(16);
        let consumer = consuming_ticks(&history, inbox, &metrics, None);
        let tries = || -> u64 {
            metrics
                .errors()
                .filter(|(code, _)| *code == ErrorCode::NatsUnavailable)
                .map(|(_, n)| n)
                .sum()
        };
        let first = tokio::time::timeout(Duration::from_secs(10), async {
            while tries() == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        });
        first.await.expect("a first try fails");
        // Waits of 100, 200, 400 and 800 ms between tries: from the first failure, at most
        // 5 tries in 1.6 s (fewer on a slow box), where ever shorter waits make hundreds.
        tokio::time::sleep(Duration::from_millis(1600)).await;
        consumer.abort();
        assert!(tries() <= 5, "{} tries", tries());
    }

    #[tokio::test]
    async fn a_backlog_goes_on_in_batches_of_what_was_ready_not_one_by_one() {
        let Some((_server, config, connection, metrics)) = setup("batches").await else {
            return;
        };
        let history = History::open_or_create(connection, &config, 3)
            .await
            .expect("create");
        for seq in 1..=200 {
            store(&history, &tick("A", seq), 3).await;
        }
        let (inbox, mut received) = Inbox::bounded(256);
        let consumer = tokio::spawn(consume(
            history.clone(),
            history.subjects.all_ticks(),
            DeliverPolicy::All,
            inbox,
            metrics,
            None,
        ));
        let mut sizes = Vec::new();
        let mut seqs = Vec::new();
        while seqs.len() < 200 {
            let published = tokio::time::timeout(Duration::from_secs(10), received.recv())
                .await
                .unwrap_or_else(|_| panic!("only {} of 200 items came", seqs.len()))
                .expect("the consumer runs");
            sizes.push(published.items.len());
            seqs.extend(published.items.iter().map(|item| item.seq().0));
        }
        assert_eq!(seqs, (1..=200).collect::<Vec<u64>>(), "once, in order");
        // The server sends a pull's messages together: what the client holds already goes
        // on as one batch (one hand-off to the shards for many ticks), not one at a time.
        assert!(
            sizes.iter().any(|&n| n > 1),
            "200 stored ticks came in {} batches of one",
            sizes.len()
        );
        consumer.abort();
    }

    #[tokio::test]
    async fn a_stream_made_again_with_another_epoch_is_the_successor() {
        let Some((_server, config, connection, _)) = setup("successor").await else {
            return;
        };
        let history = History::open_or_create(connection, &config, 3)
            .await
            .expect("create");
        assert!(successor(&history).await.is_none(), "still this history");
        history.js.delete_stream("successor").await.expect("delete");
        let again =
            History::open_or_create(super::super::tests::reconnect(&config).await, &config, 8)
                .await
                .expect("a new history");
        assert_eq!(again.epoch, 8);
        let next = successor(&history).await.expect("a successor");
        assert_eq!(next.epoch, 8);
        assert!(successor(&next).await.is_none());
    }
}
