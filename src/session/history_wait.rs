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
