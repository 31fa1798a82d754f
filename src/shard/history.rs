//! A new history on an edge: the stream was deleted and a sequencer began another one, with
//! a new epoch. Part of [`ShardCore`]'s impl. The shard switches between two batches, where
//! the sequencer put the switch in its queue: every item before it was of the old history,
//! every item after it is of the new one. So a client gets `reset` for each key it follows
//! after the last old seq it was sent and before the first new one, and stays connected.

use std::time::Instant;

use super::ShardCore;
use super::books::BookCopies;
use crate::event::Key;

impl ShardCore {
    /// Serves the history `epoch` from now on: every client is sent `reset` (naming the new
    /// epoch) for each key it follows, by name or through `*` (every symbol this shard
    /// holds), and then the new history's items as they arrive; everything the shard kept of
    /// the old history (replay rings and last values, book copies, the tiers' last frames
    /// and pending changes, what a conflating client skipped) is dropped, so no snapshot,
    /// replay or catch-up can send an old seq again. `welcome` and resumes name `epoch`.
    pub fn new_history(&mut self, epoch: u64, now: Instant) {
        if epoch == self.epoch {
            return;
        }
        let mut symbols: Vec<Key> = self
            .rings
            .keys()
            .filter(|key| key.in_wildcard())
            .cloned()
            .collect();
        symbols.sort();
        for (session, client) in &mut self.clients {
            client.feed.forget_history();
            let wildcard = symbols.iter().filter(|_| client.all);
            // `*` holds no named symbol (subscribe drops them): no key is reset twice.
            for key in client.symbols.iter().chain(wildcard) {
                client.feed.reset(key, epoch, now);
            }
            if !client.feed.dirty {
                client.feed.dirty = true;
                self.dirty.push(session);
            }
        }
        self.rings.clear();
        self.books = BookCopies::default();
        self.throttle.forget_history();
        self.trimmed_depth = self.shared.config.replay_depth;
        self.epoch = epoch;
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use super::super::testkit::{Bench, briefs, symbol, tick};
    use crate::config::Config;

    #[tokio::test]
    async fn a_new_history_resets_each_key_a_client_follows_once_and_the_same_one_nothing() {
        let mut bench = Bench::new(Config::for_tests()).await;
        let mut named = bench.client().await;
        let mut all = bench.client().await;
        bench.core.subscribe(named.key, false, &[symbol("BTC")]);
        bench.core.subscribe(all.key, true, &[]);
        bench.deliver(&[tick("ETH", 1), tick("BTC", 1)]);
        assert_eq!(briefs(&named.messages(1).await), ["tick BTC 1"]);
        assert_eq!(briefs(&all.messages(2).await), ["tick ETH 1", "tick BTC 1"]);
        let epoch = bench.core.epoch() + 1;
        bench.core.new_history(epoch, Instant::now());
        bench.deliver(&[]);
        let reset = named.messages(1).await;
        assert_eq!(briefs(&reset), ["reset BTC"]);
        assert_eq!(reset[0]["epoch"].as_u64(), Some(epoch));
        // Every symbol the shard held, through `*`, in order.
        assert_eq!(briefs(&all.messages(2).await), ["reset BTC", "reset ETH"]);
        assert_eq!(bench.core.epoch(), epoch);
        // The history it serves already: nothing, and the new history's seqs go on.
        bench.core.new_history(epoch, Instant::now());
        bench.deliver(&[tick("BTC", 1)]);
        assert_eq!(briefs(&named.messages(1).await), ["tick BTC 1"]);
        assert_eq!(briefs(&all.messages(1).await), ["tick BTC 1"]);
        assert!(named.rest().await.is_empty());
    }
}
