//! The relay's targets against the other servers of a `compare`, as named rows: each one's
//! value in every round where it can be computed, their median and range, and whether the
//! median meets it.
//!
//! The targets (loadtest/README.md, "Targets"): best passing fan-out ≥ 1.25× nats-server's and ≥ 1.0×
//! the floor's; p99 at 100k deliveries/s ≤ 0.5× nats-server's; crowd p99 ≤ 0.7× nats-server's;
//! the harness's CPU per delivery with batching ≤ 0.8× without, at 4,000 ticks/s. A row
//! appears for each relay in the set (`relay`, `relay-batched`) and only where the shape and
//! the servers allow it: fan-out rows need a ramp, the crowd row the crowd shape, the
//! batching row both relays.

use std::fmt::Write as _;

use super::ratios::phase_at;
use super::rounds::median;
use super::units::ratio as ratio_text;
use super::{PhaseReport, RunReport};

/// One target: what is compared, against whom, and the bound.
struct Target {
    name: &'static str,
    /// The server the relay is set against.
    other: &'static str,
    bound: Bound,
    /// The ratio in one round, from the relay's report and the other's.
    figure: fn(&RunReport, &RunReport) -> Option<f64>,
}

#[derive(Clone, Copy)]
enum Bound {
    AtLeast(f64),
    AtMost(f64),
}

/// The targets table over `rounds` (each round's reports in one fixed server order); empty
/// when no target can be computed from these servers and this shape.
pub fn targets_table(rounds: &[Vec<RunReport>]) -> String {
    let mut out = String::new();
    let Some(first) = rounds.first() else {
        return out;
    };
    let index = |name: &str| first.iter().position(|r| r.config.server == name);
    let mut rows = Vec::new();
    for subject in ["relay", "relay-batched"] {
        let Some(s) = index(subject) else { continue };
        for target in TARGETS {
            if target.other == subject {
                continue;
            }
            let Some(o) = index(target.other) else {
                continue;
            };
            let mut values: Vec<f64> = rounds
                .iter()
                .filter(|r| r.len() > s.max(o))
                .filter_map(|r| (target.figure)(&r[s], &r[o]))
                .collect();
            if values.is_empty() {
                continue;
            }
            values.sort_by(f64::total_cmp);
            rows.push((subject, target, values));
        }
    }
    if rows.is_empty() {
        return out;
    }
    let _ = writeln!(
        out,
        "\n== targets over {} round(s): median, range, bound, the median meets it",
        rounds.len()
    );
    for (subject, target, values) in rows {
        let name = format!("{}: {subject} ÷ {}", target.name, target.other);
        let mid = median(&values);
        let range = format!(
            "{}–{}",
            ratio_text(values.first().copied()),
            ratio_text(values.last().copied())
        );
        let (bound, met) = match target.bound {
            Bound::AtLeast(b) => (format!("≥ {b:.2}"), mid.is_some_and(|m| m >= b)),
            Bound::AtMost(b) => (format!("≤ {b:.2}"), mid.is_some_and(|m| m <= b)),
        };
        let _ = writeln!(
            out,
            "{name:<58} {:>7} {range:>13}  {bound:<6} {}",
            ratio_text(mid),
            if met { "met" } else { "NOT met" }
        );
    }
    out
}

const TARGETS: [Target; 5] = [
    Target {
        name: "best passing fan-out",
        other: "nats",
        bound: Bound::AtLeast(1.25),
        figure: best_passing,
    },
    Target {
        name: "best passing fan-out",
        other: "floor",
        bound: Bound::AtLeast(1.0),
        figure: best_passing,
    },
    Target {
        name: "p99 at 100k deliveries/s",
        other: "nats",
        bound: Bound::AtMost(0.5),
        figure: p99_at_100k,
    },
    Target {
        name: "crowd p99",
        other: "nats",
        bound: Bound::AtMost(0.7),
        figure: crowd_p99,
    },
    Target {
        name: "harness CPU per delivery at 4,000 ticks/s",
        other: "relay",
        bound: Bound::AtMost(0.8),
        figure: harness_cpu_at_4000,
    },
];

/// Ramps: deliveries/s of the highest step held, relay ÷ other (∞ when only the relay held
/// one).
fn best_passing(s: &RunReport, o: &RunReport) -> Option<f64> {
    let best = |r: &RunReport| {
        let rate = r.ramp.as_ref()?.highest_rate_held;
        Some(
            rate.and_then(|rate| phase_at(r, rate))
                .map_or(0.0, |p| p.deliveries_per_s),
        )
    };
    ratio(best(s)?, best(o)?)
}

/// p99 ratio at the rate both ran whose deliveries/s came nearest 100,000 (within a quarter).
fn p99_at_100k(s: &RunReport, o: &RunReport) -> Option<f64> {
    let (ps, po) = nearest(s, o, |p| p.deliveries_per_s, 100_000.0)?;
    ratio(
        ps.fast.latency_us.p99_us as f64,
        po.fast.latency_us.p99_us as f64,
    )
}

/// The crowd shape: p99 of the last phase both ran.
fn crowd_p99(s: &RunReport, o: &RunReport) -> Option<f64> {
    if s.mode != "crowd" {
        return None;
    }
    let rate = s
        .phases
        .iter()
        .rev()
        .map(|p| p.target_rate)
        .find(|&r| phase_at(o, r).is_some())?;
    let (ps, po) = (phase_at(s, rate)?, phase_at(o, rate)?);
    ratio(
        ps.fast.latency_us.p99_us as f64,
        po.fast.latency_us.p99_us as f64,
    )
}

