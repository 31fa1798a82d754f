//! CPU time and memory of a process (the relay, or the harness itself) from `/proc`.
//!
//! Linux only. `/proc/PID/stat` gives user+system time in clock ticks (whole process, all
//! threads, live and exited); `/proc/thread-self/schedstat` gives one thread's on-CPU time in
//! ns; `/proc/PID/status` gives `VmRSS` and `VmHWM` (peak RSS) in KiB.

use std::fs;
use std::time::Duration;

use anyhow::{Context, Result, bail};

/// CPU time split into user and kernel (system) time, clock-tick resolution (10 ms).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuTimes {
    pub user: Duration,
    pub system: Duration,
}

impl CpuTimes {
    /// User + system.
    pub fn total(&self) -> Duration {
        self.user + self.system
    }

    /// `self - earlier`, clamped at zero.
    pub fn since(&self, earlier: &Self) -> Self {
        Self {
            user: self.user.saturating_sub(earlier.user),
            system: self.system.saturating_sub(earlier.system),
        }
    }
}

/// CPU time of process `pid` (all its threads).
pub fn process_cpu(pid: u32) -> Result<CpuTimes> {
    stat_cpu(&format!("/proc/{pid}/stat"))
}

/// CPU time of this whole process.
pub fn self_cpu() -> Result<CpuTimes> {
    process_cpu(std::process::id())
}

/// CPU time of the calling thread, split.
pub fn thread_cpu_split() -> Result<CpuTimes> {
    stat_cpu("/proc/thread-self/stat")
}

fn stat_cpu(path: &str) -> Result<CpuTimes> {
    let text = fs::read_to_string(path).with_context(|| format!("reading {path}"))?;
    let (user, system) = parse_stat_cpu_ticks(&text).with_context(|| format!("parsing {path}"))?;
    Ok(CpuTimes {
        user: ticks_to_duration(user),
        system: ticks_to_duration(system),
    })
}

/// On-CPU time of the calling thread, ns resolution when schedstat is available.
pub fn thread_cpu() -> Result<Duration> {
    if let Ok(text) = fs::read_to_string("/proc/thread-self/schedstat")
        && let Some(ns) = text
            .split_ascii_whitespace()
            .next()
            .and_then(|f| f.parse::<u64>().ok())
    {
        return Ok(Duration::from_nanos(ns));
    }
    Ok(thread_cpu_split()?.total())
}

/// Memory figures of a process, KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Memory {
    /// Resident set size now.
    pub rss_kb: u64,
    /// Peak resident set size since the process started.
    pub hwm_kb: u64,
}

/// `VmRSS` and `VmHWM` of process `pid`.
pub fn memory(pid: u32) -> Result<Memory> {
    let path = format!("/proc/{pid}/status");
    let text = fs::read_to_string(&path).with_context(|| format!("reading {path}"))?;
    parse_status_memory(&text).with_context(|| format!("parsing {path}"))
}

/// The 1-minute load average of the machine.
pub fn load_avg_1m() -> Result<f64> {
    let text = fs::read_to_string("/proc/loadavg")?;
    Ok(text
        .split_ascii_whitespace()
        .next()
        .context("empty /proc/loadavg")?
        .parse()?)
}

/// Number of open file descriptors of process `pid`.
pub fn open_fds(pid: u32) -> Result<usize> {
    Ok(fs::read_dir(format!("/proc/{pid}/fd"))?.count())
}

/// utime and stime (fields 14 and 15) of a `/proc/PID/stat` line, in clock ticks. The command name (field 2) is
/// parenthesised and may contain spaces, so fields are counted from its closing `)`.
fn parse_stat_cpu_ticks(stat: &str) -> Result<(u64, u64)> {
    let after = stat
        .rfind(')')
        .map(|i| &stat[i + 1..])
        .context("no `)` after the command name")?;
    let mut fields = after.split_ascii_whitespace().skip(UTIME_AFTER_COMM);
    let mut next = || -> Result<u64> {
        Ok(fields
            .next()
            .context("stat line too short")?
            .parse::<u64>()?)
    };
    let utime = next()?;
    let stime = next()?;
    Ok((utime, stime))
}

