//! Group `book`: what an order-book update costs the sequencer, beside what a tick costs it.
//!
//! - `sequence/delta`: one publisher delta (a few levels near the top of a book of 100 levels
//!   a side) applied and turned into its four messages (depths 10, 25, 100 and the full
//!   book, each with its changes and checksum), not encoded (no subscriber).
//! - `sequence/delta+json`: the same, each message encoded once into its JSON frame (what
//!   the sequencer pays when every depth has JSON subscribers).
//! - `tick/json (baseline)`: one tick wrapped and encoded into its JSON frame.
//!
//! Per delivery a book message costs the shard what a tick does (a refcount bump of the
//! shared frame: `benches/fanout.rs`). Once per run it prints to stderr the memory one
//! book of 100 levels a side holds (RSS delta over many, the sequencer's `Book`; each shard
//! keeps a copy of the same size).
//!
//! `cargo bench --bench book -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;
use std::time::Instant;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use rust_decimal::Decimal;
use tickrelay::book::{Book, BookChannel, BookKind, BookUpdate, Level};
use tickrelay::config::BookConfig;
use tickrelay::encode::{Frames, Wire};
use tickrelay::metrics::Metrics;
use tickrelay::sequencer::{Books, Interest};
use tickrelay::tick::{RawTick, Symbol, Tick};

fn book(c: &mut Criterion) {
    report_memory();
    let mut group = c.benchmark_group("book");
    group.throughput(Throughput::Elements(1));
    for encode in [false, true] {
        let name = if encode {
            "sequence/delta+json"
        } else {
            "sequence/delta"
        };
        group.bench_function(name, |b| {
            let (mut books, mut deltas) = started();
            let mut out = Vec::with_capacity(8);
            b.iter_batched(
                || deltas.next().expect("endless"),
                |delta| {
                    out.clear();
                    books
                        .sequence(delta, true, Instant::now(), &mut out)
                        .expect("the bench's deltas apply");
                    if encode {
                        for frames in &out {
                            black_box(frames.frame(Wire::Json));
                        }
                    }
                    black_box(out.len())
                },
                BatchSize::SmallInput,
            );
        });
    }
    group.bench_function("tick/json (baseline)", |b| {
        let tick = Tick::try_from(RawTick {
            symbol: "BTC-USD".into(),
            price: Some(43_250.5),
            size: Some(0.25),
            ts_ns: 1,
            ..RawTick::default()
        })
        .expect("a valid tick");
        b.iter_batched(
            || tick.clone(),
            |tick| {
                let frames = Frames::new(tick);
                black_box(frames.frame(Wire::Json).len())
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();
}

/// Books holding one book of 100 levels a side, and an endless stream of deltas for it.
fn started() -> (Books, impl Iterator<Item = BookUpdate>) {
    let mut books = Books::new(
        &BookConfig::default(),
        Arc::new(Interest::default()),
        Arc::new(Metrics::new(1)),
    );
    let channel = BookChannel::full(Symbol::parse("BTC-USD").expect("valid"));
    let (bids, asks) = levels(100);
    let snapshot = BookUpdate::input(channel.clone(), BookKind::Snapshot, bids, asks, 1);
    books
        .sequence(snapshot, true, Instant::now(), &mut Vec::new())
        .expect("the bench's snapshot applies");
    let mut rng = SmallRng::seed_from_u64(3);
    let deltas = std::iter::repeat_with(move || {
        // Two changes a side within the top 30 levels; a size of 0 now and then.
        let mut side = |bid: bool| -> Vec<Level> {
            (0..2)
                .map(|_| {
                    let offset = rng.random_range(0..30i64);
                    let price = if bid {
                        4_325_000 - offset
                    } else {
                        4_325_001 + offset
                    };
                    let size = if rng.random_bool(0.2) {
                        0
                    } else {
                        rng.random_range(1..50_000i64)
                    };
                    Level {
                        price: Decimal::new(price, 2),
                        size: Decimal::new(size, 3).normalize(),
                    }
                })
                .collect()
        };
        let (bids, asks) = (side(true), side(false));
        BookUpdate::input(channel.clone(), BookKind::Delta, bids, asks, 1)
    });
    (books, deltas)
}

/// `n` levels a side around 43,250.00.
fn levels(n: i64) -> (Vec<Level>, Vec<Level>) {
    let level = |price: i64, size: i64| Level {
        price: Decimal::new(price, 2).normalize(),
        size: Decimal::new(size, 3).normalize(),
    };
    let bids = (0..n)
        .map(|i| level(4_325_000 - i, 1_000 + i * 7))
        .collect();
    let asks = (0..n)
        .map(|i| level(4_325_001 + i, 2_000 + i * 3))
        .collect();
    (bids, asks)
}

/// Prints the resident memory of one 100-level-a-side book (RSS delta over 2,000 books).
fn report_memory() {
    const BOOKS: usize = 2_000;
    let (bids, asks) = levels(100);
    let before = rss_bytes();
    let held: Vec<Book> = (0..BOOKS)
        .map(|_| Book::from_levels(&bids, &asks, 1_000).expect("a valid book"))
        .collect();
    let after = rss_bytes();
    eprintln!(
        "book: one book of 100 levels a side holds ~{} bytes (RSS delta over {BOOKS})",
        after.saturating_sub(before) / BOOKS as u64
    );
    drop(black_box(held));
}

fn rss_bytes() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap_or_default();
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .and_then(|p| p.parse().ok())
        .unwrap_or(0);
    pages * 4096
}

criterion_group!(benches, book);
criterion_main!(benches);
