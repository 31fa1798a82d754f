//! Token edge cases and what a token reads, over real sockets with real tokens: an `exp`
//! near 2^64 (and a heartbeat interval as large) neither panics a session nor leaves it
//! holding a connection slot; `nbf` and `iat` are enforced with the leeway; `/price` and
//! `/symbols` answer only what the token may read; private channel names are `user:<id>`
//! and `user:<id>:<name>`, their look-alikes refused.

mod security_common;
mod support;

use security_common::{SECRET, TempFile, now_s, token, token_for};
use serde_json::{Value, json};
use support::{TestRelay, WsClient, http_with, tick_line, wait_for};
use tickrelay::Config;

async fn secured(secret: &TempFile, config: Config) -> TestRelay {
    TestRelay::start(Config {
        jwt_secret_file: secret.path(),
        ..config
    })
    .await
}

/// The upgrade's refusal at `url`: status and JSON body.
async fn refused(url: &str) -> (u16, Value) {
    match support::within(
        "the upgrade's answer",
        tokio_tungstenite::connect_async(url),
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = serde_json::from_slice(response.body().as_deref().unwrap_or(b"null"))
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Ok(_) => panic!("{url}: expected a refusal, the upgrade succeeded"),
        Err(e) => panic!("{url}: expected an HTTP refusal, got {e}"),
    }
}