/// The harness's worker CPU per delivery at the rate both ran nearest 4,000 ticks/s (within a
/// quarter): batched (`s`, relay-batched) ÷ unbatched (`o`, relay).
fn harness_cpu_at_4000(s: &RunReport, o: &RunReport) -> Option<f64> {
    let (ps, po) = nearest(s, o, |p| p.target_rate, 4_000.0)?;
    ratio(
        ps.harness_worker_ns_per_delivery,
        po.harness_worker_ns_per_delivery,
    )
}

/// The phases of `s` and `o` at the rate both ran whose `figure` (the mean of the two) is
/// nearest `goal`, if within a quarter of it.
fn nearest<'a>(
    s: &'a RunReport,
    o: &'a RunReport,
    figure: fn(&PhaseReport) -> f64,
    goal: f64,
) -> Option<(&'a PhaseReport, &'a PhaseReport)> {
    let distance =
        |(a, b): &(&PhaseReport, &PhaseReport)| ((figure(a) + figure(b)) / 2.0 - goal).abs();
    s.phases
        .iter()
        .filter_map(|p| Some((p, phase_at(o, p.target_rate)?)))
        .min_by(|x, y| distance(x).total_cmp(&distance(y)))
        .filter(|pair| distance(pair) <= goal / 4.0)
}

/// `a ÷ b`; ∞ when only `a` is positive, none when both are 0.
fn ratio(a: f64, b: f64) -> Option<f64> {
    if b > 0.0 {
        Some(a / b)
    } else if a > 0.0 {
        Some(f64::INFINITY)
    } else {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::tests::sample;

    /// `sample()` (ramp steps 100, 200, 400/s) as `server`: deliveries/s = 250 × rate (so
    /// 400/s is 100k deliveries/s), p99 and harness CPU scaled by `k`, `held` steps held.
    fn server(name: &str, k: f64, held: usize) -> RunReport {
        let mut r = sample();
        r.config.server = name.into();
        for (i, p) in r.phases.iter_mut().enumerate() {
            p.deliveries_per_s = p.target_rate * 250.0;
            p.fast.latency_us.p99_us = (1000.0 * k) as u64;
            p.harness_worker_ns_per_delivery = 2000.0 * k;
            p.held = Some(i < held);
        }
        r.ramp.as_mut().unwrap().highest_rate_held =
            held.checked_sub(1).map(|i| [100.0, 200.0, 400.0][i]);
        r
    }

    fn row<'t>(table: &'t str, name: &str) -> Vec<&'t str> {
        let line = table
            .lines()
            .find(|l| l.starts_with(name))
            .unwrap_or_else(|| panic!("no `{name}` row: {table}"));
        line[name.len()..].split_whitespace().collect()
    }

    #[test]
    fn fan_out_and_p99_rows_against_nats_and_the_floor() {
        let rounds: Vec<Vec<RunReport>> = [(0.4, 3), (0.6, 3), (0.5, 2)]
            .iter()
            .map(|&(k, held)| {
                vec![
                    server("floor", 1.0, 2),
                    server("nats", 1.0, 2),
                    server("relay", k, held),
                ]
            })
            .collect();
        let t = targets_table(&rounds);
        // Rounds: relay held 400, 400, 200 against nats's 200: 2, 2, 1.
        assert_eq!(
            row(&t, "best passing fan-out: relay ÷ nats"),
            ["2.00", "1.00–2.00", "≥", "1.25", "met"]
        );
        assert_eq!(
            row(&t, "best passing fan-out: relay ÷ floor"),
            ["2.00", "1.00–2.00", "≥", "1.00", "met"]
        );
        // At 400/s (100k deliveries/s): 0.4, 0.6, 0.5 of nats's p99.
        assert_eq!(
            row(&t, "p99 at 100k deliveries/s: relay ÷ nats"),
            ["0.50", "0.40–0.60", "≤", "0.50", "met"]
        );
        assert!(!t.contains("crowd p99"), "a ramp has no crowd row: {t}");
        assert!(!t.contains("harness CPU"), "no relay-batched here: {t}");
    }

    #[test]
    fn the_batching_row_needs_both_relays_and_a_rate_near_4000() {
        let mut unbatched = server("relay", 1.0, 3);
        let mut batched = server("relay-batched", 0.7, 3);
        for r in [&mut unbatched, &mut batched] {
            r.ramp = None;
            for (p, rate) in r.phases.iter_mut().zip([1000.0, 3900.0, 8000.0]) {
                p.target_rate = rate;
            }
        }
        let t = targets_table(&[vec![unbatched.clone(), batched.clone()]]);
        assert_eq!(
            row(
                &t,
                "harness CPU per delivery at 4,000 ticks/s: relay-batched ÷ relay"
            ),
            ["0.70", "0.70–0.70", "≤", "0.80", "met"]
        );
        for r in [&mut unbatched, &mut batched] {
            r.phases.truncate(1);
        }
        assert_eq!(
            targets_table(&[vec![unbatched, batched]]),
            "",
            "1,000/s is too far"
        );
    }

    #[test]
    fn crowd_p99_against_nats() {
        let crowd = |name: &str, k: f64| {
            let mut r = server(name, k, 0);
            r.mode = "crowd".into();
            r.ramp = None;
            r.phases.truncate(1);
            r
        };
        let t = targets_table(&[vec![crowd("nats", 1.0), crowd("relay", 0.8)]]);
        assert_eq!(
            row(&t, "crowd p99: relay ÷ nats"),
            ["0.80", "0.80–0.80", "≤", "0.70", "NOT", "met"]
        );
    }
}
