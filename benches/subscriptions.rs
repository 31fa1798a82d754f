//! `shard::subscriptions`: the symbol → sessions index at 100,000 sessions: subscribe,
//! unsubscribe and lookup (walking a symbol's subscribers, as fan-out does), per operation.

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use tickrelay::event::Key;
use tickrelay::shard::Subscriptions;
use tickrelay::tick::Symbol;

const SESSIONS: usize = 100_000;
const SYMBOLS: usize = 100;
const PER_SESSION: usize = 10;

fn symbols() -> Vec<Key> {
    (0..SYMBOLS)
        .map(|i| Key::Symbol(Symbol::parse(&format!("SYM{i:03}")).expect("valid")))
        .collect()
}

/// 100,000 sessions × 10 of 100 symbols (10,000 subscribers per symbol).
fn populated(symbols: &[Key]) -> Subscriptions {
    let mut subs = Subscriptions::new();
    for session in 0..SESSIONS {
        for k in 0..PER_SESSION {
            subs.insert(Some(&symbols[(session + k * 7) % SYMBOLS]), session);
        }
    }
    subs
}

fn bench(c: &mut Criterion) {
    let symbols = symbols();
    let mut subs = populated(&symbols);
    let mut group = c.benchmark_group("shard::subscriptions");

    group.throughput(Throughput::Elements(1));
    let mut session = 0;
    group.bench_function("unsubscribe + subscribe at 100k sessions", |b| {
        b.iter(|| {
            session = (session + 1) % SESSIONS;
            let symbol = &symbols[session % SYMBOLS];
            subs.remove(Some(symbol), session);
            subs.insert(Some(symbol), session)
        });
    });

    let subscribers = subs.count(&symbols[0]) as u64;
    group.throughput(Throughput::Elements(subscribers));
    group.bench_function("lookup: walk one symbol's subscribers", |b| {
        b.iter(|| subs.of(&symbols[0]).fold(0usize, |acc, key| acc ^ key));
    });

    // Baseline: the same walk over a plain Vec of keys (the floor for any index).
    let plain: Vec<usize> = subs.of(&symbols[0]).collect();
    group.bench_function("baseline: walk a Vec of the same keys", |b| {
        b.iter(|| plain.iter().fold(0usize, |acc, key| acc ^ key));
    });

    group.throughput(Throughput::Elements((SESSIONS * PER_SESSION) as u64));
    group.sample_size(10);
    group.bench_function("build: 1M subscriptions", |b| {
        b.iter(|| populated(&symbols))
    });
    group.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
