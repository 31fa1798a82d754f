//! `shard::fanout`: one tick to 10,000 in-memory sessions of one shard — the production hot
//! loop (`fan_out_batch`) appending the shared frame to each session's outbox — reported
//! per delivery. Baseline in the same group: what a naive relay does, serializing the
//! tick once per client.

use std::time::Duration;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use tickrelay::encode::{Encoding, Wire, json};

#[path = "support/fanout.rs"]
mod setup;

use setup::{SESSIONS, fan_out, shard, tick};

fn bench(c: &mut Criterion) {
    let mut group = c.benchmark_group("shard::fanout");
    group.throughput(Throughput::Elements(SESSIONS as u64));

    let mut json_shard = shard(&[Encoding::Json]);
    group.bench_function("one tick to 10k json sessions", |b| {
        b.iter_custom(|iters| fan_out(&mut json_shard, iters))
    });

    let mut mixed = shard(
        &[Encoding::Json; 7]
            .iter()
            .chain(&[Encoding::Protobuf; 2])
            .chain(&[Encoding::Gzip])
            .copied()
            .collect::<Vec<_>>(),
    );
    group.bench_function("one tick to 10k sessions json70/pb20/gzip10", |b| {
        b.iter_custom(|iters| fan_out(&mut mixed, iters))
    });

    // Baseline: serialize per client (what a loop of `send_json` per socket does).
    group.bench_function("baseline: encode json per client", |b| {
        b.iter_batched(
            || tick(1),
            |frames| {
                let mut total = 0;
                for _ in 0..SESSIONS {
                    let mut out = Vec::with_capacity(256);
                    json::write_tick(&mut out, "tick", frames.tick().expect("a tick"));
                    total += out.len();
                }
                total
            },
            BatchSize::SmallInput,
        );
    });
    group.finish();

    // The floor under every delivery on this box: one small write to a loopback TCP socket
    // whose peer keeps reading. On loopback the kernel also runs the receiver's TCP
    // processing inside the writer's syscall, as it does for the relay's writes.
    let mut floor = c.benchmark_group("shard::fanout::floor");
    floor.throughput(Throughput::Elements(1));
    let (mut writers, readers) = loopback_pairs(64);
    let frame = tick(1).frame(Wire::Json).clone();
    // Measured in the writing thread's CPU time, like the relay's CPU per delivery (wall
    // time here would mostly measure the 64 reader threads taking turns on 2 cores).
    floor.bench_function(
        "baseline: one write syscall per delivery (loopback TCP, 64 peers, thread CPU time)",
        |b| {
            b.iter_custom(|iters| {
                let start = thread_cpu();
                for i in 0..iters as usize {
                    std::io::Write::write_all(&mut writers[i % 64], &frame)
                        .expect("peer is reading");
                }
                thread_cpu() - start
            });
        },
    );
    floor.finish();
    drop(writers);
    for reader in readers {
        let _ = reader.join();
    }
}

fn thread_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ThreadCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

/// `n` connected loopback TCP pairs; each peer is drained by its own thread until EOF.
fn loopback_pairs(n: usize) -> (Vec<std::net::TcpStream>, Vec<std::thread::JoinHandle<()>>) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = listener.local_addr().expect("addr");
    let mut writers = Vec::new();
    let mut readers = Vec::new();
    for _ in 0..n {
        let writer = std::net::TcpStream::connect(addr).expect("connect");
        writer.set_nodelay(true).expect("nodelay");
        let (mut peer, _) = listener.accept().expect("accept");
        readers.push(std::thread::spawn(move || {
            let mut sink = [0u8; 65536];
            while matches!(std::io::Read::read(&mut peer, &mut sink), Ok(n) if n > 0) {}
        }));
        writers.push(writer);
    }
    (writers, readers)
}

criterion_group!(benches, bench);
criterion_main!(benches);
