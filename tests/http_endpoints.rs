//! The HTTP endpoints on the WebSocket port.

mod support;

use support::TestRelay;
use tickrelay::Config;

#[tokio::test]
async fn health_stats_symbols_and_price() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, health) = relay.get("/health").await;
    assert_eq!(status, 200);
    assert_eq!(health["status"], "ready");
    assert_eq!(health["shards"], 2);

    let _client = relay.client("?symbols=BTC-USD").await;
    relay.publish_many("BTC-USD", 3).await;
    support::wait_for("price", || async {
        relay.get("/price/BTC-USD").await.1["seq"] == 3
    })
    .await;
    let (_, price) = relay.get("/price/BTC-USD").await;
    assert_eq!(price["price"].as_f64(), Some(100.03));
    assert_eq!(price["ts_ns"], 3);

    let (status, missing) = relay.get("/price/NOPE").await;
    assert_eq!(
        (status, missing["code"].as_str()),
        (404, Some("unknown_symbol"))
    );

    let (_, symbols) = relay.get("/symbols").await;
    assert_eq!(symbols["symbols"][0]["symbol"], "BTC-USD");

    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["ticks_in"], 3);
    assert_eq!(stats["sessions"], 1);
    assert_eq!(stats["subscriptions"]["BTC-USD"], 1);
    assert_eq!(stats["shards"].as_array().unwrap().len(), 2);

    let (status, _) = relay.get("/nowhere").await;
    assert_eq!(status, 404);
}

#[tokio::test]
async fn publish_accepts_objects_arrays_and_lines_and_rejects_with_line_and_field() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, body) = relay
        .post("/api/publish", r#"{"symbol":"P1","price":1.5,"ts_ns":1}"#)
        .await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(1)));
    let (status, body) = relay
        .post(
            "/api/publish",
            r#"[{"symbol":"P1","price":2.5,"ts_ns":2},{"symbol":"P2","bid":1,"ts_ns":2}]"#,
        )
        .await;
    assert_eq!((status, body["accepted"].as_u64()), (202, Some(2)));
    let (status, body) = relay
        .post("/api/publish", "{\"symbol\":\"P1\",\"price\":3,\"ts_ns\":3}\n{\"symbol\":\"P1\",\"kind\":\"trade\",\"ts_ns\":4}\n")
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        (body["line"].as_u64(), body["field"].as_str()),
        (Some(2), Some("price")),
        "{body}"
    );
    support::wait_for("published", || async {
        relay.get("/price/P1").await.1["seq"] == 2
    })
    .await;
    let (_, price) = relay.get("/price/P1").await;
    assert_eq!(
        price["price"].as_f64(),
        Some(2.5),
        "a rejected body publishes nothing"
    );

    let big = "x".repeat(2 * 1024 * 1024);
    let (status, body) = relay.post("/api/publish", &big).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (413, Some("body_too_large"))
    );
}

#[tokio::test]
async fn unknown_encoding_is_refused_at_the_handshake() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let err = support::within(
        "the refused upgrade",
        tokio_tungstenite::connect_async(relay.url("?encoding=xml")),
    )
    .await
    .unwrap_err();
    match err {
        tokio_tungstenite::tungstenite::Error::Http(response) => {
            assert_eq!(response.status(), 400);
            let body: serde_json::Value =
                serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(
                body["supported"],
                serde_json::json!(["json", "protobuf", "gzip"])
            );
        }
        other => panic!("expected an HTTP 400, got {other}"),
    }
}

#[tokio::test]
async fn publish_names_the_field_of_a_type_error() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, body) = relay
        .post(
            "/api/publish",
            r#"[{"symbol":"P","price":1,"ts_ns":1},{"symbol":"P","price":"high","ts_ns":2}]"#,
        )
        .await;
    assert_eq!(status, 400);
    assert_eq!(
        (body["line"].as_u64(), body["field"].as_str()),
        (Some(2), Some("price")),
        "{body}"
    );
    let (status, body) = relay
        .post("/api/publish", r#"{"symbol":"P","price":1}"#)
        .await;
    assert_eq!(
        (status, body["field"].as_str()),
        (400, Some("ts_ns")),
        "{body}"
    );
}

#[tokio::test]
async fn metrics_are_prometheus_text_of_the_same_counters() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let _client = relay.client("?symbols=M").await;
    relay.publish_many("M", 4).await;
    support::wait_for("sequenced", || async {
        relay.get("/price/M").await.1["seq"] == 4
    })
    .await;
    let mut ingest = relay.ingest().await;
    ingest.send_lines(&["nope".into()]).await;
    ingest.next_reply().await;
    let (status, text) = support::http_raw(relay.http, "GET", "/metrics", "").await;
    assert_eq!(status, 200);
    assert!(
        text.contains("# TYPE tickrelay_ticks_in_total counter\ntickrelay_ticks_in_total 4\n"),
        "{text}"
    );
    assert!(
        text.contains("tickrelay_errors_total{code=\"bad_json\"} 1\n"),
        "{text}"
    );
    let sessions: u64 = text
        .lines()
        .filter(|l| l.starts_with("tickrelay_sessions{"))
        .map(|l| l.rsplit(' ').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(sessions, 1);
}
