//! The end of a `tiers` run: the raw clients' latency and loss alone and beside the tier
//! clients, the tier clients' frames and continuity, and what they cost the relay.

use std::fmt::Write as _;

use super::units::{mib, ratio, us};
use super::{PhaseReport, RunReport};

/// What the tier clients added to the relay, from the two halves' phases.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct TierCost {
    /// Relay CPU per second of publishing, alone and beside, in CPU-seconds per second.
    pub cpu_alone: f64,
    pub cpu_beside: f64,
    /// (beside − alone) per tier client, CPU-µs per second.
    pub cpu_us_per_client_s: f64,
    /// The CPU beside minus alone over the phase, per tier frame received, ns.
    pub ns_per_frame: Option<f64>,
    /// (RSS max beside − alone) per tier client, bytes.
    pub rss_bytes_per_client: Option<f64>,
    /// The raw clients' p99 beside ÷ alone.
    pub raw_p99_ratio: Option<f64>,
}

impl TierCost {
    /// The cost of `beside`'s tier clients over `alone` (both one publishing phase); `None`
    /// without the relay's CPU or tier clients.
    pub fn between(alone: &PhaseReport, beside: &PhaseReport) -> Option<Self> {
        let tier = beside.tier.as_ref().filter(|t| t.clients > 0)?;
        let per_s = |p: &PhaseReport| Some(p.relay_cpu_s? / p.duration_s.max(1e-9));
        let (cpu_alone, cpu_beside) = (per_s(alone)?, per_s(beside)?);
        let clients = tier.clients as f64;
        let added_s = (cpu_beside - cpu_alone) * beside.duration_s;
        let (a99, b99) = (alone.fast.latency_us.p99_us, beside.fast.latency_us.p99_us);
        Some(Self {
            cpu_alone,
            cpu_beside,
            cpu_us_per_client_s: (cpu_beside - cpu_alone) * 1e6 / clients,
            ns_per_frame: (tier.counts.frames > 0)
                .then(|| added_s * 1e9 / tier.counts.frames as f64),
            rss_bytes_per_client: match (alone.relay_rss_max_kb, beside.relay_rss_max_kb) {
                (Some(a), Some(b)) => Some((b as f64 - a as f64) * 1024.0 / clients),
                _ => None,
            },
            raw_p99_ratio: (a99 > 0).then(|| b99 as f64 / a99 as f64),
        })
    }
}

/// The two halves side by side.
pub fn tiers_table(alone: &RunReport, beside: &RunReport) -> String {
    let mut out = String::new();
    let (Some(a), Some(b)) = (alone.phases.first(), beside.phases.first()) else {
        return out;
    };
    let tier = b.tier.clone().unwrap_or_default();
    let _ = writeln!(
        out,
        "\n== rate tiers: {} raw clients alone, then beside {} clients @{} ({:.0} ticks/s, \
         {} of {} symbols each)",
        a.fast.clients,
        tier.clients,
        tier.tier,
        a.target_rate,
        alone.config.symbols_per_client,
        alone.config.symbols
    );
    let _ = writeln!(
        out,
        "{:>8} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>6}",
        "raw", "p50", "p99", "p99.9", "lost", "relay p99", "relay CPU", "RSS max", "clean"
    );
    for (name, r, p) in [("alone", alone, a), ("beside", beside, b)] {
        let l = &p.fast.latency_us;
        let _ = writeln!(
            out,
            "{name:>8} {:>9} {:>9} {:>9} {:>8} {:>10} {:>10} {:>10} {:>6}",
            us(l.p50_us),
            us(l.p99_us),
            us(l.p999_us),
            p.fast.lost,
            relay_p99(r).map_or("-".into(), us),
            p.relay_cpu_s.map_or("-".into(), |c| format!("{c:.2}s")),
            p.relay_rss_max_kb.map_or("-".into(), mib),
            if r.clean { "yes" } else { "NO" }
        );
    }
    let per = (tier.symbols as f64 * b.duration_s).max(1e-9);
    let c = &tier.counts;
    let _ = writeln!(
        out,
        "tier clients: {} frames ({:.2} per subscription per second of publishing), standing \
         for {} of the {} ticks published to them; {} snapshots; not chained: {}; gap notices: \
         {}; closed: {}",
        c.frames,
        c.frames as f64 / per,
        c.ticks_covered,
        tier.ticks_published,
        c.snapshots,
        c.breaks,
        c.gaps,
        tier.closed
    );
    out.push_str(
        "(p50..p99.9: publish → receive at the raw clients, read by the same harness workers as \
         the tier frames; relay p99: the relay's own ingest → write, the whole run)\n",
    );
    match TierCost::between(a, b) {
        Some(cost) => {
            let _ = writeln!(
                out,
                "relay CPU {:.1}% alone, {:.1}% beside: {:.1} µs of CPU per second per tier \
                 client, {} per tier frame; RSS {} per tier client; raw p99 beside ÷ alone {}",
                cost.cpu_alone * 100.0,
                cost.cpu_beside * 100.0,
                cost.cpu_us_per_client_s,
                cost.ns_per_frame
                    .map_or("-".into(), |ns| format!("{ns:.0} ns")),
                cost.rss_bytes_per_client
                    .map_or("-".into(), |b| format!("{b:.0} bytes")),
                ratio(cost.raw_p99_ratio)
            );
        }
        None => out.push_str("relay CPU per tier client: - (no relay pid to read)\n"),
    }
    out
}

