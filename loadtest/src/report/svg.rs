//! The ramp's picture: p50 / p99 / p99.9 latency against rate, as SVG.

use std::ops::Range;
use std::path::Path;

use anyhow::Result;

use super::{RunReport, create_parent};

/// Draws p50 / p99 / p99.9 latency against rate for a ramp's steps.
pub fn ramp_svg(report: &RunReport, path: &Path) -> Result<()> {
    use plotters::prelude::*;

    create_parent(path)?;
    let points = latency_points(report);
    anyhow::ensure!(
        !points.is_empty(),
        "no ramp step has latency samples to plot"
    );
    let bound = report.ramp.as_ref().map(|r| r.p99_bound_us as f64);
    let (x_range, y_range) = axes(&points, bound);
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
        .build_cartesian_2d(x_range.clone().log_scale(), y_range.log_scale())
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
                [(x_range.start, b), (x_range.end, b)],
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

fn plot_err<E: std::fmt::Display>(e: E) -> anyhow::Error {
    anyhow::anyhow!("drawing the SVG: {e}")
}

/// (rate, [p50, p99, p99.9] in µs) of every step that has latency samples.
fn latency_points(report: &RunReport) -> Vec<(f64, [f64; 3])> {
    report
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
        .collect()
}

/// Log-scale axis ranges with room around the points (and the p99 `bound` line).
fn axes(points: &[(f64, [f64; 3])], bound: Option<f64>) -> (Range<f64>, Range<f64>) {
    let x_min = points.first().map_or(1.0, |p| p.0) / 1.5;
    let x_max = points.last().map_or(10.0, |p| p.0) * 1.5;
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
    (x_min..x_max, y_min..y_max)
}
