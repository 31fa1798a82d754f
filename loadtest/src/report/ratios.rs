//! The side-by-side table of a `compare` run: per step, each server's throughput and p99, and
//! the subject's (the relay's, or the last server's) ratio to each other server.

use std::fmt::Write as _;

use super::units::{self, us};
use super::{PhaseReport, RunReport};

/// The ratio table for reports of the same scenario against different servers.
pub fn ratio_table(reports: &[RunReport]) -> String {
    let mut out = String::new();
    let Some(subject) = subject_index(reports) else {
        return out;
    };
    let name = |r: &RunReport| r.config.server.clone();
    let others: Vec<&RunReport> = (0..reports.len())
        .filter(|&i| i != subject)
        .map(|i| &reports[i])
        .collect();
    let s = &reports[subject];
    let _ = writeln!(
        out,
        "\n== compare: {} ÷ {} ({} clients × {} of {} symbols, {} clients, same run; \
         throughput = deliveries/s, ratio > 1 = more; p99 ratio > 1 = slower)",
        name(s),
        others
            .iter()
            .map(|r| name(r))
            .collect::<Vec<_>>()
            .join(", "),
        s.config.clients,
        s.config.symbols_per_client,
        s.config.symbols,
        s.config.client_profile
    );
    write_header(&mut out, reports, s, &others);
    for rate in step_rates(reports) {
        write_step(&mut out, rate, reports, s, &others);
    }
    write_cpu(&mut out, reports, s, &others);
    write_held(&mut out, reports, s, &others);
    out
}

fn write_header(out: &mut String, reports: &[RunReport], s: &RunReport, others: &[&RunReport]) {
    let mut line = format!("{:>9}", "rate");
    for r in reports {
        let _ = write!(line, " {:>11}", format!("dlv/s {}", r.config.server));
    }
    for o in others {
        let _ = write!(
            line,
            " {:>13}",
            format!("{}÷{}", s.config.server, o.config.server)
        );
    }
    for r in reports {
        let _ = write!(line, " {:>11}", format!("p99 {}", r.config.server));
    }
    for o in others {
        let _ = write!(
            line,
            " {:>13}",
            format!("{}÷{}", s.config.server, o.config.server)
        );
    }
    let _ = writeln!(out, "{line}  held");
}

/// One step: every server's figures at `rate` ("-" where a server did not run it).
fn write_step(
    out: &mut String,
    rate: f64,
    reports: &[RunReport],
    s: &RunReport,
    others: &[&RunReport],
) {
    let mut line = format!("{rate:>9.0}");
    for r in reports {
        let v = phase_at(r, rate).map_or("-".into(), |p| format!("{:.0}", p.deliveries_per_s));
        let _ = write!(line, " {v:>11}");
    }
    for o in others {
        let ratio = pair(phase_at(s, rate), phase_at(o, rate), |p| p.deliveries_per_s);
        let _ = write!(line, " {ratio:>13}");
    }
    for r in reports {
        let v = phase_at(r, rate).map_or("-".into(), |p| us(p.fast.latency_us.p99_us));
        let _ = write!(line, " {v:>11}");
    }
    for o in others {
        let ratio = pair(phase_at(s, rate), phase_at(o, rate), |p| {
            p.fast.latency_us.p99_us as f64
        });
        let _ = write!(line, " {ratio:>13}");
    }
    let held: Vec<&str> = reports
        .iter()
        .map(|r| match phase_at(r, rate).map(|p| p.held) {
            Some(Some(true)) => "ok",
            Some(Some(false)) => "FAIL",
            Some(None) => "·",
            None => "-",
        })
        .collect();
    let _ = writeln!(out, "{line}  {}", held.join("/"));
}

