//! Latency histograms (µs) and the wall clock both ends of a measurement share.
//!
//! Latency is `receive time - ts_ns`: the publisher stamps `ts_ns` from the same system clock
//! when it writes the tick, so one machine needs no clock sync. Each worker records into its own
//! [`LatencyHist`]; the coordinator merges them.

use std::time::{SystemTime, UNIX_EPOCH};

use hdrhistogram::Histogram;
use serde::{Deserialize, Serialize};

/// An HDR histogram of latencies in µs, 1 µs to 10 min at 3 significant digits.
#[derive(Clone, Debug)]
pub struct LatencyHist(Histogram<u64>);

/// Percentiles of one histogram, in µs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub min_us: u64,
    pub mean_us: f64,
    pub p50_us: u64,
    pub p90_us: u64,
    pub p99_us: u64,
    pub p999_us: u64,
    pub max_us: u64,
}

impl Default for LatencyHist {
    fn default() -> Self {
        Self::new()
    }
}

impl LatencyHist {
    /// An empty histogram.
    pub fn new() -> Self {
        Self(
            Histogram::new_with_bounds(1, MAX_US, 3)
                .expect("bounds 1..MAX_US at 3 digits are valid for hdrhistogram"),
        )
    }

    /// Records one latency; values past the top are clamped, never dropped.
    pub fn record_us(&mut self, us: u64) {
        self.0.saturating_record(us.max(1));
    }

    /// Records `now_ns - ts_ns` (a tick stamped "in the future" by clock skew counts as 1 µs).
    pub fn record_since(&mut self, now_ns: u64, ts_ns: u64) {
        self.record_us(now_ns.saturating_sub(ts_ns) / 1_000);
    }

    /// Adds every sample of `other`.
    pub fn merge(&mut self, other: &Self) {
        self.0
            .add(&other.0)
            .expect("histograms built by LatencyHist::new share bounds, so add cannot fail");
    }

    /// Forgets every sample.
    pub fn reset(&mut self) {
        self.0.reset();
    }

    /// Number of samples.
    pub fn len(&self) -> u64 {
        self.0.len()
    }

    /// True with no samples.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The percentiles the report shows.
    pub fn summary(&self) -> LatencySummary {
        if self.0.is_empty() {
            return LatencySummary::default();
        }
        let h = &self.0;
        LatencySummary {
            count: h.len(),
            min_us: h.min(),
            mean_us: h.mean(),
            p50_us: h.value_at_quantile(0.50),
            p90_us: h.value_at_quantile(0.90),
            p99_us: h.value_at_quantile(0.99),
            p999_us: h.value_at_quantile(0.999),
            max_us: h.max(),
        }
    }
}

/// Nanoseconds since the Unix epoch, the unit of `ts_ns`.
pub fn now_ns() -> u64 {
    let since = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the system clock is past 1970");
    u64::try_from(since.as_nanos()).expect("u64 ns since 1970 lasts until 2554")
}

/// 10 minutes: anything slower is a stall, and the run is bounded well below that anyway.
const MAX_US: u64 = 600_000_000;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_merges_and_summarizes() {
        let mut a = LatencyHist::new();
        let mut b = LatencyHist::new();
        for us in 1..=1000 {
            a.record_us(us);
        }
        b.record_since(10_000_000, 5_000_000); // 5 ms
        b.record_since(1, 2); // skew: clamped to 1 µs
        a.merge(&b);
        let s = a.summary();
        assert_eq!(s.count, 1002);
        assert_eq!(s.min_us, 1);
        assert!((499..=501).contains(&s.p50_us), "{s:?}");
        assert!((4995..=5005).contains(&s.max_us), "{s:?}");
        a.reset();
        assert!(a.is_empty());
        assert_eq!(a.summary(), LatencySummary::default());
    }

    #[test]
    fn huge_values_are_clamped_not_dropped() {
        let mut h = LatencyHist::new();
        h.record_us(u64::MAX);
        assert_eq!(h.len(), 1);
    }
}
