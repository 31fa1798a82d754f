//! What a run found, in three forms: a table on stdout, a JSON file, and for a ramp an SVG of
//! latency percentiles against rate. `summarize` turns several JSON reports into Markdown.
//!
//! This file is the model (what the JSON holds) and its file I/O; `table` prints it, `svg`
//! plots a ramp, `markdown` summarizes several reports, `ratios` sets the reports of a
//! `compare` side by side, `rounds` and `targets` sum up its rounds, `stuck` the two halves
//! of a `stuck` run, `tiers` and `books` those of the `tiers` and `books` modes, `units`
//! formats µs and MiB for them.

use std::collections::BTreeMap;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::seq::SeqCounts;
use crate::tier_seq::TierCounts;

mod books;
mod markdown;
mod ratios;
mod rounds;
mod soak;
mod stuck;
mod svg;
mod table;
mod targets;
mod tiers;
mod units;

pub use books::books_table;
pub use markdown::{link_from, summarize};
pub use ratios::ratio_table;
pub use rounds::{Headline, headline, median, rounds_table};
pub use soak::{ChurnTotals, SoakReport, SoakSample, slope_per_min, soak_svg};
pub use stuck::{stuck_rounds_table, stuck_table};
pub use svg::ramp_svg;
pub use targets::targets_table;
pub use tiers::{TierCost, tiers_table};

/// One run of the harness.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunReport {
    pub label: String,
    pub mode: String,
    /// The harness command line.
    pub command: String,
    pub unix_time: u64,
    pub host: Host,
    pub config: RunConfig,
    pub connect: ConnectReport,
    /// One per publishing window (a ramp has one per step).
    pub phases: Vec<PhaseReport>,
    pub ramp: Option<RampReport>,
    pub crowd: Option<CrowdReport>,
    /// `books` mode: the relay's memory for the books.
    #[serde(default)]
    pub books: Option<BookMemory>,
    pub relay: Option<RelayReport>,
    pub harness: HarnessReport,
    /// Non-slow clients whose connection ended before the run did.
    pub closed_early: u64,
    /// Connection errors seen by the clients, with counts.
    pub client_errors: BTreeMap<String, u64>,
    /// Lines the relay wrote back on the ingest connection (first few).
    pub ingest_error_samples: Vec<String>,
    /// No loss, gap, duplicate, reordering, failed or dropped client among non-slow clients.
    pub clean: bool,
    pub problems: Vec<String>,
    /// What made the load differ from the one asked for without making the run unclean (a
    /// publisher that fell short of its rate on a busy box): the figures hold for the load
    /// that ran.
    #[serde(default)]
    pub caveats: Vec<String>,
}

/// The machine.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Host {
    pub cores: usize,
    /// Open-file limit of the harness (and of a relay it spawned), after raising it.
    pub nofile_limit: u64,
    /// 1-minute load average when the run started: other work on the machine skews latency.
    #[serde(default)]
    pub load_avg_1m: f64,
}

/// The parameters that shape the load.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RunConfig {
    pub clients: usize,
    pub symbols: u32,
    pub symbols_per_client: u32,
    pub mix: String,
    pub rate: f64,
    pub duration_s: f64,
    pub workers: usize,
    pub source_ips: u8,
    pub connect_rate: f64,
    pub ingest_format: String,
    pub slow_fraction: f64,
    pub spawned_relay: bool,
    /// The server measured: `relay`, `floor` or `naive` (reports from before the choice:
    /// `relay`).
    #[serde(default = "relay")]
    pub server: String,
    /// `light` or `heavy` (reports from before the choice: `light`).
    #[serde(default = "light")]
    pub client_profile: String,
}

/// Opening the clients.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ConnectReport {
    pub requested: usize,
    pub welcomed: u64,
    pub failed: u64,
    /// First connect to last welcome.
    pub elapsed_s: f64,
    pub handshakes_per_s: f64,
    /// TCP connect start → welcome received.
    pub handshake_us: LatencySummary,
    pub by_encoding: BTreeMap<String, usize>,
}

