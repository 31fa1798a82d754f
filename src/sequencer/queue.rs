//! The hand-off from the sequencer to one shard: a bounded crossbeam queue of [`Batch`]es
//! plus a wake-up, so a shard's current-thread runtime sleeps until ticks arrive.

use std::sync::Arc;

use tokio::sync::Notify;

use crate::encode::Frames;

/// A batch of sequenced ticks, shared by every shard.
pub type Batch = Arc<[Arc<Frames>]>;

/// The sequencer's end of a shard's tick queue.
#[derive(Debug)]
pub struct TickSender {
    /// `None` once dropping: the queue must be closed before the final wake-up.
    tx: Option<crossbeam_channel::Sender<Batch>>,
    wake: Arc<Notify>,
}

/// The shard's end of its tick queue.
#[derive(Debug)]
pub struct TickQueue {
    /// Batches from the sequencer, in seq order.
    pub ticks: crossbeam_channel::Receiver<Batch>,
    /// Notified after every batch (and when the sequencer stops).
    pub wake: Arc<Notify>,
}

/// A tick queue holding at most `batches` batches before the sequencer waits.
pub fn tick_queue(batches: usize) -> (TickSender, TickQueue) {
    let (tx, ticks) = crossbeam_channel::bounded(batches);
    let wake = Arc::new(Notify::new());
    (
        TickSender {
            tx: Some(tx),
            wake: wake.clone(),
        },
        TickQueue { ticks, wake },
    )
}

impl TickSender {
    /// Queues `batch` for the shard, blocking while its queue is full (backpressure).
    pub fn deliver(&self, batch: Batch) {
        if let Some(tx) = &self.tx {
            // Err: the shard has stopped (shutdown); nobody is left to deliver to.
            let _ = tx.send(batch);
        }
        self.wake.notify_one();
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
