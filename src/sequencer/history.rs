//! An edge's sequencer when its stream starts another history (the stream was deleted and
//! a sequencer began a new one, with a new epoch): it forgets what it followed of the old
//! one and tells every shard, in order, where the new one begins.

use super::Sequencer;

impl Sequencer {
    /// From here on the items are of the history `epoch`: each key's seq, each book and
    /// each bars channel's closed bars start again from what the new history hands on, and
    /// every shard learns it after the last batch of the old history, before the first of
    /// the new (the follower sends it once nothing of the old one can follow).
    pub(super) async fn new_history(&mut self, epoch: u64) {
        self.symbols.clear();
        self.books.forget();
        if let Some(followed) = &mut self.followed {
            followed.forget();
        }
        for shard in &self.shards {
            shard.new_history(epoch).await;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use crate::event::Item;
    use crate::ingest::Published;
    use crate::metrics::Metrics;
    use crate::sequencer::{Handed, Interest, Sequencer, tick_queue};
    use crate::tick::sequenced;

    fn tick(seq: u64) -> Item {
        Item::Tick(sequenced("A", seq))
    }

    fn hand_off(seqs: &[u64], history: Option<u64>) -> Published {
        Published {
            items: seqs.iter().map(|s| tick(*s)).collect(),
            publisher: None,
            history,
        }
    }

    #[tokio::test]
    async fn a_new_history_reaches_the_shards_between_the_old_items_and_the_new_from_seq_1() {
        let (sender, queue) = tick_queue(16);
        let interest = Arc::new(Interest::default());
        let metrics = Arc::new(Metrics::new(1));
        let mut sequencer = Sequencer::new(vec![sender], interest, metrics, 100).following();
        sequencer.sequence(vec![tick(1), tick(2), tick(3)]).await;
        // One coalesced turn: the old history's last item, then the new history's first.
        let turn = vec![hand_off(&[4], None), hand_off(&[1, 2], Some(9))];
        sequencer.sequence_published(turn).await;
        let mut seen = Vec::new();
        while let Ok(next) = queue.try_next() {
            match next {
                Handed::Batch(batch) => seen.extend(batch.iter().map(|f| f.seq().0.to_string())),
                Handed::History(epoch) => seen.push(format!("history {epoch}")),
            }
        }
        assert_eq!(seen, ["1", "2", "3", "4", "history 9", "1", "2"]);
    }
}
