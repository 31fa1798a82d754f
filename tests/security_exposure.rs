//! The real binary names, in a `WARN` line each at start-up, every surface it serves without
//! authentication beyond loopback, and says nothing of the kind when all is on loopback.

mod ops_common;

use std::sync::mpsc::RecvTimeoutError;
use std::time::Instant;

use ops_common::{Spawned, WAIT, spawn};

/// Every stderr line the relay writes until it exits after SIGTERM.
fn log_until_exit(relay: Spawned) -> Vec<String> {
    relay.signal("TERM");
    let deadline = Instant::now() + WAIT;
    let mut lines = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match relay.stderr.recv_timeout(left) {
            Ok(line) => lines.push(line),
            Err(RecvTimeoutError::Disconnected) => return lines,
            Err(RecvTimeoutError::Timeout) => panic!("the relay did not exit; logged {lines:#?}"),
        }
    }
}

fn exposure_warnings(lines: &[String]) -> Vec<&String> {
    lines
        .iter()
        .filter(|l| {
            l.contains("WARN") && (l.contains("beyond loopback") || l.contains("admin routes on"))
        })
        .collect()
}

#[test]
fn every_unauthenticated_surface_beyond_loopback_is_a_warning_at_start() {
    // As found: these started with an INFO line only.
    let relay = spawn(&["--ingest-tcp", "0.0.0.0:0", "--listen", "0.0.0.0:0"], &[]);
    let lines = log_until_exit(relay);
    let warnings = exposure_warnings(&lines);
    let named = |text: &str| {
        warnings
            .iter()
            .any(|l| l.contains("WARN") && l.contains(text))
    };
    assert!(named("--ingest-tcp 0.0.0.0:0"), "{lines:#?}");
    assert!(
        named("--listen 0.0.0.0:0 is reachable beyond loopback with no JWT key"),
        "{lines:#?}"
    );
    assert!(
        named("the admin routes on --listen 0.0.0.0:0"),
        "{lines:#?}"
    );
    assert!(
        !named("--ingest-tcp-protobuf"),
        "that one stayed on loopback: {lines:#?}"
    );

    let quiet = log_until_exit(spawn(&[], &[]));
    assert!(exposure_warnings(&quiet).is_empty(), "{quiet:#?}");
}
