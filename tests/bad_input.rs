//! Bad control messages and bad ingest lines are answered with typed errors, counted, and
//! never disturb other clients.

mod support;

use std::collections::BTreeMap;

use support::{TestRelay, tick_line};
use tickrelay::Config;

#[tokio::test]
async fn bad_control_messages_get_typed_errors_and_the_session_stays_open() {
    let relay = TestRelay::start(Config {
        max_symbols_per_client: 3,
        ..Config::for_tests()
    })
    .await;
    let mut bystander = relay.client("?symbols=ZZZ").await;
    let mut client = relay.client("?symbols=ZZZ").await;
    for (message, code) in [
        ("not json", "bad_message"),
        (r#"{"op":"dance"}"#, "unknown_op"),
        (
            r#"{"op":"subscribe","symbols":["A"],"colour":"red"}"#,
            "unknown_field",
        ),
        (r#"{"op":"subscribe"}"#, "bad_message"),
        (
            r#"{"op":"subscribe","symbols":["bad symbol"]}"#,
            "invalid_symbol",
        ),
        (
            r#"{"op":"subscribe","symbols":["A","B","C"]}"#,
            "too_many_symbols",
        ),
    ] {
        client.send_json(message).await;
        let reply = client.next_json().await;
        assert_eq!(reply["type"], "error", "{message}");
        assert_eq!(reply["code"], code, "{message} → {reply}");
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }
    relay.publish_many("ZZZ", 3).await;
    let want = BTreeMap::from([("ZZZ".to_owned(), 3)]);
    assert_eq!(
        client.ticks_until(&want).await["ZZZ"],
        vec![1, 2, 3],
        "still subscribed and live"
    );
    assert_eq!(bystander.ticks_until(&want).await["ZZZ"], vec![1, 2, 3]);
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["errors"]["unknown_op"], 1);
    assert_eq!(stats["errors"]["too_many_symbols"], 1);
}

#[tokio::test]
async fn bad_ingest_lines_are_answered_with_line_and_reason_and_good_ones_flow() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=OK").await;
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[
            tick_line("OK", 1.0, 1),
            "{not json".into(),
            r#"{"symbol":"OK","price":1,"ts_ns":1,"prce":2}"#.into(),
            r#"{"symbol":"","price":1,"ts_ns":1}"#.into(),
            r#"{"symbol":"OK","kind":"trade","ts_ns":1}"#.into(),
            tick_line("OK", 2.0, 2),
        ])
        .await;
    for (line, code) in [
        (2, "bad_json"),
        (3, "unknown_field"),
        (4, "invalid_symbol"),
        (5, "missing_field"),
    ] {
        let reply = ingest.next_reply().await;
        assert_eq!(
            (reply["line"].as_u64(), reply["code"].as_str()),
            (Some(line), Some(code)),
            "{reply}"
        );
    }
    let seen = client
        .ticks_until(&BTreeMap::from([("OK".to_owned(), 2)]))
        .await;
    assert_eq!(
        seen["OK"],
        vec![1, 2],
        "valid lines around bad ones are all delivered"
    );
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["errors"]["bad_json"], 1);
    assert_eq!(stats["errors"]["invalid_symbol"], 1);
}

#[tokio::test]
async fn non_finite_prices_are_refused() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut ingest = relay.ingest().await;
    // JSON has no NaN literal; 1e999 parses to infinity in most parsers.
    ingest
        .send_lines(&[r#"{"symbol":"X","price":1e999,"ts_ns":1}"#.into()])
        .await;
    let reply = ingest.next_reply().await;
    assert_eq!(reply["type"], "error");
    assert_eq!(reply["line"], 1);
    let (status, _) = relay.get("/price/X").await;
    assert_eq!(status, 404, "nothing was published");
}