/// `GET path` with `headers` besides `host`: status and JSON body.
async fn get(relay: &TestRelay, path: &str, headers: &[(&str, &str)]) -> (u16, Value) {
    let host = relay.http.to_string();
    let mut all = vec![("host", host.as_str())];
    all.extend_from_slice(headers);
    let (status, body) = http_with(relay.http, "GET", path, &all, "").await;
    (status, serde_json::from_str(&body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn an_exp_near_2_64_neither_panics_the_session_nor_holds_its_slot() {
    let secret = TempFile::new("secret", SECRET);
    let relay = secured(
        &secret,
        Config {
            max_connections: 2,
            ..Config::for_tests()
        },
    )
    .await;
    let forever = token(&json!({"sub": "carol", "exp": u64::MAX}));
    let url = relay.url(&format!("?symbols=EXP-A&token={forever}"));
    // As found: two such connects took both slots for good. Each is a working session now.
    for _ in 0..3 {
        let mut clients = Vec::new();
        for _ in 0..2 {
            let mut client = WsClient::connect(&url).await;
            let welcome = client.next_json().await;
            assert_eq!(
                (welcome["type"].as_str(), welcome["user"].as_str()),
                (Some("welcome"), Some("carol")),
                "{welcome}"
            );
            clients.push(client);
        }
        client_ping(&mut clients[1]).await;
        drop(clients);
        relay.wait_idle().await;
    }
}

/// A ping answered: the session is alive.
async fn client_ping(client: &mut WsClient) {
    client.send_json(r#"{"op":"ping","id":9}"#).await;
    assert_eq!(client.next_non_tick().await, json!({"type":"pong","id":9}));
}

#[tokio::test]
async fn a_heartbeat_interval_near_2_64_is_refused_and_the_session_goes_on() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=HB-A").await;
    client
        .send_json(&format!(
            r#"{{"op":"heartbeat","interval_ms":{}}}"#,
            u64::MAX
        ))
        .await;
    let error = client.next_json().await;
    assert_eq!(error["code"], "bad_message", "{error}");
    client_ping(&mut client).await;
}

#[tokio::test]
async fn nbf_and_iat_in_the_future_are_refused_beyond_the_leeway() {
    let secret = TempFile::new("secret", SECRET);
    let relay = secured(&secret, Config::for_tests()).await;
    let (now, exp) = (now_s(), now_s() + 3600);
    let url = |claims: Value| relay.url(&format!("?token={}", token(&claims)));
    for (claims, why) in [
        (json!({"sub": "d", "exp": exp, "nbf": now + 3600}), "nbf"),
        (json!({"sub": "d", "exp": exp, "iat": now + 3600}), "iat"),
    ] {
        let (status, body) = refused(&url(claims)).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token")),
            "{body}"
        );
        assert!(body["message"].as_str().unwrap().contains(why), "{body}");
    }
    // Within the leeway (30 s), or in the past: accepted.
    for claims in [
        json!({"sub": "d", "exp": exp, "nbf": now + 5, "iat": now + 5}),
        json!({"sub": "d", "exp": exp, "nbf": now - 60, "iat": now - 60}),
    ] {
        let mut client = WsClient::connect(&url(claims)).await;
        assert_eq!(client.next_json().await["type"], "welcome");
    }
}

#[tokio::test]
async fn price_and_symbols_answer_only_what_the_token_may_read() {
    let secret = TempFile::new("secret", SECRET);
    let relay = secured(&secret, Config::for_tests()).await;
    let all = token_for("ops", None);
    let btc = token_for("btc-only", Some(&["BTC-*"]));
    relay
        .ingest()
        .await
        .send_lines(&[tick_line("BTC-USD", 1.0, 1), tick_line("ETH-USD", 2.0, 2)])
        .await;
    wait_for("both symbols known", || async {
        let (status, body) = get(&relay, &format!("/symbols?token={all}"), &[]).await;
        status == 200 && body["symbols"].as_array().is_some_and(|s| s.len() == 2)
    })
    .await;

    // As found: no token while auth is on, and every price was readable.
    for path in ["/price/BTC-USD", "/price/ETH-USD", "/symbols"] {
        let (status, body) = get(&relay, path, &[]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("auth_required"))
        );
        let (status, body) = get(&relay, &format!("{path}?token=not.a.token"), &[]).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some("invalid_token"))
        );
    }
    let (status, body) = get(&relay, &format!("/symbols?token={btc}"), &[]).await;
    let names: Vec<&str> = body["symbols"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["symbol"].as_str().unwrap())
        .collect();
    assert_eq!((status, names), (200, vec!["BTC-USD"]));
    let bearer = format!("bearer {btc}");
    let (status, body) = get(&relay, "/price/BTC-USD", &[("authorization", &bearer)]).await;
    assert_eq!((status, body["price"].as_f64()), (200, Some(1.0)));
    for (symbol, status, code) in [
        ("ETH-USD", 403, "forbidden"),
        ("ZZZ-NONE", 403, "forbidden"),
        ("BTC-NONE", 404, "unknown_symbol"),
    ] {
        let reply = get(&relay, &format!("/price/{symbol}?token={btc}"), &[]).await;
        assert_eq!(
            (reply.0, reply.1["code"].as_str()),
            (status, Some(code)),
            "{symbol}"
        );
    }

    // --allow-anonymous: tokenless readers see public symbols, as on /ws.
    let open = secured(
        &secret,
        Config {
            allow_anonymous: true,
            ..Config::for_tests()
        },
    )
    .await;
    open.ingest()
        .await
        .send_lines(&[tick_line("BTC-USD", 3.0, 1)])
        .await;
    wait_for("the anonymous price", || async {
        get(&open, "/price/BTC-USD", &[]).await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn a_private_channel_is_user_id_or_user_id_name_and_look_alikes_are_refused() {
    let secret = TempFile::new("secret", SECRET);
    let relay = secured(&secret, Config::for_tests()).await;
    let (bob, alice) = (token_for("bob", None), token_for("alice", None));
    // user:bob:orders is bob's (as found, it belonged to nobody bob could be).
    let mut orders =
        WsClient::connect(&relay.url(&format!("?channels=user:bob:orders&token={bob}"))).await;
    assert_eq!(orders.next_json().await["type"], "welcome");
    let (status, body) =
        refused(&relay.url(&format!("?channels=user:bob:orders&token={alice}"))).await;
    assert_eq!((status, body["code"].as_str()), (403, Some("forbidden")));
    let (status, _) = relay
        .post(
            "/api/events",
            r#"{"channel":"user:bob:orders","data":{"id":1}}"#,
        )
        .await;
    assert_eq!(status, 202);
    let event = orders.next_json().await;
    assert_eq!(
        (event["channel"].as_str(), &event["data"]),
        (Some("user:bob:orders"), &json!({"id": 1}))
    );

    // Look-alikes of the private space are not public channels: refused everywhere.
    for name in [
        "USER:bob",
        "User:bob",
        "user:",
        "user::orders",
        "user:bob:a:b",
    ] {
        let event = format!(r#"{{"channel":"{name}","data":1}}"#);
        let (status, body) = relay.post("/api/events", &event).await;
        assert_eq!(
            (status, body["code"].as_str(), body["field"].as_str()),
            (400, Some("invalid_channel"), Some("channel")),
            "{name}"
        );
        let (status, body) = refused(&relay.url(&format!("?channels={name}&token={bob}"))).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (400, Some("invalid_channel")),
            "{name}"
        );
    }
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[r#"{"channel":"USER:bob","data":{"fill":"x"}}"#.to_owned()])
        .await;
    let reply = ingest.next_reply().await;
    assert_eq!(
        (reply["line"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("invalid_channel"))
    );
}
