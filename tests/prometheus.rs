//! `/metrics` checked by Prometheus's own linter, `promtool check metrics` (Debian's
//! `prometheus` package; `.ci/packages.sh` installs it), on a single box and on a relay
//! with a NATS hop (a real `nats-server`); and docs/grafana/tickrelay.json built on what the
//! relay exports: every metric a query or variable names is in that `/metrics`.
//! Without promtool or nats-server the tests say SKIPPED and pass locally; under `CI=true`
//! they fail.

mod nats_common;
mod ops_common;

use std::collections::BTreeSet;
use std::io::Write as _;
use std::process::{Command, Stdio};

use nats_common::NatsServer;
use ops_common::{http_get, spawn};

/// Whether promtool is here (a missing one fails under CI, as nats-server's does).
fn promtool() -> bool {
    if Command::new("promtool").arg("--version").output().is_ok() {
        return true;
    }
    assert!(
        !std::env::var("CI").is_ok_and(|v| v == "true"),
        "promtool is not installed: CI must install it (bash .ci/packages.sh)"
    );
    eprintln!("SKIPPED: promtool is not installed (apt-get install -y prometheus)");
    false
}

/// `/metrics` of a relay started with `args`, after the demo feed has sequenced ticks and
/// one client has had deliveries (so every histogram and labelled family has samples).
fn scrape(args: &[&str]) -> String {
    let mut all = vec!["--demo", "--demo-rate", "200"];
    all.extend_from_slice(args);
    let relay = spawn(&all, &[]);
    let deadline = std::time::Instant::now() + ops_common::WAIT;
    loop {
        let (status, text) = http_get(relay.http, "GET", "/metrics");
        assert_eq!(status, 200, "{text}");
        if text.contains("tickrelay_ticks_in_total ")
            && !text.contains("tickrelay_ticks_in_total 0\n")
        {
            assert_eq!(relay.stop(), Some(0));
            return text;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no ticks counted: {text}"
        );
        // The test's own thread between two polls of a condition, not a shard.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

/// `promtool check metrics` on `text`: its verdict and what it said.
fn check(text: &str) -> (bool, String) {
    let mut child = Command::new("promtool")
        .args(["check", "metrics"])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run promtool");
    child
        .stdin
        .take()
        .expect("piped stdin")
        .write_all(text.as_bytes())
        .expect("write to promtool");
    let out = child.wait_with_output().expect("promtool's answer");
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success() && said.trim().is_empty(), said)
}

/// The metric families `/metrics` declares (`# TYPE name kind`): (name, kind).
fn families(text: &str) -> BTreeSet<(String, String)> {
    text.lines()
        .filter_map(|l| l.strip_prefix("# TYPE "))
        .filter_map(|l| l.split_once(' '))
        .map(|(name, kind)| (name.to_owned(), kind.trim().to_owned()))
        .collect()
}

#[test]
fn metrics_pass_promtool_on_one_box_and_with_nats() {
    if !promtool() {
        return;
    }
    let single = scrape(&[]);
    let (ok, said) = check(&single);
    assert!(ok, "promtool check metrics, one box: {said}\n{single}");
    let Some(nats) = NatsServer::start("promtool") else {
        return;
    };
    let joined = scrape(&["--nats", &nats.url()]);
    let (ok, said) = check(&joined);
    assert!(ok, "promtool check metrics, with --nats: {said}\n{joined}");
    assert!(families(&joined).len() > families(&single).len());
    // The checker itself bites: a counter without `_total` is a lint problem.
    let broken = single.replace("tickrelay_ticks_in_total", "tickrelay_ticks_in");
    assert!(
        !check(&broken).0,
        "promtool accepted a counter without _total"
    );
}

#[test]
fn every_grafana_query_names_an_exported_metric() {
    let Some(nats) = NatsServer::start("grafana") else {
        return;
    };
    let exported = families(&scrape(&["--nats", &nats.url()]));
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/grafana/tickrelay.json");
    let dashboard: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&path).expect("read the dashboard"))
            .expect("the dashboard is JSON");
    let mut queries = Vec::new();
    collect_queries(&dashboard, &mut queries);
    assert!(queries.len() >= 10, "found only {} queries", queries.len());
    let mut named = BTreeSet::new();
    for query in &queries {
        let mut found = false;
        for name in metric_names(query) {
            found = true;
            let histogram = ["_bucket", "_sum", "_count"]
                .iter()
                .find_map(|suffix| name.strip_suffix(suffix))
                .filter(|base| exported.contains(&(base.to_string(), "histogram".into())));
            let family = histogram.map_or(name.clone(), str::to_owned);
            assert!(
                exported.iter().any(|(n, _)| *n == family),
                "the dashboard's query `{query}` names `{name}`, which /metrics does not export"
            );
            named.insert(family);
        }
        assert!(found, "a query names no tickrelay metric: `{query}`");
    }
    for must in [
        "tickrelay_deliveries_total",
        "tickrelay_delivery_latency_seconds",
        "tickrelay_errors_total",
        "tickrelay_nats_connected",
    ] {
        assert!(named.contains(must), "the dashboard does not chart {must}");
    }
}

/// Every `expr` of a panel target and every `query` of a templating variable.
fn collect_queries(value: &serde_json::Value, into: &mut Vec<String>) {
    match value {
        serde_json::Value::Object(map) => {
            for (key, value) in map {
                match (key.as_str(), value) {
                    ("expr" | "definition", serde_json::Value::String(q)) => into.push(q.clone()),
                    ("query", serde_json::Value::String(q)) if q.contains("tickrelay_") => {
                        into.push(q.clone());
                    }
                    _ => collect_queries(value, into),
                }
            }
        }
        serde_json::Value::Array(items) => items.iter().for_each(|v| collect_queries(v, into)),
        _ => {}
    }
}

/// The `tickrelay_*` identifiers in a PromQL expression.
fn metric_names(query: &str) -> Vec<String> {
    let mut names = Vec::new();
    let mut rest = query;
    while let Some(at) = rest.find("tickrelay_") {
        let tail = &rest[at..];
        let end = tail
            .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
            .unwrap_or(tail.len());
        names.push(tail[..end].to_owned());
        rest = &tail[end..];
    }
    names
}
