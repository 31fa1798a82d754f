//! What rate-tier clients cost, both halves in one invocation: `--raw-clients` clients on
//! every tick alone, then the same raw clients beside `--tier-clients` clients on the same
//! symbols at `--tier` (`?symbols=SYM000@1s,..`), the same load each time, each half against
//! a relay started afresh. The raw clients are judged as in `steady` (their loss, p99); the
//! tier clients by their frames' continuity alone (`tier_seq`), never against the ticks.

use anyhow::{Result, ensure};

use super::args::{Feeds, Mode, RampArgs, RunArgs, SlowArgs, parse_duration};
use super::run::run;
use super::stuck::half_file;
use crate::reference::Server;
use crate::report::RunReport;

/// `tiers` options (`--clients` does not apply: the halves' clients are these).
#[derive(Clone, Debug, clap::Args)]
pub struct TiersArgs {
    /// Clients on every tick of their symbols, in both halves (encodings from --mix).
    #[arg(long, default_value_t = 1000)]
    pub raw_clients: usize,
    /// Clients on the same symbols at --tier, beside them in the second half (JSON).
    #[arg(long, default_value_t = 10_000)]
    pub tier_clients: usize,
    /// The rate tier: one of the relay's --rate-tiers (100ms, 250ms, 1s, 5s by default).
    #[arg(long, default_value = "1s")]
    pub tier: String,
}

/// The two halves' reports: the raw clients alone, then beside the tier clients.
#[derive(Debug)]
pub struct TiersPair {
    pub alone: RunReport,
    pub beside: RunReport,
}

/// Runs both halves; `done` sees each report as its half ends, named `alone` or `beside`.
pub fn tiers(
    args: &RunArgs,
    tiers: &TiersArgs,
    mut done: impl FnMut(&str, &RunReport) -> Result<()>,
) -> Result<TiersPair> {
    ensure!(tiers.raw_clients > 0, "--raw-clients must be at least 1");
    ensure!(tiers.tier_clients > 0, "--tier-clients must be at least 1");
    ensure!(
        args.spawn.is_some(),
        "tiers needs --spawn [PATH]: each run has a relay started afresh"
    );
    ensure!(
        args.server == Server::Relay,
        "rate tiers are the relay's: not with --server {}",
        args.server.name()
    );
    let interval =
        parse_duration(&tiers.tier).map_err(|e| anyhow::anyhow!("--tier {}: {e}", tiers.tier))?;
    ensure!(
        interval > std::time::Duration::ZERO && args.duration >= 2 * interval,
        "--duration {:?} must be at least two --tier intervals ({:?})",
        args.duration,
        2 * interval
    );
    eprintln!(
        "loadtest tiers: {} raw clients alone (alone)",
        tiers.raw_clients
    );
    let alone = run(
        Mode::Steady,
        &half(args, "alone", tiers.raw_clients, Feeds::default()),
        &RampArgs::unused(),
        &SlowArgs::unused(),
    )?;
    done("alone", &alone)?;
    eprintln!(
        "loadtest tiers: the same {} raw clients beside {} on @{} (beside)",
        tiers.raw_clients, tiers.tier_clients, tiers.tier
    );
    let feeds = Feeds {
        tier_clients: tiers.tier_clients,
        tier: tiers.tier.clone(),
        tier_interval: interval,
        books: None,
    };
    let total = tiers.raw_clients + tiers.tier_clients;
    let beside = run(
        Mode::Steady,
        &half(args, "beside", total, feeds),
        &RampArgs::unused(),
        &SlowArgs::unused(),
    )?;
    done("beside", &beside)?;
    Ok(TiersPair { alone, beside })
}

/// The arguments of one half: its clients, feeds, label and relay log.
fn half(args: &RunArgs, name: &str, clients: usize, feeds: Feeds) -> RunArgs {
    let base = args.label.clone().unwrap_or_else(|| "tiers".to_owned());
    RunArgs {
        clients,
        feeds,
        label: Some(format!("{base}-{name}")),
        relay_log: args.relay_log.as_deref().map(|p| half_file(p, name)),
        ..args.clone()
    }
}
