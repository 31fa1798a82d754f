//! `GET /metrics`: the relay's counters in the Prometheus text exposition format (0.0.4),
//! read from the same lock-free counters as `/stats`.

use std::fmt::Write as _;
use std::sync::atomic::Ordering::Relaxed;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::HttpResponse;
use crate::metrics::ShardMetrics;
use crate::shard::ShardCore;

/// Reads one counter of a shard.
type ShardCounter = fn(&ShardMetrics) -> u64;

/// Renders every counter and gauge.
pub fn metrics(core: &ShardCore) -> HttpResponse {
    let m = &core.shared.metrics;
    let mut out = String::with_capacity(4096);
    let mut single = |name: &str, kind: &str, help: &str, value: u64| {
        let _ = writeln!(
            out,
            "# HELP {name} {help}\n# TYPE {name} {kind}\n{name} {value}"
        );
    };
    single(
        "tickrelay_ticks_in_total",
        "counter",
        "Ticks accepted and sequenced.",
        m.ticks_in.load(Relaxed),
    );
    single(
        "tickrelay_ingest_connections",
        "gauge",
        "Ingest TCP connections open now.",
        m.ingest_connections.load(Relaxed),
    );
    single(
        "tickrelay_ingest_connections_total",
        "counter",
        "Ingest TCP connections accepted.",
        m.ingest_connections_total.load(Relaxed),
    );
    single(
        "tickrelay_connections_refused_total",
        "counter",
        "Client connections refused by a connection limit.",
        m.connections_refused.load(Relaxed),
    );
    single(
        "tickrelay_uptime_seconds",
        "gauge",
        "Seconds since start.",
        m.started.elapsed().as_secs(),
    );
    single(
        "tickrelay_symbols",
        "gauge",
        "Symbols seen.",
        core.history.len() as u64,
    );

    let per_shard: [(&str, &str, &str, ShardCounter); 6] = [
        (
            "tickrelay_sessions",
            "gauge",
            "WebSocket sessions live.",
            |s| s.sessions.load(Relaxed),
        ),
        (
            "tickrelay_http_connections",
            "gauge",
            "HTTP connections not (yet) upgraded.",
            |s| s.connections.load(Relaxed),
        ),
        (
            "tickrelay_deliveries_total",
            "counter",
            "Ticks queued to clients (one per client per tick).",
            |s| s.deliveries.load(Relaxed),
        ),
        (
            "tickrelay_bytes_out_total",
            "counter",
            "Bytes written to client sockets.",
            |s| s.bytes_out.load(Relaxed),
        ),
        (
            "tickrelay_slow_disconnects_total",
            "counter",
            "Clients closed by the slow-consumer policy.",
            |s| s.slow_disconnects.load(Relaxed),
        ),
        (
            "tickrelay_conflated_total",
            "counter",
            "Ticks replaced by a newer one for a lagging conflating client.",
            |s| s.conflated.load(Relaxed),
        ),
    ];
    for (name, kind, help, read) in per_shard {
        let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for (id, shard) in m.shards().enumerate() {
            let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {}", read(shard));
        }
    }
    let _ = writeln!(
        out,
        "# HELP tickrelay_errors_total Bad input and limit violations, by stable code.\n# TYPE tickrelay_errors_total counter"
    );
    for (code, count) in m.errors() {
        let _ = writeln!(out, "tickrelay_errors_total{{code=\"{code}\"}} {count}");
    }
    let mut response = Response::new(Full::new(Bytes::from(out)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}
