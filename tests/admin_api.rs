//! The guarded admin API over real sockets: publish, events and sessions need the admin
//! token (or, with none configured, a loopback peer); the sessions API lists and closes
//! sessions on every shard; `--admin-listen` moves the admin routes, `/stats` and
//! `/metrics` to their own port; `--allowed-origin` refuses other browser Origins.

mod support;

use serde_json::Value;
use support::{TestRelay, WsClient, http, http_raw, tick_line, wait_for};
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const ADMIN_TOKEN: &str = "admin-token-0123456789abcdef-0123456789";

fn token_file() -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("tickrelay-admin-{}", std::process::id()));
    std::fs::write(&path, format!("{ADMIN_TOKEN}\n")).unwrap();
    path
}

/// One request with an `Authorization` header; status and JSON body.
async fn request(
    addr: std::net::SocketAddr,
    method: &str,
    path: &str,
    body: &str,
    bearer: Option<&str>,
) -> (u16, Value) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    let auth = bearer.map_or_else(String::new, |t| format!("authorization: Bearer {t}\r\n"));
    let head = format!(
        "{method} {path} HTTP/1.1\r\nhost: {addr}\r\nconnection: close\r\n{auth}content-length: {}\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(support::WAIT, stream.read_to_end(&mut out)).await;
    let text = String::from_utf8_lossy(&out).to_string();
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status");
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn admin_routes_need_the_admin_token() {
    let relay = TestRelay::start(Config {
        admin_token_file: Some(token_file()),
        ..Config::for_tests()
    })
    .await;
    let tick = tick_line("ADM-A", 1.0, 1);
    let event = r#"{"channel":"news","data":1}"#;
    for (method, path, body) in [
        ("POST", "/api/publish", tick.as_str()),
        ("POST", "/api/events", event),
        ("GET", "/api/sessions", ""),
        ("DELETE", "/api/sessions/1", ""),
    ] {
        let (status, reply) = request(relay.http, method, path, body, None).await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (401, Some("admin_required")),
            "{path}"
        );
        let (status, _) = request(relay.http, method, path, body, Some("wrong-token")).await;
        assert_eq!(status, 401, "{path} with a wrong token");
    }
    let mut client = relay.client("?symbols=ADM-A").await;
    let (status, _) = request(relay.http, "POST", "/api/publish", &tick, Some(ADMIN_TOKEN)).await;
    assert_eq!(status, 202);
    assert_eq!(client.next_json().await["symbol"], "ADM-A");
    // Reads stay open to clients.
    assert_eq!(relay.get("/price/ADM-A").await.0, 200);
}

#[tokio::test]
async fn without_an_admin_token_only_loopback_peers_may_publish() {
    let relay = TestRelay::start(Config {
        listen: "0.0.0.0:0".parse().unwrap(),
        ..Config::for_tests()
    })
    .await;
    // The demo's case: publishing from the relay's own machine works without a token.
    let port = relay.http.port();
    let loopback = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    assert_eq!(
        http(loopback, "POST", "/api/publish", &tick_line("LB-A", 1.0, 1))
            .await
            .0,
        202
    );
    // From a non-loopback address of this machine, refused.
    let Some(own) = non_loopback_ip() else {
        eprintln!("no non-loopback IPv4 address on this machine; skipping that half");
        return;
    };
    let outside = std::net::SocketAddr::new(own, port);
    let (status, reply) = http(outside, "POST", "/api/publish", &tick_line("LB-A", 1.0, 2)).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (403, Some("admin_required"))
    );
    assert_eq!(http(outside, "GET", "/api/sessions", "").await.0, 403);
    assert_eq!(
        http(outside, "GET", "/health", "").await.0,
        200,
        "reads stay open"
    );
}

