//! The verdict: whether a ramp step held, and whether the whole run was clean.

use crate::report::{PhaseReport, RunReport, TierDelivery};

/// Why a ramp step did not hold, if it did not.
pub(super) fn step_failure(p: &PhaseReport, bound_us: u64) -> Option<String> {
    let f = &p.fast;
    if f.lost > 0 || f.relay_gap_ticks > 0 {
        return Some(format!(
            "{} ticks lost ({} announced by gap notices)",
            f.lost, f.relay_gap_ticks
        ));
    }
    if !f.seq.is_clean() {
        return Some(format!("sequence errors {:?}", f.seq));
    }
    if f.latency_us.p99_us > bound_us {
        return Some(format!(
            "p99 {} µs > bound {bound_us} µs",
            f.latency_us.p99_us
        ));
    }
    if p.achieved_rate < p.target_rate * 0.95 {
        return Some(format!(
            "publisher reached only {:.0}/s of {:.0}/s (ingest backpressure)",
            p.achieved_rate, p.target_rate
        ));
    }
    None
}

/// Fills `clean`, `problems` and `caveats`. Clean is about what was delivered (every tick
/// published to a client's symbols, once, in order), never about how fast the box was: a
/// publisher that fell short of its rate is a caveat on the load, not a fault.
pub(super) fn judge(r: &mut RunReport) {
    let mut problems = std::mem::take(&mut r.problems);
    let mut caveats = Vec::new();
    if r.connect.failed > 0 || r.connect.welcomed < r.connect.requested as u64 {
        problems.push(format!(
            "{} of {} clients not welcomed ({} failed)",
            r.connect.requested as u64 - r.connect.welcomed.min(r.connect.requested as u64),
            r.connect.requested,
            r.connect.failed
        ));
    }
    if r.closed_early > 0 {
        problems.push(format!(
            "{} clients disconnected during the run",
            r.closed_early
        ));
    }
    let ramp_last_failed =
        r.ramp.is_some() && r.phases.last().is_some_and(|p| p.held == Some(false));
    let n = r.phases.len();
    for (i, p) in r.phases.iter().enumerate() {
        if ramp_last_failed && i + 1 == n && n > 1 {
            continue; // the step that ended the ramp is its result, not a fault
        }
        let f = &p.fast;
        let at = format!("at {:.0}/s", p.target_rate);
        let checks = [
            (f.lost, "ticks lost"),
            (f.extra, "ticks more than expected"),
            (f.seq.gaps, "seq gaps"),
            (f.seq.dups, "duplicates"),
            (f.seq.out_of_order, "out-of-order ticks"),
            (f.relay_gap_ticks, "ticks announced lost by gap notices"),
            (f.decode_errors, "undecodable messages"),
            (f.error_msgs, "error messages"),
            (f.unexpected_symbol, "ticks of unsubscribed symbols"),
            (p.ingest_error_lines, "ingest error lines"),
            (
                p.acks.as_ref().map_or(0, |a| a.unacked),
                "ticks unacknowledged",
            ),
        ];
        let tier = p.tier.as_ref().map_or_else(Vec::new, tier_checks);
        for (count, what) in checks.into_iter().chain(tier) {
            if count > 0 {
                problems.push(format!("{count} {what} {at}"));
            }
        }
        if let Some(t) = &p.tier
            && t.clients > 0
            && t.counts.frames == 0
        {
            problems.push(format!(
                "{} tier clients received no tier frame {at}",
                t.clients
            ));
        }
        if p.achieved_rate < p.target_rate * 0.95 {
            caveats.push(format!(
                "publisher reached only {:.0}/s of {:.0}/s",
                p.achieved_rate, p.target_rate
            ));
        }
    }
    r.clean = problems.is_empty();
    r.problems = problems;
    r.caveats = caveats;
}

/// What makes a phase's rate-tier clients unclean: a frame that does not chain onto the
/// last, announced loss, a closed connection, an error or an undecodable message.
fn tier_checks(t: &TierDelivery) -> Vec<(u64, &'static str)> {
    vec![
        (
            t.counts.breaks,
            "tier frames not chained on the last (from_seq != seq + 1)",
        ),
        (t.counts.gaps, "gap notices to tier clients"),
        (t.closed, "tier clients disconnected"),
        (t.error_msgs, "error messages to tier clients"),
        (t.decode_errors, "undecodable messages to tier clients"),
        (t.unexpected_symbol, "tier frames of unsubscribed symbols"),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ramp_step_verdicts() {
        let mut p = PhaseReport {
            target_rate: 1000.0,
            achieved_rate: 1000.0,
            ..PhaseReport::default()
        };
        p.fast.latency_us.p99_us = 900;
        assert_eq!(step_failure(&p, 1000), None);
        p.fast.latency_us.p99_us = 1100;
        assert!(step_failure(&p, 1000).unwrap().contains("p99"));
        p.fast.lost = 3;
        assert!(step_failure(&p, 1000).unwrap().contains("lost"));
    }

    #[test]
    fn a_slow_publisher_is_a_caveat_and_a_lost_tick_a_problem() {
        let mut r = crate::report::tests::sample();
        r.ramp = None;
        for p in &mut r.phases {
            p.held = None;
        }
        r.phases[1].achieved_rate = r.phases[1].target_rate * 0.5;
        judge(&mut r);
        assert!(r.clean, "{:?}", r.problems);
        assert_eq!(r.caveats, ["publisher reached only 100/s of 200/s"]);

        r.phases[2].fast.lost = 1;
        r.phases[2].fast.seq.out_of_order = 2;
        judge(&mut r);
        assert!(!r.clean);
        assert_eq!(
            r.problems,
            ["1 ticks lost at 400/s", "2 out-of-order ticks at 400/s"]
        );
    }

    #[test]
    fn a_broken_tier_chain_or_a_silent_tier_is_a_problem() {
        let mut r = crate::report::tests::sample();
        r.ramp = None;
        r.phases.truncate(1);
        r.phases[0].held = None;
        let mut tier = TierDelivery {
            clients: 4,
            ..TierDelivery::default()
        };
        tier.counts.frames = 40;
        r.phases[0].tier = Some(tier.clone());
        judge(&mut r);
        assert!(r.clean, "{:?}", r.problems);
        tier.counts.breaks = 2;
        r.phases[0].tier = Some(tier.clone());
        judge(&mut r);
        assert_eq!(
            r.problems,
            ["2 tier frames not chained on the last (from_seq != seq + 1) at 100/s"]
        );
        tier.counts = Default::default();
        r.phases[0].tier = Some(tier);
        r.problems.clear();
        judge(&mut r);
        assert_eq!(
            r.problems,
            ["4 tier clients received no tier frame at 100/s"]
        );
    }
}