fn parse_status_memory(status: &str) -> Result<Memory> {
    let mut mem = Memory::default();
    let mut found = 0;
    for line in status.lines() {
        let Some((key, value)) = line.split_once(':') else {
            continue;
        };
        let target = match key {
            "VmRSS" => &mut mem.rss_kb,
            "VmHWM" => &mut mem.hwm_kb,
            _ => continue,
        };
        *target = value
            .trim()
            .trim_end_matches("kB")
            .trim()
            .parse()
            .with_context(|| format!("{key} value `{value}`"))?;
        found += 1;
    }
    if found < 2 {
        bail!("VmRSS/VmHWM missing (a zombie process?)");
    }
    Ok(mem)
}

fn ticks_to_duration(ticks: u64) -> Duration {
    let per_sec = rustix::param::clock_ticks_per_second().max(1);
    Duration::from_nanos(ticks.saturating_mul(1_000_000_000) / per_sec)
}

/// Fields after the command name start at field 3 (state); utime is field 14.
const UTIME_AFTER_COMM: usize = 14 - 3;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_line_with_spaces_in_the_name() {
        let line = "1234 (tick relay) S 1 1234 1234 0 -1 4194560 500 0 0 0 250 75 0 0 20 0 9 0 \
                    100 1000000 300 18446744073709551615";
        assert_eq!(parse_stat_cpu_ticks(line).unwrap(), (250, 75));
        assert!(parse_stat_cpu_ticks("1 (x) S 1").is_err());
    }

    #[test]
    fn status_memory() {
        let status =
            "Name:\ttickrelay\nVmPeak:\t  900 kB\nVmHWM:\t   5120 kB\nVmRSS:\t   4096 kB\n";
        assert_eq!(
            parse_status_memory(status).unwrap(),
            Memory {
                rss_kb: 4096,
                hwm_kb: 5120
            }
        );
        assert!(parse_status_memory("Name:\tzombie\n").is_err());
    }

    #[test]
    fn own_process_is_readable() {
        assert!(memory(std::process::id()).unwrap().rss_kb > 0);
        self_cpu().unwrap();
        thread_cpu().unwrap();
        thread_cpu_split().unwrap();
        assert!(open_fds(std::process::id()).unwrap() >= 3);
        let load = load_avg_1m().unwrap();
        let text = fs::read_to_string("/proc/loadavg").unwrap();
        assert_eq!(
            Some(load),
            text.split_ascii_whitespace()
                .next()
                .and_then(|f| f.parse().ok()),
            "the first field of /proc/loadavg"
        );
    }

    #[test]
    fn since_subtracts_each_part_and_clamps_at_zero() {
        let earlier = CpuTimes {
            user: Duration::from_millis(100),
            system: Duration::from_millis(40),
        };
        let later = CpuTimes {
            user: Duration::from_millis(130),
            system: Duration::from_millis(50),
        };
        let spent = later.since(&earlier);
        assert_eq!(
            spent,
            CpuTimes {
                user: Duration::from_millis(30),
                system: Duration::from_millis(10)
            }
        );
        assert_eq!(spent.total(), Duration::from_millis(40));
        assert_eq!(earlier.since(&later), CpuTimes::default(), "clamped");
    }

    #[test]
    fn thread_cpu_counts_this_threads_work() {
        let before = thread_cpu().unwrap();
        // Spin until the clock moves: schedstat has ns resolution, the stat fallback 10 ms.
        let started = std::time::Instant::now();
        let mut after = before;
        while after <= before && started.elapsed() < Duration::from_secs(5) {
            std::hint::black_box((0..10_000u64).sum::<u64>());
            after = thread_cpu().unwrap();
        }
        assert!(after > before, "{after:?} after {before:?}");
    }

    #[test]
    fn ticks_convert_at_the_kernels_rate() {
        let per_sec = rustix::param::clock_ticks_per_second();
        assert_eq!(ticks_to_duration(per_sec), Duration::from_secs(1));
        assert_eq!(ticks_to_duration(0), Duration::ZERO);
    }
}
