//! The vocabulary of a reading ([`Reading`], its [`Kind`] and [`Value`]) and of `/stats`'s
//! JSON tree ([`Json`]): what `counters.rs` lists and `/stats` and `/metrics` render.

use std::collections::BTreeMap;

use serde::Serialize;

use crate::metrics::BUCKETS;

/// Counter (only grows) or gauge (goes up and down), as Prometheus types them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Only grows (Prometheus name ends in `_total`).
    Counter,
    /// Goes up and down.
    Gauge,
    /// Samples in buckets.
    Histogram,
}

impl Kind {
    /// The Prometheus `# TYPE` word.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Counter => "counter",
            Self::Gauge => "gauge",
            Self::Histogram => "histogram",
        }
    }
}

/// The value of one reading.
#[derive(Debug)]
pub enum Value {
    /// One whole number.
    Int(u64),
    /// One fractional number.
    Float(f64),
    /// A state, one of several names: `/stats` shows the name, Prometheus a 1 labelled
    /// with it.
    State {
        /// The Prometheus label name.
        label: &'static str,
        /// The current state.
        value: &'static str,
    },
    /// One number per shard, in shard order; `/stats` shows each under its shard and, if
    /// `total` names a key, their sum at the top level.
    PerShard {
        /// The values.
        values: Vec<u64>,
        /// The top-level `/stats` key of the sum, if shown.
        total: Option<&'static str>,
    },
    /// A latency histogram per shard, in shard order: `/stats` shows p50/p99/p99.9 (µs) and
    /// the sample count under each shard and, merged, at the top level.
    Latency(Vec<LatencyCounts>),
    /// Numbers by label value (error code, symbol, phase).
    Labeled {
        /// The Prometheus label name.
        label: &'static str,
        /// Label value → number.
        values: BTreeMap<String, u64>,
    },
}

/// One shard's latency histogram, sampled.
#[derive(Debug, Clone)]
pub struct LatencyCounts {
    /// Samples per bucket (`metrics::upper_bound_us`).
    pub buckets: [u64; BUCKETS],
    /// Sum of the samples, µs.
    pub sum_us: u64,
}

/// One counter or gauge.
#[derive(Debug)]
pub struct Reading {
    /// Where `/stats` shows it: a path of keys (per-shard readings: the key in each shard).
    pub stats: &'static [&'static str],
    /// Its Prometheus name.
    pub prometheus: &'static str,
    /// Counter or gauge.
    pub kind: Kind,
    /// The Prometheus `# HELP` text.
    pub help: &'static str,
    /// The value now.
    pub value: Value,
}

/// A reading of one whole number.
pub(super) fn number(
    stats: &'static [&'static str],
    prometheus: &'static str,
    kind: Kind,
    help: &'static str,
    value: u64,
) -> Reading {
    Reading {
        stats,
        prometheus,
        kind,
        help,
        value: Value::Int(value),
    }
}

/// A reading of numbers by label value.
pub(super) fn labeled(
    stats: &'static [&'static str],
    prometheus: &'static str,
    kind: Kind,
    help: &'static str,
    label: &'static str,
    values: BTreeMap<String, u64>,
) -> Reading {
    Reading {
        stats,
        prometheus,
        kind,
        help,
        value: Value::Labeled { label, values },
    }
}

/// A reading of one number per shard.
pub(super) fn shard(
    stats: &'static [&'static str],
    total: Option<&'static str>,
    prometheus: &'static str,
    kind: Kind,
    help: &'static str,
    values: Vec<u64>,
) -> Reading {
    Reading {
        stats,
        prometheus,
        kind,
        help,
        value: Value::PerShard { values, total },
    }
}

/// A JSON tree, for `/stats`.
#[derive(Debug, Serialize)]
#[serde(untagged)]
pub enum Json {
    /// An integer.
    Int(u64),
    /// A float.
    Float(f64),
    /// A string.
    Text(String),
    /// An object, keys sorted.
    Object(BTreeMap<String, Self>),
    /// An array.
    Array(Vec<Self>),
}

impl Json {
    /// An empty object.
    pub fn object() -> Self {
        Self::Object(BTreeMap::new())
    }

    /// Sets `value` at `path` (creating objects on the way).
    pub fn insert(&mut self, path: &[&str], value: Self) {
        let Self::Object(map) = self else {
            return;
        };
        match path {
            [] => {}
            [key] => {
                map.insert((*key).to_string(), value);
            }
            [key, rest @ ..] => map
                .entry((*key).to_string())
                .or_insert_with(Self::object)
                .insert(rest, value),
        }
    }
}
