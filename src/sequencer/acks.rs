//! Acknowledged ingest, the sequencer's side (docs/PROTOCOL.md, "Acknowledged ingest"):
//! each publisher's highest stored pseq, so that a resend is a duplicate (acknowledged,
//! never stored twice), and the acks that wait for their items to be durable.
//!
//! Durable is counted in hand-offs to the consumers (every shard, and the NATS publisher,
//! takes every batch in the same order): on a single box a batch is durable once handed
//! on; scaled out, once the NATS publisher reports every message of it acknowledged by the
//! stream (a [`watch`] of the number of batches it has stored).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use tokio::sync::{mpsc, watch};

use crate::event::Tag;
use crate::ingest::Answer;
use crate::limits::MAX_PUBLISHERS;

/// Highest stored pseq per publisher, and the acks not yet durable.
#[derive(Debug, Default)]
pub struct Acks {
    high: HashMap<Arc<str>, u64>,
    waiting: VecDeque<Waiting>,
    /// Scaled out: how many batches the stream has stored (`None`: durable when handed).
    durable: Option<watch::Receiver<u64>>,
}

#[derive(Debug)]
struct Waiting {
    /// Durable once this many batches are.
    batch: u64,
    answers: mpsc::UnboundedSender<Answer>,
    pseq: u64,
    duplicates: u64,
}

/// Whether to store a tagged item.
#[derive(Debug, PartialEq, Eq)]
pub enum Admit {
    /// Above its publisher's highest stored pseq: store it.
    New,
    /// At or below it: a resend, stored before.
    Duplicate,
    /// A publisher id beyond [`MAX_PUBLISHERS`].
    Full,
}

impl Acks {
    /// Acks wait for `durable` (the NATS publisher's count of stored batches).
    pub fn durable_after(&mut self, durable: watch::Receiver<u64>) {
        self.durable = Some(durable);
    }

    /// The stored batches' watch, scaled out.
    pub fn durable(&self) -> Option<watch::Receiver<u64>> {
        self.durable.clone()
    }

    /// What a restarted or standby sequencer found in the stream: each publisher's highest
    /// stored pseq.
    pub fn remember(&mut self, highs: impl IntoIterator<Item = (Arc<str>, u64)>) {
        for (publisher, pseq) in highs {
            let high = self.high.entry(publisher).or_default();
            *high = (*high).max(pseq);
        }
    }

    /// Whether to store `tag`'s item; a new one becomes its publisher's highest.
    pub fn admit(&mut self, tag: &Tag) -> Admit {
        let known = self.high.len();
        match self.high.get_mut(&tag.publisher) {
            Some(high) if tag.pseq <= *high => Admit::Duplicate,
            Some(high) => {
                *high = tag.pseq;
                Admit::New
            }
            None if known >= MAX_PUBLISHERS => Admit::Full,
            None => {
                self.high.insert(tag.publisher.clone(), tag.pseq);
                Admit::New
            }
        }
    }

    /// Acks `pseq` to `answers` once `batch` batches are durable (`handed`: batches handed
    /// on so far).
    pub fn settle(
        &mut self,
        answers: &mpsc::UnboundedSender<Answer>,
        pseq: u64,
        duplicates: u64,
        handed: u64,
    ) {
        self.waiting.push_back(Waiting {
            batch: handed,
            answers: answers.clone(),
            pseq,
            duplicates,
        });
        self.release(handed);
    }

    /// Sends every ack whose batches are durable (`handed`: batches handed on so far).
    pub fn release(&mut self, handed: u64) {
        let durable = match &self.durable {
            Some(durable) => *durable.borrow(),
            None => handed,
        };
        while self.waiting.front().is_some_and(|w| w.batch <= durable) {
            let w = self.waiting.pop_front().expect("front is some");
            // The publisher may have gone: its resend will be acked as a duplicate.
            let _ = w.answers.send(Answer::Stored {
                pseq: w.pseq,
                duplicates: w.duplicates,
            });
        }
    }

    /// Whether acks wait for the stream.
    pub fn waiting(&self) -> bool {
        !self.waiting.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tag(publisher: &str, pseq: u64) -> Tag {
        Tag {
            publisher: publisher.into(),
            pseq,
        }
    }

    #[test]
    fn a_pseq_at_or_below_the_highest_stored_is_a_duplicate() {
        let mut acks = Acks::default();
        acks.remember([(Arc::from("a"), 5)]);
        assert_eq!(acks.admit(&tag("a", 5)), Admit::Duplicate);
        assert_eq!(acks.admit(&tag("a", 3)), Admit::Duplicate);
        assert_eq!(acks.admit(&tag("a", 6)), Admit::New);
        assert_eq!(acks.admit(&tag("a", 6)), Admit::Duplicate);
        assert_eq!(
            acks.admit(&tag("b", 1)),
            Admit::New,
            "each publisher its own"
        );
        assert_eq!(acks.admit(&tag("a", 9)), Admit::New, "pseqs may skip");
        assert_eq!(acks.admit(&tag("a", 8)), Admit::Duplicate);
    }

    #[test]
    fn new_publishers_past_the_limit_are_refused_known_ones_go_on() {
        let mut acks = Acks::default();
        acks.remember((0..MAX_PUBLISHERS).map(|i| (Arc::from(i.to_string()), 1)));
        assert_eq!(acks.admit(&tag("new", 1)), Admit::Full);
        assert_eq!(acks.admit(&tag("7", 2)), Admit::New);
    }

    #[tokio::test]
    async fn acks_wait_for_the_stream_to_store_their_batches() {
        let (stored, durable) = watch::channel(0);
        let mut acks = Acks::default();
        acks.durable_after(durable);
        let (answers, mut answered) = mpsc::unbounded_channel();
        acks.settle(&answers, 10, 0, 1);
        acks.settle(&answers, 20, 2, 3);
        assert!(answered.try_recv().is_err(), "nothing stored yet");
        stored.send(2).unwrap();
        acks.release(3);
        let first = Answer::Stored {
            pseq: 10,
            duplicates: 0,
        };
        assert_eq!(answered.try_recv(), Ok(first));
        assert!(answered.try_recv().is_err(), "batch 3 is not stored yet");
        stored.send(3).unwrap();
        acks.release(3);
        assert!(matches!(
            answered.try_recv(),
            Ok(Answer::Stored { pseq: 20, .. })
        ));
        assert!(!acks.waiting());
    }

    #[test]
    fn on_a_single_box_an_ack_goes_once_its_batch_is_handed_on() {
        let mut acks = Acks::default();
        let (answers, mut answered) = mpsc::unbounded_channel();
        acks.settle(&answers, 4, 1, 7);
        assert!(matches!(
            answered.try_recv(),
            Ok(Answer::Stored {
                pseq: 4,
                duplicates: 1
            })
        ));
    }
}
