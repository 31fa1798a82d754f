//! nats-server as a reference server, started by the harness (`--server nats --spawn`) with a
//! WebSocket listener and its default limits: the harness's clients subscribe over WebSocket,
//! its publisher PUBs, and every tick published to a client's symbols arrives once and in
//! order, counted as messages apart from the frames that carry them.
//!
//! Like the other harness tests, nothing here depends on the box's speed: tiny runs, generous
//! bounds left as soon as their condition holds, checks of structure and correctness only.
//! Where `nats-server` is not installed the tests say so and pass; under CI (`CI=true`, where
//! `.ci/nats-server.sh` installs it) its absence fails them.

use std::path::Path;
use std::process::{Command, Output};

use loadtest::report::RunReport;
use tempfile::TempDir;

#[test]
fn nats_server_delivers_every_tick_in_order_to_light_and_heavy_clients() {
    if !nats_server_installed() {
        return;
    }
    for profile in ["light", "heavy"] {
        let dir = tempdir();
        let out = dir.path().join("report.json");
        let run = harness(
            "steady",
            &["--server", "nats", "--client-profile", profile],
            &["--rate", "500", "--duration", "2s", "--assert-clean"],
            &out,
        );
        assert!(run.status.success(), "{profile}: {}", describe(&run));
        let report = RunReport::read_json(&out).unwrap();
        assert_eq!(report.config.server, "nats");
        assert_delivered(&report);
        let phase = &report.phases[0];
        assert_eq!(phase.published, 1000);
        // Every tick is a message; the frames that carried them are counted apart, never more
        // frames than messages (nats-server puts what is pending for a client into one frame).
        let f = &phase.fast;
        assert!(f.messages >= f.received, "{} messages", f.messages);
        assert!(
            f.frames > 0 && f.frames <= f.messages,
            "{} frames",
            f.frames
        );
        let relay = report.relay.as_ref().expect("the spawned server's figures");
        assert!(
            relay.command[0].ends_with("nats-server"),
            "{:?}",
            relay.command
        );
        assert!(relay.peak_rss_kb > 0, "its memory read from /proc");
        let stats = relay.stats.as_ref().expect("its /varz");
        assert!(stats.get("server_id").is_some(), "{stats}");
        let stdout = String::from_utf8_lossy(&run.stdout);
        assert!(stdout.contains(" messages, "), "{stdout}");
    }
}

#[test]
fn compare_runs_nats_beside_the_floor() {
    if !nats_server_installed() {
        return;
    }
    let dir = tempdir();
    let out = dir.path().join("cmp.json");
    let run = harness(
        "compare",
        &["--servers", "floor,nats", "--shape", "steady"],
        &["--rate", "300", "--duration", "1s"],
        &out,
    );
    assert!(run.status.success(), "{}", describe(&run));
    let stdout = String::from_utf8_lossy(&run.stdout);
    assert!(stdout.contains("== compare: nats ÷ floor"), "{stdout}");
    for server in ["floor", "nats"] {
        let report = RunReport::read_json(&out.with_file_name(format!("cmp-{server}.json")))
            .expect("one JSON report per server");
        assert_eq!(report.config.server, server);
        assert_eq!(report.config.client_profile, "heavy");
        assert_delivered(&report);
        assert!(report.clean, "{server}: {:?}", report.problems);
    }
}

/// Every phase delivered what was published to each client's symbols, once and in order.
fn assert_delivered(report: &RunReport) {
    let server = &report.config.server;
    assert_eq!(report.connect.welcomed, 20, "{server}");
    for p in &report.phases {
        let f = &p.fast;
        assert!(p.published > 0, "{server}: nothing published");
        // 20 clients × 3 of 10 symbols: each tick reaches 6 clients.
        assert_eq!(f.expected, p.published * 6, "{server}");
        assert_eq!(f.received, f.expected, "{server}");
        assert!(f.seq.is_clean(), "{server}: {:?}", f.seq);
        assert_eq!(
            (f.decode_errors, f.error_msgs, f.closed),
            (0, 0, 0),
            "{server}"
        );
        assert_eq!(p.ingest_error_lines, 0, "{server}");
    }
}

/// Whether `nats-server` runs here; outside CI its absence skips the test (said on stderr).
fn nats_server_installed() -> bool {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_ok()
    {
        return true;
    }
    let ci = std::env::var("CI").is_ok_and(|v| v == "true");
    assert!(
        !ci,
        "nats-server is not installed: CI must install it (.ci/nats-server.sh)"
    );
    eprintln!("SKIPPED: nats-server is not installed (apt-get install -y nats-server)");
    false
}

/// A tiny run of the harness, its report at `out` and the servers' logs beside it.
fn harness(mode: &str, server: &[&str], load: &[&str], out: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args([mode, "--spawn", "--mix", "json=1"])
        .args(server)
        .args([
            "--clients",
            "20",
            "--symbols",
            "10",
            "--symbols-per-client",
            "3",
        ])
        .args(["--settle", "100ms", "--handshake-timeout", "60s"])
        .args([
            "--drain-idle",
            "20s",
            "--drain-timeout",
            "60s",
            "--max-time",
            "300s",
        ])
        .arg("--no-progress")
        .arg("--relay-log")
        .arg(out.with_file_name("server.log"))
        .arg("--report-json")
        .arg(out)
        .args(load)
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
        .prefix("loadtest-nats-test-")
        .tempdir()
        .expect("a temp dir")
}