#[tokio::test]
async fn the_sessions_api_lists_and_closes_sessions_on_every_shard() {
    let relay = TestRelay::start(Config {
        shards: 2,
        ..Config::for_tests()
    })
    .await;
    let mut clients = Vec::new();
    for i in 0..4 {
        let mut client = WsClient::connect(&relay.url(&format!(
            "?symbols=SES-{i}&channels=news&encoding={}",
            if i % 2 == 0 { "json" } else { "protobuf" }
        )))
        .await;
        client.next_message().await; // welcome
        clients.push(client);
    }
    let (status, body) = relay.get("/api/sessions").await;
    assert_eq!(status, 200, "{body}");
    let sessions = body["sessions"].as_array().unwrap();
    assert_eq!(sessions.len(), 4, "{body}");
    let shards: std::collections::BTreeSet<u64> = sessions
        .iter()
        .map(|s| s["shard"].as_u64().unwrap())
        .collect();
    assert_eq!(shards.len(), 2, "sessions from both shards: {body}");
    let first = &sessions[0];
    assert_eq!(first["channels"], serde_json::json!(["news"]));
    assert_eq!(first["symbols"].as_array().unwrap().len(), 1);
    assert!(first["peer"].as_str().unwrap().starts_with("127.0.0.1:"));
    assert!(first["connected_ns"].as_u64().unwrap() > 0);
    assert!(first["outbox_bytes"].is_u64());
    assert!(first["encoding"].is_string());

    let id = first["id"].as_u64().unwrap();
    let (status, reply) = http_raw(
        relay.http,
        "DELETE",
        &format!("/api/sessions/{id}?reason=maintenance"),
        "",
    )
    .await;
    assert_eq!(status, 200, "{reply}");
    let closed_index = (0..4)
        .find(|i| {
            sessions
                .iter()
                .any(|s| s["id"].as_u64() == Some(id) && s["symbols"][0] == format!("SES-{i}"))
        })
        .unwrap();
    let (code, reason) = clients[closed_index].expect_close().await;
    assert_eq!((code, reason.as_str()), (4003, "maintenance"));
    wait_for("the closed session is gone from the list", || async {
        relay.get("/api/sessions").await.1["sessions"]
            .as_array()
            .map(Vec::len)
            == Some(3)
    })
    .await;
    let (status, reply) = relay.post("/api/sessions/99999", "").await;
    assert_eq!(status, 405, "DELETE only: {reply}");
    let (status, reply) = http(relay.http, "DELETE", "/api/sessions/99999", "").await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (404, Some("unknown_session"))
    );
}

#[tokio::test]
async fn admin_listen_moves_the_admin_routes_stats_and_metrics() {
    let relay = TestRelay::start(Config {
        admin_listen: Some("127.0.0.1:0".parse().unwrap()),
        ..Config::for_tests()
    })
    .await;
    let admin = relay.handle.as_ref().unwrap().admin_addr.expect("bound");
    for path in ["/stats", "/metrics", "/api/sessions"] {
        assert_eq!(
            relay.get(path).await.0,
            404,
            "{path} is not on the client port"
        );
        assert_eq!(
            http(admin, "GET", path, "").await.0,
            200,
            "{path} on the admin port"
        );
    }
    let tick = tick_line("AL-A", 1.0, 1);
    assert_eq!(relay.post("/api/publish", &tick).await.0, 404);
    assert_eq!(http(admin, "POST", "/api/publish", &tick).await.0, 202);
    assert_eq!(
        http(admin, "GET", "/price/AL-A", "").await.0,
        404,
        "client routes stay on --listen"
    );
    wait_for("the tick is visible on the client port", || async {
        relay.get("/price/AL-A").await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn other_browser_origins_are_refused_before_the_upgrade() {
    let relay = TestRelay::start(Config {
        allowed_origin: vec!["https://app.example.com".into()],
        ..Config::for_tests()
    })
    .await;
    let with_origin = |origin: &'static str| {
        let mut request = relay.url("?symbols=O-A").into_client_request().unwrap();
        request
            .headers_mut()
            .insert("origin", HeaderValue::from_static(origin));
        request
    };
    match tokio_tungstenite::connect_async(with_origin("https://evil.example.net")).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 403);
            let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
            assert_eq!(body["code"], "origin_not_allowed");
        }
        other => panic!("expected 403, got {:?}", other.map(|_| ())),
    }
    let (ws, _) = tokio_tungstenite::connect_async(with_origin("https://app.example.com"))
        .await
        .expect("the allowed origin upgrades");
    drop(ws);
    // Not from a browser page (no Origin): unaffected.
    relay.client("?symbols=O-A").await;
}

/// An IPv4 address of this machine other than loopback, if it has one.
fn non_loopback_ip() -> Option<std::net::IpAddr> {
    // Connecting a UDP socket sends nothing; it only picks the outgoing interface.
    let socket = std::net::UdpSocket::bind("0.0.0.0:0").ok()?;
    socket.connect("192.0.2.1:9").ok()?;
    let ip = socket.local_addr().ok()?.ip();
    (!ip.is_loopback() && !ip.is_unspecified()).then_some(ip)
}
