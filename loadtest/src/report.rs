//! What a run found, in three forms: a table on stdout, a JSON file, and for a ramp an SVG of
//! latency percentiles against rate. `summarize` turns several JSON reports into Markdown.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

use crate::latency::LatencySummary;
use crate::seq::SeqCounts;

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
    pub latency_us: LatencySummary,
}

/// One publishing window.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct PhaseReport {
    pub target_rate: f64,
    pub achieved_rate: f64,
    pub duration_s: f64,
    pub published: u64,
    pub ingest_error_lines: u64,
    /// All deliveries (slow clients too) per second of publishing.
    pub deliveries_per_s: f64,
    pub fast: Delivery,
    /// Slow mode: the clients that stopped reading, counted after they were let read again
    /// at the end of the phase (what the relay still delivered, and who it disconnected).
    pub slow: Option<Delivery>,
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

    /// The human-readable table printed at the end of a run.
    pub fn table(&self) -> String {
        let c = &self.config;
        let mut out = String::new();
        let _ = writeln!(
            out,
            "\n== loadtest {} `{}`: {} clients × {} of {} symbols, mix {}, {} worker(s), {} ingest",
            self.mode,
            self.label,
            c.clients,
            c.symbols_per_client,
            c.symbols,
            c.mix,
            c.workers,
            c.ingest_format
        );
        let h = &self.connect.handshake_us;
        let _ = writeln!(
            out,
            "connect: {}/{} welcomed, {} failed, in {:.2} s ({:.0}/s); handshake p50 {} p99 {} max {}",
            self.connect.welcomed,
            self.connect.requested,
            self.connect.failed,
            self.connect.elapsed_s,
            self.connect.handshakes_per_s,
            us(h.p50_us),
            us(h.p99_us),
            us(h.max_us)
        );
        if !self.phases.is_empty() {
            let _ = writeln!(
                out,
                "\n{:>9} {:>9} {:>10} {:>11} {:>11} {:>9} {:>6} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8}",
                "rate",
                "achieved",
                "dlv/s",
                "expected",
                "received",
                "lost",
                "gaps",
                "dups",
                "ooo",
                "p50",
                "p90",
                "p99",
                "p99.9",
                "max",
                "lt ns/d",
                "rl ns/d",
                "rl RSS"
            );
        }
        for p in &self.phases {
            let f = &p.fast;
            let l = &f.latency_us;
            let _ = writeln!(
                out,
                "{:>9.0} {:>9.0} {:>10.0} {:>11} {:>11} {:>9} {:>6} {:>5} {:>5} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8.0} {:>8} {:>8}{}",
                p.target_rate,
                p.achieved_rate,
                p.deliveries_per_s,
                f.expected,
                f.received,
                f.lost,
                f.seq.gaps,
                f.seq.dups,
                f.seq.out_of_order,
                us(l.p50_us),
                us(l.p90_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                p.harness_worker_ns_per_delivery,
                p.relay_ns_per_delivery
                    .map_or("-".into(), |v| format!("{v:.0}")),
                p.relay_rss_max_kb.map_or("-".into(), mib),
                match p.held {
                    Some(true) => "  held",
                    Some(false) => "  FAILED",
                    None => "",
                }
            );
            let _ = writeln!(
                out,
                "  {} frames in {} reads ({:.2} frames/read), {:.1} MB; per delivery: harness user {:.0} ns + kernel {:.0} ns, relay user {} ns; CPU: harness {:.2} s, relay {}",
                f.frames,
                f.reads,
                f.frames as f64 / f.reads.max(1) as f64,
                f.bytes as f64 / 1e6,
                p.harness_worker_user_ns_per_delivery,
                p.harness_worker_system_ns_per_delivery,
                p.relay_user_ns_per_delivery
                    .map_or("-".into(), |v| format!("{v:.0}")),
                p.harness_process_cpu_s,
                p.relay_cpu_s.map_or("-".into(), |c| format!("{c:.2} s"))
            );
            if let Some(s) = &p.slow {
                let _ = writeln!(
                    out,
                    "  slow clients ({}, counted after they read again at the end): expected {}, received {}, lost {}, relay gap notices {} ({} ticks), disconnected {}",
                    s.clients,
                    s.expected,
                    s.received,
                    s.lost,
                    s.relay_gaps,
                    s.relay_gap_ticks,
                    s.closed
                );
            }
            if f.relay_gaps + f.decode_errors + f.error_msgs + f.unexpected_symbol + f.closed > 0
                || p.ingest_error_lines > 0
            {
                let _ = writeln!(
                    out,
                    "  relay gap notices {} ({} ticks), error msgs {}, decode errors {}, foreign-symbol ticks {}, closed {}, ingest error lines {}",
                    f.relay_gaps,
                    f.relay_gap_ticks,
                    f.error_msgs,
                    f.decode_errors,
                    f.unexpected_symbol,
                    f.closed,
                    p.ingest_error_lines
                );
            }
        }
        if !self.phases.is_empty() {
            let _ = writeln!(
                out,
                "(latency µs→ms as shown; lt ns/d = harness worker CPU per delivery; rl ns/d = relay CPU per delivery)"
            );
        }
        if let Some(r) = &self.ramp {
            let _ = writeln!(
                out,
                "ramp: highest rate held {} (p99 bound {}); stopped: {}",
                r.highest_rate_held
                    .map_or("none".into(), |v| format!("{v:.0}/s")),
                us(r.p99_bound_us),
                r.stop_reason
            );
        }
        if let Some(cr) = &self.crowd {
            let _ = writeln!(
                out,
                "crowd: {} idle clients; relay RSS {} → {}: {:.0} bytes per connection; relay fds {}; {:.0} handshakes/s",
                cr.clients,
                mib(cr.relay_rss_before_kb),
                mib(cr.relay_rss_after_kb),
                cr.bytes_per_connection,
                cr.relay_open_fds.map_or("-".into(), |v| v.to_string()),
                cr.handshakes_per_s
            );
        }
        if let Some(r) = &self.relay {
            let _ = writeln!(
                out,
                "relay pid {}: peak RSS {}, CPU {:.2} s, {}",
                r.pid,
                mib(r.peak_rss_kb),
                r.cpu_s,
                r.exit
            );
        }
        let _ = writeln!(
            out,
            "harness: CPU {:.2} s, peak RSS {}",
            self.harness.cpu_s,
            mib(self.harness.peak_rss_kb)
        );
        for (e, n) in &self.client_errors {
            let _ = writeln!(out, "client error ×{n}: {e}");
        }
        for line in &self.ingest_error_samples {
            let _ = writeln!(out, "ingest error line: {line}");
        }
        let _ = writeln!(
            out,
            "{}",
            if self.clean {
                "CLEAN: no loss, gap, duplicate or reordering".to_owned()
            } else {
                format!("NOT CLEAN: {}", self.problems.join("; "))
            }
        );
        out
    }
}

