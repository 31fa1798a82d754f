//! Resume after reconnect: exactly the missed ticks, then live, no gap and no repeat at the
//! boundary; a position older than the ring gets a gap and a snapshot.

mod support;

use std::collections::BTreeMap;

use support::{TestRelay, tick_line};
use tickrelay::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_under_live_traffic_has_no_gap_and_no_duplicate() {
    let relay = TestRelay::start(Config {
        replay_depth: 100_000,
        ..Config::for_tests()
    })
    .await;
    let ingest_addr = relay.ingest;
    // A publisher that keeps going while the client disconnects and resumes.
    let publisher = tokio::spawn(async move {
        let mut ingest = support::Ingest::connect(ingest_addr).await;
        for i in 1..=6_000u64 {
            ingest.send_lines(&[tick_line("R", i as f64, i)]).await;
            if i % 100 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(2)).await;
            }
        }
    });
    let mut first = relay.client("?symbols=R").await;
    let mut last_seen = 0;
    while last_seen < 1_000 {
        let msg = first.next_json().await;
        if msg["type"] == "tick" || msg["type"] == "snapshot" {
            last_seen = msg["seq"].as_u64().unwrap();
        }
    }
    drop(first);

    let mut second = relay.client(&format!("?resume=R:{last_seen}")).await;
    let mut expected = last_seen + 1;
    while expected <= 6_000 {
        let msg = second.next_json().await;
        assert_eq!(
            msg["type"], "tick",
            "resume replays ticks, not a snapshot: {msg}"
        );
        assert_eq!(
            msg["seq"].as_u64(),
            Some(expected),
            "exactly once, in order, across the replay/live boundary"
        );
        expected += 1;
    }
    publisher.await.unwrap();
}

#[tokio::test]
async fn resume_older_than_the_ring_gets_a_gap_and_a_snapshot() {
    let relay = TestRelay::start(Config {
        replay_depth: 10,
        ..Config::for_tests()
    })
    .await;
    relay.publish_many("OLD", 50).await;
    support::wait_for("published", || async {
        relay.get("/price/OLD").await.1["seq"] == 50
    })
    .await;
    let mut client = relay.client("?resume=OLD:5").await;
    let gap = client.next_json().await;
    assert_eq!(
        gap,
        serde_json::json!({"type":"gap","symbol":"OLD","from":6,"to":49})
    );
    let snapshot = client.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(50))
    );
    relay.publish_many("OLD", 1).await;
    assert_eq!(client.next_json().await["seq"], 51, "then live");
}

#[tokio::test]
async fn resume_op_replays_and_refuses_symbols_already_live() {
    let relay = TestRelay::start(Config::for_tests()).await;
    relay.publish_many("X", 10).await;
    support::wait_for("published", || async {
        relay.get("/price/X").await.1["seq"] == 10
    })
    .await;
    let mut client = relay.client("?symbols=Y").await;
    client.send_json(r#"{"op":"resume","from":{"X":7}}"#).await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"resumed","symbols":["X"]})
    );
    let seen = client
        .ticks_until(&BTreeMap::from([("X".to_owned(), 10)]))
        .await;
    assert_eq!(seen["X"], vec![8, 9, 10]);
    client.send_json(r#"{"op":"resume","from":{"X":1}}"#).await;
    let error = client.next_json().await;
    assert_eq!(error["code"], "already_subscribed");
}
