//! Books through the stream: where a late edge and a restarted sequencer start a book.
//!
//! The sequencer publishes every book's full-depth updates on `<stream>.book.<symbol>` and,
//! every `--book-checkpoint-updates` updates or `--book-checkpoint-interval`, the whole book
//! on `<stream>.bookcp.<symbol>`. The stream keeps `--replay-depth` updates a book, so every
//! update after the newest checkpoint is still there. A book is rebuilt from that checkpoint
//! (handed on as a snapshot: it replaces whatever the follower held) and the updates after
//! it; older updates are dropped by seq, and every update's checksum is checked against
//! the rebuilt book.

use std::sync::Arc;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::{StreamExt, TryStreamExt};
use tokio::sync::oneshot;
use tracing::{debug, warn};

use super::wire;
use super::{History, NatsError, jetstream_error};
use crate::book::{BookKind, BookUpdate};
use crate::error::ErrorCode;
use crate::event::{Item, Key};
use crate::ingest::Inbox;
use crate::metrics::Metrics;
use crate::tick::{Seq, Symbol};

/// An edge follows a book: its newest checkpoint first, then its updates from what the
/// stream holds (answering `caught_up` once read), and every later checkpoint (the
/// sequencer takes one only for a book that missed an update).
pub(super) async fn follow(
    history: History,
    key: Key,
    inbox: Inbox,
    metrics: Arc<Metrics>,
    caught_up: Option<oneshot::Sender<Vec<(Key, Seq)>>>,
) {
    let Some(symbol) = symbol_of(&key) else {
        return;
    };
    if let Some(start) = last_checkpoint(&history, &symbol, &metrics).await
        && inbox.publish_items(vec![Item::Book(start)]).await.is_err()
    {
        return;
    }
    let updates = super::consume::consume(
        history.clone(),
        history.subjects.of(&key),
        DeliverPolicy::All,
        inbox.clone(),
        metrics.clone(),
        caught_up,
    );
    let checkpoints = super::consume::consume(
        history.clone(),
        history.subjects.checkpoints(&symbol),
        DeliverPolicy::New,
        inbox,
        metrics,
        None,
    );
    tokio::join!(updates, checkpoints);
}

/// Every book in the stream as a restarted sequencer rebuilds it: per book, its newest
/// checkpoint (as a snapshot), then every update the stream holds, in order.
pub async fn restore(history: &History, metrics: &Metrics) -> Result<Vec<BookUpdate>, NatsError> {
    let mut listing = history
        .stream
        .info_with_subjects(history.subjects.all_books())
        .await
        .map_err(jetstream_error("stream info"))?;
    let mut keys = Vec::new();
    while let Some((subject, _)) = listing
        .try_next()
        .await
        .map_err(jetstream_error("stream subjects"))?
    {
        match history.subjects.key(&subject) {
            Ok(key) => keys.push((subject, key)),
            Err(e) => {
                metrics.count_error(ErrorCode::BadNatsMessage);
                warn!(subject, error = %e, "a book subject that names no book; not restored");
            }
        }
    }
    let mut updates = Vec::new();
    for (subject, key) in keys {
        let Some(symbol) = symbol_of(&key) else {
            continue;
        };
        updates.extend(last_checkpoint(history, &symbol, metrics).await);
        updates.extend(read_all(history, &subject, metrics).await?);
    }
    Ok(updates)
}

/// The newest checkpoint of `symbol`'s book, as a snapshot; `None` if there is none yet
/// (the book's first update, a snapshot, is then still in the stream).
async fn last_checkpoint(
    history: &History,
    symbol: &Symbol,
    metrics: &Metrics,
) -> Option<BookUpdate> {
    let subject = history.subjects.checkpoints(symbol);
    let message = match history
        .stream
        .get_last_raw_message_by_subject(&subject)
        .await
    {
        Ok(message) => message,
        Err(e) => {
            debug!(subject, error = %e, "no checkpoint read; the book starts from its updates");
            return None;
        }
    };
    match wire::decode(
        &history.subjects,
        &subject,
        Some(&message.headers),
        &message.payload,
    ) {
        Ok(incoming) if incoming.epoch == history.epoch => match incoming.item {
            Item::Book(mut book) => {
                book.kind = BookKind::Snapshot;
                Some(book)
            }
            _ => None,
        },
        Ok(_) => None,
        Err(e) => {
            metrics.count_error(ErrorCode::BadNatsMessage);
            warn!(subject, error = %e, "malformed checkpoint skipped");
            None
        }
    }
}

