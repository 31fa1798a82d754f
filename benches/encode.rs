//! Group `encode`: the per-tick cost of each encoding, on realistic varied ticks.
//!
//! - `json/write_tick` vs `json/serde_json_to_vec (baseline)`: the hand-written writer
//!   against serde_json on an equivalent derived struct.
//! - `protobuf/tick`: the prost `ServerMessage { tick }`.
//! - `frame/*`: what the sequencer pays once per tick and encoding (`Frames::frame`).
//! - `gzip/stream_frame`: one client's steady-state gzip stream (`GzipStream::frame`), what
//!   the shard pays per gzip client per tick; `gzip/each_tick_alone (baseline)`: a fresh
//!   gzip member per tick at the stream's own level (1) and window (2^12), so the pair
//!   differs only in sharing one stream per connection, which is what it shows;
//!   `gzip/raw_level{1,6} (comparison)`: a bare flate2 stream with the same window and sync
//!   flush at deflate levels 1 and 6, to show what the level costs and saves.
//!
//! - `deliver/*`: what the shard pays per delivery (`Encoder::tick`) for one client of each
//!   kind, on ticks whose shared JSON frame exists already (the sequencer built it):
//!   `deliver/json (baseline)` is the refcount bump every plain client costs,
//!   `deliver/deflate_takeover` a permessage-deflate client with context takeover (its own
//!   compressor, the relay's level and window), `deliver/deflate_no_takeover` one that asked
//!   for `server_no_context_takeover` (the thread's shared compressor, reset per message).
//!
//! Once per run it prints to stderr the average bytes per tick of each encoding (over 10,000
//! varied ticks after a warm-up, permessage-deflate included) and the memory one gzip
//! client's stream and one permessage-deflate client's encoder hold (RSS delta over many).
//!
//! `cargo bench --bench encode -- --warm-up-time 1 --measurement-time 3`

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use flate2::{Compress, Compression, FlushCompress};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use serde::Serialize;
use tickrelay::encode::deflate::{DeflateParams, DeflateStream};
use tickrelay::encode::gzip::GzipStream;
use tickrelay::encode::{Encoder, Encoding, Frames, Wire, json, protobuf};
use tickrelay::tick::{RawTick, Seq, Tick};

