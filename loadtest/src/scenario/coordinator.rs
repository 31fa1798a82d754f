//! A run in progress, seen from the coordinator thread: waiting for welcomes, publishing a
//! phase while watching the relay, draining, and collecting the workers' figures into
//! per-group deliveries.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use indicatif::ProgressBar;

use super::args::RunArgs;
use super::groups::{group, tier_group};
use super::progress::ProgressTotals;
use crate::client::{ClientPlan, ClientStatus, WorkerHandle};
use crate::latency::LatencyHist;
use crate::procfs;
use crate::publisher::{PublishOutcome, Publisher};
use crate::relay::RelayProcess;
use crate::report::{AckReport, Delivery, PhaseReport};

/// Everything a phase needs while the run is on.
pub(super) struct Ctx<'a> {
    pub(super) args: &'a RunArgs,
    pub(super) bar: ProgressBar,
    pub(super) workers: Vec<WorkerHandle>,
    pub(super) relay_pid: Option<u32>,
    pub(super) relay: Option<&'a mut RelayProcess>,
    pub(super) publisher: Option<Publisher>,
    pub(super) sent: Arc<AtomicU64>,
    /// Ticks per symbol published in the last phase.
    pub(super) last_delta: Vec<u64>,
}

/// Merged worker figures, clients indexed by id.
#[derive(Clone)]
pub(super) struct Collected {
    pub(super) clients: Vec<ClientStatus>,
    pub(super) latency: LatencyHist,
    pub(super) handshake: LatencyHist,
    pub(super) worker_cpu: Duration,
    pub(super) worker_cpu_split: procfs::CpuTimes,
    pub(super) errors: BTreeMap<String, u64>,
}

/// Counters read when a phase starts, subtracted at its end.
struct PhaseStart {
    relay_cpu: Option<procfs::CpuTimes>,
    self_cpu: procfs::CpuTimes,
    ticks_fast: u64,
    /// Ticks written per symbol so far.
    published: Vec<u64>,
    ingest_error_lines: u64,
}

