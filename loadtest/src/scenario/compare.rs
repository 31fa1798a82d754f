//! The same scenario against several servers, one after another in one invocation: the
//! reference servers (floor, naive) and the relay, each spawned on free ports, each measured
//! by the same clients (the heavy profile unless told otherwise). With `--rounds N` the whole
//! set runs N times, the order reversed every other round (floor, relay, then relay, floor):
//! on a box shared with its clients one pair's ratio moves with the host, so a claim rests on
//! the median of interleaved rounds and their range.

use std::path::{Path, PathBuf};

use anyhow::{Result, ensure};

use super::args::{Batch, Mode, RampArgs, RunArgs, SlowArgs};
use super::run::run;
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
    /// Run the whole set this many times, every other round in reverse order, and end with
    /// the median and range of each headline ratio over the rounds.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u32).range(1..=50))]
    pub rounds: u32,
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

/// Runs the shape against each server in turn, `--rounds` times, and returns every round's
/// reports in `--servers` order (whatever order they ran in: [`round_order`]). `done` sees
/// each round as it ends (round number from 1), so a later round's failure loses none of the
/// earlier ones.
pub fn compare(
    args: &RunArgs,
    ramp: &RampArgs,
    cmp: &CompareArgs,
    mut done: impl FnMut(u32, &[RunReport]) -> Result<()>,
) -> Result<Vec<Vec<RunReport>>> {
    ensure!(
        args.spawn.is_some(),
        "compare starts every server itself: give --spawn [PATH of tickrelay]"
    );
    ensure!(!cmp.servers.is_empty(), "--servers names no server");
    for (i, server) in cmp.servers.iter().enumerate() {
        ensure!(
            !cmp.servers[..i].contains(server),
            "--servers names {} twice",
            server.name()
        );
    }
    let mode = cmp.shape.mode();
    let base = args.label.clone().unwrap_or_else(|| mode.name().to_owned());
    let mut rounds = Vec::new();
    for round in 1..=cmp.rounds {
        let tag = round_tag(cmp, round);
        let mut ran = Vec::new();
        for server in round_order(&cmp.servers, round) {
            let server_args = RunArgs {
                server,
                client_profile: Some(args.client_profile.unwrap_or(ClientProfile::Heavy)),
                relay_args: match server {
                    Server::Relay | Server::RelayBatched => args.relay_args.clone(),
                    Server::Floor | Server::Naive => cmp.reference_args.clone(),
                    // Its defaults: what people deploy.
                    Server::Nats => String::new(),
                },
                // Only the plain relay follows --batch (relay-batched always batches).
                batch: if server == Server::Relay {
                    args.batch
                } else {
                    Batch::Off
                },
                relay_log: args
                    .relay_log
                    .as_deref()
                    .map(|p| suffixed(p, tag.as_deref(), server)),
                label: Some(match &tag {
                    Some(tag) => format!("{base}-{tag}-{}", server.name()),
                    None => format!("{base}-{}", server.name()),
                }),
                ..args.clone()
            };
            eprintln!(
                "loadtest compare: {} against {}{}",
                mode.name(),
                server.name(),
                tag.as_ref().map_or(String::new(), |_| format!(
                    " (round {round} of {})",
                    cmp.rounds
                ))
            );
            ran.push((server, run(mode, &server_args, ramp, &SlowArgs::unused())?));
        }
        // Back into `--servers` order (each server runs once a round).
        ran.sort_by_key(|(server, _)| cmp.servers.iter().position(|s| s == server));
        let reports: Vec<RunReport> = ran.into_iter().map(|(_, report)| report).collect();
        done(round, &reports)?;
        rounds.push(reports);
    }
    Ok(rounds)
}

/// The order of round `round` (from 1): `servers` in odd rounds, reversed in even ones, so no
/// server always runs first or always after the same one.
pub fn round_order(servers: &[Server], round: u32) -> Vec<Server> {
    let mut order = servers.to_vec();
    if round.is_multiple_of(2) {
        order.reverse();
    }
    order
}

/// `r2` for round 2 of several, in file names and labels; none for a single round.
pub fn round_tag(cmp: &CompareArgs, round: u32) -> Option<String> {
    (cmp.rounds > 1).then(|| format!("r{round}"))
}

/// `dir/name.ext` → `dir/name-SERVER.ext` (`dir/name-r2-SERVER.ext` with a round tag): one
/// file per server and round.
pub fn suffixed(path: &Path, round: Option<&str>, server: Server) -> PathBuf {
    let stem = path
        .file_stem()
        .map_or_else(|| "report".into(), |s| s.to_string_lossy().into_owned());
    let stem = match round {
        Some(tag) => format!("{stem}-{tag}-{}", server.name()),
        None => format!("{stem}-{}", server.name()),
    };
    let name = match path.extension() {
        Some(ext) => format!("{stem}.{}", ext.to_string_lossy()),
        None => stem,
    };
    path.with_file_name(name)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_server_gets_its_own_file() {
        let p = suffixed(Path::new("target/perf/fanout.json"), None, Server::Naive);
        assert_eq!(p, Path::new("target/perf/fanout-naive.json"));
        assert_eq!(
            suffixed(Path::new("log"), None, Server::Floor),
            Path::new("log-floor")
        );
        assert_eq!(
            suffixed(Path::new("out/cmp.json"), Some("r2"), Server::Relay),
            Path::new("out/cmp-r2-relay.json")
        );
    }

    #[test]
    fn every_other_round_runs_in_reverse() {
        let servers = [Server::Floor, Server::Naive, Server::Relay];
        assert_eq!(round_order(&servers, 1), servers);
        assert_eq!(
            round_order(&servers, 2),
            [Server::Relay, Server::Naive, Server::Floor]
        );
        assert_eq!(round_order(&servers, 3), servers);
    }
}