/// Every update the stream holds on `subject`, in order.
async fn read_all(
    history: &History,
    subject: &str,
    metrics: &Metrics,
) -> Result<Vec<BookUpdate>, NatsError> {
    let consumer = history
        .stream
        .create_consumer(pull::OrderedConfig {
            filter_subject: subject.to_owned(),
            deliver_policy: DeliverPolicy::All,
            ..Default::default()
        })
        .await
        .map_err(jetstream_error("book consumer"))?;
    let mut pending = consumer.cached_info().num_pending;
    let mut messages = consumer
        .messages()
        .await
        .map_err(jetstream_error("book messages"))?;
    let mut updates = Vec::new();
    while pending > 0 {
        let Some(message) = messages.next().await else {
            break;
        };
        let message = message.map_err(jetstream_error("book message"))?;
        pending = message.info().map_or(0, |info| info.pending);
        match wire::decode(
            &history.subjects,
            &message.subject,
            message.headers.as_ref(),
            &message.payload,
        ) {
            Ok(incoming) if incoming.epoch == history.epoch => {
                if let Item::Book(book) = incoming.item {
                    updates.push(book);
                }
            }
            Ok(_) => {}
            Err(e) => {
                metrics.count_error(ErrorCode::BadNatsMessage);
                warn!(subject, error = %e, "malformed book update skipped");
            }
        }
    }
    Ok(updates)
}

