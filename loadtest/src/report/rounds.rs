//! The end of a `compare --rounds N`: each round's headline ratios, then their median and
//! range. On a box shared with its clients one pair's ratio moves with the host
//! (docs/perf/COMPARE.md), so a claim rests on the median of interleaved rounds, said with its
//! spread.

use std::fmt::Write as _;

use super::ratios::{phase_at, subject_index};
use super::units::ratio as ratio_text;
use super::{PhaseReport, RunReport};

/// One round's headline ratios of the subject against one other server.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Headline {
    /// Ramp: best passing deliveries/s, subject ÷ other (∞ when only the subject held a
    /// step). Other shapes: deliveries/s of the last phase.
    pub throughput: Option<f64>,
    /// Where p99 and CPU are compared: the highest rate both held (ramp), or the last phase.
    pub rate: Option<f64>,
    pub p99: Option<f64>,
    pub cpu: Option<f64>,
    /// Both runs clean: no loss, gap, duplicate or reordering.
    pub clean: bool,
}

/// The headline ratios of `subject` against `other`, two reports of the same scenario.
pub fn headline(subject: &RunReport, other: &RunReport) -> Headline {
    let clean = subject.clean && other.clean;
    let ramp = subject.ramp.is_some() || other.ramp.is_some();
    let (throughput, at) = if ramp {
        let best = |r: &RunReport| {
            r.ramp
                .as_ref()
                .and_then(|x| x.highest_rate_held)
                .and_then(|rate| phase_at(r, rate))
                .map_or(0.0, |p| p.deliveries_per_s)
        };
        let throughput = ratio(best(subject), best(other));
        let common = subject
            .phases
            .iter()
            .filter(|p| p.held == Some(true))
            .filter(|p| phase_at(other, p.target_rate).is_some_and(|o| o.held == Some(true)))
            .map(|p| p.target_rate)
            .max_by(f64::total_cmp);
        (throughput, common)
    } else {
        let last = subject
            .phases
            .iter()
            .rev()
            .map(|p| p.target_rate)
            .find(|&rate| phase_at(other, rate).is_some());
        let throughput = last.and_then(|rate| {
            let s = phase_at(subject, rate)?.deliveries_per_s;
            ratio(s, phase_at(other, rate)?.deliveries_per_s)
        });
        (throughput, last)
    };
    let at_both = |figure: fn(&PhaseReport) -> f64| {
        let rate = at?;
        ratio(
            figure(phase_at(subject, rate)?),
            figure(phase_at(other, rate)?),
        )
    };
    Headline {
        throughput,
        rate: at,
        p99: at_both(|p| p.fast.latency_us.p99_us as f64),
        cpu: at_both(|p| p.relay_ns_per_delivery.unwrap_or(0.0)),
        clean,
    }
}

/// The rounds table: for each other server, a row per round and the median and range of
/// each ratio. `rounds[i]` holds round i+1's reports in one fixed server order; `orders[i]`
/// names the order they ran in.
pub fn rounds_table(rounds: &[Vec<RunReport>], orders: &[String]) -> String {
    let mut out = String::new();
    let Some(first) = rounds.first() else {
        return out;
    };
    let Some(subject) = subject_index(first) else {
        return out;
    };
    for other in (0..first.len()).filter(|&i| i != subject) {
        let (s_name, o_name) = (&first[subject].config.server, &first[other].config.server);
        let _ = writeln!(
            out,
            "\n== compare over {} rounds: {s_name} ÷ {o_name} (ratio > 1: more throughput, \
             slower p99, more CPU per delivery)",
            rounds.len()
        );
        row(
            &mut out,
            "round",
            "order",
            ["best dlv/s", "at rate", "p99", "cpu ns/d"].map(String::from),
            "clean",
        );
        let heads: Vec<Headline> = rounds
            .iter()
            .filter(|r| r.len() > subject.max(other))
            .map(|r| headline(&r[subject], &r[other]))
            .collect();
        for (i, h) in heads.iter().enumerate() {
            let rate = h.rate.map_or("-".into(), |r| format!("{r:.0}/s"));
            row(
                &mut out,
                &(i + 1).to_string(),
                orders.get(i).map_or("", String::as_str),
                [
                    ratio_text(h.throughput),
                    rate,
                    ratio_text(h.p99),
                    ratio_text(h.cpu),
                ],
                if h.clean { "yes" } else { "NO" },
            );
        }
        let column = |f: fn(&Headline) -> Option<f64>| {
            let mut v: Vec<f64> = heads.iter().filter_map(f).collect();
            v.sort_by(f64::total_cmp);
            v
        };
        let columns = [
            column(|h| h.throughput),
            column(|h| h.p99),
            column(|h| h.cpu),
        ];
        let medians = columns.each_ref().map(|v| ratio_text(median(v)));
        let ranges = columns.each_ref().map(|v| range(v));
        for (label, [a, b, c]) in [("median", medians), ("range", ranges)] {
            row(&mut out, label, "", [a, String::new(), b, c], "");
        }
        let clean = heads.iter().filter(|h| h.clean).count();
        let _ = writeln!(out, "clean in {clean} of {} rounds", heads.len());
    }
    out
}

