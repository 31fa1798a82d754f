//! The readings of `--role` and the NATS hop (docs/SCALING.md), in the one list of
//! [`readings`](super::readings).

use std::sync::atomic::Ordering::Relaxed;

use super::reading::{Kind, Reading, Value, number};
use crate::shared::Shared;

/// The role, and the NATS hop when there is one (`--nats`): a list, a row per reading.
pub(super) fn readings(shared: &Shared) -> Vec<Reading> {
    let n = &shared.metrics.nats;
    let mut readings = vec![Reading {
        stats: &["role"],
        prometheus: "tickrelay_role",
        kind: Kind::Gauge,
        help: "The relay's --role: all, sequencer or edge (1 for the current one).",
        value: Value::State {
            label: "role",
            value: shared.config.scale.role.as_str(),
        },
    }];
    // One box without `--nats` has no NATS hop: no block of zeros that reads like an outage.
    if shared.config.scale.nats.is_none() {
        return readings;
    }
    let counts: [(
        &'static [&'static str],
        &'static str,
        Kind,
        &'static str,
        u64,
    ); 10] = [
        (
            &["nats", "connected"],
            "tickrelay_nats_connected",
            Kind::Gauge,
            "1 while the NATS connection is up.",
            n.connected.load(Relaxed),
        ),
        (
            &["nats", "reconnects"],
            "tickrelay_nats_reconnects_total",
            Kind::Counter,
            "NATS connections re-established after a loss.",
            n.reconnects.load(Relaxed),
        ),
        (
            &["nats", "published"],
            "tickrelay_nats_published_total",
            Kind::Counter,
            "Items sent to the stream (retries count again).",
            n.published.load(Relaxed),
        ),
        (
            &["nats", "acked"],
            "tickrelay_nats_acked_total",
            Kind::Counter,
            "Publishes the stream acknowledged.",
            n.acked.load(Relaxed),
        ),
        (
            &["nats", "retried"],
            "tickrelay_nats_retried_total",
            Kind::Counter,
            "Publishes sent again after a failure or a missing ack.",
            n.retried.load(Relaxed),
        ),
        (
            &["nats", "received"],
            "tickrelay_nats_received_total",
            Kind::Counter,
            "Messages an edge read from the stream.",
            n.received.load(Relaxed),
        ),
        (
            &["nats", "duplicates"],
            "tickrelay_nats_duplicates_total",
            Kind::Counter,
            "Messages an edge dropped as seqs it already had.",
            n.duplicates.load(Relaxed),
        ),
        (
            &["nats", "backfilled"],
            "tickrelay_nats_backfilled_total",
            Kind::Counter,
            "Messages read back from the stream to fill a gap.",
            n.backfilled.load(Relaxed),
        ),
        (
            &["nats", "gaps"],
            "tickrelay_nats_gaps_total",
            Kind::Counter,
            "Seqs the stream no longer held when an edge needed them.",
            n.gaps.load(Relaxed),
        ),
        (
            &["nats", "following"],
            "tickrelay_nats_following",
            Kind::Gauge,
            "Subjects (keys, and `*` as one) an edge follows now.",
            n.following.load(Relaxed),
        ),
    ];
    readings.extend(
        counts
            .into_iter()
            .map(|(stats, prometheus, kind, help, value)| {
                number(stats, prometheus, kind, help, value)
            }),
    );
    readings
}