/// Deliveries to one group of clients (the non-slow ones, or the slow ones) in one phase.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct Delivery {
    /// Clients welcomed when publishing started.
    pub clients: u64,
    /// Sum over those clients of the ticks published to their symbols.
    pub expected: u64,
    pub received: u64,
    /// `expected - received` when positive.
    pub lost: u64,
    /// `received - expected` when positive (should never happen).
    pub extra: u64,
    pub seq: SeqCounts,
    pub relay_gaps: u64,
    pub relay_gap_ticks: u64,
    pub snapshots: u64,
    pub error_msgs: u64,
    pub decode_errors: u64,
    pub unexpected_symbol: u64,
    /// Connections of this group that ended during the phase.
    pub closed: u64,
    /// WebSocket frames, bytes and read syscalls (frames per read shows the batching).
    pub frames: u64,
    pub bytes: u64,
    pub reads: u64,
    /// Messages in those frames (every kind, decodable or not): more than the data frames
    /// when a frame holds several (nats-server, a relay client with `batch=on`).
    #[serde(default)]
    pub messages: u64,
    pub latency_us: LatencySummary,
}

/// Frames to the rate-tier clients in one phase: counted and checked for continuity, never
/// against the ticks published (a tier sends at most one frame per interval per symbol).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct TierDelivery {
    /// The tier they follow (`1s`).
    pub tier: String,
    pub clients: u64,
    /// Subscriptions: the sum of their symbols.
    pub symbols: u64,
    /// Ticks published to those subscriptions in the phase: what the frames' `from_seq..=seq`
    /// together should stand for once the last interval's frames are in.
    pub ticks_published: u64,
    #[serde(flatten)]
    pub counts: TierCounts,
    pub error_msgs: u64,
    pub decode_errors: u64,
    pub unexpected_symbol: u64,
    /// Tier clients whose connection ended during the phase.
    pub closed: u64,
    pub bytes: u64,
}

/// The relay's memory for the books of a `books` run, read before any client connects.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct BookMemory {
    pub books: u32,
    /// Levels a side of each book.
    pub levels: u32,
    pub relay_rss_before_kb: u64,
    /// Once every book's snapshot was applied (`GET /book/..` answers for the last one).
    pub relay_rss_after_kb: u64,
    /// (after − before) / books.
    pub bytes_per_book: f64,
}

/// The relay's acks of one phase (`--acks`).
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct AckReport {
    /// Ticks written in the phase not acknowledged at its end.
    pub unacked: u64,
    /// Connections the publisher made again (each resending what was unacknowledged).
    #[serde(default)]
    pub reconnects: u64,
    /// Each batch's write to the ack that covered it.
    pub latency: LatencySummary,
}

/// One publishing window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub published: u64,
    pub ingest_error_lines: u64,
    /// With `--acks`: what the relay acknowledged, and how long after each batch's write.
    #[serde(default)]
    pub acks: Option<AckReport>,
    /// All deliveries (slow clients too) per second of publishing.
    pub deliveries_per_s: f64,
    pub fast: Delivery,
    /// Slow mode: the clients that stopped reading, counted after they were let read again
    /// at the end of the phase (what the relay still delivered, and who it disconnected).
    pub slow: Option<Delivery>,
    /// `tiers` mode: what the rate-tier clients received (not counted in `fast`).
    #[serde(default)]
    pub tier: Option<TierDelivery>,
    /// CPU of the harness's client workers per delivery: what measuring costs.
    pub harness_worker_cpu_s: f64,
    pub harness_worker_ns_per_delivery: f64,
    /// Its user-space part (decode and checks) and kernel part (TCP receive; on loopback this
    /// includes processing the ACKs our reads send back, on the relay's socket).
    pub harness_worker_user_ns_per_delivery: f64,
    pub harness_worker_system_ns_per_delivery: f64,
    /// CPU of the whole harness process (workers, publisher, coordinator).
    pub harness_process_cpu_s: f64,
    pub relay_cpu_s: Option<f64>,
    pub relay_user_cpu_s: Option<f64>,
    pub relay_ns_per_delivery: Option<f64>,
    pub relay_user_ns_per_delivery: Option<f64>,
    /// Highest relay RSS sampled during the phase.
    pub relay_rss_max_kb: Option<u64>,
    pub relay_rss_end_kb: Option<u64>,
    /// Ramp only: p99 within the bound, nothing lost, rate achieved.
    pub held: Option<bool>,
    /// Drain stopped waiting with deliveries still missing.
    pub drain_timed_out: bool,
}

