//! What a publisher can do to clients, over real sockets: an event whose `data` nests too
//! deep is refused at every ingest path (it would be undecodable for the clients), and the
//! key table cannot be filled for good: when it is full, idle keys nobody subscribes to are
//! evicted, a refused item is answered to its publisher, and no client that held an
//! evicted key's seqs is ever handed a later run as their continuation.

mod security_common;
mod support;

use std::collections::BTreeSet;
use std::time::Duration;

use security_common::errors;
use serde_json::Value;
use support::{TestRelay, WsClient, tick_line};
use tickrelay::Config;
use tickrelay::event::MAX_EVENT_DEPTH;

fn nested(channel: &str, levels: usize) -> String {
    let data = format!("{}1{}", "[".repeat(levels), "]".repeat(levels));
    format!(r#"{{"channel":"{channel}","data":{data}}}"#)
}

#[tokio::test]
async fn an_event_nested_too_deep_is_refused_on_every_ingest_path() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut reader = relay.client("?channels=poison").await;
    // As found: 129 levels in 258 bytes, accepted, kept as the snapshot, sent byte for byte.
    let mut ingest = relay.ingest().await;
    ingest.send_lines(&[nested("poison", 129)]).await;
    let reply = ingest.next_reply().await;
    assert_eq!(
        (reply["line"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("event_too_deep")),
        "{reply}"
    );
    let (status, body) = relay.post("/api/events", &nested("poison", 8000)).await;
    assert_eq!(
        (status, body["code"].as_str(), body["field"].as_str()),
        (400, Some("event_too_deep"), Some("data"))
    );
    assert_eq!(errors(relay.http, "event_too_deep").await, 2);
    // As poisonous to a serde_json client: a number no double holds, a lone surrogate.
    for data in ["8e999", r#""\ud800""#] {
        let event = format!(r#"{{"channel":"poison","data":{data}}}"#);
        let (status, body) = relay.post("/api/events", &event).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (400, Some("bad_json"), Some("data")),
            "{data}"
        );
    }
    // The limit itself is fine; the reader's first event is that one.
    let (status, _) = relay
        .post("/api/events", &nested("poison", MAX_EVENT_DEPTH))
        .await;
    assert_eq!(status, 202);
    let event = reader.next_json().await;
    assert_eq!(
        (event["type"].as_str(), event["seq"].as_u64()),
        (Some("event"), Some(1))
    );
    // No snapshot of the refused ones either.
    let mut late = relay.client("?channels=poison").await;
    let snapshot = late.next_json().await;
    assert_eq!(snapshot["seq"], 1, "{snapshot}");
}

/// `/price/{symbol}`'s seq, once the symbol is known.
async fn price_seq(relay: &TestRelay, symbol: &str) -> Option<u64> {
    let (status, body) = relay.get(&format!("/price/{symbol}")).await;
    (status == 200).then(|| body["seq"].as_u64()).flatten()
}

/// The next messages of `client` until one is a tick of `symbol`; the others' (type, key).
async fn until_tick(client: &mut WsClient, symbol: &str) -> (Vec<(String, String)>, Value) {
    let mut before = Vec::new();
    loop {
        let message = client.next_json().await;
        let key = message["symbol"].as_str().unwrap_or_default().to_owned();
        if message["type"] == "tick" && key == symbol {
            return (before, message);
        }
        before.push((message["type"].as_str().unwrap_or_default().to_owned(), key));
    }
}

#[tokio::test]
async fn a_full_key_table_evicts_idle_keys_answers_refusals_and_misleads_no_client() {
    let relay = TestRelay::start(Config {
        max_symbols: 2,
        evict_idle: Duration::ZERO,
        shards: 1,
        ..Config::for_tests()
    })
    .await;
    let mut everything = relay.client("?symbols=*").await;
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[
            tick_line("J1", 1.0, 1),
            tick_line("J1", 1.0, 2),
            tick_line("J2", 1.0, 3),
        ])
        .await;
    let (_, tick) = until_tick(&mut everything, "J2").await;
    assert_eq!(tick["seq"], 1);

    // The table is full: J3 evicts J1 and J2 (idle, subscribed by name by nobody). The `*`
    // client held their seqs: it is told to drop them before anything else of theirs.
    ingest.send_lines(&[tick_line("J3", 1.0, 4)]).await;
    let (before, tick) = until_tick(&mut everything, "J3").await;
    let resets: BTreeSet<(String, String)> = before.into_iter().collect();
    let want: BTreeSet<(String, String)> = [("reset", "J1"), ("reset", "J2")]
        .iter()
        .map(|(t, k)| ((*t).to_owned(), (*k).to_owned()))
        .collect();
    assert_eq!(resets, want);
    assert_eq!(
        tick["seq"], 4,
        "a key after an eviction starts two above the highest evicted seq (J1's 2)"
    );
    assert_eq!(price_seq(&relay, "J1").await, None, "J1's history is gone");

    // A client that held J1:2 resumes: J1 is unknown now, so it is told `reset`.
    let mut holder = relay
        .client(&format!("?resume=J1:2&epoch={}", relay.epoch()))
        .await;
    assert_eq!(holder.next_json().await["type"], "reset");
    // J1 comes back above every evicted seq: to the holder, after its reset, and to a
    // client resuming from J1:2 later, a gap then the snapshot: never J1:3, as if continued.
    ingest.send_lines(&[tick_line("J1", 5.0, 5)]).await;
    let (_, tick) = until_tick(&mut holder, "J1").await;
    assert_eq!(tick["seq"], 4);
    let mut late = relay
        .client(&format!("?resume=J1:2&epoch={}", relay.epoch()))
        .await;
    let gap = late.next_json().await;
    assert_eq!(
        (
            gap["type"].as_str(),
            gap["from"].as_u64(),
            gap["to"].as_u64()
        ),
        (Some("gap"), Some(3), Some(3)),
        "{gap}"
    );
    let snapshot = late.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(4))
    );

    // Now J1 (the holder) and J3 (a subscriber) are subscribed by name: nothing can be
    // evicted, and a new symbol is refused with an answer on its own connection.
    let mut j3 = relay.client("?symbols=J3").await;
    let mut publisher = relay.ingest().await;
    publisher
        .send_lines(&[tick_line("J1", 5.0, 6), tick_line("BTC-USD", 1.0, 7)])
        .await;
    let reply = publisher.next_reply().await;
    assert_eq!(
        (reply["line"].as_u64(), reply["code"].as_str()),
        (Some(2), Some("symbol_limit")),
        "{reply}"
    );
    let (status, body) = relay
        .post("/api/publish", &tick_line("ETH-USD", 1.0, 8))
        .await;
    assert_eq!(
        (
            status,
            body["code"].as_str(),
            body["line"].as_u64(),
            body["accepted"].as_u64()
        ),
        (503, Some("symbol_limit"), Some(1), Some(0)),
        "{body}"
    );
    assert_eq!(errors(relay.http, "symbol_limit").await, 2);

    // Once J3's subscriber leaves, J3 is idle and unwanted: BTC-USD gets its place.
    j3.send_json(r#"{"op":"unsubscribe","symbols":["J3"]}"#)
        .await;
    while j3.next_json().await["type"] != "unsubscribed" {}
    let deadline = tokio::time::Instant::now() + support::WAIT;
    while price_seq(&relay, "BTC-USD").await.is_none() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "BTC-USD found no room after J3 went idle"
        );
        publisher.send_lines(&[tick_line("BTC-USD", 1.0, 9)]).await;
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}
