//! `GET /health`, `/ready`, `/stats`, `/symbols`, `/price/{symbol}`: read-only views of the
//! relay-wide counters and of this shard's last values (every shard sees every tick).

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use hyper::StatusCode;
use serde::Serialize;

use super::{HttpResponse, error, json};
use crate::encode::json::{to_vec, write_tick};
use crate::shard::ShardCore;
use crate::shutdown::Phase;

/// `GET /health`: 200 while serving or draining, with uptime and connection counts.
pub fn health(core: &ShardCore) -> HttpResponse {
    let shared = &core.shared;
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
pub fn ready(core: &ShardCore) -> HttpResponse {
    let phase = core.shared.shutdown.phase();
    let status = if phase == Phase::Ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    json(
        status,
        to_vec(&Ready {
            status: phase.as_str(),
        }),
    )
}

/// `GET /stats`: connections per shard, subscriptions per symbol, ticks in and out, errors
/// by code, ingest connections.
pub fn stats(core: &ShardCore) -> HttpResponse {
    let m = &core.shared.metrics;
    let shards: Vec<ShardStats> = m
        .shards()
        .enumerate()
        .map(|(id, s)| ShardStats {
            id,
            sessions: s.sessions.load(Relaxed),
            connections: s.connections.load(Relaxed),
            deliveries: s.deliveries.load(Relaxed),
            bytes_out: s.bytes_out.load(Relaxed),
            slow_disconnects: s.slow_disconnects.load(Relaxed),
            conflated: s.conflated.load(Relaxed),
        })
        .collect();
    let (per_symbol, wildcard) = core.shared.interest.totals();
    let body = Stats {
        uptime_s: m.started.elapsed().as_secs_f64(),
        phase: core.shared.shutdown.phase().as_str(),
        sessions: m.sessions(),
        ticks_in: m.ticks_in.load(Relaxed),
        ticks_out: shards.iter().map(|s| s.deliveries).sum(),
        symbols: core.history.len(),
        subscriptions: per_symbol.iter().map(|(s, n)| (s.as_str(), *n)).collect(),
        wildcard_subscriptions: wildcard,
        errors: m.errors().collect(),
        ingest: IngestStats {
            connections: m.ingest_connections.load(Relaxed),
            connections_total: m.ingest_connections_total.load(Relaxed),
        },
        connections_refused: m.connections_refused.load(Relaxed),
        shards,
    };
    json(StatusCode::OK, to_vec(&body))
}

/// `GET /symbols`: every symbol seen, with its last seq.
pub fn symbols(core: &ShardCore) -> HttpResponse {
    let mut list: Vec<SymbolEntry<'_>> = core
        .history
        .values()
        .filter_map(|h| h.last())
        .map(|f| SymbolEntry {
            symbol: f.tick().symbol.as_str(),
            seq: f.tick().seq.0,
            ts_ns: f.tick().ts_ns,
        })
        .collect();
    list.sort_by(|a, b| a.symbol.cmp(b.symbol));
    json(StatusCode::OK, to_vec(&Symbols { symbols: list }))
}

/// `GET /price/{symbol}`: the symbol's last tick, as a JSON `snapshot` message.
pub fn price(core: &ShardCore, symbol: &str) -> HttpResponse {
    match core.last(symbol) {
        Some(frames) => {
            let mut body = Vec::with_capacity(256);
            write_tick(&mut body, "snapshot", frames.tick());
            json(StatusCode::OK, body)
        }
        None => error(
            StatusCode::NOT_FOUND,
            "unknown_symbol",
            &format!(
                "no tick seen for `{}`",
                symbol.chars().take(80).collect::<String>()
            ),
        ),
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
struct Stats<'a> {
    uptime_s: f64,
    phase: &'static str,
    sessions: u64,
    ticks_in: u64,
    ticks_out: u64,
    symbols: usize,
    subscriptions: BTreeMap<&'a str, u32>,
    wildcard_subscriptions: u32,
    errors: BTreeMap<&'static str, u64>,
    ingest: IngestStats,
    connections_refused: u64,
    shards: Vec<ShardStats>,
}

#[derive(Serialize)]
struct IngestStats {
    connections: u64,
    connections_total: u64,
}

#[derive(Serialize)]
struct ShardStats {
    id: usize,
    sessions: u64,
    connections: u64,
    deliveries: u64,
    bytes_out: u64,
    slow_disconnects: u64,
    conflated: u64,
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