fn symbol_of(key: &Key) -> Option<Symbol> {
    match key {
        Key::Channel(channel) => {
            crate::book::channel::symbol_of(channel.as_str()).and_then(|s| Symbol::parse(s).ok())
        }
        Key::Symbol(_) | Key::Tiered(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::super::nats_server::NatsServer;
    use super::*;
    use crate::book::{BookChannel, Level, decimal};
    use crate::config::Config;

    const EPOCH: u64 = 9;

    /// A server and a history of epoch [`EPOCH`] in stream `name` on it.
    async fn setup(name: &str) -> Option<(NatsServer, History)> {
        super::super::tests::history(name, EPOCH, Config::for_tests().replay_depth).await
    }

    /// `symbol`'s full-depth book message of `kind` at `seq`.
    fn book(symbol: &str, kind: BookKind, seq: u64) -> BookUpdate {
        let level = |price: &str| Level {
            price: decimal::parse(price).expect("a price"),
            size: decimal::parse("1.5").expect("a size"),
        };
        let symbol = Symbol::parse(symbol).expect("a symbol");
        let mut book = BookUpdate::input(
            BookChannel::full(symbol),
            kind,
            vec![level(&format!("{}", 100 + seq))],
            vec![level(&format!("{}", 200 + seq))],
            seq,
        );
        (book.seq, book.checksum, book.recv_ns) = (Seq(seq), 77 + seq as u32, 3);
        book
    }

    async fn store(history: &History, book: &BookUpdate, epoch: u64) {
        super::super::tests::store(history, &Item::Book(book.clone()), epoch).await;
    }

    async fn store_raw(history: &History, subject: String) {
        history
            .js
            .publish(subject, "not a book".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    fn as_snapshot(mut book: BookUpdate) -> BookUpdate {
        book.kind = BookKind::Snapshot;
        book
    }

    #[tokio::test]
    async fn each_book_restores_from_its_newest_checkpoint_and_every_update_held() {
        let Some((_server, history)) = setup("books").await else {
            return;
        };
        let metrics = Metrics::new(1);
        let btc = [
            book("BTC-USD", BookKind::Snapshot, 1),
            book("BTC-USD", BookKind::Delta, 2),
            book("BTC-USD", BookKind::Delta, 3),
        ];
        store(&history, &btc[0], EPOCH).await;
        store(&history, &btc[1], EPOCH).await;
        store(&history, &book("BTC-USD", BookKind::Checkpoint, 1), EPOCH).await;
        let checkpoint = book("BTC-USD", BookKind::Checkpoint, 2);
        store(&history, &checkpoint, EPOCH).await;
        store(&history, &btc[2], EPOCH).await;
        // Another history's update, and a message that is no book update.
        store(&history, &book("BTC-USD", BookKind::Delta, 4), EPOCH + 1).await;
        store_raw(&history, "books.book.BTC-USD".into()).await;
        // A book whose newest checkpoint is another history's: it has none of this one.
        let eth = book("ETH-USD", BookKind::Snapshot, 1);
        store(&history, &eth, EPOCH).await;
        store(
            &history,
            &book("ETH-USD", BookKind::Checkpoint, 1),
            EPOCH + 1,
        )
        .await;
        // A book whose newest checkpoint is malformed.
        let sol = book("SOL-USD", BookKind::Snapshot, 1);
        store(&history, &sol, EPOCH).await;
        store_raw(&history, "books.bookcp.SOL-USD".into()).await;
        // A book subject naming no book.
        store_raw(&history, "books.book.%zz".into()).await;

        let restored = tokio::time::timeout(Duration::from_secs(5), restore(&history, &metrics))
            .await
            .expect("read to the end of what is held")
            .expect("restored");

        let of = |symbol: &str| -> Vec<BookUpdate> {
            restored
                .iter()
                .filter(|b| b.channel.symbol().as_str() == symbol)
                .cloned()
                .collect()
        };
        let mut want = vec![as_snapshot(checkpoint)];
        want.extend(btc);
        assert_eq!(
            of("BTC-USD"),
            want,
            "checkpoint as a snapshot, then the updates"
        );
        assert_eq!(of("ETH-USD"), vec![eth]);
        assert_eq!(of("SOL-USD"), vec![sol]);
        assert_eq!(restored.len(), 6, "nothing else");
        let errors: Vec<_> = metrics.errors().collect();
        assert_eq!(
            errors,
            vec![(ErrorCode::BadNatsMessage, 3)],
            "the update and checkpoint that are no book, and the subject naming none"
        );
    }

    #[tokio::test]
    async fn a_following_edge_starts_a_book_from_its_newest_checkpoint() {
        let Some((_server, history)) = setup("bookfollow").await else {
            return;
        };
        let updates = [
            book("BTC-USD", BookKind::Snapshot, 1),
            book("BTC-USD", BookKind::Delta, 2),
        ];
        for update in &updates {
            store(&history, update, EPOCH).await;
        }
        let checkpoint = book("BTC-USD", BookKind::Checkpoint, 2);
        store(&history, &checkpoint, EPOCH).await;
        let (inbox, mut handed) = Inbox::bounded(16);
        let (caught_up, caught) = oneshot::channel();
        let key = Item::Book(checkpoint.clone()).key();
        let following = tokio::spawn(follow(
            history.clone(),
            key.clone(),
            inbox,
            Arc::new(Metrics::new(1)),
            Some(caught_up),
        ));
        let read = tokio::time::timeout(Duration::from_secs(5), async {
            let mut items = Vec::new();
            while items.len() < 3 {
                items.extend(handed.recv().await.expect("handed on").items);
            }
            items
        })
        .await
        .expect("the checkpoint and the updates");
        let mut want = vec![Item::Book(as_snapshot(checkpoint))];
        want.extend(updates.into_iter().map(Item::Book));
        assert_eq!(read, want);
        let newest = tokio::time::timeout(Duration::from_secs(5), caught)
            .await
            .expect("caught up")
            .expect("answered");
        assert_eq!(newest, vec![(key, Seq(2))]);
        following.abort();
    }
}