/// One line of the rounds table: a label, the order, four cells and a last column.
fn row(out: &mut String, label: &str, order: &str, cells: [String; 4], last: &str) {
    let [a, b, c, d] = cells;
    let line = format!("{label:>7}  {order:<20} {a:>10} {b:>9} {c:>9} {d:>9}  {last}");
    let _ = writeln!(out, "{}", line.trim_end());
}

/// The median of sorted values (the mean of the middle two for an even count).
pub fn median(sorted: &[f64]) -> Option<f64> {
    let n = sorted.len();
    match n {
        0 => None,
        _ if !n.is_multiple_of(2) => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

fn range(sorted: &[f64]) -> String {
    match (sorted.first(), sorted.last()) {
        (Some(&lo), Some(&hi)) => format!("{}–{}", ratio_text(Some(lo)), ratio_text(Some(hi))),
        _ => "-".into(),
    }
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

    /// `sample()` as `server`, every figure scaled by `k`, holding `held` steps.
    fn server(name: &str, k: f64, held: usize) -> RunReport {
        let mut r = sample();
        r.config.server = name.into();
        for (i, p) in r.phases.iter_mut().enumerate() {
            p.deliveries_per_s = p.target_rate * 10.0;
            p.fast.latency_us.p99_us = (p.fast.latency_us.p99_us as f64 * k) as u64;
            p.relay_ns_per_delivery = Some(1000.0 * k);
            p.held = Some(i < held);
        }
        let best = held.checked_sub(1).map(|i| r.phases[i].target_rate);
        r.ramp.as_mut().unwrap().highest_rate_held = best;
        r
    }

    #[test]
    fn a_ramp_compares_p99_and_cpu_at_the_highest_step_both_held() {
        let h = headline(&server("relay", 0.5, 3), &server("floor", 1.0, 2));
        assert_eq!(h.throughput, Some(2.0), "4000 against 2000 deliveries/s");
        assert_eq!(h.rate, Some(200.0));
        assert_eq!(h.p99, Some(0.5));
        assert_eq!(h.cpu, Some(0.5));
        assert!(h.clean);

        let h = headline(&server("relay", 1.0, 1), &server("naive", 1.0, 0));
        assert_eq!(
            h.throughput,
            Some(f64::INFINITY),
            "only the relay held a step"
        );
        assert_eq!((h.rate, h.p99), (None, None), "no step both held");
    }

    #[test]
    fn other_shapes_compare_the_last_phase_both_ran() {
        let (mut s, mut o) = (server("relay", 2.0, 0), server("floor", 1.0, 0));
        for r in [&mut s, &mut o] {
            r.ramp = None;
            r.phases.iter_mut().for_each(|p| p.held = None);
        }
        o.phases.pop();
        o.clean = false;
        let h = headline(&s, &o);
        assert_eq!(h.rate, Some(200.0));
        assert_eq!(
            (h.throughput, h.p99, h.cpu),
            (Some(1.0), Some(2.0), Some(2.0))
        );
        assert!(!h.clean);
    }

    #[test]
    fn the_table_gives_each_round_then_median_and_range() {
        let rounds: Vec<Vec<RunReport>> = [0.5, 2.0, 1.0]
            .iter()
            .map(|&k| vec![server("floor", 1.0, 2), server("relay", k, 2)])
            .collect();
        let orders = ["floor,relay", "relay,floor", "floor,relay"].map(String::from);
        let t = rounds_table(&rounds, &orders);
        assert!(t.contains("== compare over 3 rounds: relay ÷ floor"), "{t}");
        assert!(t.contains("relay,floor"), "{t}");
        let median = t
            .lines()
            .find(|l| l.trim_start().starts_with("median"))
            .unwrap();
        assert_eq!(
            median.split_whitespace().collect::<Vec<_>>(),
            ["median", "1.00", "1.00", "1.00"]
        );
        let range = t
            .lines()
            .find(|l| l.trim_start().starts_with("range"))
            .unwrap();
        assert_eq!(
            range.split_whitespace().collect::<Vec<_>>(),
            ["range", "1.00–1.00", "0.50–2.00", "0.50–2.00"]
        );
        assert!(t.contains("clean in 3 of 3 rounds"), "{t}");
    }

    #[test]
    fn medians_of_odd_even_and_no_values() {
        assert_eq!(median(&[1.0, 2.0, 9.0]), Some(2.0));
        assert_eq!(median(&[1.0, 2.0, 4.0, 9.0]), Some(3.0));
        assert_eq!(median(&[]), None);
    }
}
