//! The instrument tested: each reference server, spawned by the harness as `serve-floor` /
//! `serve-naive`, carries a complete, gap-free stream to the harness's clients (light and
//! heavy), and `compare` runs them side by side and prints the ratios.
//!
//! No verdict here depends on how fast the box is: the runs are tiny, every wait is a
//! generous bound the run leaves as soon as its condition holds (the drain ends when the last
//! expected tick is in), and what is checked is structure and correctness (every tick
//! published to a client's symbols delivered once and in order), never a rate, a latency or
//! whether a ramp step held.

use std::path::Path;
use std::process::{Command, Output};

use loadtest::report::RunReport;
use tempfile::TempDir;

#[test]
fn the_floor_server_delivers_every_tick_in_order() {
    for profile in ["light", "heavy"] {
        assert_complete("floor", profile);
    }
}

#[test]
fn the_naive_server_delivers_every_tick_in_order() {
    for profile in ["light", "heavy"] {
        assert_complete("naive", profile);
    }
}

#[test]
fn a_stalled_client_does_not_hold_back_the_others() {
    // A quarter of the clients stop reading once welcomed (small receive buffers): the others
    // must still get every tick. (The floor's drain path for a full socket has a unit test.)
    for server in ["floor", "naive"] {
        let dir = tempdir();
        let out = dir.path().join("report.json");
        let run = harness(
            "slow",
            &[
                "--server",
                server,
                "--slow-fraction",
                "0.25",
                "--rate",
                "2000",
                "--duration",
                "2s",
            ],
            &out,
        );
        assert!(run.status.success(), "{server}: {}", describe(&run));
        let report = RunReport::read_json(&out).unwrap();
        let phase = &report.phases[0];
        assert_eq!(phase.fast.clients, 15);
        assert_eq!(phase.fast.received, phase.fast.expected, "{server}");
        assert!(phase.fast.seq.is_clean(), "{server}: {:?}", phase.fast.seq);
        let slow = phase.slow.as_ref().expect("slow clients reported");
        assert!(
            slow.seq.is_clean(),
            "{server}: stalled clients saw {:?}",
            slow.seq
        );
    }
}

