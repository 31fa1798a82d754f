//! Subscriptions over a real WebSocket: filtering, runtime subscribe/unsubscribe, snapshots.

mod support;

use std::collections::BTreeMap;

use support::{TestRelay, tick_line};
use tickrelay::Config;

#[tokio::test]
async fn a_client_receives_only_its_symbols_with_exact_values() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut btc = relay.client("?symbols=BTC-USD").await;
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[
            tick_line("ETH-USD", 2280.25, 1),
            r#"{"symbol":"BTC-USD","price":43250.5,"size":0.25,"ts_ns":1764000000000000000}"#
                .into(),
            tick_line("ETH-USD", 2280.5, 2),
        ])
        .await;
    let tick = btc.next_json().await;
    assert_eq!(tick["type"], "tick");
    assert_eq!(tick["symbol"], "BTC-USD");
    assert_eq!(tick["seq"], 1);
    assert_eq!(tick["price"].as_f64(), Some(43250.5));
    assert_eq!(tick["size"].as_f64(), Some(0.25));
    assert_eq!(
        tick["ts_ns"].as_u64(),
        Some(1_764_000_000_000_000_000),
        "ts_ns passes through exactly"
    );
    assert!(tick["recv_ns"].as_u64().unwrap() > 0);

    // The ETH ticks were not sent to this client: the next thing it sees is its own pong.
    btc.send_json(r#"{"op":"ping","id":9}"#).await;
    let pong = btc.next_json().await;
    assert_eq!(pong, serde_json::json!({"type":"pong","id":9}));
}

#[tokio::test]
async fn subscribe_sends_a_snapshot_then_live_ticks_without_gap_or_repeat() {
    let relay = TestRelay::start(Config::for_tests()).await;
    relay.publish_many("SOL-USD", 5).await;
    support::wait_for("5 ticks sequenced", || async {
        relay.get("/price/SOL-USD").await.1["seq"] == 5
    })
    .await;

    let mut client = relay.client("?symbols=SOL-USD").await;
    let snapshot = client.next_json().await;
    assert_eq!(snapshot["type"], "snapshot");
    assert_eq!(snapshot["seq"], 5);

    relay.publish_many("SOL-USD", 3).await;
    let seen = client
        .ticks_until(&BTreeMap::from([("SOL-USD".to_owned(), 8)]))
        .await;
    assert_eq!(seen["SOL-USD"], vec![6, 7, 8]);
}

#[tokio::test]
async fn runtime_subscribe_and_unsubscribe_change_what_arrives() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"subscribe","symbols":["AAA","BBB"]}"#)
        .await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"subscribed","symbols":["AAA","BBB"]})
    );
    relay.publish_many("AAA", 2).await;
    relay.publish_many("BBB", 2).await;
    let seen = client
        .ticks_until(&BTreeMap::from([
            ("AAA".to_owned(), 2),
            ("BBB".to_owned(), 2),
        ]))
        .await;
    assert_eq!(seen["AAA"], vec![1, 2]);

    client
        .send_json(r#"{"op":"unsubscribe","symbols":["AAA"]}"#)
        .await;
    assert_eq!(client.next_json().await["type"], "unsubscribed");
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[tick_line("AAA", 1.0, 3), tick_line("BBB", 1.0, 3)])
        .await;
    let next = client.next_json().await;
    assert_eq!(
        (next["symbol"].as_str(), next["seq"].as_u64()),
        (Some("BBB"), Some(3)),
        "AAA no longer arrives"
    );
}

#[tokio::test]
async fn wildcard_receives_every_symbol_once() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut all = relay.client("?symbols=*,XXX").await;
    relay.publish_many("XXX", 2).await;
    relay.publish_many("YYY", 2).await;
    let seen = all
        .ticks_until(&BTreeMap::from([
            ("XXX".to_owned(), 2),
            ("YYY".to_owned(), 2),
        ]))
        .await;
    assert_eq!(
        seen["XXX"],
        vec![1, 2],
        "a symbol named beside * is not delivered twice"
    );
    assert_eq!(seen["YYY"], vec![1, 2]);
}

#[tokio::test]
async fn snapshot_op_sends_last_values_on_demand() {
    let relay = TestRelay::start(Config::for_tests()).await;
    relay.publish_many("QQQ", 4).await;
    support::wait_for("ticks sequenced", || async {
        relay.get("/price/QQQ").await.0 == 200
    })
    .await;
    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"snapshot","symbols":["QQQ","NONE"]}"#)
        .await;
    let snap = client.next_json().await;
    assert_eq!(
        (snap["type"].as_str(), snap["seq"].as_u64()),
        (Some("snapshot"), Some(4))
    );
    let ack = client.next_json().await;
    assert_eq!(
        ack,
        serde_json::json!({"type":"snapshot","symbols":["QQQ","NONE"]}),
        "then the ack"
    );
}

#[tokio::test]
async fn unsubscribing_from_the_wildcard_stops_every_symbol() {
    // One shard: once /price shows W2, the client's shard has handled it.
    let relay = TestRelay::start(Config {
        shards: 1,
        ..Config::for_tests()
    })
    .await;
    let mut client = relay.client("?symbols=*").await;
    relay.publish_many("W1", 1).await;
    assert_eq!(client.next_json().await["symbol"], "W1", "* receives W1");
    client
        .send_json(r#"{"op":"unsubscribe","symbols":["*"]}"#)
        .await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"unsubscribed","symbols":["*"]})
    );
    relay.publish_many("W1", 2).await;
    relay.publish_many("W2", 1).await;
    relay.wait_sequenced("W2", 1).await;
    client.send_json(r#"{"op":"ping","id":5}"#).await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"pong","id":5}),
        "after unsubscribing * no tick arrives"
    );
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["wildcard_subscriptions"], 0, "{stats}");
}
