//! `GET /health`, `/ready`, `/stats`, `/symbols`, `/price/{symbol}`: read-only views of the
//! relay-wide counters ([`counters`]) and of this shard's last values (every shard sees
//! every tick).

use hyper::StatusCode;
use serde::Serialize;

use super::counters::{self, Json, Value};
use super::response::{HttpResponse, json};
use crate::auth::Identity;
use crate::encode::json::{to_vec, write_tick};
use crate::error::{ErrorCode, clip};
use crate::event::Key;
use crate::metrics::{BUCKETS, quantile_us, upper_bound_us};
use crate::shard::ShardCore;
use crate::shared::Shared;
use crate::shutdown::Phase;
use crate::tick::Symbol;

/// `GET /health`: 200 while serving or draining, with uptime and connection counts.
pub fn health(shared: &Shared) -> HttpResponse {
    let body = Health {
        status: shared.shutdown.phase().as_str(),
        uptime_s: shared.metrics.started.elapsed().as_secs_f64(),
        connections: shared.metrics.sessions(),
        shards: shared.config.shard_count(),
        version: env!("CARGO_PKG_VERSION"),
    };
    json(StatusCode::OK, to_vec(&body))
}

/// `GET /ready`: 200 only while accepting clients (load balancers stop routing on 503).
pub fn ready(shared: &Shared) -> HttpResponse {
    let phase = shared.shutdown.phase();
    // A relay joined through NATS that has lost it keeps its clients but should get no new
    // ones while another relay can serve them fresh.
    let degraded = shared.config.scale.nats.is_some()
        && shared
            .metrics
            .nats
            .connected
            .load(std::sync::atomic::Ordering::Relaxed)
            == 0;
    let (status, name) = match phase {
        Phase::Ready if degraded => (StatusCode::SERVICE_UNAVAILABLE, "degraded"),
        Phase::Ready => (StatusCode::OK, phase.as_str()),
        _ => (StatusCode::SERVICE_UNAVAILABLE, phase.as_str()),
    };
    json(status, to_vec(&Ready { status: name }))
}

/// `GET /stats`: every reading of [`counters::readings`] as one JSON object; per-shard
/// readings under `shards[i]` (with `id`), their totals at the top level.
pub fn stats(shared: &Shared, core: &ShardCore) -> HttpResponse {
    let mut body = Json::object();
    let mut shards: Vec<Json> = (0..shared.metrics.shards().count())
        .map(|id| {
            let mut shard = Json::object();
            shard.insert(&["id"], Json::Int(id as u64));
            shard
        })
        .collect();
    for reading in counters::readings(shared, core) {
        match reading.value {
            Value::Int(n) => body.insert(reading.stats, Json::Int(n)),
            Value::Float(x) => body.insert(reading.stats, Json::Float(x)),
            Value::State { value, .. } => body.insert(reading.stats, Json::Text(value.into())),
            Value::Labeled { values, .. } => {
                let values = values.into_iter().map(|(k, n)| (k, Json::Int(n))).collect();
                body.insert(reading.stats, Json::Object(values));
            }
            Value::Latency(shards_counts) => {
                let mut merged = [0u64; BUCKETS];
                for (shard, counts) in shards.iter_mut().zip(&shards_counts) {
                    for (m, n) in merged.iter_mut().zip(&counts.buckets) {
                        *m += n;
                    }
                    shard.insert(reading.stats, percentiles(&counts.buckets));
                }
                body.insert(reading.stats, percentiles(&merged));
            }
            Value::PerShard { values, total } => {
                if let Some(total) = total {
                    body.insert(&[total], Json::Int(values.iter().sum()));
                }
                for (shard, n) in shards.iter_mut().zip(values) {
                    shard.insert(reading.stats, Json::Int(n));
                }
            }
        }
    }
    body.insert(&["shards"], Json::Array(shards));
    json(StatusCode::OK, to_vec(&body))
}

/// `{"p50":..,"p99":..,"p999":..,"count":..,"buckets":[[upper_us,n],..]}` in µs (bucket
/// upper bounds; percentiles absent while there are no samples). `buckets` lists the
/// non-empty buckets of the histogram (as `/metrics` does, cumulatively): two readings give
/// the percentiles of the samples between them, as the dashboard shows.
fn percentiles(counts: &[u64; BUCKETS]) -> Json {
    let mut out = Json::object();
    out.insert(&["count"], Json::Int(counts.iter().sum()));
    let buckets = counts
        .iter()
        .enumerate()
        .filter(|(_, n)| **n > 0)
        .map(|(i, n)| Json::Array(vec![Json::Float(upper_bound_us(i)), Json::Int(*n)]))
        .collect();
    out.insert(&["buckets"], Json::Array(buckets));
    for (key, q) in [("p50", 0.5), ("p99", 0.99), ("p999", 0.999)] {
        if let Some(us) = quantile_us(counts, q) {
            out.insert(&[key], Json::Float(us.round()));
        }
    }
    out
}

/// `GET /symbols`: every symbol seen that `reader` may read, with its last seq.
pub fn symbols(core: &ShardCore, reader: &Identity) -> HttpResponse {
    let mut list: Vec<SymbolEntry<'_>> = core
        .last_values()
        .filter_map(|f| f.tick())
        .filter(|tick| reader.may_read(&Key::Symbol(tick.symbol.clone())))
        .map(|tick| SymbolEntry {
            symbol: tick.symbol.as_str(),
            seq: tick.seq.0,
            ts_ns: tick.ts_ns,
        })
        .collect();
    list.sort_by(|a, b| a.symbol.cmp(b.symbol));
    json(StatusCode::OK, to_vec(&Symbols { symbols: list }))
}

/// `GET /price/{symbol}`: the symbol's last tick, as a JSON `snapshot` message; `Err` with
/// the status, code and message when `reader` may not read it (403 `forbidden`, whether or
/// not the symbol is known) or no tick of it was seen (404 `unknown_symbol`).
pub fn price(
    core: &ShardCore,
    symbol: &str,
    reader: &Identity,
) -> Result<HttpResponse, (StatusCode, ErrorCode, String)> {
    let key = Symbol::parse(symbol).ok().map(Key::Symbol);
    if let Some(key) = &key
        && !reader.may_read(key)
    {
        return Err((
            StatusCode::FORBIDDEN,
            ErrorCode::Forbidden,
            format!("not allowed for this token: {}", clip(symbol)),
        ));
    }
    match key
        .as_ref()
        .and_then(|k| core.last(k))
        .and_then(|f| f.tick())
    {
        Some(tick) => {
            let mut body = Vec::with_capacity(256);
            write_tick(&mut body, "snapshot", tick);
            Ok(json(StatusCode::OK, body))
        }
        None => Err((
            StatusCode::NOT_FOUND,
            ErrorCode::UnknownSymbol,
            format!("no tick seen for `{}`", clip(symbol)),
        )),
    }
}

#[derive(Serialize)]
struct Health {
    status: &'static str,
    uptime_s: f64,
    connections: u64,
    shards: usize,
    version: &'static str,
}

#[derive(Serialize)]
struct Ready {
    status: &'static str,
}

#[derive(Serialize)]
struct Symbols<'a> {
    symbols: Vec<SymbolEntry<'a>>,
}

#[derive(Serialize)]
struct SymbolEntry<'a> {
    symbol: &'a str,
    seq: u64,
    ts_ns: u64,
}
