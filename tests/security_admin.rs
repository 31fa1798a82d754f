//! The admin routes against an attacker, over real sockets: with no admin token (the
//! default) a loopback request is an operator's only when it is this host's own — the
//! relay's address in `Host`, no forwarding header, no other web page's `Origin` or
//! `Sec-Fetch-Site`, a JSON or NDJSON body — so a cross-site form, a DNS-rebinding page or a
//! same-host proxy cannot publish or forge a user's events. An IPv4 peer of a dual-stack
//! listener is on loopback; the `Bearer` scheme is matched in any case; a body trickled in
//! is cut off at `--body-timeout`.

mod security_common;
mod support;

use std::time::Duration;

use security_common::{ADMIN_TOKEN, SECRET, TempFile, errors, token_for};
use serde_json::{Value, json};
use support::{TestRelay, WsClient, http_with, tick_line, within};
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Request headers, as name and value.
type Headers<'a> = &'a [(&'a str, &'a str)];

/// One request with exactly `headers`; status and JSON body.
async fn send(
    relay: &TestRelay,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: &str,
) -> (u16, Value) {
    let (status, text) = http_with(relay.http, method, path, headers, body).await;
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_cross_site_simple_post_cannot_forge_a_users_event() {
    let secret = TempFile::new("secret", SECRET);
    let relay = TestRelay::start(Config {
        jwt_secret_file: secret.path(),
        ..Config::for_tests()
    })
    .await;
    let mut bob = WsClient::connect(&relay.url(&format!(
        "?channels=user:bob&token={}",
        token_for("bob", None)
    )))
    .await;
    assert_eq!(bob.next_json().await["type"], "welcome");

    // The attack as found: a page on evil.example whose name resolves to 127.0.0.1 (or a
    // form posting to the relay), text/plain so the browser sends it without a preflight.
    let evil = format!("evil.example:{}", relay.http.port());
    let origin = format!("http://{evil}");
    let forged = r#"{"channel":"user:bob","data":{"fill":"forged"}}"#;
    let (status, reply) = send(
        &relay,
        "POST",
        "/api/events",
        &[
            ("host", &evil),
            ("origin", &origin),
            ("content-type", "text/plain;charset=UTF-8"),
        ],
        forged,
    )
    .await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (403, Some("admin_required"))
    );
    // The same page after its name rebinds: the browser still names its own origin.
    let host = relay.http.to_string();
    let (status, reply) = send(
        &relay,
        "POST",
        "/api/events",
        &[
            ("host", &host),
            ("origin", &origin),
            ("content-type", "text/plain;charset=UTF-8"),
        ],
        forged,
    )
    .await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (403, Some("origin_not_allowed"))
    );
    // The operator's own request on this host still publishes, and bob receives only it.
    let own = r#"{"channel":"user:bob","data":{"fill":"real"}}"#;
    let (status, _) = send(
        &relay,
        "POST",
        "/api/events",
        &[("host", &host), ("content-type", "application/json")],
        own,
    )
    .await;
    assert_eq!(status, 202);
    let event = bob.next_json().await;
    assert_eq!(
        (event["type"].as_str(), &event["data"]),
        (Some("event"), &json!({"fill": "real"})),
        "bob's first event is the real one: {event}"
    );
}

