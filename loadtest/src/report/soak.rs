//! A soak's report: one sample per window (the relay's RSS, open fds and sessions, the
//! healthy clients' p50/p99 and loss, the churn so far), the slopes after warm-up, the
//! verdict, its printed table and its chart.

use std::fmt::Write as _;
use std::path::Path;

use anyhow::Result;
use serde::{Deserialize, Serialize};

use super::{Host, create_parent};

/// What the churn did, as totals since the soak started.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct ChurnTotals {
    pub sessions: u64,
    pub failed: u64,
    pub messages: u64,
    pub resumes: u64,
    /// Resumes whose first tick was exactly the seq after the last one read.
    pub resumed_exactly: u64,
    /// Resumes whose first tick was another seq with no `gap` or `reset` before it: a
    /// client misled.
    pub resumed_wrongly: u64,
    pub control_acks: u64,
    pub deflate_sessions: u64,
    pub compressed_frames: u64,
    pub stalled: u64,
    pub dropped: u64,
    pub refreshes: u64,
    pub events_published: u64,
    pub events_received: u64,
    /// `{"type":"error"}` messages: a churn client never sends anything wrong.
    pub errors: u64,
}

/// One window of the soak.
#[derive(Clone, Debug, Default, Serialize, Deserialize)]
pub struct SoakSample {
    /// Seconds since the soak started, at the end of the window.
    pub t_s: f64,
    pub rss_kb: u64,
    pub open_fds: u64,
    pub sessions: u64,
    pub p50_us: u64,
    pub p99_us: u64,
    pub published: u64,
    /// Ticks the healthy clients should have received in the window, and did.
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    /// Healthy clients' gaps, repeats, reorderings, relay gaps, errors and undecodable
    /// messages: all must be 0.
    pub seq_errors: u64,
    /// Healthy clients whose connection ended.
    pub closed: u64,
    pub drain_timed_out: bool,
    pub churn: ChurnTotals,
}

impl SoakSample {
    /// The printed table's header.
    pub fn header() -> String {
        format!(
            "{:>7} {:>9} {:>6} {:>8} {:>9} {:>9} {:>9} {:>6} {:>7} {:>8}",
            "t",
            "RSS MiB",
            "fds",
            "sessions",
            "p50",
            "p99",
            "received",
            "lost",
            "errors",
            "churned"
        )
    }

    /// One line of the printed table.
    pub fn line(&self) -> String {
        format!(
            "{:>6.0}s {:>9.1} {:>6} {:>8} {:>9} {:>9} {:>9} {:>6} {:>7} {:>8}",
            self.t_s,
            self.rss_kb as f64 / 1024.0,
            self.open_fds,
            self.sessions,
            super::units::us(self.p50_us),
            super::units::us(self.p99_us),
            self.received,
            self.lost,
            self.seq_errors,
            self.churn.sessions
        )
    }
}

/// A whole soak.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct SoakReport {
    pub label: String,
    pub command: String,
    pub unix_time: u64,
    pub host: Host,
    pub clients: usize,
    pub symbols: u32,
    pub symbols_per_client: u32,
    pub rate: f64,
    pub churn_slots: usize,
    pub warmup_s: f64,
    /// Least-squares slope of the relay's RSS after warm-up, KiB per minute.
    pub rss_slope_kib_per_min: Option<f64>,
    /// The same for its open fds, and its sessions, per minute.
    pub fd_slope_per_min: Option<f64>,
    pub sessions_slope_per_min: Option<f64>,
    pub samples: Vec<SoakSample>,
    pub churn: ChurnTotals,
    /// Healthy clients closed before the end.
    pub closed_early: u64,
    pub clean: bool,
    pub problems: Vec<String>,
}

