//! Group `control`: parsing a client's subscribe with 10 symbols, as JSON text
//! (`ControlParser::json`, simd-json on a scratch copy) and as a protobuf `ClientMessage`
//! (`ControlParser::protobuf`), against serde_json on an equivalent derived struct: alone,
//! and followed by the same symbol validation the parser does.
//!
//! `cargo bench --bench control_parse -- --warm-up-time 1 --measurement-time 3`

use std::collections::HashMap;
use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use prost::Message as _;
use serde::Deserialize;
use tickrelay::proto;
use tickrelay::session::control::{ControlParser, KeyRules, Selection};

fn control(c: &mut Criterion) {
    let symbols: Vec<String> = [
        "BTC-USD", "ETH-USD", "SOL-USD", "AAPL", "MSFT", "ES.FUT", "EUR/USD", "XAU:USD", "NVDA",
        "DOGE-USD",
    ]
    .map(str::to_owned)
    .to_vec();
    let json_text = format!(
        r#"{{"op":"subscribe","symbols":[{}]}}"#,
        symbols
            .iter()
            .map(|s| format!("\"{s}\""))
            .collect::<Vec<_>>()
            .join(",")
    );
    let protobuf_bytes = proto::ClientMessage {
        msg: Some(proto::client_message::Msg::Subscribe(proto::Symbols {
            symbols,
        })),
    }
    .encode_to_vec();

    let mut group = c.benchmark_group("control");
    group.throughput(Throughput::Elements(1));

    let mut parser = ControlParser::new(rules());
    let mut scratch = Vec::with_capacity(json_text.len());
    group.bench_function("json/subscribe_10", |b| {
        b.iter(|| {
            // simd-json rewrites its input: the session parses a copy of the frame too.
            scratch.clear();
            scratch.extend_from_slice(json_text.as_bytes());
            parser.json(black_box(&mut scratch)).expect("valid")
        });
    });
    group.bench_function("protobuf/subscribe_10", |b| {
        b.iter(|| parser.protobuf(black_box(&protobuf_bytes)).expect("valid"));
    });
    group.bench_function("serde_json_from_slice (baseline)", |b| {
        b.iter(|| {
            serde_json::from_slice::<RawControl>(black_box(json_text.as_bytes())).expect("valid")
        });
    });
    let rules = rules();
    group.bench_function("serde_json_from_slice+validate (baseline)", |b| {
        b.iter(|| {
            let raw: RawControl =
                serde_json::from_slice(black_box(json_text.as_bytes())).expect("valid");
            let names = raw.symbols.as_deref().unwrap_or_default();
            Selection::parse(names.iter().map(String::as_str), &rules).expect("valid")
        });
    });
    group.finish();
}

/// The same shape `ControlParser` accepts.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
#[allow(dead_code)]
struct RawControl {
    op: String,
    symbols: Option<Vec<String>>,
    id: Option<u64>,
    from: Option<HashMap<String, u64>>,
    interval_ms: Option<u64>,
}

/// `--max-symbols-per-client`'s default order of magnitude.
const LIMIT: usize = 1024;

/// The relay's default rules: 1,024 keys, no rate tiers named in the bench's symbols.
fn rules() -> KeyRules {
    KeyRules {
        limit: LIMIT,
        tiers: Default::default(),
    }
}

criterion_group!(benches, control);
criterion_main!(benches);
