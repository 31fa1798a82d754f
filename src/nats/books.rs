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