impl SoakReport {
    /// Clean: every healthy client got every tick of every window once and in order, none
    /// was closed, and the churn met no error message.
    pub fn judge(&mut self) {
        for s in &self.samples {
            if s.lost > 0 || s.seq_errors > 0 || s.closed > 0 || s.drain_timed_out {
                self.problems.push(format!(
                    "window ending at {:.0}s: {} lost, {} seq errors, {} closed{}",
                    s.t_s,
                    s.lost,
                    s.seq_errors,
                    s.closed,
                    if s.drain_timed_out {
                        ", drain timed out"
                    } else {
                        ""
                    }
                ));
            }
        }
        if self.closed_early > 0 {
            self.problems.push(format!(
                "{} healthy clients closed early",
                self.closed_early
            ));
        }
        if self.churn.resumed_wrongly > 0 {
            self.problems.push(format!(
                "{} resumes did not continue from the next seq",
                self.churn.resumed_wrongly
            ));
        }
        if self.churn.errors > 0 {
            self.problems.push(format!(
                "the churn got {} error messages",
                self.churn.errors
            ));
        }
        if self.samples.is_empty() {
            self.problems.push("no window was measured".into());
        }
        self.clean = self.problems.is_empty();
    }

    /// The end of the printed report: totals, slopes and the verdict.
    pub fn summary(&self) -> String {
        let mut out = String::new();
        let lost: u64 = self.samples.iter().map(|s| s.lost).sum();
        let received: u64 = self.samples.iter().map(|s| s.received).sum();
        let p99_max = self.samples.iter().map(|s| s.p99_us).max().unwrap_or(0);
        let c = &self.churn;
        let slope =
            |v: Option<f64>, unit: &str| v.map_or("-".into(), |v| format!("{v:+.1} {unit}"));
        let _ = writeln!(
            out,
            "\n== soak: {} healthy clients × {} of {} symbols at {:.0} ticks/s, {} churning, {} windows",
            self.clients,
            self.symbols_per_client,
            self.symbols,
            self.rate,
            self.churn_slots,
            self.samples.len()
        );
        let _ = writeln!(
            out,
            "healthy: {received} received, {lost} lost; worst window p99 {}",
            super::units::us(p99_max)
        );
        let _ = writeln!(
            out,
            "churn: {} sessions ({} failed), {} resumes ({} exact, {} wrong), {} control acks, {} deflate \
             ({} compressed frames), {} stalled, {} dropped, {} token refreshes, events {} \
             published / {} received, {} error messages",
            c.sessions,
            c.failed,
            c.resumes,
            c.resumed_exactly,
            c.resumed_wrongly,
            c.control_acks,
            c.deflate_sessions,
            c.compressed_frames,
            c.stalled,
            c.dropped,
            c.refreshes,
            c.events_published,
            c.events_received,
            c.errors
        );
        let _ = writeln!(
            out,
            "after {:.0}s of warm-up: RSS {}, fds {}, sessions {}",
            self.warmup_s,
            slope(self.rss_slope_kib_per_min, "KiB/min"),
            slope(self.fd_slope_per_min, "/min"),
            slope(self.sessions_slope_per_min, "/min")
        );
        let _ = writeln!(
            out,
            "{}",
            if self.clean {
                "clean".to_owned()
            } else {
                format!("NOT clean: {}", self.problems.join("; "))
            }
        );
        out
    }

    /// Writes the report as JSON.
    pub fn write_json(&self, path: &Path) -> Result<()> {
        create_parent(path)?;
        std::fs::write(path, serde_json::to_vec_pretty(self)?)?;
        Ok(())
    }
}

/// The least-squares slope of `points` (seconds, value), per minute; `None` under 2 points.
pub fn slope_per_min(points: impl Iterator<Item = (f64, f64)>) -> Option<f64> {
    let points: Vec<(f64, f64)> = points.collect();
    let n = points.len() as f64;
    if points.len() < 2 {
        return None;
    }
    let mean_t = points.iter().map(|p| p.0).sum::<f64>() / n;
    let mean_v = points.iter().map(|p| p.1).sum::<f64>() / n;
    let cov: f64 = points.iter().map(|p| (p.0 - mean_t) * (p.1 - mean_v)).sum();
    let var: f64 = points.iter().map(|p| (p.0 - mean_t).powi(2)).sum();
    (var > 0.0).then(|| cov / var * 60.0)
}