#[test]
fn compare_runs_each_server_and_prints_the_ratios() {
    let dir = tempdir();
    let out = dir.path().join("cmp.json");
    let run = harness(
        "compare",
        &[
            "--servers",
            "floor,naive",
            "--rate",
            "200",
            "--step-factor",
            "1.5",
            "--step-duration",
            "1s",
            "--max-steps",
            "2",
            "--p99-bound-ms",
            "1000",
        ],
        &out,
    );
    assert!(run.status.success(), "{}", describe(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("== compare: naive ÷ floor"), "{stdout}");
    assert!(stdout.contains("highest rate held: floor "), "{stdout}");
    assert!(stdout.contains("cpu ns/d"), "{stdout}");
    for server in ["floor", "naive"] {
        let report = RunReport::read_json(&out.with_file_name(format!("cmp-{server}.json")))
            .expect("one JSON report per server");
        assert_eq!(report.config.server, server);
        assert_eq!(
            report.config.client_profile, "heavy",
            "compare defaults to heavy"
        );
        // Whether the first step held depends on the box (its p99, its publisher): the ramp
        // ran one step or both, at 200/s then 300/s, and stopped where it says it did.
        let rates: Vec<f64> = report.phases.iter().map(|p| p.target_rate).collect();
        assert!(
            rates == [200.0] || rates == [200.0, 300.0],
            "{server}: {rates:?}"
        );
        let ramp = report.ramp.as_ref().expect("a ramp verdict");
        let held: Vec<Option<bool>> = report.phases.iter().map(|p| p.held).collect();
        let best = held
            .iter()
            .zip(&rates)
            .take_while(|(h, _)| **h == Some(true))
            .last()
            .map(|(_, &r)| r);
        assert_eq!(ramp.highest_rate_held, best, "{server}: {held:?}");
        assert_delivered(&report);
    }
}

#[test]
fn compare_rounds_alternate_the_order_and_end_with_median_and_range() {
    let dir = tempdir();
    let out = dir.path().join("cmp.json");
    let run = harness(
        "compare",
        &[
            "--servers",
            "floor,naive",
            "--shape",
            "steady",
            "--rate",
            "200",
            "--duration",
            "1s",
            "--rounds",
            "2",
        ],
        &out,
    );
    assert!(run.status.success(), "{}", describe(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("#### round 2 of 2"), "{stdout}");
    assert!(
        stdout.contains("== compare over 2 rounds: naive ÷ floor"),
        "{stdout}"
    );
    let row = |first: &str| {
        stdout
            .lines()
            .find(|l| l.split_whitespace().next() == Some(first))
            .unwrap_or_else(|| panic!("no {first} row: {stdout}"))
            .to_owned()
    };
    assert!(row("1").contains("floor,naive"), "{stdout}");
    assert!(
        row("2").contains("naive,floor"),
        "round 2 reversed: {stdout}"
    );
    assert_eq!(row("median").split_whitespace().count(), 4, "{stdout}");
    // Clean means every tick delivered once and in order, whatever the box's speed.
    assert!(stdout.contains("clean in 2 of 2 rounds"), "{stdout}");
    let stderr = String::from_utf8_lossy(&run.stderr);
    let floor_at = stderr.rfind("steady against floor (round 2 of 2)");
    let naive_at = stderr.rfind("steady against naive (round 2 of 2)");
    assert!(naive_at < floor_at && naive_at.is_some(), "{stderr}");
    for round in ["r1", "r2"] {
        for server in ["floor", "naive"] {
            let path = out.with_file_name(format!("cmp-{round}-{server}.json"));
            let report = RunReport::read_json(&path).expect("one report per round and server");
            assert_eq!(report.config.server, server);
            assert_eq!(report.label, format!("steady-{round}-{server}"));
            assert_eq!(report.phases.len(), 1);
            assert_delivered(&report);
            assert!(report.clean, "{round} {server}: {:?}", report.problems);
        }
    }
}

#[test]
fn stuck_runs_healthy_clients_alone_then_beside_stuck_ones() {
    let dir = tempdir();
    let out = dir.path().join("stuck.json");
    let run = harness(
        "stuck",
        &[
            "--server",
            "floor",
            "--stuck",
            "5",
            "--rate",
            "500",
            "--duration",
            "1s",
        ],
        &out,
    );
    assert!(run.status.success(), "{}", describe(&run));
    let alone = RunReport::read_json(&out.with_file_name("stuck-alone.json")).unwrap();
    let beside = RunReport::read_json(&out.with_file_name("stuck-beside.json")).unwrap();
    assert_eq!(
        (alone.mode.as_str(), beside.mode.as_str()),
        ("steady", "slow")
    );
    assert_eq!((alone.config.clients, beside.config.clients), (20, 25));
    assert_delivered(&alone);
    let healthy = &beside.phases[0].fast;
    assert_eq!(healthy.clients, 20, "the same number of healthy clients");
    assert_eq!(healthy.received, healthy.expected);
    assert!(healthy.seq.is_clean(), "{:?}", healthy.seq);
    let stuck = beside.phases[0]
        .slow
        .as_ref()
        .expect("the stuck clients reported");
    assert_eq!(stuck.clients, 5);
    let stdout = String::from_utf8_lossy(&run.stdout);
    let line = stdout
        .lines()
        .find(|l| l.starts_with("healthy p99 beside ÷ alone: "))
        .unwrap_or_else(|| panic!("no ratio line: {stdout}"));
    let value = line["healthy p99 beside ÷ alone: ".len()..]
        .split_whitespace()
        .next()
        .unwrap();
    assert!(value.parse::<f64>().is_ok() || value == "∞", "{line}");
}

/// Every phase delivered what was published to each client's symbols, once and in order.
fn assert_delivered(report: &RunReport) {
    let server = &report.config.server;
    assert_eq!(report.connect.welcomed, 20, "{server}");
    for p in &report.phases {
        let f = &p.fast;
        assert!(p.published > 0, "{server}: nothing published");
        // 20 clients × 3 of 10 symbols: each tick reaches 6 clients.
        assert_eq!(
            f.expected,
            p.published * 6,
            "{server} at {}/s",
            p.target_rate
        );
        assert_eq!(f.received, f.expected, "{server} at {}/s", p.target_rate);
        assert!(f.seq.is_clean(), "{server}: {:?}", f.seq);
        assert_eq!((f.decode_errors, f.closed), (0, 0), "{server}");
    }
}

/// A short steady run through `server`: every expected tick arrives, no seq error.
fn assert_complete(server: &str, profile: &str) {
    let dir = tempdir();
    let out = dir.path().join("report.json");
    let run = harness(
        "steady",
        &[
            "--server",
            server,
            "--client-profile",
            profile,
            "--rate",
            "500",
            "--duration",
            "2s",
            "--assert-clean",
        ],
        &out,
    );
    assert!(
        run.status.success(),
        "{server}/{profile}: {}",
        describe(&run)
    );
    let report = RunReport::read_json(&out).unwrap();
    assert_eq!(report.config.server, server);
    assert_eq!(report.connect.welcomed, 20);
    let phase = &report.phases[0];
    assert_eq!(phase.published, 1000);
    // 20 clients × 3 of 10 symbols: each tick reaches 6 clients.
    assert_eq!(phase.fast.expected, 1000 * 6);
    assert_eq!(phase.fast.received, phase.fast.expected);
    assert!(phase.fast.seq.is_clean(), "{:?}", phase.fast.seq);
    assert_eq!(phase.fast.decode_errors, 0);
    let relay = report.relay.expect("the spawned server's process figures");
    assert!(
        relay
            .command
            .iter()
            .any(|a| a == &format!("serve-{server}"))
    );
    if profile == "heavy" {
        assert!(report.config.workers >= 2, "heavy runs at least 2 workers");
    }
}

/// A tiny run of the harness, its report at `out` and the servers' logs beside it. The
/// bounds are generous: a run leaves each wait as soon as its condition holds.
fn harness(mode: &str, extra: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([mode, "--spawn", "--mix", "json=1"])
        .args([
            "--clients",
            "20",
            "--symbols",
            "10",
            "--symbols-per-client",
            "3",
        ])
        .args(["--settle", "100ms", "--handshake-timeout", "60s"])
        .args(["--drain-idle", "20s", "--drain-timeout", "60s"])
        .args(["--max-time", "300s"])
        .arg("--no-progress")
        .arg("--relay-log")
        .arg(out.with_file_name("server.log"))
        .arg("--report-json")
        .arg(out)
        .args(extra)
        .output()
        .expect("the harness binary runs")
}

fn describe(run: &Output) -> String {
    format!(
        "harness exited {}\nstdout:\n{}\nstderr:\n{}",
        run.status,
        String::from_utf8_lossy(&run.stdout),
        String::from_utf8_lossy(&run.stderr)
    )
}

/// A directory for one test's reports and logs, removed when the test ends.
fn tempdir() -> TempDir {
    tempfile::Builder::new()
        .prefix("loadtest-ref-")
        .tempdir()
        .expect("a temp dir")
}
