//! The soak's churn: clients that come and go beside the measured ones, each slot cycling
//! through the ways a real client lives — a short session in each encoding, a resume from
//! where its last session stopped, subscribe / unsubscribe / snapshot by control message, a
//! permessage-deflate session, a reader that stalls, a connection dropped without a close,
//! and (when the relay has a key) a token refreshed mid-session — plus a channel of events
//! published beside the ticks. What they see is counted, not judged for loss: they exist to
//! make the relay allocate and free, so that a leak shows in its memory and fds over time.
//!
//! `counts` holds what the churn shares (its plan, its running totals), `sessions` the ways
//! one session lives, `slot` the thread, the slots that take those ways in turn, and the
//! events published beside the ticks.

mod counts;
mod sessions;
mod slot;

pub(crate) use counts::ChurnPlan;
pub(crate) use slot::Churn;
