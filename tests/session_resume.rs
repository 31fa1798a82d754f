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

    let mut second = relay
        .client(&format!("?resume=R:{last_seen}&epoch={}", relay.epoch()))
        .await;
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
    let mut client = relay
        .client(&format!("?resume=OLD:5&epoch={}", relay.epoch()))
        .await;
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
    client
        .send_json(&format!(
            r#"{{"op":"resume","from":{{"X":7}},"epoch":{}}}"#,
            relay.epoch()
        ))
        .await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"resumed","symbols":["X"]})
    );
    let seen = client
        .ticks_until(&BTreeMap::from([("X".to_owned(), 10)]))
        .await;
    assert_eq!(seen["X"], vec![8, 9, 10]);
    client
        .send_json(&format!(
            r#"{{"op":"resume","from":{{"X":1}},"epoch":{}}}"#,
            relay.epoch()
        ))
        .await;
    let error = client.next_json().await;
    assert_eq!(error["code"], "already_subscribed");
}

/// `--replay-budget` shrinks every ring once symbols share it: with a budget of 10 and two
/// symbols, each keeps its newest 5 (not `--replay-depth` 100), oldest dropped first.
#[tokio::test]
async fn the_replay_budget_shrinks_each_ring_to_its_share() {
    let mut config = Config {
        replay_depth: 100,
        replay_budget: 10,
        ..Config::for_tests()
    };
    // Bars and tickers off: their channels are keys with rings too, and their first timed
    // update (within a second) would make 12 keys share the budget at a moment the test does
    // not choose (the ring of 5 became a ring of 1 in 1 run of 12).
    config.derived.bar_intervals = tickrelay::config::BarIntervals::parse("off").expect("off");
    let relay = TestRelay::start(config).await;
    // Both symbols exist before the rest arrives, so every later tick is kept at depth 5.
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[tick_line("RB-A", 1.0, 1), tick_line("RB-B", 1.0, 1)])
        .await;
    relay.wait_sequenced("RB-B", 1).await;
    let lines: Vec<String> = (2..=20).map(|i| tick_line("RB-A", i as f64, i)).collect();
    ingest.send_lines(&lines).await;
    relay.wait_sequenced("RB-A", 20).await;

    let mut inside = relay
        .client(&format!("?resume=RB-A:15&epoch={}", relay.epoch()))
        .await;
    let seen = inside
        .ticks_until(&BTreeMap::from([("RB-A".to_owned(), 20)]))
        .await;
    assert_eq!(
        seen["RB-A"],
        vec![16, 17, 18, 19, 20],
        "the newest 5 are kept"
    );

    let mut outside = relay
        .client(&format!("?resume=RB-A:14&epoch={}", relay.epoch()))
        .await;
    assert_eq!(
        outside.next_json().await,
        serde_json::json!({"type":"gap","symbol":"RB-A","from":15,"to":19}),
        "seq 15 is older than a ring of 5"
    );
    let snapshot = outside.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(20))
    );
}

/// A client ahead of the relay (it restarted and its seqs began again) gets a snapshot of
/// the newest, then live ticks.
#[tokio::test]
async fn resume_ahead_of_the_relay_gets_a_snapshot_then_live() {
    let relay = TestRelay::start(Config::for_tests()).await;
    relay.publish_many("AHEAD", 5).await;
    relay.wait_sequenced("AHEAD", 5).await;
    let mut client = relay
        .client(&format!("?resume=AHEAD:900&epoch={}", relay.epoch()))
        .await;
    let snapshot = client.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(5)),
        "{snapshot}"
    );
    relay.publish_many("AHEAD", 1).await;
    let live = client.next_json().await;
    assert_eq!(
        (live["type"].as_str(), live["seq"].as_u64()),
        (Some("tick"), Some(6)),
        "then live: {live}"
    );
}

/// Resume of a symbol the relay holds no history of (never seen, or evicted): the client's
/// seqs belong to no run the relay can continue, so it is told `reset` (its seq 3 must not
/// make it drop the relay's seqs 1 to 3 as repeats), then subscribed until the first tick.
#[tokio::test]
async fn resume_of_an_unknown_symbol_is_reset_then_waits_for_its_first_tick() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay
        .client(&format!("?resume=NEVER:3&epoch={}", relay.epoch()))
        .await;
    let epoch = relay.epoch();
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"reset","symbol":"NEVER","epoch":epoch}),
    );
    client.send_json(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"pong","id":1}),
        "no gap, snapshot or tick for a symbol never seen"
    );
    relay.publish_many("NEVER", 1).await;
    let first = client.next_json().await;
    assert_eq!(
        (
            first["type"].as_str(),
            first["symbol"].as_str(),
            first["seq"].as_u64()
        ),
        (Some("tick"), Some("NEVER"), Some(1)),
        "subscribed by the resume: {first}"
    );
}

/// PROTOCOL.md: "with more symbols than budget ÷ depth, each keeps budget ÷ symbols". A
/// ring filled while its symbol was alone must shrink to its share once others appear,
/// even if its symbol stays quiet. It does not: a ring only shrinks when its own symbol
/// ticks again (`Ring::push`), so quiet symbols keep the depth of the day they were
/// busy and the rings' total can exceed `--replay-budget` (by ~ln(symbols)x when symbols
/// arrive one by one).
#[tokio::test]

async fn a_quiet_symbols_ring_shrinks_when_other_symbols_take_their_share() {
    let mut config = Config {
        shards: 1,
        replay_depth: 100,
        replay_budget: 10,
        ..Config::for_tests()
    };
    // As above: no bars or tickers taking shares of the budget at their own moment.
    config.derived.bar_intervals = tickrelay::config::BarIntervals::parse("off").expect("off");
    let relay = TestRelay::start(config).await;
    // QA alone: its share is the whole budget, 10 ticks (11..=20).
    relay.publish_many("QA", 20).await;
    relay.wait_sequenced("QA", 20).await;
    // QB appears: each symbol's share is now 5, so QA keeps 16..=20.
    relay.publish_many("QB", 1).await;
    relay.wait_sequenced("QB", 1).await;
    let mut client = relay
        .client(&format!("?resume=QA:12&epoch={}", relay.epoch()))
        .await;
    let first = client.next_json().await;
    assert_eq!(
        first,
        serde_json::json!({"type":"gap","symbol":"QA","from":13,"to":19}),
        "seq 13 is older than QA's share of 5"
    );
}
