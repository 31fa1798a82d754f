//! The modes, end to end: start (or find) the relay, open the clients, publish, drain, collect,
//! judge, report.
//!
//! ```text
//! plan_clients ──▶ workers (client/) ◀── collect ──┐
//!                    ▲ frames                       │
//! publisher ──ingest──▶ relay ──WebSocket───────────┘ coordinator: phases ──▶ verdict
//! ```
//!
//! `args` holds the options and their checks, `plan` who the clients are, `setup` bringing the
//! relay and the clients up, `coordinator` a run in progress (welcomes, phases, drain,
//! collection), `teardown` the last figures and the closing, `verdict` what counts as clean,
//! `bounds` the open-file limit and the `--max-time` watchdog, `progress` the spinner; `run`
//! sequences them and runs each mode's phases. `compare`, `stuck` and `soak` (with the
//! clients that come and go beside the measured ones, `churn`) build on `run`'s parts;
//! `tiers` (rate-tier clients beside raw ones) and `books` (order books, then ticks) run it
//! twice with `Feeds`, and `groups` counts what each kind of client received.
//!
//! Expected deliveries are exact because every client is welcomed before the first tick is
//! published: a client expects every tick of its symbols published while it was open.

mod args;
mod books;
mod bounds;
mod churn;
mod compare;
mod coordinator;
mod groups;
mod plan;
mod progress;
mod run;
mod setup;
mod soak;
mod stuck;
mod teardown;
mod tiers;
mod verdict;

pub use args::{Batch, BookLoad, Feeds, Mix, Mode, RampArgs, RunArgs, SlowArgs, parse_duration};
pub use books::{BooksArgs, BooksPair, books};
pub use compare::{CompareArgs, Shape, compare, round_order, round_tag, suffixed};
pub use plan::plan_clients;
pub use run::run;
pub use soak::{SoakArgs, soak};
pub use stuck::{StuckArgs, StuckPair, half_file, stuck};
pub use tiers::{TiersArgs, TiersPair, tiers};