/// Per step, each server's CPU (user + system) per delivery: steadier than latency when other
/// work shares the machine.
fn write_cpu(out: &mut String, reports: &[RunReport], s: &RunReport, others: &[&RunReport]) {
    let cpu = |p: &PhaseReport| p.relay_ns_per_delivery.unwrap_or(0.0);
    let mut head = format!("{:>9}", "cpu ns/d");
    for r in reports {
        let _ = write!(head, " {:>11}", r.config.server);
    }
    for o in others {
        let _ = write!(
            head,
            " {:>13}",
            format!("{}÷{}", s.config.server, o.config.server)
        );
    }
    let _ = writeln!(out, "{head}");
    for rate in step_rates(reports) {
        let mut line = format!("{rate:>9.0}");
        for r in reports {
            let v = phase_at(r, rate).map_or("-".into(), |p| format!("{:.0}", cpu(p)));
            let _ = write!(line, " {v:>11}");
        }
        for o in others {
            let ratio = pair(phase_at(s, rate), phase_at(o, rate), cpu);
            let _ = write!(line, " {ratio:>13}");
        }
        let _ = writeln!(out, "{line}");
    }
}

/// The highest rate each server held (ramp), or its idle-crowd figures, and the ratios.
fn write_held(out: &mut String, reports: &[RunReport], s: &RunReport, others: &[&RunReport]) {
    let held = |r: &RunReport| r.ramp.as_ref().and_then(|x| x.highest_rate_held);
    if reports.iter().any(|r| r.ramp.is_some()) {
        let each: Vec<String> = reports
            .iter()
            .map(|r| {
                let v = held(r).map_or("none".into(), |v| format!("{v:.0}/s"));
                format!("{} {v}", r.config.server)
            })
            .collect();
        let ratios: Vec<String> = others
            .iter()
            .map(|o| match (held(s), held(o)) {
                (Some(a), Some(b)) if b > 0.0 => {
                    format!("{}÷{} {:.2}", s.config.server, o.config.server, a / b)
                }
                _ => format!("{}÷{} -", s.config.server, o.config.server),
            })
            .collect();
        let _ = writeln!(
            out,
            "highest rate held: {}; {}",
            each.join(", "),
            ratios.join(", ")
        );
    }
    for r in reports {
        if let Some(c) = &r.crowd {
            let _ = writeln!(
                out,
                "crowd {}: {} clients, {:.0} bytes per connection, {:.0} handshakes/s",
                r.config.server, c.clients, c.bytes_per_connection, c.handshakes_per_s
            );
        }
    }
    let clean: Vec<String> = reports
        .iter()
        .map(|r| {
            format!(
                "{} {}",
                r.config.server,
                if r.clean { "clean" } else { "NOT clean" }
            )
        })
        .collect();
    let _ = writeln!(out, "{}", clean.join(", "));
}

/// Every step rate any report ran, ascending.
fn step_rates(reports: &[RunReport]) -> Vec<f64> {
    let mut rates: Vec<f64> = reports
        .iter()
        .flat_map(|r| r.phases.iter().map(|p| p.target_rate))
        .collect();
    rates.sort_by(f64::total_cmp);
    rates.dedup_by(|a, b| same_rate(*a, *b));
    rates
}

/// Which report the ratios are of: the relay's, or else the last one.
pub(super) fn subject_index(reports: &[RunReport]) -> Option<usize> {
    reports
        .iter()
        .position(|r| r.config.server == "relay")
        .or(reports.len().checked_sub(1))
}

/// The phase `r` ran at `rate`, if it ran one.
pub(super) fn phase_at(r: &RunReport, rate: f64) -> Option<&PhaseReport> {
    r.phases.iter().find(|p| same_rate(p.target_rate, rate))
}

fn same_rate(a: f64, b: f64) -> bool {
    (a - b).abs() <= 1e-6 * a.abs().max(b.abs()).max(1.0)
}

/// `a ÷ b` of one figure, or "-" when either side is missing or b is 0.
fn pair(
    a: Option<&PhaseReport>,
    b: Option<&PhaseReport>,
    figure: impl Fn(&PhaseReport) -> f64,
) -> String {
    match (a.map(&figure), b.map(&figure)) {
        (Some(x), Some(y)) if y > 0.0 => units::ratio(Some(x / y)),
        _ => "-".into(),
    }
}