fn encode(c: &mut Criterion) {
    let ticks = market(TICKS, 7);
    // Memory first, each kind in a fresh process of this binary: once one kind's states
    // are freed, glibc raises its mmap threshold and reuses the heap, and the next kind
    // would look smaller than it is.
    if let Ok(kind) = std::env::var(MEMORY_CHILD) {
        match kind.as_str() {
            "gzip" => report_gzip_memory(&ticks),
            _ => report_deflate_memory(&ticks, kind == "deflate_no_takeover"),
        }
        // The child measures one kind and benchmarks nothing.
        return;
    }
    for kind in ["gzip", "deflate_takeover", "deflate_no_takeover"] {
        let status = std::env::current_exe()
            .and_then(|exe| {
                std::process::Command::new(exe)
                    .args(std::env::args().skip(1))
                    .env(MEMORY_CHILD, kind)
                    .status()
            })
            .expect("run this bench binary again for one memory report");
        assert!(status.success(), "the {kind} memory report failed");
    }
    report_bytes(&ticks);

    let mut group = c.benchmark_group("encode");
    group.throughput(Throughput::Elements(1));

    let mut i = 0;
    group.bench_function("json/write_tick", |b| {
        b.iter(|| {
            let tick = &ticks[next(&mut i)];
            // As `Frames::frame` does: a fresh buffer per tick.
            let mut out = Vec::with_capacity(256);
            json::write_tick(&mut out, "tick", black_box(tick));
            out
        });
    });
    group.bench_function("json/serde_json_to_vec (baseline)", |b| {
        b.iter(|| {
            let tick = SerdeTick::from(&ticks[next(&mut i)]);
            serde_json::to_vec(black_box(&tick)).expect("plain struct")
        });
    });
    group.bench_function("protobuf/tick", |b| {
        b.iter(|| protobuf::tick(black_box(&ticks[next(&mut i)])));
    });
    for (name, wire) in [
        ("frame/json", Wire::Json),
        ("frame/protobuf", Wire::Protobuf),
    ] {
        group.bench_function(name, |b| {
            b.iter_batched(
                || Frames::new(ticks[next(&mut i)].clone()),
                |frames| {
                    black_box(frames.frame(wire));
                    frames
                },
                BatchSize::SmallInput,
            );
        });
    }

    let payloads = json_payloads(&ticks);
    let mut stream = warmed_stream(&payloads);
    group.bench_function("gzip/stream_frame", |b| {
        b.iter(|| stream.frame(black_box(&payloads[next(&mut i)])));
    });
    group.bench_function("gzip/each_tick_alone (baseline)", |b| {
        b.iter(|| gzip_alone(black_box(&payloads[next(&mut i)])));
    });
    for level in [1, 6] {
        let mut raw = LevelStream::warmed(level, &payloads);
        group.bench_function(format!("gzip/raw_level{level} (comparison)"), |b| {
            b.iter(|| raw.frame(black_box(&payloads[next(&mut i)])));
        });
    }

    let framed = framed(&ticks);
    for (name, mut encoder) in [
        ("deliver/json (baseline)", Encoder::new(Encoding::Json)),
        ("deliver/deflate_takeover", deflate_encoder(false)),
        ("deliver/deflate_no_takeover", deflate_encoder(true)),
    ] {
        for frames in framed.iter().cycle().take(WARM_UP) {
            encoder.tick(frames);
        }
        group.bench_function(name, |b| {
            b.iter(|| encoder.tick(black_box(&framed[next(&mut i)])));
        });
    }
    group.finish();
}

/// The ticks as the sequencer hands them to shards: their shared JSON frame built.
fn framed(ticks: &[Tick]) -> Vec<Frames> {
    ticks
        .iter()
        .map(|tick| {
            let frames = Frames::new(tick.clone());
            frames.frame(Wire::Json);
            frames
        })
        .collect()
}

/// A JSON client's permessage-deflate encoder as the relay builds it (`--ws-deflate-min-bytes
/// 0`, the relay's window), with or without `server_no_context_takeover`.
fn deflate_encoder(no_context_takeover: bool) -> Encoder {
    let params = DeflateParams {
        no_context_takeover,
        ..DeflateParams::new()
    };
    Encoder::deflate(Encoding::Json, DeflateStream::new(params, 0))
}

/// A tick as serde would derive it: the same fields and names as `json::write_tick`.
#[derive(Serialize)]
struct SerdeTick<'a> {
    #[serde(rename = "type")]
    message: &'static str,
    symbol: &'a str,
    seq: u64,
    kind: &'static str,
    ts_ns: u64,
    recv_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ask: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid_size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ask_size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    venue: Option<&'a str>,
}

impl<'a> From<&'a Tick> for SerdeTick<'a> {
    fn from(tick: &'a Tick) -> Self {
        Self {
            message: "tick",
            symbol: tick.symbol.as_str(),
            seq: tick.seq.0,
            kind: tick.kind.as_str(),
            ts_ns: tick.ts_ns,
            recv_ns: tick.recv_ns,
            price: tick.price,
            size: tick.size,
            bid: tick.bid,
            ask: tick.ask,
            bid_size: tick.bid_size,
            ask_size: tick.ask_size,
            venue: tick.venue.as_deref(),
        }
    }
}

