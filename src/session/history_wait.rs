//! On an edge, the wait before a subscribe, snapshot or resume: the keys' history is read
//! from the stream into the shard first, so the snapshot and the replay come from the
//! shard's own ring and end exactly where the live feed goes on (as on one box). A client
//! resuming in this history may come from an edge that was ahead of this one: the wait also
//! lasts until the shard holds its positions, so it is never answered with an older
//! snapshot (which it would have to read as a reset). Elsewhere, no wait.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use super::control::Positions;
use crate::event::Key;
use crate::shard::ShardCore;

/// Asks the edge to follow `keys` (and every symbol, with `all`), then waits, bounded, until
/// this shard holds the newest seq the stream had of each, and each of `positions` (a
/// resume's, when they are of this shard's history).
pub(super) async fn wait_for_history(
    core: &Rc<RefCell<ShardCore>>,
    all: bool,
    keys: Vec<Key>,
    positions: &Positions,
) {
    let follow = core.borrow().shared().follow.get().cloned();
    let Some(follow) = follow else { return };
    if !all && keys.is_empty() {
        return;
    }
    let mut newest = follow.warm(all, keys).await;
    if positions.epoch == Some(core.borrow().epoch()) {
        newest.extend(
            positions
                .iter()
                .map(|(key, seq)| (key.base().clone(), *seq)),
        );
    }
    let deadline = Instant::now() + SHARD_WAIT;
    loop {
        let behind = {
            let core = core.borrow();
            newest
                .iter()
                .any(|(key, seq)| core.last(key).is_none_or(|f| f.seq() < *seq))
        };
        if !behind || Instant::now() >= deadline {
            return;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Longest wait for the shard to take what the stream answered (its queue is ahead of it).
const SHARD_WAIT: Duration = Duration::from_secs(2);
const POLL: Duration = Duration::from_millis(2);

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::future::Future;
    use std::rc::Rc;
    use std::sync::Arc;
    use std::task::{Context, Poll, Waker};
    use std::time::Instant;

    use super::wait_for_history;
    use crate::config::Config;
    use crate::encode::Frames;
    use crate::event::Key;
    use crate::ingest::Inbox;
    use crate::session::control::Positions;
    use crate::shard::ShardCore;
    use crate::shared::Shared;
    use crate::tick::{Seq, Symbol, sequenced};

    /// A shard core; on an edge (`edge`), one whose follower has stopped, so each `warm`
    /// answers at once with nothing and only a resume's positions are waited for.
    fn core(edge: bool) -> Rc<RefCell<ShardCore>> {
        let (inbox, _receiver) = Inbox::bounded(16);
        let shared = Shared::new(Config::for_tests(), inbox);
        if edge {
            let (follow, _wants) = crate::nats::follow::channel();
            shared.follow.set(follow).expect("unset");
        }
        Rc::new(RefCell::new(ShardCore::new(0, Arc::new(shared))))
    }

    fn btc() -> Key {
        Key::Symbol(Symbol::parse("BTC").expect("a symbol"))
    }

    fn deliver(core: &Rc<RefCell<ShardCore>>, seq: u64) {
        let batch = vec![Arc::new(Frames::new(sequenced("BTC", seq)))].into();
        core.borrow_mut().deliver(&batch, Instant::now());
    }

    /// A resume from BTC's seq 3, of this core's history or (`foreign`) another.
    fn from_3(core: &Rc<RefCell<ShardCore>>, foreign: bool) -> Positions {
        let epoch = core.borrow().epoch();
        Positions {
            from: vec![(btc(), Seq(3))],
            epoch: Some(if foreign { epoch + 1 } else { epoch }),
        }
    }

    /// Whether the wait ends at its first poll (it never sleeps).
    fn at_once(core: &Rc<RefCell<ShardCore>>, all: bool, keys: Vec<Key>, at: &Positions) -> bool {
        let wait = std::pin::pin!(wait_for_history(core, all, keys, at));
        wait.poll(&mut Context::from_waker(Waker::noop()))
            .is_ready()
    }

    #[tokio::test]
    async fn a_resume_waits_until_the_shard_holds_its_position() {
        let core = core(true);
        let at = from_3(&core, false);
        deliver(&core, 2);
        let mut wait = Box::pin(wait_for_history(&core, false, vec![btc()], &at));
        let poll = wait.as_mut().poll(&mut Context::from_waker(Waker::noop()));
        assert!(poll == Poll::Pending, "the shard is at seq 2 of 3");
        deliver(&core, 3);
        wait.await;
        assert_eq!(core.borrow().last(&btc()).map(|f| f.seq()), Some(Seq(3)));
    }

    #[tokio::test]
    async fn a_resume_the_shard_holds_or_passed_does_not_wait() {
        let core = core(true);
        let at = from_3(&core, false);
        deliver(&core, 3);
        assert!(at_once(&core, false, vec![btc()], &at), "at seq 3");
        assert!(at_once(&core, true, Vec::new(), &at), "at seq 3, all");
        deliver(&core, 4);
        assert!(at_once(&core, false, vec![btc()], &at), "at seq 4");
    }

    #[tokio::test]
    async fn positions_of_another_history_or_no_key_wanted_or_no_edge_do_not_wait() {
        let edge = core(true);
        deliver(&edge, 2);
        assert!(at_once(&edge, false, vec![btc()], &from_3(&edge, true)));
        assert!(at_once(&edge, false, Vec::new(), &from_3(&edge, false)));
        let single = core(false);
        deliver(&single, 2);
        assert!(at_once(
            &single,
            false,
            vec![btc()],
            &from_3(&single, false)
        ));
    }

    #[tokio::test]
    async fn every_symbol_wanted_waits_for_the_positions_too() {
        let core = core(true);
        deliver(&core, 2);
        assert!(!at_once(&core, true, Vec::new(), &from_3(&core, false)));
    }
}
