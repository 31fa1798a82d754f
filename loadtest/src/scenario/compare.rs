//! The same scenario against several servers, one after another in one invocation: the
//! reference servers (floor, naive) and the relay, each spawned on free ports, each measured
//! by the same clients (the heavy profile unless told otherwise).

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use super::{Mode, RampArgs, RunArgs, SlowArgs, run};
use crate::client::ClientProfile;
use crate::reference::Server;
use crate::report::RunReport;

/// `compare` options.
#[derive(Clone, Debug, clap::Args)]
pub struct CompareArgs {
    /// The load each server gets.
    #[arg(long, value_enum, default_value = "ramp")]
    pub shape: Shape,
    /// The servers, run in this order (`--server` is ignored here).
    #[arg(
        long,
        value_enum,
        value_delimiter = ',',
        default_value = "floor,naive,relay"
    )]
    pub servers: Vec<Server>,
    /// Extra flags for the reference servers, one string (`--relay-args` goes to the relay).
    #[arg(long, default_value = "", allow_hyphen_values = true)]
    pub reference_args: String,
}

/// The load shapes a comparison can run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Shape {
    Ramp,
    Steady,
    Crowd,
}

impl Shape {
    /// The mode that runs this shape.
    pub fn mode(self) -> Mode {
        match self {
            Self::Ramp => Mode::Ramp,
            Self::Steady => Mode::Steady,
            Self::Crowd => Mode::Crowd,
        }
    }
}

/// Runs the shape against each server in turn and returns the reports in that order.
pub fn compare(args: &RunArgs, ramp: &RampArgs, cmp: &CompareArgs) -> Result<Vec<RunReport>> {
    ensure!(
        args.spawn.is_some(),
        "compare starts every server itself: give --spawn [PATH of tickrelay]"
    );
    ensure!(!cmp.servers.is_empty(), "--servers names no server");
    let mode = cmp.shape.mode();
    let base = args.label.clone().unwrap_or_else(|| mode.name().to_owned());
    let mut reports = Vec::new();
    for &server in &cmp.servers {
        let server_args = RunArgs {
            server,
            client_profile: Some(args.client_profile.unwrap_or(ClientProfile::Heavy)),
            relay_args: match server {
                Server::Relay => args.relay_args.clone(),
                Server::Floor | Server::Naive => cmp.reference_args.clone(),
            },
            relay_log: args.relay_log.as_deref().map(|p| suffixed(p, server)),
            label: Some(format!("{base}-{}", server.name())),
            ..args.clone()
        };
        eprintln!(
            "loadtest compare: {} against {}",
            mode.name(),
            server.name()
        );
        reports.push(run(mode, &server_args, ramp, &SlowArgs::unused())?);
    }
    Ok(reports)
}

/// `dir/name.ext` → `dir/name-SERVER.ext`: one file per server.
pub fn suffixed(path: &Path, server: Server) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    let name = match path.extension() {
        Some(ext) => format!("{stem}-{}.{}", server.name(), ext.to_string_lossy()),
        None => format!("{stem}-{}", server.name()),
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_gets_its_own_file() {
        let p = suffixed(Path::new("docs/perf/fanout.json"), Server::Naive);
        assert_eq!(p, Path::new("docs/perf/fanout-naive.json"));
        assert_eq!(
            suffixed(Path::new("log"), Server::Floor),
            Path::new("log-floor")
        );
    }
}
