//! Every counter and gauge the relay reports, listed once ([`readings`]) and rendered by
//! both `GET /stats` (JSON, [`Json`]) and `GET /metrics` (Prometheus text), so the two can
//! never disagree about what exists.

use std::collections::BTreeMap;
use std::sync::atomic::Ordering::Relaxed;

use crate::event::Key;
use crate::metrics::ShardMetrics;
use crate::shard::ShardCore;
use crate::shared::Shared;

mod nats;
mod reading;

pub use reading::{Json, Kind, LatencyCounts, Reading, Value};
use reading::{labeled, number, shard};

/// Subscribers per channel, private `user:<id>` channels summed under `user:*` (user ids
/// are not for the metrics, and one label per user would grow without bound).
fn channel_counts(by_key: &[(Key, u32)]) -> BTreeMap<String, u64> {
    let mut counts = BTreeMap::<String, u64>::new();
    for (key, n) in by_key {
        if let Key::Channel(channel) = key {
            let label = match channel.owner() {
                Some(_) => "user:*".to_owned(),
                None => channel.as_str().to_owned(),
            };
            *counts.entry(label).or_default() += u64::from(*n);
        }
    }
    counts
}

/// Reads everything now: the relay-wide counters and this shard's symbol count (every
/// shard sees every tick, so any shard's count is the relay's). Long on purpose: it is the
/// one list of readings (a row each), so `/stats` and `/metrics` cannot disagree.
pub fn readings(shared: &Shared, core: &ShardCore) -> Vec<Reading> {
    let m = &shared.metrics;
    let per_shard = |read: fn(&ShardMetrics) -> u64| m.shards().map(read).collect::<Vec<_>>();
    let (by_symbol, wildcard) = shared.interest.totals();
    let phase = shared.shutdown.phase().as_str();
    let mut readings = vec![
        Reading {
            stats: &["uptime_s"],
            prometheus: "tickrelay_uptime_seconds",
            kind: Kind::Gauge,
            help: "Seconds since start.",
            value: Value::Float(m.started.elapsed().as_secs_f64()),
        },
        Reading {
            stats: &["phase"],
            prometheus: "tickrelay_phase",
            kind: Kind::Gauge,
            help: "The relay's phase: starting, ready or draining (1 for the current one).",
            value: Value::State {
                label: "phase",
                value: phase,
            },
        },
        number(
            &["ticks_in"],
            "tickrelay_ticks_in_total",
            Kind::Counter,
            "Ticks accepted and sequenced.",
            m.ticks_in.load(Relaxed),
        ),
        number(
            &["symbols"],
            "tickrelay_symbols",
            Kind::Gauge,
            "Symbols seen.",
            core.symbol_count() as u64,
        ),
        labeled(
            &["subscriptions"],
            "tickrelay_subscriptions",
            Kind::Gauge,
            "Clients subscribed to each symbol by name.",
            "symbol",
            by_symbol
                .iter()
                .filter(|(k, _)| k.in_wildcard())
                .map(|(s, n)| (s.as_str().to_string(), u64::from(*n)))
                .collect(),
        ),
        labeled(
            &["channel_subscriptions"],
            "tickrelay_channel_subscriptions",
            Kind::Gauge,
            "Clients subscribed to each event channel.",
            "channel",
            channel_counts(&by_symbol),
        ),
        number(
            &["wildcard_subscriptions"],
            "tickrelay_wildcard_subscriptions",
            Kind::Gauge,
            "Clients subscribed to `*`.",
            u64::from(wildcard),
        ),
        number(
            &["ingest", "connections"],
            "tickrelay_ingest_connections",
            Kind::Gauge,
            "Ingest TCP connections open now.",
            m.ingest_connections.load(Relaxed),
        ),
        number(
            &["ingest", "connections_total"],
            "tickrelay_ingest_connections_total",
            Kind::Counter,
            "Ingest TCP connections accepted.",
            m.ingest_connections_total.load(Relaxed),
        ),
        number(
            &["tasks", "http"],
            "tickrelay_http_tasks",
            Kind::Gauge,
            "Tasks serving an accepted HTTP connection, alive now.",
            m.http_tasks.load(Relaxed),
        ),
        number(
            &["tasks", "session"],
            "tickrelay_session_tasks",
            Kind::Gauge,
            "Tasks running a WebSocket session, alive now.",
            m.session_tasks.load(Relaxed),
        ),
        number(
            &["ingest", "duplicates"],
            "tickrelay_ingest_duplicates_total",
            Kind::Counter,
            "Tagged items sent again that were stored before: acknowledged, not stored twice.",
            m.ingest_duplicates.load(Relaxed),
        ),
        number(
            &["connections_refused"],
            "tickrelay_connections_refused_total",
            Kind::Counter,
            "Client connections refused by a connection limit.",
            m.connections_refused.load(Relaxed),
        ),
        number(
            &["record", "written"],
            "tickrelay_record_written_total",
            Kind::Counter,
            "Ticks written to the --record file and flushed.",
            m.record.written.load(Relaxed),
        ),
        number(
            &["record", "write_errors"],
            "tickrelay_record_write_errors_total",
            Kind::Counter,
            "Failed writes to the --record file (the recording stops at the first).",
            m.record.write_errors.load(Relaxed),
        ),
        number(
            &["record", "not_recorded"],
            "tickrelay_record_not_recorded_total",
            Kind::Counter,
            "Ticks the --record file may lack because a write to it failed.",
            m.record.not_recorded.load(Relaxed),
        ),
        labeled(
            &["errors"],
            "tickrelay_errors_total",
            Kind::Counter,
            "Bad input and limit violations, by stable code.",
            "code",
            m.errors()
                .map(|(c, n)| (c.as_str().to_string(), n))
                .collect(),
        ),
        shard(
            &["sessions"],
            Some("sessions"),
            "tickrelay_sessions",
            Kind::Gauge,
            "WebSocket sessions live.",
            per_shard(|s| s.sessions.load(Relaxed)),
        ),
        shard(
            &["connections"],
            None,
            "tickrelay_http_connections",
            Kind::Gauge,
            "HTTP connections not (yet) upgraded.",
            per_shard(|s| s.connections.load(Relaxed)),
        ),
        shard(
            &["deliveries"],
            Some("ticks_out"),
            "tickrelay_deliveries_total",
            Kind::Counter,
            "Ticks queued to clients (one per client per tick).",
            per_shard(|s| s.deliveries.load(Relaxed)),
        ),
        shard(
            &["bytes_out"],
            None,
            "tickrelay_bytes_out_total",
            Kind::Counter,
            "Bytes written to client sockets.",
            per_shard(|s| s.bytes_out.load(Relaxed)),
        ),
        shard(
            &["socket_writes"],
            Some("socket_writes"),
            "tickrelay_socket_writes_total",
            Kind::Counter,
            "Writes to client sockets (one vectored write each): deliveries ÷ writes is how many frames a client gets per wake-up.",
            per_shard(|s| s.socket_writes.load(Relaxed)),
        ),
        shard(
            &["slow_disconnects"],
            None,
            "tickrelay_slow_disconnects_total",
            Kind::Counter,
            "Clients closed by the slow-consumer policy.",
            per_shard(|s| s.slow_disconnects.load(Relaxed)),
        ),
        shard(
            &["conflated"],
            None,
            "tickrelay_conflated_total",
            Kind::Counter,
            "Ticks replaced by a newer one for a lagging conflating client.",
            per_shard(|s| s.conflated.load(Relaxed)),
        ),
        number(
            &["deflate", "clients"],
            "tickrelay_deflate_clients",
            Kind::Gauge,
            "Clients with permessage-deflate negotiated now (at most --ws-deflate-max-clients).",
            shared.deflate_slots.held() as u64,
        ),
        shard(
            &["deflate_bytes_in"],
            Some("deflate_bytes_in"),
            "tickrelay_deflate_bytes_in_total",
            Kind::Counter,
            "permessage-deflate: message bytes compressed for clients.",
            per_shard(|s| s.deflate_in.load(Relaxed)),
        ),
        shard(
            &["deflate_bytes_out"],
            Some("deflate_bytes_out"),
            "tickrelay_deflate_bytes_out_total",
            Kind::Counter,
            "permessage-deflate: compressed bytes those messages became.",
            per_shard(|s| s.deflate_out.load(Relaxed)),
        ),
        shard(
            &["inflate_bytes_in"],
            Some("inflate_bytes_in"),
            "tickrelay_inflate_bytes_in_total",
            Kind::Counter,
            "permessage-deflate: compressed bytes received from clients.",
            per_shard(|s| s.inflate_in.load(Relaxed)),
        ),
        shard(
            &["inflate_bytes_out"],
            Some("inflate_bytes_out"),
            "tickrelay_inflate_bytes_out_total",
            Kind::Counter,
            "permessage-deflate: bytes the client messages inflated to.",
            per_shard(|s| s.inflate_out.load(Relaxed)),
        ),
        Reading {
            stats: &["latency_us"],
            prometheus: "tickrelay_delivery_latency_seconds",
            kind: Kind::Histogram,
            help: "Ingest to socket write per delivered tick: relay receive time to the end of the fan-out turn that wrote it.",
            value: Value::Latency(
                m.shards()
                    .map(|s| LatencyCounts {
                        buckets: s.latency.counts(),
                        sum_us: s.latency.sum_us(),
                    })
                    .collect(),
            ),
        },
    ];
    let derived = &m.derived;
    readings.extend([
        number(
            &["derived", "messages"],
            "tickrelay_derived_messages_total",
            Kind::Counter,
            "Bar and ticker messages the sequencer built.",
            derived.messages.load(Relaxed),
        ),
        number(
            &["derived", "late_trades"],
            "tickrelay_bar_late_trades_total",
            Kind::Counter,
            "Trades left out of a bar that was closed or older than the open one (once per interval missed).",
            derived.late_trades.load(Relaxed),
        ),
        number(
            &["derived", "future_trades"],
            "tickrelay_bar_future_trades_total",
            Kind::Counter,
            "Trades stamped more than --bar-max-skew ahead of the relay's clock, left out of bars.",
            derived.future_trades.load(Relaxed),
        ),
    ]);
    readings.extend(nats::readings(shared));
    readings
}