#[tokio::test]
async fn every_sign_of_a_browser_or_proxy_refuses_a_tokenless_admin_request() {
    let relay = TestRelay::start(Config {
        admin_allow_host: vec!["relay.test".into()],
        ..Config::for_tests()
    })
    .await;
    let host = relay.http.to_string();
    let port = relay.http.port();
    let (evil, other_port, localhost, same) = (
        format!("evil.example:{port}"),
        format!("127.0.0.1:{}", port.wrapping_add(1)),
        format!("localhost:{port}"),
        format!("http://{host}"),
    );
    let tick = tick_line("ADM-S", 1.0, 1);
    let refused: &[(Headers<'_>, u16, &str)] = &[
        (&[("host", &evil)], 403, "admin_required"),
        (&[("host", &other_port)], 403, "admin_required"),
        (&[], 403, "admin_required"),
        (
            &[("host", &host), ("x-forwarded-for", "203.0.113.9")],
            403,
            "admin_required",
        ),
        (
            &[("host", &host), ("forwarded", "for=203.0.113.9")],
            403,
            "admin_required",
        ),
        (
            &[("host", &host), ("x-real-ip", "203.0.113.9")],
            403,
            "admin_required",
        ),
        (
            &[("host", &host), ("origin", "http://evil.example")],
            403,
            "origin_not_allowed",
        ),
        (
            &[("host", &host), ("origin", "null")],
            403,
            "origin_not_allowed",
        ),
        (
            &[("host", &host), ("sec-fetch-site", "cross-site")],
            403,
            "origin_not_allowed",
        ),
        (
            &[("host", &host), ("sec-fetch-site", "same-site")],
            403,
            "origin_not_allowed",
        ),
        (
            &[("host", &host), ("content-type", "text/plain")],
            415,
            "unsupported_media_type",
        ),
        (
            &[
                ("host", &host),
                ("content-type", "application/x-www-form-urlencoded"),
            ],
            415,
            "unsupported_media_type",
        ),
        (
            &[
                ("host", &host),
                ("content-type", "multipart/form-data; boundary=x"),
            ],
            415,
            "unsupported_media_type",
        ),
    ];
    for (headers, status, code) in refused {
        let reply = send(&relay, "POST", "/api/publish", headers, &tick).await;
        assert_eq!(
            (reply.0, reply.1["code"].as_str()),
            (*status, Some(*code)),
            "{headers:?}"
        );
    }
    let accepted: &[Headers<'_>] = &[
        &[("host", &host)],
        &[("host", &localhost)],
        &[("host", "relay.test")],
        &[
            ("host", &host),
            ("content-type", "application/json; charset=utf-8"),
        ],
        &[("host", &host), ("content-type", "application/x-ndjson")],
        &[
            ("host", &host),
            ("origin", &same),
            ("sec-fetch-site", "same-origin"),
        ],
        &[("host", &host), ("sec-fetch-site", "none")],
    ];
    for headers in accepted {
        let reply = send(&relay, "POST", "/api/publish", headers, &tick).await;
        assert_eq!(reply.0, 202, "{headers:?}: {}", reply.1);
    }
    // The sessions API is guarded alike, GET and DELETE.
    let (status, _) = send(&relay, "GET", "/api/sessions", &[("host", &evil)], "").await;
    assert_eq!(status, 403);
    let (status, _) = send(
        &relay,
        "DELETE",
        "/api/sessions/1",
        &[("host", &host), ("origin", "http://evil.example")],
        "",
    )
    .await;
    assert_eq!(status, 403);
    let (status, _) = send(&relay, "GET", "/api/sessions", &[("host", &host)], "").await;
    assert_eq!(status, 200);
    // Counted under their codes.
    assert_eq!(errors(relay.http, "admin_required").await, 7);
    assert_eq!(errors(relay.http, "origin_not_allowed").await, 5);
    assert_eq!(errors(relay.http, "unsupported_media_type").await, 3);
}

#[tokio::test]
async fn an_ipv4_peer_of_a_dual_stack_listener_is_on_loopback() {
    if std::net::TcpListener::bind("[::]:0").is_err() {
        eprintln!("no IPv6 on this host: the dual-stack case cannot be set up");
        return;
    }
    let relay = TestRelay::start(Config {
        listen: "[::]:0".parse().unwrap(),
        ..Config::for_tests()
    })
    .await;
    // Connected to 127.0.0.1: the peer is ::ffff:127.0.0.1 on the [::] socket.
    let v4 = std::net::SocketAddr::from(([127, 0, 0, 1], relay.http.port()));
    let host = v4.to_string();
    let tick = tick_line("ADM-V4", 1.0, 1);
    let (status, body) = http_with(v4, "POST", "/api/publish", &[("host", &host)], &tick).await;
    assert_eq!(status, 202, "{body}");
}

#[tokio::test]
async fn the_bearer_scheme_of_the_admin_token_is_matched_in_any_case() {
    let admin = TempFile::new("admin", ADMIN_TOKEN);
    let relay = TestRelay::start(Config {
        admin_token_file: admin.path(),
        ..Config::for_tests()
    })
    .await;
    let tick = tick_line("ADM-B", 1.0, 1);
    for scheme in ["Bearer", "bearer", "BEARER", "bEaReR"] {
        let authorization = format!("{scheme} {ADMIN_TOKEN}");
        let reply = send(
            &relay,
            "POST",
            "/api/publish",
            &[("host", "anywhere"), ("authorization", &authorization)],
            &tick,
        )
        .await;
        assert_eq!(reply.0, 202, "{scheme}: {}", reply.1);
    }
    for authorization in [
        format!("Basic {ADMIN_TOKEN}"),
        format!("Bearer{ADMIN_TOKEN}"),
    ] {
        let reply = send(
            &relay,
            "POST",
            "/api/publish",
            &[("authorization", &authorization)],
            &tick,
        )
        .await;
        assert_eq!(reply.0, 401, "{authorization}");
    }
}

/// Writes the head, then the body a byte at a time until the relay answers; the answer.
async fn trickle(relay: &TestRelay, head: String, body: &[u8]) -> (u16, Value) {
    let stream = within("connect", TcpStream::connect(relay.http))
        .await
        .unwrap();
    let (mut read, mut write) = stream.into_split();
    write.write_all(head.as_bytes()).await.unwrap();
    let body = body.to_vec();
    let trickling = tokio::spawn(async move {
        for byte in body {
            tokio::time::sleep(Duration::from_millis(50)).await;
            if write.write_all(&[byte]).await.is_err() {
                return;
            }
        }
        // Never finishes the body: only the deadline can end the request.
        std::future::pending::<()>().await;
    });
    let mut response = Vec::new();
    let _ = within(
        "the relay's answer to a trickled body",
        read.read_to_end(&mut response),
    )
    .await;
    trickling.abort();
    let text = String::from_utf8_lossy(&response);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(0);
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_body_trickled_in_is_cut_off_at_the_body_timeout() {
    let relay = TestRelay::start(Config {
        body_timeout: Duration::from_millis(300),
        ..Config::for_tests()
    })
    .await;
    let host = relay.http;
    let tick = tick_line("ADM-T", 1.0, 1);
    // Content-Length promises more than is ever sent.
    let head = format!(
        "POST /api/publish HTTP/1.1\r\nhost: {host}\r\ncontent-length: {}\r\n\r\n",
        tick.len() + 1000
    );
    let (status, reply) = trickle(&relay, head, tick.as_bytes()).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (408, Some("body_timeout"))
    );
    // Chunked: one chunk of the tick, trickled, and no last chunk.
    let head =
        format!("POST /api/publish HTTP/1.1\r\nhost: {host}\r\ntransfer-encoding: chunked\r\n\r\n");
    let chunk = format!("{:x}\r\n{tick}\r\n", tick.len());
    let (status, reply) = trickle(&relay, head, chunk.as_bytes()).await;
    assert_eq!(
        (status, reply["code"].as_str()),
        (408, Some("body_timeout"))
    );
    assert_eq!(errors(relay.http, "body_timeout").await, 2);
}
