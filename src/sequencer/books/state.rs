//! What the sequencer keeps per book ([`BookState`]) and per depth ([`View`]), shared by the
//! code that applies updates and the code that turns them into messages.

use std::sync::Arc;
use std::time::Instant;

use crate::book::{Book, BookChannel, BookUpdate};
use crate::sequencer::interest::SymbolInterest;
use crate::tick::Seq;

/// One book and what the sequencer tracks of it.
#[derive(Debug)]
pub(super) struct BookState {
    pub(super) book: Book,
    pub(super) seq: Seq,
    /// Following: an update was missed; nothing is sent until a whole book comes.
    pub(super) broken: bool,
    /// One per `--book-depths` depth, ascending, then the full book.
    pub(super) views: Vec<View>,
    pub(super) since_checkpoint: u32,
    pub(super) checkpointed_at: Instant,
    /// Following: the newest checkpoint ahead of the book, for a gap.
    pub(super) checkpoint: Option<BookUpdate>,
    /// Following a broken book: the updates read since, for the whole book to come.
    pub(super) behind: Vec<BookUpdate>,
}

/// One depth's channel of a book, and who wants it.
#[derive(Debug)]
pub(super) struct View {
    pub(super) channel: BookChannel,
    pub(super) interest: Arc<SymbolInterest>,
}