/// Four panels over time: RSS, open fds, sessions, p99.
pub fn soak_svg(report: &SoakReport, path: &Path) -> Result<()> {
    use plotters::prelude::*;

    create_parent(path)?;
    anyhow::ensure!(!report.samples.is_empty(), "no soak sample to plot");
    let root = SVGBackend::new(path, (960, 960)).into_drawing_area();
    root.fill(&WHITE).map_err(plot_err)?;
    let (title, body) = root.split_vertically(40);
    title
        .titled(
            &format!(
                "tickrelay soak — {} healthy clients at {:.0} ticks/s beside {} churning, 2 cores",
                report.clients, report.rate, report.churn_slots
            ),
            ("sans-serif", 18),
        )
        .map_err(plot_err)?;
    let panels = body.split_evenly((4, 1));
    let minutes = |s: &SoakSample| s.t_s / 60.0;
    let series: [Panel; 4] = [
        ("relay RSS (MiB)", |s| s.rss_kb as f64 / 1024.0, BLUE),
        ("relay open fds", |s| s.open_fds as f64, RED),
        ("relay sessions", |s| s.sessions as f64, MAGENTA),
        ("healthy p99 (ms)", |s| s.p99_us as f64 / 1000.0, BLACK),
    ];
    let t_max = report
        .samples
        .iter()
        .map(minutes)
        .fold(0.0, f64::max)
        .max(0.1);
    for (panel, (name, value, color)) in panels.iter().zip(series) {
        let top = report.samples.iter().map(value).fold(0.0, f64::max);
        let mut chart = ChartBuilder::on(panel)
            .margin(10)
            .x_label_area_size(30)
            .y_label_area_size(60)
            .build_cartesian_2d(0.0..t_max, 0.0..(top * 1.15).max(1.0))
            .map_err(plot_err)?;
        chart
            .configure_mesh()
            .x_desc("minutes")
            .y_desc(name)
            .draw()
            .map_err(plot_err)?;
        chart
            .draw_series(LineSeries::new(
                report.samples.iter().map(|s| (minutes(s), value(s))),
                color.stroke_width(2),
            ))
            .map_err(plot_err)?;
    }
    root.present().map_err(plot_err)?;
    Ok(())
}

/// One panel of the chart: its axis name, the value it plots, its colour.
type Panel = (
    &'static str,
    fn(&SoakSample) -> f64,
    plotters::style::RGBColor,
);

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("plotting: {e}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_slope_is_per_minute_and_needs_two_points() {
        let flat = [(0.0, 5.0), (10.0, 5.0), (20.0, 5.0)];
        assert_eq!(slope_per_min(flat.into_iter()), Some(0.0));
        let rising = [(0.0, 0.0), (30.0, 1.0), (60.0, 2.0)];
        let s = slope_per_min(rising.into_iter()).unwrap();
        assert!((s - 2.0).abs() < 1e-9, "{s}");
        assert_eq!(slope_per_min([(1.0, 1.0)].into_iter()), None);
    }

    #[test]
    fn a_lost_tick_or_a_churn_error_is_not_clean() {
        let mut report = SoakReport {
            label: "soak".into(),
            command: String::new(),
            unix_time: 0,
            host: Host {
                cores: 2,
                nofile_limit: 0,
                load_avg_1m: 0.0,
            },
            clients: 1,
            symbols: 1,
            symbols_per_client: 1,
            rate: 1.0,
            churn_slots: 1,
            warmup_s: 0.0,
            rss_slope_kib_per_min: None,
            fd_slope_per_min: None,
            sessions_slope_per_min: None,
            samples: vec![SoakSample::default()],
            churn: ChurnTotals::default(),
            closed_early: 0,
            clean: false,
            problems: Vec::new(),
        };
        report.judge();
        assert!(report.clean, "{:?}", report.problems);
        report.samples[0].lost = 1;
        report.churn.errors = 2;
        report.judge();
        assert!(!report.clean);
        assert_eq!(report.problems.len(), 2, "{:?}", report.problems);
        report.samples[0].lost = 0;
        report.churn.errors = 0;
        report.churn.resumed_wrongly = 1;
        report.problems.clear();
        report.judge();
        assert!(
            !report.clean,
            "a resume that skipped a tick misleads its client"
        );
        assert!(
            report.summary().contains("NOT clean"),
            "{}",
            report.summary()
        );
    }
}
