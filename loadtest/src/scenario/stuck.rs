//! Stuck consumers against healthy ones, both halves in one invocation: `--clients` healthy
//! clients alone, then the same healthy clients beside `--stuck` clients that stop reading
//! once welcomed, the same load each time, each half against a server started afresh. What
//! the healthy clients see is compared: a server that isolates a stuck client keeps their p99
//! where it was without one.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use super::args::{Mode, RampArgs, RunArgs, SlowArgs};
use super::run::run;
use crate::report::RunReport;

/// `stuck` options.
#[derive(Clone, Debug, clap::Args)]
pub struct StuckArgs {
    /// Clients that stop reading once welcomed, added beside the healthy ones in the second
    /// half.
    #[arg(long, default_value_t = 100)]
    pub stuck: usize,
    /// SO_RCVBUF of the stuck clients, bytes (the kernel doubles it): small, so the server's
    /// own slow-consumer policy is what holds their backlog.
    #[arg(long, default_value_t = 4096)]
    pub stuck_rcvbuf: usize,
}

/// The two halves' reports: the healthy clients alone, then beside the stuck ones.
#[derive(Debug)]
pub struct StuckPair {
    pub alone: RunReport,
    pub beside: RunReport,
}

/// Runs both halves; `done` sees each report as its half ends (`alone`, then `beside`).
pub fn stuck(
    args: &RunArgs,
    stuck: &StuckArgs,
    mut done: impl FnMut(&str, &RunReport) -> Result<()>,
) -> Result<StuckPair> {
    ensure!(stuck.stuck > 0, "--stuck must be at least 1");
    let base = args.label.clone().unwrap_or_else(|| "stuck".to_owned());
    let half = |name: &str, clients: usize| RunArgs {
        clients,
        label: Some(format!("{base}-{name}")),
        relay_log: args.relay_log.as_deref().map(|p| half_file(p, name)),
        ..args.clone()
    };
    eprintln!("loadtest stuck: {} healthy clients alone", args.clients);
    let alone = run(
        Mode::Steady,
        &half("alone", args.clients),
        &RampArgs::unused(),
        &SlowArgs::unused(),
    )?;
    done("alone", &alone)?;
    let total = args.clients + stuck.stuck;
    eprintln!(
        "loadtest stuck: the same {} healthy clients beside {} stuck ones",
        args.clients, stuck.stuck
    );
    let beside = run(
        Mode::Slow,
        &half("beside", total),
        &RampArgs::unused(),
        &SlowArgs {
            slow_fraction: stuck.stuck as f64 / total as f64,
            slow_rcvbuf: stuck.stuck_rcvbuf,
        },
    )?;
    done("beside", &beside)?;
    Ok(StuckPair { alone, beside })
}

/// `dir/name.ext` → `dir/name-HALF.ext`: one file per half.
pub fn half_file(path: &Path, half: &str) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{half}.{}", ext.to_string_lossy()),
        None => format!("{stem}-{half}"),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_half_gets_its_own_file() {
        assert_eq!(
            half_file(Path::new("out/s.json"), "alone"),
            Path::new("out/s-alone.json")
        );
        assert_eq!(
            half_file(Path::new("log"), "beside"),
            Path::new("log-beside")
        );
    }
}
