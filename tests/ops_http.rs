//! Small HTTP and flag fixes from issue 12, through the real binary: `HEAD /health`,
//! `/favicon.ico`, and the flags that were blamed on the wrong name or accepted silently.

mod ops_common;

use ops_common::{http_get, run, spawn};

#[test]
fn head_health_answers_200_without_a_body_and_favicon_answers_204() {
    let relay = spawn(&[], &[]);
    let (status, body) = http_get(relay.http, "HEAD", "/health");
    assert_eq!(status, 200);
    assert!(body.is_empty(), "HEAD has no body: {body:?}");
    let (status, _) = http_get(relay.http, "HEAD", "/ready");
    assert_eq!(status, 200);
    let (status, _) = http_get(relay.http, "GET", "/favicon.ico");
    assert_eq!(status, 204);
    // An upgrade route still answers only GET.
    let (status, _) = http_get(relay.http, "HEAD", "/ws");
    assert_eq!(status, 405);
    assert_eq!(relay.stop(), Some(0));
}

#[test]
fn zero_ping_interval_is_blamed_on_ping_interval() {
    let (code, _, err) = run(&["--ping-interval", "0s"], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim_end(),
        "tickrelay: --ping-interval 0s: must be above zero"
    );
}

#[test]
fn demo_symbols_below_50_is_refused() {
    let (code, _, err) = run(&["--demo-symbols", "10"], &[]);
    assert_eq!(code, Some(2));
    assert_eq!(
        err.trim_end(),
        "tickrelay: --demo-symbols 10: must be at least 50 (so fan-out is realistic)"
    );
}

#[test]
fn more_shards_than_cpus_is_warned_about() {
    let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shards = (cpus + 1).to_string();
    let relay = spawn(&["--shards", &shards], &[]);
    // `spawn` passes `--shards 1` first; the later flag wins.
    let line = relay.stderr_line(|l| l.contains("usable CPUs"), "the --shards warning");
    assert!(
        line.contains("WARN") && line.contains(&format!("--shards {shards}")),
        "{line}"
    );
    assert_eq!(relay.stop(), Some(0));
}