/// The relay's own ingest → socket-write p99 over the run (`/stats` `latency_us`), µs: what
/// the raw clients' p99 is, without the harness's reading.
fn relay_p99(r: &RunReport) -> Option<u64> {
    let latency = r.relay.as_ref()?.stats.as_ref()?.get("latency_us")?;
    Some(latency.get("p99")?.as_f64()? as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::TierDelivery;

    fn phase(cpu_s: f64, duration_s: f64, rss_kb: u64, p99_us: u64) -> PhaseReport {
        let mut p = PhaseReport {
            relay_cpu_s: Some(cpu_s),
            duration_s,
            relay_rss_max_kb: Some(rss_kb),
            target_rate: 2000.0,
            ..PhaseReport::default()
        };
        p.fast.latency_us.p99_us = p99_us;
        p.fast.clients = 100; // the raw clients, in both halves: not part of the cost's divisor
        p
    }

    #[test]
    fn the_cost_is_the_cpu_added_per_tier_client() {
        // 2 s of relay CPU over 10 s alone (20%), 4 s over 8 s beside (50%): 30% for 1,000
        // tier clients is 300 µs per second each; 2.4 CPU-s over 20,000 frames, 120 µs each.
        let alone = phase(2.0, 10.0, 10_000, 2_000);
        let mut beside = phase(4.0, 8.0, 20_000, 3_000);
        let mut tier = TierDelivery {
            clients: 1000,
            ..TierDelivery::default()
        };
        tier.counts.frames = 20_000;
        beside.tier = Some(tier);
        let cost = TierCost::between(&alone, &beside).unwrap();
        assert!((cost.cpu_alone - 0.2).abs() < 1e-9, "{cost:?}");
        assert!((cost.cpu_us_per_client_s - 300.0).abs() < 1e-6, "{cost:?}");
        assert!(
            (cost.ns_per_frame.unwrap() - 120_000.0).abs() < 1e-3,
            "{cost:?}"
        );
        assert!((cost.rss_bytes_per_client.unwrap() - 10_240.0).abs() < 1e-9);
        assert_eq!(cost.raw_p99_ratio, Some(1.5));
        let t = tiers_table(
            &RunReport {
                phases: vec![alone.clone()],
                ..crate::report::tests::sample()
            },
            &RunReport {
                phases: vec![beside.clone()],
                ..crate::report::tests::sample()
            },
        );
        assert!(
            t.contains("300.0 µs of CPU per second per tier client"),
            "{t}"
        );
        beside.tier = None;
        assert_eq!(TierCost::between(&alone, &beside), None, "no tier clients");
    }
}
