//! The harness refuses runs that would measure nothing or the wrong server, and talks while
//! it runs even when stderr is not a terminal.

use std::process::Command;

fn loadtest(args: &[&str]) -> (Option<i32>, String) {
    let output = Command::new(env!("CARGO_BIN_EXE_loadtest"))
        .args(args)
        .output()
        .expect("run loadtest");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// A loopback port nobody listens on (bound, then released).
fn closed_port() -> String {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    listener.local_addr().expect("addr").to_string()
}

#[test]
fn a_relay_elsewhere_without_its_ingest_is_refused() {
    let relay = closed_port();
    let (code, err) = loadtest(&["steady", "--relay", &relay, "--duration", "1"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains(&format!("--relay {relay} without --ingest")),
        "{err}"
    );
}

#[test]
fn a_run_where_nobody_connected_exits_2_and_showed_progress() {
    let addr = closed_port();
    let (code, err) = loadtest(&[
        "steady",
        "--relay",
        &addr,
        "--ingest",
        &addr,
        "--clients",
        "3",
        "--duration",
        "1",
    ]);
    assert_eq!(code, Some(2), "{err}");
    assert!(
        err.contains("no client was welcomed (3 of 3 failed"),
        "{err}"
    );
    // Piped stderr: plain progress lines, no spinner escape codes.
    assert!(err.lines().any(|l| l.starts_with("loadtest: [")), "{err}");
    assert!(!err.contains('\u{1b}'), "{err:?}");
}

#[test]
fn tiers_and_books_refuse_a_relay_they_did_not_start() {
    for mode in ["tiers", "books"] {
        let (code, err) = loadtest(&[mode, "--duration", "2s"]);
        assert_eq!(code, Some(2), "{err}");
        assert!(
            err.contains(&format!("{mode} needs --spawn [PATH]")),
            "{err}"
        );
    }
    let (code, err) = loadtest(&["tiers", "--spawn", "--tier", "1s", "--duration", "1s"]);
    assert_eq!(code, Some(2), "{err}");
    assert!(err.contains("at least two --tier intervals"), "{err}");
}
