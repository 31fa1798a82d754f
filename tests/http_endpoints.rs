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

    // One subscriber, three ticks: three deliveries, counted once each. (The sequencer
    // counts ticks_in after handing a batch to the shards, so it too is waited for.)
    support::wait_for("3 ticks in and 3 deliveries counted", || async {
        let stats = relay.get("/stats").await.1;
        stats["ticks_in"] == 3 && stats["ticks_out"] == 3
    })
    .await;
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["ticks_in"], 3);
    assert_eq!(stats["sessions"], 1);
    assert_eq!(stats["subscriptions"]["BTC-USD"], 1);
    assert_eq!(stats["shards"].as_array().unwrap().len(), 2);
    // One box without --nats: no NATS block (zeros there would read like an outage).
    assert_eq!(stats["role"], "all");
    assert!(stats.get("nats").is_none(), "{stats}");

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
    // A marker after the rejected body: once it is the last value, anything the rejected
    // body had published would have been sequenced before it.
    let (status, _) = relay
        .post("/api/publish", r#"{"symbol":"P1","price":9.5,"ts_ns":9}"#)
        .await;
    assert_eq!(status, 202);
    support::wait_for("the marker tick sequenced", || async {
        relay.get("/price/P1").await.1["price"].as_f64() == Some(9.5)
    })
    .await;
    let (_, price) = relay.get("/price/P1").await;
    assert_eq!(
        price["seq"], 3,
        "a rejected body publishes nothing: the marker follows the two accepted ticks"
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
    support::wait_for("4 ticks counted in ticks_in", || async {
        relay.get("/stats").await.1["ticks_in"] == 4
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

#[tokio::test]
async fn the_dashboard_is_an_html_page_whose_script_reads_stats_and_the_js_client() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, page) = support::http_raw(relay.http, "GET", "/", "").await;
    assert_eq!(status, 200);
    assert!(page.contains("<title>tickrelay</title>"), "{page}");
    assert!(
        page.contains(r#"<script type="module" src="/dashboard.js">"#),
        "{page}"
    );
    let (status, script) = support::http_raw(relay.http, "GET", "/dashboard.js", "").await;
    assert_eq!(status, 200);
    let (_, head) = http_head(relay.http, "/dashboard.js").await;
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/javascript"),
        "{head}"
    );
    assert!(
        script.contains("from '/tickrelay.js'") && script.contains("fetch('/stats'"),
        "the script reads /stats and the tape through the JS client"
    );
    let (status, module) = support::http_raw(relay.http, "GET", "/tickrelay.js", "").await;
    assert_eq!(status, 200);
    assert!(
        module.contains("export async function connect"),
        "the module the page imports"
    );
    let (status, head) = http_head(relay.http, "/").await;
    assert_eq!(status, 200);
    assert!(
        head.to_ascii_lowercase()
            .contains("content-type: text/html"),
        "{head}"
    );
    let (status, body) = relay.post("/", "").await;
    assert_eq!(
        (status, body["code"].as_str()),
        (405, Some("method_not_allowed"))
    );
}

/// `/ready` answers 503 once shutdown has begun (load balancers stop routing), while the
/// relay is still draining its clients; it was 200 on the same connection just before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn ready_turns_503_while_draining() {
    let relay = TestRelay::start(Config {
        shards: 1,
        outbox_bytes: 64 * 1024 * 1024,
        outbox_max_age: std::time::Duration::from_secs(600),
        send_buffer_bytes: 16 * 1024,
        drain_timeout: std::time::Duration::from_secs(5),
        ..Config::for_tests()
    })
    .await;
    // A client that is far behind keeps the shard draining (until --drain-timeout).
    let _behind = support::slow_client(&relay, "?symbols=D").await;
    relay.publish_many("D", 5_000).await;
    relay.wait_sequenced("D", 5_000).await;
    let mut probe = KeepAlive::connect(relay.http).await;
    assert_eq!(
        probe.get("/ready").await,
        (200, r#"{"status":"ready"}"#.to_owned())
    );

    relay.begin_shutdown();
    assert_eq!(
        probe.get("/ready").await,
        (503, r#"{"status":"draining"}"#.to_owned())
    );
    let (status, health) = probe.get("/health").await;
    assert_eq!(status, 200, "health stays 200 while draining: {health}");
    assert!(health.contains(r#""status":"draining""#), "{health}");
}

/// The status and head of a GET.
async fn http_head(addr: std::net::SocketAddr, path: &str) -> (u16, String) {
    let mut probe = KeepAlive::connect(addr).await;
    let (status, head, _) = probe.request(path).await;
    (status, head)
}

/// One HTTP/1.1 keep-alive connection: several requests, each answer read to its
/// content-length.
struct KeepAlive {
    stream: tokio::net::TcpStream,
    buffer: Vec<u8>,
}

impl KeepAlive {
    async fn connect(addr: std::net::SocketAddr) -> Self {
        let stream = support::within(
            "a keep-alive HTTP connection",
            tokio::net::TcpStream::connect(addr),
        )
        .await
        .expect("connect");
        Self {
            stream,
            buffer: Vec::new(),
        }
    }

    async fn get(&mut self, path: &str) -> (u16, String) {
        let (status, _, body) = self.request(path).await;
        (status, body)
    }

    async fn request(&mut self, path: &str) -> (u16, String, String) {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let request = format!("GET {path} HTTP/1.1\r\nhost: test\r\n\r\n");
        support::within(
            &format!("GET {path} to be sent"),
            self.stream.write_all(request.as_bytes()),
        )
        .await
        .expect("write");
        loop {
            let text = String::from_utf8_lossy(&self.buffer).to_string();
            if let Some((head, rest)) = text.split_once("\r\n\r\n") {
                let length: usize = head
                    .lines()
                    .find_map(|l| {
                        let (name, value) = l.split_once(':')?;
                        name.eq_ignore_ascii_case("content-length")
                            .then(|| value.trim().parse().ok())?
                    })
                    .expect("content-length");
                if rest.len() >= length {
                    let status = head
                        .split(' ')
                        .nth(1)
                        .and_then(|s| s.parse().ok())
                        .expect("status line");
                    let answer = (status, head.to_owned(), rest[..length].to_owned());
                    self.buffer.drain(..head.len() + 4 + length);
                    return answer;
                }
            }
            let mut chunk = [0u8; 4096];
            let n = support::within(
                &format!("the answer to GET {path}"),
                self.stream.read(&mut chunk),
            )
            .await
            .expect("read");
            assert!(n > 0, "connection closed before the answer to GET {path}");
            self.buffer.extend_from_slice(&chunk[..n]);
        }
    }
}

/// `ticks_out` counts deliveries: one tick to two clients is two (one shard, one batch).
#[tokio::test]
async fn ticks_out_counts_every_delivery() {
    let relay = TestRelay::start(Config {
        shards: 1,
        ..Config::for_tests()
    })
    .await;
    let mut clients = [
        relay.client("?symbols=TO").await,
        relay.client("?symbols=TO").await,
    ];
    let _elsewhere = relay.client("?symbols=OTHER").await;
    relay.publish_many("TO", 1).await;
    for client in &mut clients {
        assert_eq!(client.next_json().await["seq"], 1);
    }
    // Deliveries are counted before the shard writes to the clients; ticks_in only after
    // the sequencer has handed the batch to every shard, so it is waited for.
    support::wait_for("the tick counted in ticks_in", || async {
        relay.get("/stats").await.1["ticks_in"] == 1
    })
    .await;
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["ticks_out"], 2, "{stats}");
    // Each client had at least one write of its own (its welcome, then the tick or both in
    // one), and /metrics reports the same count.
    let writes = stats["socket_writes"]
        .as_u64()
        .expect("socket_writes in /stats");
    assert!(
        (3..=9).contains(&writes),
        "3 clients, each welcome + at most a snapshot-less tick and a ping: {stats}"
    );
    let (_, metrics) = support::http_raw(relay.http, "GET", "/metrics", "").await;
    assert!(
        metrics.contains(&format!(
            "tickrelay_socket_writes_total{{shard=\"0\"}} {writes}"
        )),
        "/metrics agrees on the writes: {metrics}"
    );
}
