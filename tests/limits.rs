//! Limits: each violation is answered with a clear error or close code and counted.

mod support;

use support::TestRelay;
use tickrelay::Config;
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn connection_limits_refuse_with_503_and_count() {
    let relay = TestRelay::start(Config {
        max_connections: 3,
        ..Config::for_tests()
    })
    .await;
    let _a = relay.client("").await;
    let _b = relay.client("").await;
    let _c = relay.client("").await;
    let (status, body) = support::http_raw(relay.http, "GET", "/health", "").await;
    assert_eq!(status, 503, "{body}");
    assert!(body.contains("too_many_connections"));
    assert_eq!(
        relay
            .metrics()
            .connections_refused
            .load(std::sync::atomic::Ordering::Relaxed),
        1
    );
}

#[tokio::test]
async fn per_ip_limit_applies_per_source_address() {
    let relay = TestRelay::start(Config {
        max_connections_per_ip: 1,
        ..Config::for_tests()
    })
    .await;
    let _held = relay.client("").await;
    let (status, _) = support::http_raw(relay.http, "GET", "/health", "").await;
    assert_eq!(status, 503, "a second connection from 127.0.0.1 is refused");
    // Another loopback address is another source.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.2:0".parse().unwrap()).unwrap();
    let mut other = support::within("a connection from 127.0.0.2", socket.connect(relay.http))
        .await
        .unwrap();
    support::within(
        "the request from 127.0.0.2 to be sent",
        other.write_all(b"GET /health HTTP/1.1\r\nhost: x\r\nconnection: close\r\n\r\n"),
    )
    .await
    .unwrap();
    let mut response = Vec::new();
    support::within(
        "the answer to 127.0.0.2",
        tokio::io::AsyncReadExt::read_to_end(&mut other, &mut response),
    )
    .await
    .unwrap();
    assert!(response.starts_with(b"HTTP/1.1 200"));
}

#[tokio::test]
async fn control_message_rate_is_limited_per_client() {
    const SENT: u64 = 20;
    let relay = TestRelay::start(Config {
        max_control_rate: 5,
        ..Config::for_tests()
    })
    .await;
    let mut client = relay.client("").await;
    // The bucket starts full (a burst of 5) and refills at 5/s while the pings are handled,
    // so on a slow box a few more than 5 may pass: the first 5 always do, and refusals
    // start once the burst is spent unless the 20 pings took seconds.
    let started = tokio::time::Instant::now();
    for id in 0..SENT {
        client
            .send_json(&format!(r#"{{"op":"ping","id":{id}}}"#))
            .await;
    }
    let mut replies = Vec::new();
    for _ in 0..SENT {
        let reply = client.next_json().await;
        match reply["type"].as_str() {
            Some("pong") => replies.push(true),
            Some("error") if reply["code"] == "rate_limited" => replies.push(false),
            other => panic!("unexpected {other:?}: {reply}"),
        }
    }
    let elapsed = started.elapsed().as_secs_f64();
    let pongs = replies.iter().filter(|pong| **pong).count() as u64;
    let limited = SENT - pongs;
    assert!(
        replies[..5].iter().all(|pong| *pong),
        "the burst of 5 is always answered: {replies:?}"
    );
    let refill = (elapsed * 5.0).ceil() as u64;
    assert!(
        pongs <= 5 + refill,
        "{pongs} pongs in {elapsed:.2}s: more than the burst plus the refill ({refill})"
    );
    assert!(
        limited >= 1 || elapsed > 3.0,
        "20 pings within {elapsed:.2}s and none refused: {replies:?}"
    );
    assert_eq!(
        relay.get("/stats").await.1["errors"]["rate_limited"],
        limited,
        "every refusal is counted"
    );
}

/// `--max-symbols`: ticks of a new symbol beyond the limit are refused and counted; the
/// symbols already known go on.
#[tokio::test]
async fn ticks_of_new_symbols_beyond_max_symbols_are_refused_and_counted() {
    let relay = TestRelay::start(Config {
        max_symbols: 2,
        ..Config::for_tests()
    })
    .await;
    let mut client = relay.client("?symbols=MS-A,MS-C").await;
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[
            support::tick_line("MS-A", 1.0, 1),
            support::tick_line("MS-B", 1.0, 1),
            support::tick_line("MS-C", 1.0, 1),
            support::tick_line("MS-A", 2.0, 2),
        ])
        .await;
    let first = client.next_json().await;
    let second = client.next_json().await;
    assert_eq!(
        [
            (first["symbol"].as_str(), first["seq"].as_u64()),
            (second["symbol"].as_str(), second["seq"].as_u64())
        ],
        [(Some("MS-A"), Some(1)), (Some("MS-A"), Some(2))],
        "the third symbol is refused, the known one goes on"
    );
    // ticks_in is counted after the batch is handed to the shards: wait for it too.
    support::wait_for("symbol_limit counted and 3 ticks in", || async {
        let stats = relay.get("/stats").await.1;
        stats["errors"]["symbol_limit"] == 1 && stats["ticks_in"] == 3
    })
    .await;
    assert_eq!(
        relay.get("/price/MS-C").await.0,
        404,
        "MS-C was never sequenced"
    );
}

#[tokio::test]
async fn symbol_limit_applies_at_connect() {
    let relay = TestRelay::start(Config {
        max_symbols_per_client: 2,
        ..Config::for_tests()
    })
    .await;
    let err = support::within(
        "the refused upgrade",
        tokio_tungstenite::connect_async(relay.url("?symbols=A,B,C")),
    )
    .await
    .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = err else {
        panic!("expected HTTP 400")
    };
    assert_eq!(response.status(), 400);
    let body: serde_json::Value =
        serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["code"], "too_many_symbols");
}

#[tokio::test]
async fn an_ingest_line_over_the_limit_is_refused_and_the_connection_goes_on() {
    let relay = TestRelay::start(Config {
        max_ingest_line: 200,
        ..Config::for_tests()
    })
    .await;
    let mut client = relay.client("?symbols=L").await;
    let mut ingest = relay.ingest().await;
    let long = format!(
        r#"{{"symbol":"L","price":1,"ts_ns":1,"venue":"{}"}}"#,
        "v".repeat(300)
    );
    ingest
        .send_lines(&[long, support::tick_line("L", 2.0, 2)])
        .await;
    let reply = ingest.next_reply().await;
    assert_eq!(
        (reply["line"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("line_too_long"))
    );
    assert_eq!(client.next_json().await["price"].as_f64(), Some(2.0));
}

#[tokio::test]
async fn an_ingest_connection_cut_mid_line_loses_only_that_line() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=CUT").await;
    let mut ingest = relay.ingest().await;
    let first = support::tick_line("CUT", 1.0, 1);
    ingest
        .send_raw(format!("{first}\n{{\"symbol\":\"CUT\",\"pri").as_bytes())
        .await;
    drop(ingest);
    assert_eq!(client.next_json().await["seq"], 1);
    let mut again = relay.ingest().await;
    again.send_lines(&[support::tick_line("CUT", 3.0, 3)]).await;
    let next = client.next_json().await;
    assert_eq!(
        (next["seq"].as_u64(), next["price"].as_f64()),
        (Some(2), Some(3.0)),
        "the partial line was dropped, nothing else"
    );
}