/// `count` ticks of a plausible market: 32 symbols with their own price levels and tick
/// sizes, 75% trades and 25% two-sided quotes, a venue on a third of them, nanosecond
/// timestamps a few microseconds apart, per-symbol seqs.
fn market(count: usize, seed: u64) -> Vec<Tick> {
    const SYMBOLS: [(&str, f64, f64); 8] = [
        ("BTC-USD", 43_250.0, 0.01),
        ("ETH-USD", 2_280.0, 0.01),
        ("SOL-USD", 101.0, 0.001),
        ("AAPL", 189.0, 0.01),
        ("MSFT", 411.0, 0.01),
        ("ES.FUT", 5_020.0, 0.25),
        ("EUR/USD", 1.0842, 0.00001),
        ("XAU:USD", 2_030.0, 0.1),
    ];
    const VENUES: [&str; 4] = ["XNAS", "ARCX", "coinbase", "CME"];
    let mut rng = SmallRng::seed_from_u64(seed);
    // 32 symbols: the 8 bases with suffixes (BTC-USD, BTC-USD.1, ...), each its own walk.
    let mut books: Vec<(String, f64, f64, u64)> = (0..32)
        .map(|n| {
            let (name, level, step) = SYMBOLS[n % SYMBOLS.len()];
            let name = match n / SYMBOLS.len() {
                0 => name.to_owned(),
                k => format!("{name}.{k}"),
            };
            (name, level, step, 0)
        })
        .collect();
    let mut ts_ns = 1_764_000_000_000_000_000u64;
    (0..count)
        .map(|_| {
            let book = rng.random_range(0..books.len());
            let (symbol, level, step, seq) = &mut books[book];
            let step = *step;
            *level += step * f64::from(rng.random_range(-3i32..=3));
            let round = |x: f64| (x / step).round() * step;
            let price = round(*level);
            *seq += 1;
            ts_ns += rng.random_range(200..20_000);
            let venue = rng
                .random_bool(0.33)
                .then(|| VENUES[rng.random_range(0..VENUES.len())].to_owned());
            let raw = if rng.random_bool(0.75) {
                RawTick {
                    symbol: symbol.clone(),
                    kind: Some("trade".into()),
                    price: Some(price),
                    size: Some(f64::from(rng.random_range(1u32..5_000)) / 1_000.0),
                    venue,
                    ts_ns,
                    ..RawTick::default()
                }
            } else {
                RawTick {
                    symbol: symbol.clone(),
                    kind: Some("quote".into()),
                    bid: Some(round(price - step)),
                    ask: Some(round(price + step)),
                    bid_size: Some(f64::from(rng.random_range(1u32..100_000)) / 100.0),
                    ask_size: Some(f64::from(rng.random_range(1u32..100_000)) / 100.0),
                    venue,
                    ts_ns,
                    ..RawTick::default()
                }
            };
            let mut tick = Tick::try_from(raw).expect("generated ticks are valid");
            tick.seq = Seq(*seq);
            tick.recv_ns = ts_ns + rng.random_range(5_000..50_000);
            tick
        })
        .collect()
}

fn json_payloads(ticks: &[Tick]) -> Vec<Vec<u8>> {
    ticks
        .iter()
        .map(|tick| Frames::new(tick.clone()).json_payload().to_vec())
        .collect()
}

/// A gzip stream past its first frames (gzip header, empty window).
fn warmed_stream(payloads: &[Vec<u8>]) -> GzipStream {
    let mut stream = GzipStream::new();
    for payload in payloads.iter().cycle().take(WARM_UP) {
        stream.frame(payload);
    }
    stream
}

/// A per-connection gzip stream like `GzipStream` (same window, sync flush per message) at
/// another deflate level: what the level costs and saves.
struct LevelStream {
    deflate: Compress,
    out: Vec<u8>,
}

impl LevelStream {
    fn warmed(level: u32, payloads: &[Vec<u8>]) -> Self {
        let mut stream = Self {
            deflate: Compress::new_gzip(Compression::new(level), STREAM_WINDOW_BITS),
            out: Vec::with_capacity(4096),
        };
        for payload in payloads.iter().cycle().take(WARM_UP) {
            stream.frame(payload);
        }
        stream
    }

