//! Stuck consumers against healthy ones, both halves in one invocation: `--clients` healthy
//! clients alone, then the same healthy clients beside `--stuck` clients that stop reading
//! once welcomed, the same load each time, each half against a server started afresh. What
//! the healthy clients see is compared: a server that isolates a stuck client keeps their p99
//! where it was without one. With `--rounds N` the pair runs N times, every other round
//! beside first, so a drift of the host over the run weighs on both halves alike.

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
    /// How many times to run the pair; even rounds run the half beside stuck clients first.
    #[arg(long, default_value_t = 1)]
    pub rounds: usize,
}

/// The two halves' reports: the healthy clients alone, then beside the stuck ones.
#[derive(Debug)]
pub struct StuckPair {
    pub alone: RunReport,
    pub beside: RunReport,
}

/// Runs both halves `--rounds` times; `done` sees each report as its half ends, named
/// `alone` or `beside` (with `-rN` from the second round on), and each round's pair.
pub fn stuck(
    args: &RunArgs,
    stuck: &StuckArgs,
    mut done: impl FnMut(&str, &RunReport) -> Result<()>,
) -> Result<Vec<StuckPair>> {
    ensure!(stuck.stuck > 0, "--stuck must be at least 1");
    ensure!(stuck.rounds > 0, "--rounds must be at least 1");
    let mut pairs = Vec::with_capacity(stuck.rounds);
    for round in 1..=stuck.rounds {
        let tag = |half: &str| match round {
            1 => half.to_owned(),
            n => format!("r{n}-{half}"),
        };
        let (mut alone, mut beside) = (None, None);
        // Odd rounds alone first, even rounds beside first.
        for beside_now in [round % 2 == 0, round % 2 == 1] {
            if beside_now {
                let report = run_beside(args, stuck, &tag("beside"))?;
                done(&tag("beside"), &report)?;
                beside = Some(report);
            } else {
                let report = run_alone(args, &tag("alone"))?;
                done(&tag("alone"), &report)?;
                alone = Some(report);
            }
        }
        pairs.push(StuckPair {
            alone: alone.expect("each round runs the half alone"),
            beside: beside.expect("each round runs the half beside"),
        });
    }
    Ok(pairs)
}

/// The arguments of one half: its clients, label and relay log.
fn half(args: &RunArgs, name: &str, clients: usize) -> RunArgs {
    let base = args.label.clone().unwrap_or_else(|| "stuck".to_owned());
    RunArgs {
        clients,
        label: Some(format!("{base}-{name}")),
        relay_log: args.relay_log.as_deref().map(|p| half_file(p, name)),
        ..args.clone()
    }
}

fn run_alone(args: &RunArgs, name: &str) -> Result<RunReport> {
    eprintln!(
        "loadtest stuck: {} healthy clients alone ({name})",
        args.clients
    );
    run(
        Mode::Steady,
        &half(args, name, args.clients),
        &RampArgs::unused(),
        &SlowArgs::unused(),
    )
}

fn run_beside(args: &RunArgs, stuck: &StuckArgs, name: &str) -> Result<RunReport> {
    let total = args.clients + stuck.stuck;
    eprintln!(
        "loadtest stuck: the same {} healthy clients beside {} stuck ones ({name})",
        args.clients, stuck.stuck
    );
    run(
        Mode::Slow,
        &half(args, name, total),
        &RampArgs::unused(),
        &SlowArgs {
            slow_fraction: stuck.stuck as f64 / total as f64,
            slow_rcvbuf: stuck.stuck_rcvbuf,
        },
    )
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
