//! For acknowledged ingest: which of the sequencer's batches the stream holds entirely.

use std::collections::VecDeque;

use tokio::sync::watch;

/// Which of the sequencer's batches the stream holds entirely: reported on `durable` (the
/// number of batches, counted from the first this publisher took), for the acks of
/// acknowledged ingest. Every publish is acknowledged exactly once, in order (the chain's
/// `Chain::acked` in `publish`), so a batch is stored once that many publishes are acknowledged.
#[derive(Debug)]
pub struct Stored {
    taken: u64,
    sent: u64,
    acked: u64,
    /// (publishes up to a batch's end, its number), oldest first.
    marks: VecDeque<(u64, u64)>,
    durable: watch::Sender<u64>,
}

impl Stored {
    /// Reports stored batches on `durable`.
    pub fn new(durable: watch::Sender<u64>) -> Self {
        Self {
            taken: 0,
            sent: 0,
            acked: 0,
            marks: VecDeque::new(),
            durable,
        }
    }

    /// The next batch, with `publishes` publishes.
    pub(super) fn batch(&mut self, publishes: usize) {
        self.taken += 1;
        self.sent += publishes as u64;
        self.marks.push_back((self.sent, self.taken));
        self.report();
    }

    /// The next publish in order is acknowledged.
    pub(super) fn acked(&mut self) {
        self.acked += 1;
        self.report();
    }

    fn report(&mut self) {
        let mut stored = None;
        while self
            .marks
            .front()
            .is_some_and(|(end, _)| *end <= self.acked)
        {
            stored = self.marks.pop_front().map(|(_, batch)| batch);
        }
        if let Some(batch) = stored {
            self.durable.send_replace(batch);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_batch_is_stored_once_every_publish_up_to_its_end_is_acknowledged() {
        let (tx, rx) = watch::channel(0);
        let mut stored = Stored::new(tx);
        stored.batch(2);
        stored.batch(0);
        stored.batch(1);
        assert_eq!(*rx.borrow(), 0);
        stored.acked();
        assert_eq!(*rx.borrow(), 0, "one of batch 1's two publishes");
        stored.acked();
        assert_eq!(*rx.borrow(), 2, "batch 1, and batch 2 with none");
        stored.acked();
        assert_eq!(*rx.borrow(), 3);
        stored.batch(0);
        assert_eq!(*rx.borrow(), 4, "nothing to wait for");
    }
}
