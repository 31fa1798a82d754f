//! The load harness end to end against the real relay binary: a few seconds, a few dozen
//! clients in every encoding, zero loss and zero sequence errors. (The full load runs are
//! benchmarks: `loadtest/report.sh`.)

use clap::Parser;
use loadtest::scenario::{self, Mode, RampArgs, RunArgs, SlowArgs, SoakArgs};

#[derive(Parser)]
struct Harness {
    #[command(flatten)]
    run: RunArgs,
}

#[derive(Parser)]
struct SoakHarness {
    #[command(flatten)]
    run: RunArgs,
    #[command(flatten)]
    soak: SoakArgs,
}

#[test]
fn a_short_steady_run_over_every_encoding_loses_nothing() {
    // The relay's log goes with the test, passed or failed.
    let log = tempfile::tempdir().expect("a temp dir");
    let harness = Harness::parse_from([
        "loadtest",
        "--spawn",
        env!("CARGO_BIN_EXE_tickrelay"),
        "--relay-log",
        log.path()
            .join("relay.log")
            .to_str()
            .expect("a UTF-8 temp path"),
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
        // The publisher asks for acks: every tick must be acknowledged by the end.
        "--acks",
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
    let acks = phase.acks.as_ref().expect("the publisher said hello");
    assert_eq!(acks.unacked, 0, "every tick acknowledged");
    assert!(acks.latency.count > 0, "each batch's ack timed");
    let relay = report
        .relay
        .as_ref()
        .expect("the harness spawned the relay");
    assert_eq!(
        relay.exit, "stopped on SIGTERM: exit status: 0",
        "the relay exits 0 on SIGTERM"
    );
}

/// Nine churn slots start one on each way a session lives (slot i on way i), so a few
/// seconds show every way working beside the measured clients, and none of them costs a
/// healthy client a tick.
#[test]
fn a_short_soak_churns_every_way_beside_clean_healthy_clients() {
    let log = tempfile::tempdir().expect("a temp dir");
    let harness = SoakHarness::parse_from([
        "loadtest",
        "--spawn",
        env!("CARGO_BIN_EXE_tickrelay"),
        "--relay-log",
        log.path()
            .join("relay.log")
            .to_str()
            .expect("a UTF-8 temp path"),
        "--clients",
        "20",
        "--symbols",
        "10",
        "--symbols-per-client",
        "3",
        "--rate",
        "300",
        "--duration",
        "9s",
        "--sample-every",
        "3s",
        "--warmup",
        "3s",
        "--churn",
        "9",
        "--no-progress",
        "--max-time",
        "120s",
    ]);
    let report = scenario::soak(&harness.run, &harness.soak).expect("soak run");
    assert!(report.clean, "problems: {:?}", report.problems);
    assert_eq!(report.samples.len(), 3, "one sample per window");
    for s in &report.samples {
        assert!(s.expected > 0 && s.received == s.expected, "{s:?}");
        assert!(s.rss_kb > 0 && s.open_fds > 0 && s.sessions >= 20, "{s:?}");
    }
    let c = &report.churn;
    assert_eq!(c.errors, 0, "{c:?}");
    assert!(
        c.resumed_exactly > 0,
        "a resume replayed from the next seq: {c:?}"
    );
    assert!(
        c.control_acks > 0,
        "subscribe/unsubscribe acknowledged: {c:?}"
    );
    assert!(
        c.deflate_sessions > 0 && c.compressed_frames > 0,
        "permessage-deflate negotiated and used: {c:?}"
    );
    assert!(c.refreshes > 0, "a token refreshed mid-session: {c:?}");
    assert!(c.stalled > 0 && c.dropped > 0, "{c:?}");
    assert!(c.events_received > 0, "events reached the churn: {c:?}");
    assert!(report.rss_slope_kib_per_min.is_some() && report.fd_slope_per_min.is_some());
}