    /// Compresses one message with a sync flush; returns the compressed length.
    fn frame(&mut self, payload: &[u8]) -> usize {
        self.out.clear();
        let before = self.deflate.total_in();
        self.deflate
            .compress_vec(payload, &mut self.out, FlushCompress::Sync)
            .expect("a live stream");
        // 4 KiB of room for a ~200-byte tick: one call always completes the flush.
        assert_eq!(self.deflate.total_in() - before, payload.len() as u64);
        assert!(self.out.len() < self.out.capacity());
        self.out.len()
    }
}

/// The naive alternative: every tick its own gzip member (header, fresh deflate state),
/// with the stream's level and window: a fair baseline differs from `GzipStream` only in
/// not keeping the stream (a level-6, 32 KiB-window member would also pay for the level
/// and for initialising the larger window).
fn gzip_alone(payload: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new_gzip(Compression::new(STREAM_LEVEL), STREAM_WINDOW_BITS);
    // Room for the member: 10 B header, 8 B trailer, and deflate's worst case (stored
    // blocks, 5 B each) on a payload this small.
    let mut out = Vec::with_capacity(payload.len() + 64);
    let status = deflate
        .compress_vec(payload, &mut out, FlushCompress::Finish)
        .expect("deflate into a Vec with room");
    assert_eq!(status, flate2::Status::StreamEnd, "the whole member fit");
    out
}

/// `encode::gzip`'s deflate level and window bits (private there; keep them in step).
const STREAM_LEVEL: u32 = 1;
const STREAM_WINDOW_BITS: u8 = 12;

/// Average frame bytes per tick for each encoding, over `MEASURED` ticks after `WARM_UP`.
fn report_bytes(ticks: &[Tick]) {
    let payloads = json_payloads(ticks);
    let mut stream = warmed_stream(&payloads);
    let mut levels = [
        (1, LevelStream::warmed(1, &payloads), 0),
        (6, LevelStream::warmed(6, &payloads), 0),
    ];
    let (mut json, mut protobuf, mut gzip, mut alone) = (0usize, 0usize, 0usize, 0usize);
    let framed = framed(ticks);
    let mut deflates = [(deflate_encoder(false), 0usize), (deflate_encoder(true), 0)];
    for (encoder, _) in &mut deflates {
        for frames in framed.iter().cycle().take(WARM_UP) {
            encoder.tick(frames);
        }
    }
    for frames in framed.iter().cycle().skip(WARM_UP).take(MEASURED) {
        for (encoder, total) in &mut deflates {
            *total += encoder.tick(frames).len();
        }
    }
    for (tick, payload) in ticks
        .iter()
        .zip(&payloads)
        .cycle()
        .skip(WARM_UP)
        .take(MEASURED)
    {
        let frames = Frames::new(tick.clone());
        json += frames.frame(Wire::Json).len();
        protobuf += frames.frame(Wire::Protobuf).len();
        gzip += stream.frame(payload).len();
        let member = gzip_alone(payload);
        alone += member.len() + header_len(member.len());
        for (_, raw, total) in &mut levels {
            let len = raw.frame(payload);
            *total += len + header_len(len);
        }
    }
    let per = |total: usize| total as f64 / MEASURED as f64;
    eprintln!(
        "encode: bytes per tick on the wire (WebSocket frame incl. header), {MEASURED} varied \
         ticks after {WARM_UP} warm-up: json {:.1}, protobuf {:.1}, gzip stream {:.1}, \
         gzip each tick alone {:.1}, permessage-deflate with context takeover {:.1}, \
         without {:.1}, {}",
        per(json),
        per(protobuf),
        per(gzip),
        per(alone),
        per(deflates[0].1),
        per(deflates[1].1),
        levels
            .iter()
            .map(|(level, _, total)| format!("raw stream at level {level} {:.1}", per(*total)))
            .collect::<Vec<_>>()
            .join(", "),
    );
}

