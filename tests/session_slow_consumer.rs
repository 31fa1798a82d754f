//! A client that stops reading never slows the others: `disconnect` closes it with 4008,
//! `conflate` keeps the latest tick per symbol and reports the skipped seqs as a gap.

mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use support::{TestRelay, tick_line};
use tickrelay::Config;
use tickrelay::config::SlowPolicy;

fn small_budget() -> Config {
    Config {
        outbox_bytes: 16 * 1024,
        outbox_max_age: Duration::from_millis(300),
        send_buffer_bytes: 16 * 1024,
        ..Config::for_tests()
    }
}

/// Publishes `count` ticks per symbol in chunks of 500 rounds every 5 ms (100k rounds/s:
/// fast, but paced like a feed rather than one socket-sized burst).
async fn publish(relay: &TestRelay, symbols: &[&str], count: u64) {
    let mut ingest = relay.ingest().await;
    for chunk in (1..=count).collect::<Vec<_>>().chunks(500) {
        let lines: Vec<String> = chunk
            .iter()
            .flat_map(|i| {
                symbols
                    .iter()
                    .map(move |s| tick_line(s, 1.0 + *i as f64, *i))
            })
            .collect();
        ingest.send_lines(&lines).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_disconnected_with_4008_and_others_lose_nothing() {
    // A budget a reading client never reaches during the bursts below (~75 KB each), far
    // below the ~3 MB backlog of the stalled one.
    let relay = TestRelay::start(Config {
        shards: 1,
        outbox_bytes: 1024 * 1024,
        outbox_max_age: Duration::from_secs(2),
        ..small_budget()
    })
    .await;
    let mut slow = support::slow_client(&relay, "?symbols=A").await;
    let mut fast = relay.client("?symbols=A").await;
    let reader = tokio::spawn(async move {
        let seen = fast
            .ticks_until(&BTreeMap::from([("A".to_owned(), 20_000)]))
            .await;
        assert_eq!(
            seen["A"],
            (1..=20_000).collect::<Vec<u64>>(),
            "the reading client lost nothing"
        );
        fast
    });
    publish(&relay, &["A"], 20_000).await;
    reader.await.expect("fast client complete");
    support::wait_for("slow client disconnected", || async {
        relay.get("/stats").await.1["shards"][0]["slow_disconnects"] == 1
    })
    .await;
    let (code, reason) = slow.expect_close().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer"));

    // After it, a fresh client gets a correct stream.
    let mut fresh = relay.client("?symbols=A").await;
    assert_eq!(
        fresh.next_json().await["seq"],
        20_000,
        "snapshot of the last value"
    );
    publish(&relay, &["A"], 1).await;
    assert_eq!(fresh.next_json().await["seq"], 20_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflating_client_gets_the_latest_ticks_and_exact_gaps() {
    let relay = TestRelay::start(Config {
        shards: 1,
        slow_policy: SlowPolicy::Conflate,
        ..small_budget()
    })
    .await;
    let mut slow = support::slow_client(&relay, "?symbols=A,B").await;
    assert_eq!(slow.next_json().await["type"], "welcome");
    publish(&relay, &["A", "B"], 20_000).await;
    support::wait_for("conflation happened", || async {
        relay.get("/stats").await.1["shards"][0]["conflated"].as_u64() > Some(0)
    })
    .await;
    // Now read everything: per symbol the seqs received plus the gaps reported must cover
    // 1..=20000 exactly once, in order, ending with the newest tick.
    let mut next: BTreeMap<String, u64> = BTreeMap::from([("A".into(), 1), ("B".into(), 1)]);
    let mut gaps = 0;
    while next.values().any(|n| *n <= 20_000) {
        let msg = slow.next_json().await;
        let symbol = msg["symbol"].as_str().unwrap().to_owned();
        let expected = next[&symbol];
        match msg["type"].as_str().unwrap() {
            "tick" => {
                assert_eq!(
                    msg["seq"].as_u64(),
                    Some(expected),
                    "{symbol}: in order, nothing unexplained missing"
                );
                *next.get_mut(&symbol).unwrap() += 1;
            }
            "gap" => {
                assert_eq!(
                    msg["from"].as_u64(),
                    Some(expected),
                    "{symbol}: gap starts where the stream stopped"
                );
                let to = msg["to"].as_u64().unwrap();
                assert!(to >= expected);
                *next.get_mut(&symbol).unwrap() = to + 1;
                gaps += 1;
            }
            other => panic!("unexpected {other}: {msg}"),
        }
    }
    assert!(gaps >= 2, "both symbols were conflated at least once");
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(
        stats["shards"][0]["slow_disconnects"], 0,
        "conflation does not disconnect"
    );
}