/// The ramp's verdict.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct RampReport {
    pub p99_bound_us: u64,
    pub highest_rate_held: Option<f64>,
    pub stop_reason: String,
}

/// Idle-crowd figures.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct CrowdReport {
    pub clients: u64,
    pub relay_rss_before_kb: u64,
    pub relay_rss_after_kb: u64,
    pub bytes_per_connection: f64,
    pub relay_open_fds: Option<usize>,
    pub handshakes_per_s: f64,
}

/// The relay process, when the harness can see it.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct RelayReport {
    pub pid: u32,
    pub command: Vec<String>,
    /// VmHWM at the end.
    pub peak_rss_kb: u64,
    pub rss_end_kb: u64,
    pub cpu_s: f64,
    pub exit: String,
    /// `GET /stats` at the end of the run.
    pub stats: Option<serde_json::Value>,
    pub log: Option<String>,
}

/// The harness itself.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct HarnessReport {
    pub cpu_s: f64,
    pub peak_rss_kb: u64,
    pub workers: usize,
}

impl RunReport {
    /// Writes pretty JSON to `path`.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        create_parent(path)?;
        let text = serde_json::to_string_pretty(self)?;
        std::fs::write(path, text + "\n").with_context(|| format!("writing {}", path.display()))
    }

    /// Reads a report written by [`Self::write_json`].
    pub fn read_json(path: &Path) -> Result<Self> {
        let text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
    }
}

fn relay() -> String {
    "relay".into()
}

fn light() -> String {
    "light".into()
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A relay ramp of three steps (100, 200, 400/s), the first two held, p99 1, 2, 3 ms.
    pub(crate) fn sample() -> RunReport {
        RunReport {
            label: "ramp".into(),
            mode: "ramp".into(),
            command: "loadtest ramp".into(),
            unix_time: 0,
            host: Host {
                cores: 2,
                nofile_limit: 20_000,
                load_avg_1m: 0.5,
            },
            config: RunConfig {
                clients: 10,
                symbols: 10,
                symbols_per_client: 2,
                mix: "json=100".into(),
                rate: 100.0,
                duration_s: 1.0,
                workers: 1,
                source_ips: 1,
                connect_rate: 100.0,
                ingest_format: "json".into(),
                slow_fraction: 0.0,
                spawned_relay: false,
                server: "relay".into(),
                client_profile: "light".into(),
            },
            connect: ConnectReport::default(),
            phases: [100.0, 200.0, 400.0]
                .iter()
                .enumerate()
                .map(|(i, &rate)| PhaseReport {
                    target_rate: rate,
                    achieved_rate: rate,
                    held: Some(i < 2),
                    fast: Delivery {
                        latency_us: LatencySummary {
                            count: 10,
                            p50_us: 100 * (i as u64 + 1),
                            p99_us: 1000 * (i as u64 + 1),
                            p999_us: 3000 * (i as u64 + 1),
                            ..LatencySummary::default()
                        },
                        ..Delivery::default()
                    },
                    ..PhaseReport::default()
                })
                .collect(),
            ramp: Some(RampReport {
                p99_bound_us: 2500,
                highest_rate_held: Some(200.0),
                stop_reason: "p99 3.0ms > 2.5ms".into(),
            }),
            crowd: None,
            books: None,
            relay: None,
            harness: HarnessReport::default(),
            closed_early: 0,
            client_errors: BTreeMap::new(),
            ingest_error_samples: vec![],
            clean: true,
            problems: vec![],
            caveats: vec![],
        }
    }

    #[test]
    fn json_round_trip_table_and_markdown() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("r.json");
        let r = sample();
        r.write_json(&path).unwrap();
        let back = RunReport::read_json(&path).unwrap();
        assert_eq!(back.phases.len(), 3);
        let table = back.table();
        assert!(table.contains("highest rate held 200/s"), "{table}");
        let md = summarize(&[("r.json".into(), back)], Some("latency.svg"));
        assert!(md.contains("| [ramp](r.json) | ramp |"), "{md}");
        assert!(md.contains("![latency vs rate](latency.svg)"));
    }

    #[test]
    fn ramp_svg_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("plots/latency.svg");
        ramp_svg(&sample(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("p99.9"));
    }
}