/// Memory per gzip client: RSS (touched pages) and VmData (allocated address space) growth
/// over `count` fresh `GzipStream`s, after one frame each (the first frame allocates the
/// output arena), and after `frames` more each.
fn report_gzip_memory(ticks: &[Tick]) {
    let payloads = json_payloads(ticks);
    report_memory("gzip stream", GzipStream::new, |stream, n| {
        black_box(stream.frame(&payloads[n % payloads.len()]));
    });
}

/// Memory per permessage-deflate client, measured as for gzip: with context takeover (its
/// own compressor) or without (the thread's shared one).
fn report_deflate_memory(ticks: &[Tick], no_context_takeover: bool) {
    let framed = framed(ticks);
    let what = if no_context_takeover {
        "permessage-deflate client (no context takeover)"
    } else {
        "permessage-deflate client (context takeover)"
    };
    report_memory(
        what,
        || deflate_encoder(no_context_takeover),
        |encoder, n| {
            black_box(encoder.tick(&framed[n % framed.len()]));
        },
    );
}

/// RSS and VmData growth per item over `count` items made by `new`, after one `frame` each
/// and after `frames` more each (`frame` gets an index to pick its message by).
fn report_memory<S>(what: &str, new: impl Fn() -> S, mut frame: impl FnMut(&mut S, usize)) {
    // Under `cargo test --benches` (no `--bench`), a smaller run: this is a smoke test.
    let full = std::env::args().any(|a| a == "--bench");
    let (count, frames) = if full { (1_000, 100) } else { (50, 5) };
    let Some(before) = memory_kib() else {
        eprintln!("encode: /proc/self/status unreadable; {what} memory not measured");
        return;
    };
    let mut items: Vec<S> = (0..count).map(|_| new()).collect();
    let created = memory_kib().unwrap_or(before);
    for (n, item) in items.iter_mut().enumerate() {
        frame(item, n);
    }
    let first = memory_kib().unwrap_or(before);
    for round in 0..frames {
        for (n, item) in items.iter_mut().enumerate() {
            frame(item, n * 31 + round);
        }
    }
    let steady = memory_kib().unwrap_or(before);
    let per = |(rss, data): (u64, u64)| {
        let per = |now: u64, then: u64| now.saturating_sub(then) as f64 / count as f64;
        format!(
            "RSS {:.1} KiB / VmData {:.1} KiB",
            per(rss, before.0),
            per(data, before.1)
        )
    };
    eprintln!(
        "encode: memory per {what} ({count} of them): created: {}; after 1 frame: {}; \
         after {} frames: {}",
        per(created),
        per(first),
        frames + 1,
        per(steady),
    );
    drop(items);
}

/// The process's resident set and data segment (`VmRSS`, `VmData`), in KiB (Linux).
fn memory_kib() -> Option<(u64, u64)> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = status.lines().find(|l| l.starts_with(name))?;
        line.split_whitespace().nth(1)?.parse().ok()
    };
    Some((field("VmRSS:")?, field("VmData:")?))
}

/// RFC 6455 §5.2 server frame header length for a payload of `len` bytes.
fn header_len(len: usize) -> usize {
    match len {
        0..=125 => 2,
        126..=0xFFFF => 4,
        _ => 10,
    }
}

/// The next index into the tick set, cycling.
fn next(i: &mut usize) -> usize {
    *i = (*i + 1) % TICKS;
    *i
}

/// Set in the child processes that each measure one kind's memory (see `encode`).
const MEMORY_CHILD: &str = "TICKRELAY_BENCH_MEMORY";
/// Distinct ticks cycled through by the benches (more than a gzip window's worth).
const TICKS: usize = 4_096;
/// Ticks compressed before measuring a gzip stream (fills its window).
const WARM_UP: usize = 1_000;
/// Ticks measured for the bytes-per-tick report.
const MEASURED: usize = 10_000;

criterion_group!(benches, encode);
criterion_main!(benches);
