//! The sequencer side: every sequenced item into the stream, once, in order, acknowledged.
//!
//! [`run`] consumes the sequencer's batches through a [`TickQueue`] (as a shard does) and
//! keeps up to [`WINDOW`] publishes in flight. A publish that fails or is not acknowledged
//! is sent again, in its original order, after a backoff, for as long as it takes: its
//! `Nats-Msg-Id` makes the stream store it once however often it is sent. While it waits,
//! nothing more is taken from the queue, so the queue fills, the sequencer blocks on it,
//! the inbox fills and ingest stops reading: the publishers feel it as TCP backpressure,
//! and no accepted tick is dropped.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::PublishAckFuture;
use tracing::{debug, warn};

use super::History;
use super::wire::{self, Outgoing};
use crate::error::ErrorCode;
use crate::metrics::{self, Metrics};
use crate::sequencer::TickQueue;
use crate::shutdown::Shutdown;

/// Publishes every batch from `queue` until the sequencer closes it; on shutdown, keeps
/// trying what is still unacknowledged for `drain` more.
pub async fn run(
    history: History,
    queue: TickQueue,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    drain: Duration,
) {
    let mut in_flight: VecDeque<(Outgoing, PublishAckFuture)> = VecDeque::new();
    let mut retry: Vec<Outgoing> = Vec::new();
    let mut closed = false;
    let mut backoff = BACKOFF_MIN;
    let mut deadline = None;
    loop {
        if shutdown.is_triggered() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + drain);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let lost = in_flight.len() + retry.len();
            if lost > 0 {
                warn!(
                    lost,
                    "shutdown: items still not acknowledged by NATS are not published"
                );
            }
            return;
        }
        // A failed publish goes again before anything newer: per-key order is the stream's.
        if !retry.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = (backoff * 2).min(BACKOFF_MAX);
            let again: Vec<Outgoing> = std::mem::take(&mut retry);
            metrics::add(&metrics.nats.retried, again.len() as u64);
            for (i, out) in again.iter().enumerate() {
                match send(&history, out, &metrics).await {
                    Some(ack) => in_flight.push_back((out.clone(), ack)),
                    None => {
                        retry.extend(again[i..].iter().cloned());
                        break;
                    }
                }
            }
            settle(&mut in_flight, &mut retry, &metrics, 0).await;
            if retry.is_empty() {
                backoff = BACKOFF_MIN;
            }
            continue;
        }
        match queue.try_take() {
            Ok(batch) => {
                for frames in batch.iter().filter(|f| wire::published(f.item())) {
                    let out = wire::encode(&history.subjects, frames.item(), history.epoch);
                    if !retry.is_empty() {
                        // Everything after a failure waits behind it, in order.
                        retry.push(out);
                        continue;
                    }
                    match send(&history, &out, &metrics).await {
                        Some(ack) => in_flight.push_back((out, ack)),
                        None => retry.push(out),
                    }
                    settle(&mut in_flight, &mut retry, &metrics, WINDOW).await;
                }
            }
            Err(crossbeam_channel::TryRecvError::Disconnected) => closed = true,
            Err(crossbeam_channel::TryRecvError::Empty) => {
                if in_flight.is_empty() {
                    if closed {
                        debug!("publisher stopped: every item acknowledged");
                        return;
                    }
                    tokio::select! {
                        () = queue.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_CHECK) => {}
                    }
                } else {
                    settle(&mut in_flight, &mut retry, &metrics, 0).await;
                }
            }
        }
    }
}

/// Sends one publish; `None` if it could not even be queued on the connection.
async fn send(history: &History, out: &Outgoing, metrics: &Metrics) -> Option<PublishAckFuture> {
    metrics::add(&metrics.nats.published, 1);
    match history
        .js
        .publish_with_headers(
            out.subject.clone(),
            out.headers.clone(),
            out.payload.clone(),
        )
        .await
    {
        Ok(ack) => Some(ack),
        Err(e) => {
            metrics.count_error(ErrorCode::NatsUnavailable);
            debug!(error = %e, subject = out.subject, "publish not sent; will retry");
            None
        }
    }
}

/// Waits for acks until at most `keep` are in flight; a failed one (and every one after
/// it still in flight) moves to `retry`, in order.
async fn settle(
    in_flight: &mut VecDeque<(Outgoing, PublishAckFuture)>,
    retry: &mut Vec<Outgoing>,
    metrics: &Metrics,
    keep: usize,
) {
    while in_flight.len() > keep {
        let (out, ack) = in_flight.pop_front().expect("len > keep >= 0");
        match ack.await {
            Ok(_) => metrics::add(&metrics.nats.acked, 1),
            Err(e) => {
                metrics.count_error(ErrorCode::NatsUnavailable);
                debug!(error = %e, subject = out.subject, "publish not acknowledged; will retry");
                retry.push(out);
                // Later ones may have landed (then their retry is a stored duplicate) or
                // not: either way they go again after this one.
                while let Some((out, ack)) = in_flight.pop_front() {
                    if ack.await.is_ok() {
                        metrics::add(&metrics.nats.acked, 1);
                    }
                    retry.push(out);
                }
            }
        }
    }
}

/// Publishes awaiting their ack at once: enough to cover a LAN round trip at 100k/s.
pub const WINDOW: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often an idle publisher looks for shutdown.
const IDLE_CHECK: Duration = Duration::from_millis(100);
