//! The hand-off from the sequencer to one shard: a bounded crossbeam queue of [`Batch`]es
//! plus two wake-ups, so a shard's current-thread runtime sleeps until ticks arrive and the
//! sequencer (a task on shard 0's runtime, see `pipeline`) waits for room without blocking
//! the thread it shares with ingest and shard 0's own sessions. On an edge, the queue also
//! carries where a new history begins ([`Handed::History`]), between the last batch of the
//! old one and the first of the new.

use std::sync::Arc;

use crossbeam_channel::{RecvError, TryRecvError, TrySendError};
use tokio::sync::Notify;

use crate::encode::Frames;

/// A batch of sequenced ticks, shared by every shard.
pub type Batch = Arc<[Arc<Frames>]>;

/// What the sequencer hands a shard, in order.
#[derive(Debug, Clone)]
pub enum Handed {
    /// Sequenced items.
    Batch(Batch),
    /// An edge's stream now holds another history, of this epoch: every batch before this
    /// was of the old one, every batch after is of the new one.
    History(u64),
}

/// The sequencer's end of a shard's tick queue.
#[derive(Debug)]
pub struct TickSender {
    /// `None` once dropping: the queue must be closed before the final wake-up.
    tx: Option<crossbeam_channel::Sender<Handed>>,
    wake: Arc<Notify>,
    room: Arc<Notify>,
}

/// The shard's end of its tick queue.
#[derive(Debug)]
pub struct TickQueue {
    /// Batches from the sequencer, in seq order.
    ticks: crossbeam_channel::Receiver<Handed>,
    /// Notified after every batch (and when the sequencer stops).
    pub wake: Arc<Notify>,
    /// Notified after every batch taken: a sequencer waiting on a full queue retries.
    room: Arc<Notify>,
}

/// A tick queue holding at most `batches` batches before the sequencer waits.
pub fn tick_queue(batches: usize) -> (TickSender, TickQueue) {
    let (tx, ticks) = crossbeam_channel::bounded(batches);
    let wake = Arc::new(Notify::new());
    let room = Arc::new(Notify::new());
    (
        TickSender {
            tx: Some(tx),
            wake: wake.clone(),
            room: room.clone(),
        },
        TickQueue { ticks, wake, room },
    )
}

impl TickSender {
    /// Queues `batch` for the shard, waiting (without blocking the thread) while its queue
    /// is full: backpressure that leaves the rest of the sequencer's runtime running.
    pub async fn deliver(&self, batch: Batch) {
        self.hand(Handed::Batch(batch)).await;
    }

    /// Tells the shard that what follows is of the history `epoch` (an edge's stream was
    /// replaced), after every batch already queued.
    pub async fn new_history(&self, epoch: u64) {
        self.hand(Handed::History(epoch)).await;
    }

    async fn hand(&self, mut handed: Handed) {
        if let Some(tx) = &self.tx {
            loop {
                match tx.try_send(handed) {
                    Ok(()) => break,
                    Err(TrySendError::Full(back)) => {
                        handed = back;
                        // notify_one keeps a permit when nobody waits, so a batch taken
                        // between the try and this wait is not missed.
                        self.room.notified().await;
                    }
                    // The shard has stopped (shutdown); nobody is left to deliver to.
                    Err(TrySendError::Disconnected(_)) => break,
                }
            }
        }
        self.wake.notify_one();
    }
}

impl TickQueue {
    /// What is next in the queue (a batch, or where a new history begins), without waiting:
    /// a shard's read.
    pub fn try_next(&self) -> Result<Handed, TryRecvError> {
        let taken = self.ticks.try_recv();
        if taken.is_ok() {
            self.room.notify_one();
        }
        taken
    }

    /// The next batch if one is queued, without waiting, for consumers of the batches alone
    /// (a new history's start is only an edge's, whose shards read [`TickQueue::try_next`]).
    pub fn try_take(&self) -> Result<Batch, TryRecvError> {
        loop {
            if let Handed::Batch(batch) = self.try_next()? {
                return Ok(batch);
            }
        }
    }

    /// The next batch, blocking the thread until one comes (for consumers on a thread of
    /// their own); `Err` once the sequencer has stopped and the queue is empty.
    pub fn take_blocking(&self) -> Result<Batch, RecvError> {
        loop {
            let taken = self.ticks.recv();
            if taken.is_ok() {
                self.room.notify_one();
            }
            if let Handed::Batch(batch) = taken? {
                return Ok(batch);
            }
        }
    }

    /// Every batch queued now, without waiting.
    #[cfg(test)]
    pub fn drain(&self) -> impl Iterator<Item = Batch> + '_ {
        std::iter::from_fn(|| self.try_take().ok())
    }

    /// Nothing is queued.
    pub fn is_empty(&self) -> bool {
        self.ticks.is_empty()
    }
}

impl Drop for TickSender {
    fn drop(&mut self) {
        // Close the queue first, then wake the shard: woken before the close, it would find
        // the queue empty (not closed), wait again, and never wake (a hang on shutdown).
        drop(self.tx.take());
        self.wake.notify_one();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn batch() -> Batch {
        Arc::from(Vec::new())
    }

    #[tokio::test]
    async fn a_full_queue_waits_for_room_without_blocking_the_runtime() {
        let (sender, queue) = tick_queue(1);
        sender.deliver(batch()).await;
        let waiting = tokio::spawn(async move {
            sender.deliver(batch()).await;
            sender
        });
        // The second batch waits: the queue holds one.
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
        assert!(
            !waiting.is_finished(),
            "deliver returned with the queue full"
        );
        assert!(queue.try_take().is_ok());
        let sender = tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("taking a batch lets the waiting delivery through")
            .unwrap();
        assert!(queue.try_take().is_ok());
        assert!(queue.try_take().is_err());
        drop(sender);
        assert!(matches!(queue.try_take(), Err(TryRecvError::Disconnected)));
    }
}
