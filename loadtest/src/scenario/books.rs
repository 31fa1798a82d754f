//! What order books cost beside ticks, both runs in one invocation: `--depth-clients` clients
//! on `book:SYM:--depth` and `--full-clients` on `book:SYM` (every level), each on
//! `--symbols-per-client` of `--symbols` books loaded `--levels` deep, while `--rate` book
//! updates per second in total (over all symbols) are published; then the same clients on
//! the same symbols' ticks at the same rate. Each run has a relay started afresh. A book
//! message is counted like a tick of its symbol (one per book seq on every depth, gap-free),
//! so deliveries, loss and latency (`ts_ns` as published, passed through) compare directly;
//! the books' memory is read before any client connects.

use anyhow::{Result, ensure};

use super::args::{BookLoad, Feeds, Mix, Mode, RampArgs, RunArgs, SlowArgs};
use super::run::run;
use super::stuck::half_file;
use crate::publisher::MAX_LEVELS;
use crate::reference::Server;
use crate::report::RunReport;

/// `books` options (`--clients` does not apply: the clients are these).
#[derive(Clone, Debug, clap::Args)]
pub struct BooksArgs {
    /// Clients on `book:SYM:DEPTH` (DEPTH from --depth).
    #[arg(long, default_value_t = 1000)]
    pub depth_clients: usize,
    /// Clients on `book:SYM`, every level.
    #[arg(long, default_value_t = 100)]
    pub full_clients: usize,
    /// The depth of the depth clients: one of the relay's --book-depths (10, 25, 100).
    #[arg(long, default_value_t = 10)]
    pub depth: u32,
    /// Levels a side of each book's snapshot.
    #[arg(long, default_value_t = 100)]
    pub levels: u32,
}

/// The two runs' reports: books, then ticks.
#[derive(Debug)]
pub struct BooksPair {
    pub books: RunReport,
    pub ticks: RunReport,
}

/// Runs books then ticks; `done` sees each report as its run ends, named `books` or `ticks`.
pub fn books(
    args: &RunArgs,
    books: &BooksArgs,
    mut done: impl FnMut(&str, &RunReport) -> Result<()>,
) -> Result<BooksPair> {
    let clients = books.depth_clients + books.full_clients;
    ensure!(
        clients > 0,
        "--depth-clients plus --full-clients must be at least 1"
    );
    ensure!(
        args.spawn.is_some(),
        "books needs --spawn [PATH]: each run has a relay started afresh"
    );
    ensure!(
        args.server == Server::Relay,
        "order books are the relay's: not with --server {}",
        args.server.name()
    );
    ensure!(
        (1..=MAX_LEVELS).contains(&books.levels),
        "--levels {} must be 1..={MAX_LEVELS}",
        books.levels
    );
    ensure!(books.depth > 0, "--depth must be at least 1");
    let feeds = Feeds {
        books: Some(BookLoad {
            levels: books.levels,
            depth_clients: books.depth_clients,
            depth: books.depth,
        }),
        ..Feeds::default()
    };
    eprintln!(
        "loadtest books: {} clients at depth {} and {} at full depth, {} books {} levels deep (books)",
        books.depth_clients, books.depth, books.full_clients, args.symbols, books.levels
    );
    let book_run = run_half(args, "books", clients, feeds)?;
    done("books", &book_run)?;
    eprintln!("loadtest books: the same {clients} clients on ticks at the same rate (ticks)");
    let ticks = run_half(args, "ticks", clients, Feeds::default())?;
    done("ticks", &ticks)?;
    Ok(BooksPair {
        books: book_run,
        ticks,
    })
}

fn run_half(args: &RunArgs, name: &str, clients: usize, feeds: Feeds) -> Result<RunReport> {
    let base = args.label.clone().unwrap_or_else(|| "books".to_owned());
    let half = RunArgs {
        clients,
        feeds,
        mix: Mix::json_only(),
        label: Some(format!("{base}-{name}")),
        relay_log: args.relay_log.as_deref().map(|p| half_file(p, name)),
        ..args.clone()
    };
    run(
        Mode::Steady,
        &half,
        &RampArgs::unused(),
        &SlowArgs::unused(),
    )
}