/// Draws p50 / p99 / p99.9 latency against rate for a ramp's steps.
pub fn ramp_svg(report: &RunReport, path: &Path) -> Result<()> {
    use plotters::prelude::*;

    create_parent(path)?;
    let points: Vec<(f64, [f64; 3])> = report
        .phases
        .iter()
        .filter(|p| p.fast.latency_us.count > 0)
        .map(|p| {
            let l = &p.fast.latency_us;
            (
                p.target_rate,
                [l.p50_us as f64, l.p99_us as f64, l.p999_us as f64],
            )
        })
        .collect();
    anyhow::ensure!(
        !points.is_empty(),
        "no ramp step has latency samples to plot"
    );
    let x_min = points.first().map_or(1.0, |p| p.0) / 1.5;
    let x_max = points.last().map_or(10.0, |p| p.0) * 1.5;
    let bound = report.ramp.as_ref().map(|r| r.p99_bound_us as f64);
    let y_max = points
        .iter()
        .flat_map(|p| p.1)
        .chain(bound)
        .fold(10.0f64, f64::max)
        * 2.0;
    let y_min = points
        .iter()
        .flat_map(|p| p.1)
        .fold(y_max, f64::min)
        .max(1.0)
        / 2.0;

    let root = SVGBackend::new(path, (960, 600)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let caption = format!(
        "tickrelay latency vs rate — {} clients × {} of {} symbols, {}",
        report.config.clients,
        report.config.symbols_per_client,
        report.config.symbols,
        report.config.mix
    );
    let mut chart = ChartBuilder::on(&root)
        .caption(caption, ("sans-serif", 18))
        .margin(16)
        .x_label_area_size(48)
        .y_label_area_size(72)
        .build_cartesian_2d((x_min..x_max).log_scale(), (y_min..y_max).log_scale())
        .map_err(plot_err)?;
    chart
        .configure_mesh()
        .x_desc("published ticks/s")
        .y_desc("latency (µs, publish → client)")
        .x_label_formatter(&|v| format!("{v:.0}"))
        .y_label_formatter(&|v| format!("{v:.0}"))
        .draw()
        .map_err(plot_err)?;
    let series = [("p50", 0, BLUE), ("p99", 1, RED), ("p99.9", 2, MAGENTA)];
    for (name, i, color) in series {
        chart
            .draw_series(
                LineSeries::new(points.iter().map(|p| (p.0, p.1[i])), color.stroke_width(2))
                    .point_size(4),
            )
            .map_err(plot_err)?
            .label(name)
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], color.stroke_width(2))
            });
    }
    if let Some(b) = bound {
        let grey = RGBColor(110, 110, 110);
        chart
            .draw_series(DashedLineSeries::new(
                [(x_min, b), (x_max, b)],
                8,
                5,
                grey.stroke_width(2),
            ))
            .map_err(plot_err)?
            .label("p99 bound")
            .legend(move |(x, y)| {
                PathElement::new(vec![(x, y), (x + 20, y)], grey.stroke_width(2))
            });
    }
    chart
        .configure_series_labels()
        .position(SeriesLabelPosition::UpperLeft)
        .background_style(WHITE.mix(0.8))
        .border_style(BLACK)
        .draw()
        .map_err(plot_err)?;
    root.present().map_err(plot_err)?;
    Ok(())
}

