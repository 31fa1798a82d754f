//! The messages a book update becomes: a snapshot or the changes of every view (each
//! `--book-depths` depth and the full book), each with its checksum, and the checkpoints.

use std::sync::Arc;
use std::time::Instant;

use super::state::{BookState, View};
use crate::book::{Book, BookKind, BookUpdate, Changes, Depth, Level, Side, views};
use crate::encode::{Frames, Wire};
use crate::event::Item;
use crate::sequencer::interest::Interest;

/// Records the top `depth` levels of each side before an update.
pub(super) fn remember_top(book: &Book, depth: usize, before: &mut (Vec<Level>, Vec<Level>)) {
    before.0.clear();
    before.0.extend(book.levels(Side::Bids, depth));
    before.1.clear();
    before.1.extend(book.levels(Side::Asks, depth));
}

/// Appends a snapshot of every view (a book started or replaced).
pub(super) fn emit_snapshots(
    interest: &Interest,
    state: &BookState,
    source: &BookUpdate,
    out: &mut Vec<Arc<Frames>>,
) {
    for view in &state.views {
        let depth = view.channel.depth().levels();
        let top = state.book.top(depth);
        let message = message(view, state, BookKind::Snapshot, top, source);
        push(interest, view, message, out);
    }
}

/// Appends every view's delta: the changes within its depth (a level leaving the top N with
/// the one entering it), every change for the full book.
pub(super) fn emit_deltas(
    interest: &Interest,
    state: &BookState,
    changes: &Changes,
    (before, deepest): (&(Vec<Level>, Vec<Level>), usize),
    source: &BookUpdate,
    out: &mut Vec<Arc<Frames>>,
) {
    let after_bids: Vec<Level> = state.book.levels(Side::Bids, deepest).collect();
    let after_asks: Vec<Level> = state.book.levels(Side::Asks, deepest).collect();
    for view in &state.views {
        let changed = match view.channel.depth() {
            Depth::Full => changes.clone(),
            Depth::Top(n) => {
                let n = n as usize;
                let mut within = Changes::default();
                let cut = |levels: &[Level]| levels.len().min(n);
                views::diff(
                    Side::Bids,
                    &before.0[..cut(&before.0)],
                    &after_bids[..cut(&after_bids)],
                    &mut within.bids,
                );
                views::diff(
                    Side::Asks,
                    &before.1[..cut(&before.1)],
                    &after_asks[..cut(&after_asks)],
                    &mut within.asks,
                );
                within
            }
        };
        let message = message(view, state, BookKind::Delta, changed, source);
        push(interest, view, message, out);
    }
}

fn message(
    view: &View,
    state: &BookState,
    kind: BookKind,
    levels: Changes,
    source: &BookUpdate,
) -> BookUpdate {
    BookUpdate {
        channel: view.channel.clone(),
        seq: state.seq,
        kind,
        bids: levels.bids,
        asks: levels.asks,
        checksum: state.book.checksum(view.channel.depth().levels()),
        ts_ns: source.ts_ns,
        recv_ns: source.recv_ns,
        from_seq: None,
    }
}

/// Wraps a view's message and encodes it into the encodings its subscribers use.
fn push(interest: &Interest, view: &View, message: BookUpdate, out: &mut Vec<Arc<Frames>>) {
    let frames = Frames::of(Item::Book(message));
    for wire in [Wire::Json, Wire::Protobuf] {
        if interest.wants(&view.interest, false, wire) {
            frames.frame(wire);
        }
    }
    out.push(Arc::new(frames));
}

/// Appends a checkpoint of the whole book (for the stream and the shards' copies; no client
/// receives it, so it is not encoded here).
pub(super) fn push_checkpoint(state: &mut BookState, now: Instant, out: &mut Vec<Arc<Frames>>) {
    let full = state.views.last().expect("every book has its full view");
    let top = state.book.top(usize::MAX);
    let checkpoint = BookUpdate {
        channel: full.channel.clone(),
        seq: state.seq,
        kind: BookKind::Checkpoint,
        bids: top.bids,
        asks: top.asks,
        checksum: state.book.checksum(usize::MAX),
        ts_ns: crate::tick::now_ns(),
        recv_ns: crate::tick::now_ns(),
        from_seq: None,
    };
    out.push(Arc::new(Frames::of(Item::Book(checkpoint))));
    state.since_checkpoint = 0;
    state.checkpointed_at = now;
}
