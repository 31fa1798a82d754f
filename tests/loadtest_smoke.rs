//! The load harness end to end against the real relay binary: a few seconds, a few dozen
//! clients in every encoding, zero loss and zero sequence errors. (The full load runs are
//! benchmarks: `loadtest/report.sh`.)

use clap::Parser;
use loadtest::scenario::{self, Mode, RampArgs, RunArgs, SlowArgs};

#[derive(Parser)]
struct Harness {
    #[command(flatten)]
    run: RunArgs,
}

#[test]
fn a_short_steady_run_over_every_encoding_loses_nothing() {
    let harness = Harness::parse_from([
        "loadtest",
        "--spawn",
        env!("CARGO_BIN_EXE_tickrelay"),
        "--clients",
        "30",
        "--symbols",
        "10",
        "--symbols-per-client",
        "3",
        "--mix",
        "json=50,protobuf=30,gzip=20",
        "--rate",
        "300",
        "--duration",
        "3s",
        "--no-progress",
        "--max-time",
        "90s",
    ]);
    let report = scenario::run(
        Mode::Steady,
        &harness.run,
        &RampArgs::unused(),
        &SlowArgs::unused(),
    )
    .expect("harness run");
    assert!(report.clean, "problems: {:?}", report.problems);
    let phase = &report.phases[0];
    assert!(phase.published >= 600, "published {}", phase.published);
    assert_eq!(
        phase.fast.received, phase.fast.expected,
        "every expected delivery arrived"
    );
    assert!(phase.fast.expected > 0);
    assert_eq!((phase.fast.lost, phase.fast.relay_gaps), (0, 0));
    let relay = report
        .relay
        .as_ref()
        .expect("the harness spawned the relay");
    assert_eq!(
        relay.exit, "stopped on SIGTERM: exit status: 0",
        "the relay exits 0 on SIGTERM"
    );
}
