//! The human-readable table printed at the end of a run.

use std::fmt::Write as _;

use super::units::{mib, us};
use super::{PhaseReport, RunReport};

impl RunReport {
    /// The human-readable table printed at the end of a run.
    pub fn table(&self) -> String {
        let mut out = String::new();
        self.write_head(&mut out);
        if !self.phases.is_empty() {
            write_column_names(&mut out);
        }
        for p in &self.phases {
            write_phase(&mut out, p);
        }
        if !self.phases.is_empty() {
            let _ = writeln!(
                out,
                "(latency µs→ms as shown; lt ns/d = harness worker CPU per delivery; rl ns/d = relay CPU per delivery)"
            );
        }
        self.write_tail(&mut out);
        out
    }

    /// The run's title line and how the clients connected.
    fn write_head(&self, out: &mut String) {
        let c = &self.config;
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
    }

    /// The relay's own ingest → socket-write latency (`/stats` `latency_us`, the whole run)
    /// beside what the clients measured (publish → receive, the worst phase): the relay's
    /// share of the client's latency, and a check that the relay's histogram is plausible
    /// (it can only be lower, its clock starts later and stops earlier).
    fn latency_cross_check(&self) -> Option<String> {
        let latency = self.relay.as_ref()?.stats.as_ref()?.get("latency_us")?;
        let relay = |k: &str| latency.get(k).and_then(serde_json::Value::as_f64);
        let (p50, p99) = (relay("p50")?, relay("p99")?);
        let worst = self
            .phases
            .iter()
            .map(|p| &p.fast.latency_us)
            .max_by_key(|l| l.p99_us)?;
        Some(format!(
            "relay-measured ingest→write (whole run, {} samples): p50 {} p99 {} p99.9 {}; clients measured publish→receive (worst phase): p50 {} p99 {}",
            latency
                .get("count")
                .and_then(serde_json::Value::as_u64)
                .unwrap_or(0),
            us(p50 as u64),
            us(p99 as u64),
            relay("p999").map_or("-".into(), |v| us(v as u64)),
            us(worst.p50_us),
            us(worst.p99_us),
        ))
    }

    /// The ramp and crowd verdicts, the relay and harness processes, errors, and clean or not.
    fn write_tail(&self, out: &mut String) {
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
        if let Some(line) = self.latency_cross_check() {
            let _ = writeln!(out, "{line}");
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
        for caveat in &self.caveats {
            let _ = writeln!(out, "caveat: {caveat}");
        }
    }
}

/// The header of the per-phase rows.
fn write_column_names(out: &mut String) {
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

/// One phase: its row, the batching and CPU line, and the slow clients and anomalies if any.
fn write_phase(out: &mut String, p: &PhaseReport) {
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
        "  {} frames ({} messages, {:.2} per frame) in {} reads ({:.2} frames/read), {:.1} MB; per delivery: harness user {:.0} ns + kernel {:.0} ns, relay user {} ns; CPU: harness {:.2} s, relay {}",
        f.frames,
        f.messages,
        f.messages as f64 / f.frames.max(1) as f64,
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
            s.clients, s.expected, s.received, s.lost, s.relay_gaps, s.relay_gap_ticks, s.closed
        );
    }
    if let Some(a) = &p.acks {
        let l = &a.latency;
        let _ = writeln!(
            out,
            "  publisher acks: {} batches acknowledged, {} ticks unacknowledged at the end, {} reconnects; write to ack p50 {} µs, p99 {} µs, max {} µs",
            l.count, a.unacked, a.reconnects, l.p50_us, l.p99_us, l.max_us
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
