//! The end of a `stuck` run: the healthy clients' latency alone and beside the stuck ones,
//! and the ratio (target: p99 beside ≤ 1.1× alone).

use std::fmt::Write as _;

use super::RunReport;
use super::rounds::median;
use super::units::{ratio, us};

/// The comparison of the two halves' healthy clients.
pub fn stuck_table(alone: &RunReport, beside: &RunReport) -> String {
    let mut out = String::new();
    let (Some(a), Some(b)) = (alone.phases.first(), beside.phases.first()) else {
        return out;
    };
    let stuck = b.slow.as_ref().map_or(0, |s| s.clients);
    let (la, lb) = (&a.fast.latency_us, &b.fast.latency_us);
    let p99 = p99_ratio(alone, beside);
    let _ = writeln!(
        out,
        "\n== stuck consumers on {}: {} healthy clients alone, then beside {stuck} that stop reading \
         ({:.0} ticks/s, {} clients × {} of {} symbols)",
        alone.config.server,
        a.fast.clients,
        a.target_rate,
        alone.config.clients,
        alone.config.symbols_per_client,
        alone.config.symbols
    );
    let _ = writeln!(
        out,
        "{:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
        "", "p50", "p99", "p99.9", "lost", "closed"
    );
    for (name, p, l) in [("alone", a, la), ("beside", b, lb)] {
        let _ = writeln!(
            out,
            "{name:>8} {:>9} {:>9} {:>9} {:>9} {:>9}",
            us(l.p50_us),
            us(l.p99_us),
            us(l.p999_us),
            p.fast.lost,
            p.fast.closed
        );
    }
    let met = p99.is_some_and(|r| r <= STUCK_P99_BOUND);
    let _ = writeln!(
        out,
        "healthy p99 beside ÷ alone: {} (target ≤ {STUCK_P99_BOUND:.2}: {}); stuck clients \
         disconnected by the server: {}",
        ratio(p99),
        if met { "met" } else { "NOT met" },
        b.slow.as_ref().map_or(0, |s| s.closed)
    );
    out
}

/// The healthy clients' p99 beside ÷ alone over several rounds (each round's pair from
/// one `stuck` invocation): one line per round, then the median and the range.
pub fn stuck_rounds_table(rounds: &[(&RunReport, &RunReport)]) -> String {
    let mut out =
        String::from("\n== stuck consumers over the rounds: healthy p99 beside ÷ alone\n");
    let mut ratios = Vec::new();
    for (n, (alone, beside)) in rounds.iter().enumerate() {
        let r = p99_ratio(alone, beside);
        let order = if n % 2 == 0 {
            "alone first"
        } else {
            "beside first"
        };
        let _ = writeln!(out, "round {} ({order}): {}", n + 1, ratio(r));
        ratios.extend(r);
    }
    ratios.sort_by(f64::total_cmp);
    let med = median(&ratios);
    let _ = writeln!(
        out,
        "median {} (range {} – {}; target ≤ {STUCK_P99_BOUND:.2}: {})",
        ratio(med),
        ratio(ratios.first().copied()),
        ratio(ratios.last().copied()),
        if med.is_some_and(|m| m <= STUCK_P99_BOUND) {
            "met"
        } else {
            "NOT met"
        }
    );
    out
}

/// The healthy clients' p99 beside ÷ alone, when both halves measured one.
fn p99_ratio(alone: &RunReport, beside: &RunReport) -> Option<f64> {
    let (a, b) = (alone.phases.first()?, beside.phases.first()?);
    let (x, y) = (b.fast.latency_us.p99_us, a.fast.latency_us.p99_us);
    (y > 0).then(|| x as f64 / y as f64)
}

/// The healthy clients' p99 beside stuck ones may be at most this many times their p99 alone.
const STUCK_P99_BOUND: f64 = 1.1;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::Delivery;
    use crate::report::tests::sample;

    #[test]
    fn the_ratio_is_the_healthy_p99_beside_over_alone() {
        let mut alone = sample();
        alone.phases.truncate(1);
        alone.phases[0].fast.latency_us.p99_us = 2000;
        let mut beside = alone.clone();
        beside.phases[0].fast.latency_us.p99_us = 2100;
        beside.phases[0].slow = Some(Delivery {
            clients: 3,
            closed: 2,
            ..Delivery::default()
        });
        let t = stuck_table(&alone, &beside);
        assert!(t.contains("beside 3 that stop reading"), "{t}");
        assert!(
            t.contains("healthy p99 beside ÷ alone: 1.05 (target ≤ 1.10: met); stuck clients disconnected by the server: 2"),
            "{t}"
        );
        beside.phases[0].fast.latency_us.p99_us = 2400;
        assert!(stuck_table(&alone, &beside).contains("1.20 (target ≤ 1.10: NOT met)"));
    }

    #[test]
    fn over_rounds_the_verdict_is_the_median_ratio() {
        let mut alone = sample();
        alone.phases.truncate(1);
        alone.phases[0].fast.latency_us.p99_us = 1000;
        let with_p99 = |p99| {
            let mut r = alone.clone();
            r.phases[0].fast.latency_us.p99_us = p99;
            r
        };
        let (a, b, c) = (with_p99(1000), with_p99(1300), with_p99(1050));
        let t = stuck_rounds_table(&[(&alone, &a), (&alone, &b), (&alone, &c)]);
        assert!(t.contains("round 2 (beside first): 1.30"), "{t}");
        assert!(
            t.contains("median 1.05 (range 1.00 – 1.30; target ≤ 1.10: met)"),
            "{t}"
        );
        let t = stuck_rounds_table(&[(&alone, &b), (&alone, &b), (&alone, &a)]);
        assert!(t.contains("median 1.30"), "{t}");
        assert!(t.contains("NOT met"), "{t}");
    }
}
