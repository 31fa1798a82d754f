//! Group `derived`: what bars and 24-hour tickers cost the sequencer (`sequencer::derived`),
//! per tick, beside sequencing the same ticks without them.
//!
//! - `sequence/ticks (baseline)`: `Sequencer::sequence` of batches of 1,000 trades over 100
//!   symbols, each with a JSON subscriber (so each tick is encoded once, as in production),
//!   handed to one shard queue; bars off (`--bar-intervals off`).
//! - `sequence/ticks+bars`: the same with the default bars (`1s,1m,5m,1h`) and tickers: each
//!   trade goes into four bars, and the 1 s bars each trade closes (every tenth trade of a
//!   symbol here) are sequenced right after it.
//! - `engine/trade`: `Derived::trade` alone, per trade.
//! - `engine/timer_100_symbols`: one `Derived::on_timer` after a trade of each of 100
//!   symbols: 400 open-bar updates and 100 tickers built (throughput: per message).
//!
//! `cargo bench --bench derived -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tickrelay::config::{BarIntervals, Config};
use tickrelay::encode::Encoding;
use tickrelay::event::{Item, Key};
use tickrelay::metrics::Metrics;
use tickrelay::sequencer::derived::Derived;
use tickrelay::sequencer::{Interest, Sequencer, TickQueue, tick_queue};
use tickrelay::tick::{RawTick, Seq, Symbol, Tick};

const SYMBOLS: u64 = 100;
const BATCH: u64 = 1_000;
/// Event time of the first trade: a whole day.
const T0: u64 = 1_764_028_800_000_000_000;

/// Trade `n` of the run: symbols in turn, 1 ms of event time apart (so each symbol trades
/// every 100 ms and closes a 1 s bar every tenth trade).
fn trade(n: u64) -> Tick {
    let mut tick = Tick::try_from(RawTick {
        symbol: format!("S{:03}", n % SYMBOLS),
        price: Some(100.0 + (n % 37) as f64 / 4.0),
        size: Some(1.0 + (n % 5) as f64),
        ts_ns: T0 + n * 1_000_000,
        ..RawTick::default()
    })
    .expect("a valid trade");
    tick.recv_ns = tick.ts_ns + 50_000;
    tick
}

fn sequencer(bars: bool) -> (Sequencer, TickQueue) {
    let (sender, queue) = tick_queue(16);
    let interest = Arc::new(Interest::default());
    for s in 0..SYMBOLS {
        let key = Key::Symbol(Symbol::parse(&format!("S{s:03}")).expect("valid"));
        interest.add(Some(&key), Encoding::Json);
    }
    let mut config = Config::for_tests().derived;
    if !bars {
        config.bar_intervals = BarIntervals::parse("off").expect("off parses");
    }
    let sequencer = Sequencer::new(vec![sender], interest, Arc::new(Metrics::new(1)), 1_000_000)
        .deriving(&config);
    (sequencer, queue)
}

fn derived(c: &mut Criterion) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .build()
        .expect("a runtime");
    let mut group = c.benchmark_group("derived");

    group.throughput(Throughput::Elements(BATCH));
    for (name, bars) in [
        ("sequence/ticks (baseline)", false),
        ("sequence/ticks+bars", true),
    ] {
        let (mut sequencer, queue) = sequencer(bars);
        let mut n = 0;
        group.bench_function(name, |b| {
            b.iter_batched(
                || {
                    let batch: Vec<Item> = (n..n + BATCH).map(|i| Item::Tick(trade(i))).collect();
                    n += BATCH;
                    batch
                },
                |batch| {
                    runtime.block_on(sequencer.sequence(batch));
                    black_box(queue.try_take().expect("one batch handed on"))
                },
                BatchSize::SmallInput,
            );
        });
    }

    group.throughput(Throughput::Elements(1));
    let config = Config::for_tests().derived;
    let mut engine = Derived::new(&config, Arc::new(Metrics::new(1))).expect("bars on");
    let mut out = Vec::new();
    let mut n = 0;
    group.bench_function("engine/trade", |b| {
        b.iter_batched_ref(
            || {
                n += 1;
                let mut tick = trade(n);
                tick.seq = Seq(n);
                tick
            },
            |tick| {
                engine.trade(black_box(tick), &mut out);
                out.clear();
            },
            BatchSize::SmallInput,
        );
    });

    group.throughput(Throughput::Elements(SYMBOLS * 5));
    group.bench_function("engine/timer_100_symbols", |b| {
        b.iter_custom(|iters| {
            let mut timed = Duration::ZERO;
            for _ in 0..iters {
                // One trade of each symbol since the last timer: every open bar and ticker
                // has something to send. Only the timer's work is timed.
                for _ in 0..SYMBOLS {
                    n += 1;
                    let mut tick = trade(n);
                    tick.seq = Seq(n);
                    engine.trade(&tick, &mut out);
                }
                out.clear();
                let now = T0 + n * 1_000_000;
                let start = Instant::now();
                engine.on_timer(black_box(now), &mut out);
                timed += start.elapsed();
                black_box(out.len());
                out.clear();
            }
            timed
        });
    });
    group.finish();
}

criterion_group!(benches, derived);
criterion_main!(benches);