/// Markdown for a set of reports (docs/perf/REPORT.md).
pub fn summarize(reports: &[(String, RunReport)], svg: Option<&str>) -> String {
    let mut md = String::new();
    let _ = writeln!(md, "# tickrelay load-test report\n");
    if let Some(first) = reports.first() {
        let _ = writeln!(
            md,
            "Generated by `loadtest/report.sh` on a {}-core machine; harness and relay share it \
             (loopback only), one harness worker thread. Open-file limit per process: {}. Latency \
             is publish (`ts_ns` stamped by the harness when it writes the tick to the ingest \
             socket) → client receive. 1-minute load average at the start of each run: {} \
             (above ~1, other work shared the cores and inflated the tails).\n",
            first.1.host.cores,
            first.1.host.nofile_limit,
            reports
                .iter()
                .map(|(_, r)| format!("{} {:.1}", r.label, r.host.load_avg_1m))
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    let _ = writeln!(
        md,
        "| run | mode | clients | subs | rate/s | deliveries/s | p50 | p99 | p99.9 | max | lost | gaps/dups/ooo | harness ns/dlv (user) | relay ns/dlv (user) | relay peak RSS | clean |"
    );
    let _ = writeln!(md, "|{}", "---|".repeat(16));
    for (file, r) in reports {
        let c = &r.config;
        let peak = r.relay.as_ref().map_or("-".into(), |x| mib(x.peak_rss_kb));
        if r.phases.is_empty() {
            let _ = writeln!(
                md,
                "| [{}]({file}) | {} | {} | {}/{} | - | - | - | - | - | - | - | - | - | - | {peak} | {} |",
                r.label,
                r.mode,
                c.clients,
                c.symbols_per_client,
                c.symbols,
                yes(r.clean)
            );
        }
        for p in &r.phases {
            let l = &p.fast.latency_us;
            let _ = writeln!(
                md,
                "| [{}]({file}) | {} | {} | {}/{} | {:.0} | {:.0} | {} | {} | {} | {} | {} | {}/{}/{} | {:.0} ({:.0}) | {} | {peak} | {} |",
                r.label,
                r.mode,
                c.clients,
                c.symbols_per_client,
                c.symbols,
                p.achieved_rate,
                p.deliveries_per_s,
                us(l.p50_us),
                us(l.p99_us),
                us(l.p999_us),
                us(l.max_us),
                p.fast.lost,
                p.fast.seq.gaps,
                p.fast.seq.dups,
                p.fast.seq.out_of_order,
                p.harness_worker_ns_per_delivery,
                p.harness_worker_user_ns_per_delivery,
                match (p.relay_ns_per_delivery, p.relay_user_ns_per_delivery) {
                    (Some(t), Some(u)) => format!("{t:.0} ({u:.0})"),
                    _ => "-".into(),
                },
                match p.held {
                    Some(h) => format!(
                        "{} (step {})",
                        yes(r.clean),
                        if h { "held" } else { "failed" }
                    ),
                    None => yes(r.clean).to_owned(),
                }
            );
        }
    }
    for (file, r) in reports {
        if let Some(cr) = &r.crowd {
            let _ = writeln!(
                md,
                "\n## Idle crowd ([{file}]({file}))\n\n{} idle clients (each {} of {} symbols) welcomed of {} requested, {} failed. \
                 Relay RSS {} before → {} after: **{:.0} bytes per connection**; relay open fds {}. \
                 Handshakes: {:.0}/s offered {}/s (p50 {}, p99 {}).{}",
                cr.clients,
                r.config.symbols_per_client,
                r.config.symbols,
                r.connect.requested,
                r.connect.failed,
                mib(cr.relay_rss_before_kb),
                mib(cr.relay_rss_after_kb),
                cr.bytes_per_connection,
                cr.relay_open_fds.map_or("-".into(), |v| v.to_string()),
                cr.handshakes_per_s,
                r.config.connect_rate,
                us(r.connect.handshake_us.p50_us),
                us(r.connect.handshake_us.p99_us),
                if r.config.clients >= 15_000 {
                    format!(
                        " Both processes stay under the machine's {}-file limit, which caps one \
                         harness (and the relay) at about 19,000 clients.",
                        r.host.nofile_limit
                    )
                } else {
                    String::new()
                }
            );
        }
    }
    for (file, r) in reports {
        for p in &r.phases {
            if let Some(s) = &p.slow {
                let _ = writeln!(
                    md,
                    "\n## Slow consumers ([{file}]({file}))\n\n{} of {} clients stop reading after their welcome. \
                     The other {}: p50 {}, p99 {}, p99.9 {}, lost {}. Slow ones (let read again at the \
                     end): expected {}, received {}, gap notices {} ({} ticks), disconnected {}{}. \
                     Relay RSS peak during the phase {}.",
                    s.clients,
                    s.clients + p.fast.clients,
                    p.fast.clients,
                    us(p.fast.latency_us.p50_us),
                    us(p.fast.latency_us.p99_us),
                    us(p.fast.latency_us.p999_us),
                    p.fast.lost,
                    s.expected,
                    s.received,
                    s.relay_gaps,
                    s.relay_gap_ticks,
                    s.closed,
                    if r.client_errors.is_empty() {
                        String::new()
                    } else {
                        let seen: Vec<String> = r
                            .client_errors
                            .iter()
                            .map(|(e, n)| format!("{n}× \"{e}\""))
                            .collect();
                        format!(" (as the clients saw it: {})", seen.join(", "))
                    },
                    p.relay_rss_max_kb.map_or("-".into(), mib)
                );
            }
        }
    }
    for (file, r) in reports {
        if let Some(ramp) = &r.ramp {
            let _ = writeln!(
                md,
                "\n## Ramp ([{file}]({file}))\n\nRate doubles each step until p99 > {} or any tick is lost. \
                 **Highest rate held: {}**. Stopped: {}.\n",
                us(ramp.p99_bound_us),
                ramp.highest_rate_held
                    .map_or("none".into(), |v| format!("{v:.0} ticks/s")),
                ramp.stop_reason
            );
            if let Some(svg) = svg {
                let _ = writeln!(md, "![latency vs rate]({svg})\n");
            }
        }
    }
    let _ = writeln!(
        md,
        "\nColumns: *subs* = symbols per client / symbols; *deliveries/s* = ticks received by all \
         clients per second of publishing; *lost* = expected − received for the clients that kept \
         reading; *harness ns/dlv* = CPU of the harness's client threads per delivery (the cost of \
         measuring), in parentheses its user-space part (frame parsing, decoding, seq checks, \
         histograms; the rest is kernel TCP receive, which on loopback includes processing the \
         ACKs our reads send, on the relay's socket); *relay ns/dlv* = relay CPU (user+system) \
         per delivery, its user-space part in parentheses. CPU figures come from \
         /proc/PID/stat (10 ms ticks) and /proc/thread-self/schedstat."
    );
    md
}

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the SVG: {e}")
}

fn create_parent(path: &Path) -> Result<()> {
    if let Some(dir) = path.parent()
        && !dir.as_os_str().is_empty()
    {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    Ok(())
}

/// µs as `850µs` / `12.3ms` / `1.20s`.
fn us(v: u64) -> String {
    match v {
        0..1_000 => format!("{v}µs"),
        1_000..1_000_000 => format!("{:.1}ms", v as f64 / 1e3),
        _ => format!("{:.2}s", v as f64 / 1e6),
    }
}

fn mib(kb: u64) -> String {
    format!("{:.1}MiB", kb as f64 / 1024.0)
}

fn yes(clean: bool) -> &'static str {
    if clean { "yes" } else { "**no**" }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> RunReport {
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
            relay: None,
            harness: HarnessReport::default(),
            closed_early: 0,
            client_errors: BTreeMap::new(),
            ingest_error_samples: vec![],
            clean: true,
            problems: vec![],
        }
    }

    #[test]
    fn json_round_trip_table_and_markdown() {
        let dir = std::env::temp_dir().join(format!("lt-report-{}", std::process::id()));
        let path = dir.join("r.json");
        let r = sample();
        r.write_json(&path).unwrap();
        let back = RunReport::read_json(&path).unwrap();
        assert_eq!(back.phases.len(), 3);
        let table = back.table();
        assert!(table.contains("highest rate held 200/s"), "{table}");
        let md = summarize(&[("r.json".into(), back)], Some("latency.svg"));
        assert!(md.contains("| [ramp](r.json) | ramp |"), "{md}");
        assert!(md.contains("![latency vs rate](latency.svg)"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn ramp_svg_is_written() {
        let dir = std::env::temp_dir().join(format!("lt-svg-{}", std::process::id()));
        let path = dir.join("latency.svg");
        ramp_svg(&sample(), &path).unwrap();
        let svg = std::fs::read_to_string(&path).unwrap();
        assert!(svg.starts_with("<svg"), "{}", &svg[..100.min(svg.len())]);
        assert!(svg.contains("p99.9"));
        std::fs::remove_dir_all(dir).unwrap();
    }

    #[test]
    fn units() {
        assert_eq!(us(850), "850µs");
        assert_eq!(us(12_345), "12.3ms");
        assert_eq!(us(1_200_000), "1.20s");
        assert_eq!(mib(2048), "2.0MiB");
    }
}
