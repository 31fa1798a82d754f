//! The ingest → socket-write latency histogram: `/stats` percentiles and the Prometheus
//! histogram on `/metrics` count one sample per delivered tick, per shard.

mod support;

use std::collections::BTreeMap;

use support::{TestRelay, http_raw, wait_for};
use tickrelay::Config;

#[tokio::test]
async fn every_delivery_is_one_latency_sample_in_stats_and_metrics() {
    let relay = TestRelay::start(Config {
        shards: 2,
        ..Config::for_tests()
    })
    .await;
    // Two clients on the same symbol: the acceptor spreads them over both shards.
    let mut a = relay.client("?symbols=LAT").await;
    let mut b = relay.client("?symbols=LAT").await;
    relay.publish_many("LAT", 50).await;
    let last = BTreeMap::from([("LAT".to_string(), 50)]);
    a.ticks_until(&last).await;
    b.ticks_until(&last).await;

    wait_for("100 latency samples in /stats", || async {
        relay.get("/stats").await.1["latency_us"]["count"] == 100
    })
    .await;
    let stats = relay.get("/stats").await.1;
    let latency = &stats["latency_us"];
    let (p50, p99, p999) = (
        latency["p50"].as_f64().expect("p50 once there are samples"),
        latency["p99"].as_f64().expect("p99"),
        latency["p999"].as_f64().expect("p999"),
    );
    assert!(p50 >= 1.0 && p50 <= p99 && p99 <= p999, "{latency}");
    // Loopback on an idle relay: far below a second, whatever else the machine is doing.
    assert!(p999 < 1_000_000.0, "{latency}");
    let per_shard: u64 = (0..2)
        .map(|i| stats["shards"][i]["latency_us"]["count"].as_u64().unwrap())
        .sum();
    assert_eq!(per_shard, 100, "{stats}");
    assert_eq!(stats["ticks_out"], 100, "one sample per delivery: {stats}");

    let (status, text) = http_raw(relay.http, "GET", "/metrics", "").await;
    assert_eq!(status, 200, "{text}");
    assert!(
        text.contains("# TYPE tickrelay_delivery_latency_seconds histogram"),
        "{text}"
    );
    let count: u64 = text
        .lines()
        .filter(|l| l.starts_with("tickrelay_delivery_latency_seconds_count{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(count, 100, "{text}");
    let inf: u64 = text
        .lines()
        .filter(|l| l.contains("_bucket{") && l.contains("le=\"+Inf\""))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(inf, 100, "+Inf buckets hold every sample: {text}");
    for line in text.lines().filter(|l| l.contains("_bucket{")) {
        let value: u64 = line.rsplit(' ').next().unwrap().parse().unwrap();
        assert!(
            value <= 100,
            "cumulative buckets never exceed the count: {line}"
        );
    }
}