impl Ctx<'_> {
    pub(super) fn progress(&self) -> ProgressTotals {
        let mut t = ProgressTotals::default();
        for w in &self.workers {
            t.add(&w.progress);
        }
        t
    }

    pub(super) fn wait_welcomes(&mut self, started: Instant) -> Result<(u64, u64, Duration)> {
        let n = self.args.clients as u64;
        let mut last_change = started;
        let mut seen = 0;
        loop {
            let p = self.progress();
            self.bar.set_message(format!(
                "connecting: {}/{n} welcomed, {} failed, {} closed",
                p.welcomed, p.failed, p.closed
            ));
            if p.welcomed != seen {
                seen = p.welcomed;
                last_change = Instant::now();
            }
            if p.welcomed + p.failed + p.closed >= n {
                return Ok((p.welcomed, p.failed + p.closed, last_change - started));
            }
            if started.elapsed() > self.args.welcome_timeout {
                return Ok((p.welcomed, n - p.welcomed, last_change - started));
            }
            if let Some(r) = self.relay.as_mut() {
                r.check_alive()?;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    pub(super) fn collect(&self, reset_latency: bool) -> Result<Collected> {
        let mut out = Collected {
            clients: vec![ClientStatus::default(); self.args.clients],
            latency: LatencyHist::new(),
            handshake: LatencyHist::new(),
            worker_cpu: Duration::ZERO,
            worker_cpu_split: procfs::CpuTimes::default(),
            errors: BTreeMap::new(),
        };
        for w in &self.workers {
            let snap = w.collect(reset_latency)?;
            out.latency.merge(&snap.latency);
            out.handshake.merge(&snap.handshake);
            out.worker_cpu += snap.cpu;
            out.worker_cpu_split.user += snap.cpu_split.user;
            out.worker_cpu_split.system += snap.cpu_split.system;
            for (e, n) in snap.errors {
                *out.errors.entry(e).or_default() += n;
            }
            for c in snap.clients {
                let id = c.id;
                out.clients[id] = c;
            }
        }
        Ok(out)
    }

    /// Idles for `duration` (crowd without publishing), watching the relay.
    pub(super) fn hold(&mut self, duration: Duration) -> Result<()> {
        let start = Instant::now();
        while start.elapsed() < duration {
            let p = self.progress();
            self.bar.set_message(format!(
                "holding {} idle clients {:.0}/{:.0}s, {} closed, relay RSS {}",
                p.welcomed,
                start.elapsed().as_secs_f64(),
                duration.as_secs_f64(),
                p.closed,
                self.relay_rss()
                    .map_or("-".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
            ));
            if let Some(r) = self.relay.as_mut() {
                r.check_alive()?;
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Ok(())
    }

    fn relay_rss(&self) -> Option<u64> {
        self.relay_pid
            .and_then(|p| procfs::memory(p).ok())
            .map(|m| m.rss_kb)
    }

    /// Publishes `rate` for `duration`, drains, and reports what the clients got.
    pub(super) fn phase(
        &mut self,
        rate: f64,
        duration: Duration,
        plans: &[ClientPlan],
        welcomed: &[bool],
        last: &mut Collected,
        label: &str,
    ) -> Result<PhaseReport> {
        let start = self.phase_start()?;
        let mut rss_max = self.relay_rss();
        let outcome = self.publish_watched(rate, duration, label, &mut rss_max)?;
        let publisher = self.publisher.as_ref().expect("phase_start checked it");
        let delta: Vec<u64> = publisher
            .published()
            .iter()
            .zip(&start.published)
            .map(|(a, b)| a - b)
            .collect();
        let expected_fast: u64 = plans
            .iter()
            .filter(|p| !p.slow && welcomed[p.id] && p.feed.counts_as_ticks())
            .map(|p| p.symbols.iter().map(|&s| delta[s as usize]).sum::<u64>())
            .sum();
        let drain_timed_out = self.drain(start.ticks_fast, expected_fast, label, &mut rss_max);

        let relay_cpu = match (
            start.relay_cpu,
            self.relay_pid.and_then(|p| procfs::process_cpu(p).ok()),
        ) {
            (Some(a), Some(b)) => Some(b.since(&a)),
            _ => None,
        };
        // A tier's last frame comes up to one interval after the last tick (not in the CPU).
        let tiered = self.args.feeds.tier_clients > 0;
        if tiered {
            std::thread::sleep(self.args.feeds.tier_interval + TIER_SLACK);
        }
        let now = self.collect(true)?;
        let mut fast = group(&last.clients, &now.clients, plans, welcomed, &delta, false);
        fast.latency_us = now.latency.summary();
        let slow = plans
            .iter()
            .any(|p| p.slow)
            .then(|| group(&last.clients, &now.clients, plans, welcomed, &delta, true));
        let deliveries = fast.received + slow.as_ref().map_or(0, |s| s.received);
        let elapsed = outcome.elapsed.as_secs_f64().max(1e-9);
        let rss_end = self.relay_rss();
        let report = PhaseReport {
            target_rate: rate,
            achieved_rate: outcome.sent as f64 / elapsed,
            duration_s: elapsed,
            published: outcome.sent,
            ingest_error_lines: publisher.errors.lines.load(Ordering::Relaxed)
                - start.ingest_error_lines,
            acks: publisher.acks().map(|(unacked, latency)| AckReport {
                unacked,
                reconnects: publisher.reconnects,
                latency: latency.summary(),
            }),
            deliveries_per_s: deliveries as f64 / elapsed,
            fast,
            slow,
            tier: tiered.then(|| tier_group(&last.clients, &now.clients, plans, welcomed, &delta)),
            relay_rss_max_kb: rss_max.max(rss_end),
            relay_rss_end_kb: rss_end,
            held: None,
            drain_timed_out,
            ..cpu_costs(&start, relay_cpu, last, &now, deliveries)
        };
        *last = now;
        self.last_delta = delta;
        Ok(report)
    }

    /// The counters a phase subtracts at its end.
    fn phase_start(&self) -> Result<PhaseStart> {
        let relay_cpu = self.relay_pid.and_then(|p| procfs::process_cpu(p).ok());
        let self_cpu = procfs::self_cpu().unwrap_or_default();
        let ticks_fast = self.progress().ticks_fast;
        let publisher = self
            .publisher
            .as_ref()
            .context("publishing needs a rate > 0")?;
        Ok(PhaseStart {
            relay_cpu,
            self_cpu,
            ticks_fast,
            published: publisher.published().to_vec(),
            ingest_error_lines: publisher.errors.lines.load(Ordering::Relaxed),
        })
    }

    /// Publishes on a scoped thread while this one shows progress, samples the relay's RSS
    /// into `rss_max` and stops the publisher if the relay dies.
    fn publish_watched(
        &mut self,
        rate: f64,
        duration: Duration,
        label: &str,
        rss_max: &mut Option<u64>,
    ) -> Result<PublishOutcome> {
        let stop = AtomicBool::new(false);
        let sent = Arc::clone(&self.sent);
        let sent_before = sent.load(Ordering::Relaxed);
        let publisher = self
            .publisher
            .as_mut()
            .expect("phase_start checked there is a publisher");
        let started = Instant::now();
        std::thread::scope(|s| -> Result<_> {
            let publishing = s.spawn(|| publisher.run(rate, duration, &sent, &stop));
            while !publishing.is_finished() {
                let p = ProgressTotals::sum(&self.workers);
                let rss = self
                    .relay_pid
                    .and_then(|pid| procfs::memory(pid).ok())
                    .map(|m| m.rss_kb);
                *rss_max = (*rss_max).max(rss);
                self.bar.set_message(format!(
                    "{label}{rate:.0}/s {:.1}/{:.0}s: published {}, delivered {}, closed {}, relay RSS {}",
                    started.elapsed().as_secs_f64(),
                    duration.as_secs_f64(),
                    sent.load(Ordering::Relaxed) - sent_before,
                    p.ticks,
                    p.closed,
                    rss.map_or("-".into(), |kb| format!("{:.1} MiB", kb as f64 / 1024.0))
                ));
                if let Some(r) = self.relay.as_mut()
                    && let Err(e) = r.check_alive()
                {
                    stop.store(true, Ordering::Relaxed);
                    return Err(e);
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            publishing
                .join()
                .map_err(|_| anyhow::anyhow!("publisher thread panicked"))?
        })
    }

    /// Waits until every expected tick is in, or nothing arrives for `--drain-idle`, or
    /// `--drain-timeout` passes; true when it stopped waiting with ticks still missing.
    fn drain(
        &self,
        fast_before: u64,
        expected_fast: u64,
        label: &str,
        rss_max: &mut Option<u64>,
    ) -> bool {
        let drain_start = Instant::now();
        let mut last_seen = self.progress().ticks_fast;
        let mut last_change = drain_start;
        loop {
            let got = self.progress().ticks_fast;
            if got - fast_before >= expected_fast {
                return false;
            }
            if got != last_seen {
                last_seen = got;
                last_change = Instant::now();
            }
            if last_change.elapsed() > self.args.drain_idle
                || drain_start.elapsed() > self.args.drain_timeout
            {
                return true;
            }
            self.bar.set_message(format!(
                "{label}draining: {}/{expected_fast}",
                got - fast_before
            ));
            *rss_max = (*rss_max).max(self.relay_rss());
            std::thread::sleep(Duration::from_millis(10));
        }
    }

    /// Lets the slow clients read what the relay still holds for them, and reports them over
    /// the last phase: what reached them at all, the gap notices, who was disconnected.
    pub(super) fn wake_slow(
        &mut self,
        baseline: &Collected,
        plans: &[ClientPlan],
        welcomed: &[bool],
    ) -> Result<Delivery> {
        for w in &self.workers {
            w.wake_slow()?;
        }
        // Done when the slow clients have every tick of the phase, or nothing moved for
        // --drain-idle (the relay cut some of them off, or holds nothing more for them).
        let slow: Vec<&ClientPlan> = plans.iter().filter(|p| p.slow && welcomed[p.id]).collect();
        let expected: u64 = slow
            .iter()
            .map(|p| {
                p.symbols
                    .iter()
                    .map(|&s| self.last_delta[s as usize])
                    .sum::<u64>()
            })
            .sum();
        let before: u64 = slow
            .iter()
            .map(|p| baseline.clients[p.id].counts.ticks)
            .sum();
        let start = Instant::now();
        let mut seen = self.progress();
        let mut last_change = start;
        while last_change.elapsed() < self.args.drain_idle
            && start.elapsed() < self.args.drain_timeout
            && seen.ticks - seen.ticks_fast < before + expected
        {
            std::thread::sleep(Duration::from_millis(50));
            let p = self.progress();
            if (p.ticks, p.closed) != (seen.ticks, seen.closed) {
                last_change = Instant::now();
            }
            seen = p;
            self.bar.set_message(format!(
                "slow clients reading again: {} ticks in total, {} closed",
                p.ticks, p.closed
            ));
        }
        let now = self.collect(false)?;
        Ok(group(
            &baseline.clients,
            &now.clients,
            plans,
            welcomed,
            &self.last_delta,
            true,
        ))
    }
}

fn per_delivery(cpu_s: f64, deliveries: u64) -> f64 {
    if deliveries == 0 {
        0.0
    } else {
        cpu_s * 1e9 / deliveries as f64
    }
}

/// The CPU figures of a phase (the other fields left default): the harness's workers and
/// process since `start`/`last`, the relay's `relay_cpu`, and each per delivery.
fn cpu_costs(
    start: &PhaseStart,
    relay_cpu: Option<procfs::CpuTimes>,
    last: &Collected,
    now: &Collected,
    deliveries: u64,
) -> PhaseReport {
    let worker_cpu = now.worker_cpu.saturating_sub(last.worker_cpu);
    let worker_split = now.worker_cpu_split.since(&last.worker_cpu_split);
    PhaseReport {
        harness_worker_cpu_s: worker_cpu.as_secs_f64(),
        harness_worker_ns_per_delivery: per_delivery(worker_cpu.as_secs_f64(), deliveries),
        harness_worker_user_ns_per_delivery: per_delivery(
            worker_split.user.as_secs_f64(),
            deliveries,
        ),
        harness_worker_system_ns_per_delivery: per_delivery(
            worker_split.system.as_secs_f64(),
            deliveries,
        ),
        harness_process_cpu_s: procfs::self_cpu()
            .unwrap_or_default()
            .since(&start.self_cpu)
            .total()
            .as_secs_f64(),
        relay_cpu_s: relay_cpu.map(|c| c.total().as_secs_f64()),
        relay_user_cpu_s: relay_cpu.map(|c| c.user.as_secs_f64()),
        relay_ns_per_delivery: relay_cpu.map(|c| per_delivery(c.total().as_secs_f64(), deliveries)),
        relay_user_ns_per_delivery: relay_cpu
            .map(|c| per_delivery(c.user.as_secs_f64(), deliveries)),
        ..PhaseReport::default()
    }
}

/// How long past one tier interval the last tier frame may take to arrive.
const TIER_SLACK: Duration = Duration::from_millis(300);
