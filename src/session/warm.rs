//! On an edge, the wait before a subscribe or resume: the keys' history is read from the
//! stream into the shard first, so the snapshot and the replay come from the shard's own
//! ring and end exactly where the live feed goes on (as on one box). Elsewhere, no wait.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;

use super::control::Control;
use super::dispatch::{self, Session};
use super::wire::FrameReader;
use crate::event::Key;
use crate::shard::ShardCore;

/// The keys (and `*`) a control message must wait for on an edge; `None` elsewhere, and
/// for messages that read no history.
pub(super) fn wants(core: &ShardCore, control: &Control) -> Option<(bool, Vec<Key>)> {
    core.shared().follow.get()?;
    match control {
        Control::Subscribe(selection) | Control::Snapshot(selection) => {
            Some((selection.all, selection.keys()))
        }
        Control::Resume(positions) => Some((
            false,
            positions.iter().map(|(key, _)| key.clone()).collect(),
        )),
        _ => None,
    }
}

/// Serves the control message the session holds (and any held after it, from the input
/// that followed): waits for its keys' history, applies it, reads on. Returns whether the
/// client has closed.
pub(super) async fn held(
    core: &Rc<RefCell<ShardCore>>,
    session: &mut Session,
    reader: &mut FrameReader,
    input: &mut BytesMut,
    mut closed: bool,
) -> bool {
    while !closed && let Some(control) = &session.held {
        let wanted = wants(&core.borrow(), control);
        if let Some((all, keys)) = wanted {
            ahead(core, all, keys).await;
        }
        if let Some(control) = session.held.take() {
            let mut core = core.borrow_mut();
            dispatch::apply(&mut core, session, *control, Instant::now());
            core.flush(session.key);
        }
        closed = !dispatch::handle_input(core, session, reader, input);
    }
    closed
}

/// Asks the edge to follow `keys` (and every symbol, with `all`), then waits, bounded, until
/// this shard holds the newest seq the stream had of each.
pub(super) async fn ahead(core: &Rc<RefCell<ShardCore>>, all: bool, keys: Vec<Key>) {
    let follow = core.borrow().shared().follow.get().cloned();
    let Some(follow) = follow else { return };
    if !all && keys.is_empty() {
        return;
    }
    let newest = follow.warm(all, keys).await;
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
