//! `GET /metrics`: the relay's counters in the Prometheus text exposition format (0.0.4),
//! rendered from the same list of readings as `/stats` ([`counters`]).

use std::fmt::Write as _;

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CONTENT_TYPE, HeaderValue};

use super::counters::{self, Value};
use super::response::HttpResponse;
use crate::metrics::{SUB_BUCKETS, upper_bound_us};
use crate::shard::ShardCore;
use crate::shared::Shared;

/// Renders every reading of [`counters::readings`].
pub fn metrics(shared: &Shared, core: &ShardCore) -> HttpResponse {
    let mut out = String::with_capacity(4096);
    for reading in counters::readings(shared, core) {
        let name = reading.prometheus;
        let _ = writeln!(
            out,
            "# HELP {name} {}\n# TYPE {name} {}",
            reading.help,
            reading.kind.as_str()
        );
        match reading.value {
            Value::Int(n) => {
                let _ = writeln!(out, "{name} {n}");
            }
            Value::Float(x) => {
                let _ = writeln!(out, "{name} {x}");
            }
            Value::State { label, value } => {
                let _ = writeln!(out, "{name}{{{label}=\"{value}\"}} 1");
            }
            Value::Labeled { label, values } => {
                for (key, n) in values {
                    let key = escape(&key);
                    let _ = writeln!(out, "{name}{{{label}=\"{key}\"}} {n}");
                }
            }
            Value::Latency(shards) => {
                for (id, counts) in shards.iter().enumerate() {
                    // Every fourth bucket bound is a power of two of µs: 1 µs … 67 s.
                    let mut cumulative = 0;
                    for (i, n) in counts.buckets.iter().enumerate() {
                        cumulative += n;
                        if i % SUB_BUCKETS == 0 && i + 1 < counts.buckets.len() {
                            let le = upper_bound_us(i) / 1e6;
                            let _ = writeln!(
                                out,
                                "{name}_bucket{{shard=\"{id}\",le=\"{le}\"}} {cumulative}"
                            );
                        }
                    }
                    let sum = counts.sum_us as f64 / 1e6;
                    let _ = writeln!(
                        out,
                        "{name}_bucket{{shard=\"{id}\",le=\"+Inf\"}} {cumulative}\n{name}_sum{{shard=\"{id}\"}} {sum}\n{name}_count{{shard=\"{id}\"}} {cumulative}"
                    );
                }
            }
            Value::PerShard { values, .. } => {
                for (id, n) in values.iter().enumerate() {
                    let _ = writeln!(out, "{name}{{shard=\"{id}\"}} {n}");
                }
            }
        }
    }
    let mut response = Response::new(Full::new(Bytes::from(out)));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/plain; version=0.0.4; charset=utf-8"),
    );
    response
}

/// Escapes a label value (exposition format 0.0.4: backslash, double quote, newline).
/// Symbols cannot hold these today; the escape keeps the output valid if that changes.
fn escape(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}
