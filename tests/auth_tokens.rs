//! JWT auth over real sockets, with tokens minted here: valid (HS256, RS256, EdDSA, query or
//! header, in-band), expired, wrong signature, wrong audience, `alg: none`, HS/RS
//! confusion, missing; private `user:` channels; allow-lists; refresh and expiry; JWKS
//! rotation by `kid` from a file and from a URL; the per-user connection limit; and no
//! change at all when no key is configured.

mod support;

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::{TestRelay, WsClient, tick_line, wait_for};
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;

const SECRET: &[u8] = b"test-secret-0123456789abcdef-0123456789";
const RSA_PRIVATE: &[u8] = include_bytes!("keys/rsa_private.pem");
const RSA_PUBLIC: &[u8] = include_bytes!("keys/rsa_public.pem");
const ED_PRIVATE: &[u8] = include_bytes!("keys/ed25519_private.pem");
const ED_PUBLIC: &[u8] = include_bytes!("keys/ed25519_public.pem");

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs()
}

/// `contents` in a file removed when the returned path drops.
fn temp_file(name: &str, contents: &[u8]) -> tempfile::TempPath {
    let path = tempfile::Builder::new()
        .prefix("tickrelay-auth-")
        .suffix(&format!("-{name}"))
        .tempfile()
        .unwrap()
        .into_temp_path();
    std::fs::write(&path, contents).unwrap();
    path
}

fn claims(sub: &str, exp_in: i64, extra: Value) -> Value {
    let mut claims = json!({"sub": sub, "exp": now_s() as i64 + exp_in, "aud": "tickrelay"});
    if let Value::Object(more) = extra {
        claims.as_object_mut().unwrap().extend(more);
    }
    claims
}

fn hs256(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

fn rs256(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_rsa_pem(RSA_PRIVATE).unwrap(),
    )
    .unwrap()
}

fn eddsa(claims: &Value, kid: Option<&str>) -> String {
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = kid.map(str::to_owned);
    encode(
        &header,
        claims,
        &EncodingKey::from_ed_pem(ED_PRIVATE).unwrap(),
    )
    .unwrap()
}

/// A relay with the HS256 secret and the RSA public key, audience `tickrelay`.
async fn secured(config: Config) -> TestRelay {
    // Read once at start: the files may go when the relay is up.
    let (secret, public) = (
        temp_file("secret", SECRET),
        temp_file("rsa.pem", RSA_PUBLIC),
    );
    TestRelay::start(Config {
        jwt_secret_file: Some(secret.to_path_buf()),
        jwt_public_key_file: Some(public.to_path_buf()),
        jwt_audience: Some("tickrelay".into()),
        jwt_leeway: Duration::ZERO,
        ..config
    })
    .await
}

/// The upgrade's refusal: status and JSON body.
async fn refused(relay: &TestRelay, query: &str, bearer: Option<&str>) -> (u16, Value) {
    let mut request = relay.url(query).into_client_request().unwrap();
    if let Some(token) = bearer {
        request.headers_mut().insert(
            "authorization",
            HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
        );
    }
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = serde_json::from_slice(response.body().as_deref().unwrap_or(b"null"))
                .unwrap_or(Value::Null);
            (response.status().as_u16(), body)
        }
        Ok(_) => panic!("{query}: expected a refusal, the upgrade succeeded"),
        Err(e) => panic!("{query}: expected an HTTP refusal, got {e}"),
    }
}

async fn with_bearer(relay: &TestRelay, query: &str, token: &str) -> WsClient {
    let mut request = relay.url(query).into_client_request().unwrap();
    request.headers_mut().insert(
        "authorization",
        HeaderValue::from_str(&format!("Bearer {token}")).unwrap(),
    );
    let (ws, _) = tokio_tungstenite::connect_async(request)
        .await
        .expect("upgrade");
    WsClient { ws }
}

fn b64url(bytes: &[u8]) -> String {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let n = chunk.iter().fold(0u32, |n, b| n << 8 | u32::from(*b)) << (8 * (3 - chunk.len()));
        for i in 0..=chunk.len() {
            out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
        }
    }
    out
}

#[tokio::test]
async fn tokens_are_verified_before_the_upgrade() {
    let relay = secured(Config::for_tests()).await;
    let alice = claims("alice", 60, json!({}));

    let mut by_query = relay
        .client(&format!("?symbols=A&token={}", hs256(&alice)))
        .await;
    by_query.send_json(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(by_query.next_json().await["type"], "pong");
    let mut by_header = with_bearer(&relay, "?symbols=A", &rs256(&alice, None)).await;
    let welcome = by_header.next_json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some("alice"))
    );
    let expires_ns = welcome["expires_ns"]
        .as_u64()
        .expect("the relay says when the token runs out");
    assert_eq!(expires_ns / 1_000_000_000, alice["exp"].as_u64().unwrap());

    let other_secret = encode(
        &Header::new(Algorithm::HS256),
        &alice,
        &EncodingKey::from_secret(b"another-secret-0123456789abcdef-xx").unwrap(),
    )
    .unwrap();
    let header = b64url(br#"{"alg":"none","typ":"JWT"}"#);
    let alg_none = format!("{header}.{}.", b64url(alice.to_string().as_bytes()));
    // HS/RS confusion: an HS256 token whose "secret" is the relay's public RSA key.
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &alice,
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
    )
    .unwrap();
    let no_exp = hs256(&json!({"sub": "alice", "aud": "tickrelay"}));
    for (what, token, code) in [
        (
            "expired",
            hs256(&claims("alice", -120, json!({}))),
            "token_expired",
        ),
        ("wrong signature", other_secret, "invalid_token"),
        (
            "wrong audience",
            hs256(&claims("alice", 60, json!({"aud": "other"}))),
            "invalid_token",
        ),
        ("alg none", alg_none, "invalid_token"),
        ("HS/RS confusion", confused, "invalid_token"),
        ("no exp", no_exp, "invalid_token"),
        ("garbage", "a.b".to_owned(), "invalid_token"),
    ] {
        let (status, body) = refused(&relay, &format!("?token={token}"), None).await;
        assert_eq!(
            (status, body["code"].as_str()),
            (401, Some(code)),
            "{what}: {body}"
        );
        let (status, _) = refused(&relay, "", Some(&token)).await;
        assert_eq!(status, 401, "{what} in the Authorization header");
    }
}

#[tokio::test]
async fn a_relay_with_only_an_rsa_key_refuses_hs256_signed_with_it() {
    let relay = TestRelay::start(Config {
        jwt_public_key_file: Some(temp_file("rsa-only.pem", RSA_PUBLIC).to_path_buf()),
        ..Config::for_tests()
    })
    .await;
    let alice = json!({"sub": "alice", "exp": now_s() + 60});
    let confused = encode(
        &Header::new(Algorithm::HS256),
        &alice,
        &EncodingKey::from_secret(RSA_PUBLIC).unwrap(),
    )
    .unwrap();
    let (status, body) = refused(&relay, &format!("?token={confused}"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (401, Some("invalid_token")),
        "{body}"
    );
    let mut ok = relay
        .client(&format!("?token={}", rs256(&alice, None)))
        .await;
    ok.send_json(r#"{"op":"ping","id":2}"#).await;
    assert_eq!(ok.next_json().await["id"], 2);
    assert_eq!(
        refused(&relay, &format!("?token={}", eddsa(&alice, None)), None)
            .await
            .0,
        401
    );

    // An Ed25519 PEM pins EdDSA, and nothing else.
    let relay = TestRelay::start(Config {
        jwt_public_key_file: Some(temp_file("ed.pem", ED_PUBLIC).to_path_buf()),
        ..Config::for_tests()
    })
    .await;
    relay
        .client(&format!("?token={}", eddsa(&alice, None)))
        .await;
    assert_eq!(
        refused(&relay, &format!("?token={}", rs256(&alice, None)), None)
            .await
            .0,
        401
    );
}

#[tokio::test]
async fn without_a_token_the_first_message_must_authenticate() {
    let relay = secured(Config {
        handshake_timeout: Duration::from_millis(300),
        ..Config::for_tests()
    })
    .await;
    // In-band auth: the welcome comes after it, with the connect-time subscriptions.
    let mut client = WsClient::connect(&relay.url("?symbols=IB-A")).await;
    let token = hs256(&claims("bob", 60, json!({})));
    client
        .send_json(&format!(r#"{{"op":"auth","token":"{token}"}}"#))
        .await;
    let welcome = client.next_json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["user"].as_str()),
        (Some("welcome"), Some("bob"))
    );
    assert_eq!(welcome["symbols"], json!(["IB-A"]));
    relay.publish_many("IB-A", 1).await;
    assert_eq!(client.next_json().await["symbol"], "IB-A");

    // Anything else first: an error, then close 4001.
    let mut early = WsClient::connect(&relay.url("?symbols=IB-A")).await;
    early
        .send_json(r#"{"op":"subscribe","symbols":["IB-A"]}"#)
        .await;
    let error = early.next_json().await;
    assert_eq!(error["code"], "auth_required");
    assert_eq!(early.expect_close().await.0, 4001);
    // A bad token in-band: 4001.
    let mut bad = WsClient::connect(&relay.url("")).await;
    bad.send_json(r#"{"op":"auth","token":"x.y.z"}"#).await;
    assert_eq!(bad.next_json().await["code"], "invalid_token");
    assert_eq!(bad.expect_close().await.0, 4001);
    // Silence: 4001 after the handshake timeout.
    let mut silent = WsClient::connect(&relay.url("")).await;
    assert_eq!(silent.next_json().await["code"], "auth_required");
    assert_eq!(silent.expect_close().await.0, 4001);
}

#[tokio::test]
async fn user_channels_reach_only_their_user() {
    let relay = secured(Config {
        allow_anonymous: true,
        ..Config::for_tests()
    })
    .await;
    let token = |user: &str| hs256(&claims(user, 60, json!({})));
    let (status, body) = refused(
        &relay,
        &format!("?channels=user:bob&token={}", token("alice")),
        None,
    )
    .await;
    assert_eq!(
        (status, body["code"].as_str()),
        (403, Some("forbidden")),
        "{body}"
    );

    let mut alice = relay
        .client(&format!(
            "?channels=user:alice,news&token={}",
            token("alice")
        ))
        .await;
    let mut bob = relay
        .client(&format!("?channels=user:bob&token={}", token("bob")))
        .await;
    alice
        .send_json(r#"{"op":"subscribe","channels":["user:bob"]}"#)
        .await;
    let error = alice.next_json().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("forbidden"))
    );
    alice
        .send_json(r#"{"op":"snapshot","channels":["user:bob"]}"#)
        .await;
    assert_eq!(
        alice.next_json().await["code"],
        "forbidden",
        "no peeking at the last value"
    );
    alice
        .send_json(r#"{"op":"resume","from_channels":{"user:bob":0}}"#)
        .await;
    assert_eq!(
        alice.next_json().await["code"],
        "forbidden",
        "nor at the replay ring"
    );

    // Anonymous clients read public channels, never a user's.
    let mut anonymous = relay.client("?channels=news").await;
    anonymous
        .send_json(r#"{"op":"subscribe","channels":["user:alice"]}"#)
        .await;
    assert_eq!(anonymous.next_json().await["code"], "forbidden");

    let body = [
        r#"{"channel":"user:bob","data":{"fill":"bob's"}}"#,
        r#"{"channel":"user:alice","data":{"fill":"alice's"}}"#,
        r#"{"channel":"news","data":"for everyone"}"#,
    ]
    .join("\n");
    assert_eq!(relay.post("/api/events", &body).await.0, 202);
    let first = alice.next_json().await;
    assert_eq!(
        (first["channel"].as_str(), &first["data"]["fill"]),
        (Some("user:alice"), &json!("alice's"))
    );
    assert_eq!(
        alice.next_json().await["channel"],
        "news",
        "and never bob's event"
    );
    assert_eq!(bob.next_json().await["data"]["fill"], "bob's");
    assert_eq!(anonymous.next_json().await["channel"], "news");
}

#[tokio::test]
async fn allow_lists_refresh_and_expiry() {
    let relay = secured(Config::for_tests()).await;
    let narrowable = claims("carol", 3, json!({"allow": ["AL-*", "news"]}));
    let mut client = relay
        .client(&format!(
            "?symbols=AL-A&channels=news&token={}",
            hs256(&narrowable)
        ))
        .await;
    client
        .send_json(r#"{"op":"subscribe","symbols":["OTHER"]}"#)
        .await;
    assert_eq!(
        client.next_json().await["code"],
        "forbidden",
        "outside the allow-list"
    );
    client
        .send_json(r#"{"op":"subscribe","symbols":["*"]}"#)
        .await;
    assert_eq!(
        client.next_json().await["code"],
        "forbidden",
        "* needs * in the allow-list"
    );

    // A refresh that extends the token and drops `news` from it.
    let narrower = hs256(&claims("carol", 60, json!({"allow": ["AL-*"]})));
    client
        .send_json(&format!(r#"{{"op":"refresh","token":"{narrower}"}}"#))
        .await;
    let gone = client.next_json().await;
    assert_eq!(
        (gone["type"].as_str(), &gone["channels"]),
        (Some("unsubscribed"), &json!(["news"]))
    );
    let authenticated = client.next_json().await;
    assert_eq!(authenticated["type"], "authenticated");
    assert!(authenticated["expires_ns"].as_u64().unwrap() / 1_000_000_000 >= now_s() + 50);
    // Another user's token cannot be swapped in.
    let dave = hs256(&claims("dave", 60, json!({})));
    client
        .send_json(&format!(r#"{{"op":"refresh","token":"{dave}"}}"#))
        .await;
    assert_eq!(client.next_json().await["code"], "forbidden");

    relay
        .post("/api/events", r#"{"channel":"news","data":1}"#)
        .await;
    relay
        .ingest()
        .await
        .send_lines(&[tick_line("AL-A", 1.0, 1)])
        .await;
    let next = client.next_json().await;
    assert_eq!(
        (next["type"].as_str(), next["symbol"].as_str()),
        (Some("tick"), Some("AL-A")),
        "no news after the narrowing: {next}"
    );
    // Past the first token's 3 s the session is still open: the refresh extended it.
    tokio::time::sleep(Duration::from_millis(3500)).await;
    client.send_json(r#"{"op":"ping","id":9}"#).await;
    assert_eq!(client.next_json().await["id"], 9);

    // Without a refresh, the token running out closes the session with 4002.
    let short = hs256(&claims("carol", 1, json!({})));
    let mut expiring = relay.client(&format!("?token={short}")).await;
    assert_eq!(expiring.next_json().await["code"], "token_expired");
    assert_eq!(expiring.expect_close().await.0, 4002);
}

#[tokio::test]
async fn jwks_keys_rotate_by_kid_from_a_file_and_a_url() {
    let jwk = |kid: &str, pem: &[u8], alg: Algorithm| {
        let key = match alg {
            Algorithm::EdDSA => EncodingKey::from_ed_pem(pem).unwrap(),
            _ => EncodingKey::from_rsa_pem(pem).unwrap(),
        };
        let mut jwk = jsonwebtoken::jwk::Jwk::from_encoding_key(&key, alg).unwrap();
        jwk.common.key_id = Some(kid.into());
        jwk
    };
    let set = |keys| serde_json::to_vec(&jsonwebtoken::jwk::JwkSet { keys }).unwrap();
    let file = temp_file(
        "jwks.json",
        &set(vec![jwk("k1", RSA_PRIVATE, Algorithm::RS256)]),
    );
    let relay = TestRelay::start(Config {
        jwks_file: Some(file.to_path_buf()),
        jwks_refresh: Duration::from_millis(100),
        ..Config::for_tests()
    })
    .await;
    let sub = json!({"sub": "erin", "exp": now_s() + 60});
    relay
        .client(&format!("?token={}", rs256(&sub, Some("k1"))))
        .await;
    let rotated = eddsa(&sub, Some("k2"));
    assert_eq!(
        refused(&relay, &format!("?token={rotated}"), None).await.0,
        401,
        "k2 unknown yet"
    );
    std::fs::write(&file, set(vec![jwk("k2", ED_PRIVATE, Algorithm::EdDSA)])).unwrap();
    wait_for("the rotated key is accepted", || async {
        tokio_tungstenite::connect_async(relay.url(&format!("?token={rotated}")))
            .await
            .is_ok()
    })
    .await;
    assert_eq!(
        refused(&relay, &format!("?token={}", rs256(&sub, Some("k1"))), None)
            .await
            .0,
        401,
        "the retired key is gone"
    );

    // A token with an unknown kid makes the relay reload at once, not at --jwks-refresh.
    let slow_file = temp_file(
        "jwks-slow.json",
        &set(vec![jwk("s1", RSA_PRIVATE, Algorithm::RS256)]),
    );
    let slow_refresh = TestRelay::start(Config {
        jwks_file: Some(slow_file.to_path_buf()),
        jwks_refresh: Duration::from_secs(3600),
        ..Config::for_tests()
    })
    .await;
    std::fs::write(
        &slow_file,
        set(vec![jwk("s2", ED_PRIVATE, Algorithm::EdDSA)]),
    )
    .unwrap();
    let fresh = eddsa(&sub, Some("s2"));
    wait_for("an unknown kid triggers a reload", || async {
        tokio_tungstenite::connect_async(slow_refresh.url(&format!("?token={fresh}")))
            .await
            .is_ok()
    })
    .await;

    // The same from a URL: a one-route HTTP server holding the set.
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let body = set(vec![jwk("k3", ED_PRIVATE, Algorithm::EdDSA)]);
    tokio::spawn(async move {
        loop {
            let (mut stream, _) = listener.accept().await.unwrap();
            let body = body.clone();
            tokio::spawn(async move {
                let mut request = [0u8; 1024];
                let _ = stream.read(&mut request).await;
                let head = format!(
                    "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
            });
        }
    });
    let relay = TestRelay::start(Config {
        jwks_url: Some(format!("http://{addr}/.well-known/jwks.json")),
        ..Config::for_tests()
    })
    .await;
    let token = eddsa(&sub, Some("k3"));
    wait_for("the JWKS URL was fetched", || async {
        tokio_tungstenite::connect_async(relay.url(&format!("?token={token}")))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn a_user_holds_at_most_its_connection_limit() {
    let relay = secured(Config {
        max_connections_per_user: 1,
        ..Config::for_tests()
    })
    .await;
    let token = hs256(&claims("frank", 60, json!({})));
    let mut first = relay.client(&format!("?token={token}")).await;
    let (status, body) = refused(&relay, &format!("?token={token}"), None).await;
    assert_eq!(
        (status, body["code"].as_str()),
        (429, Some("user_connection_limit"))
    );
    first.ws.close(None).await.unwrap();
    drop(first);
    wait_for("the slot is released", || async {
        tokio_tungstenite::connect_async(relay.url(&format!("?token={token}")))
            .await
            .is_ok()
    })
    .await;
}

#[tokio::test]
async fn with_no_key_configured_nothing_changes_but_user_channels_stay_private() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=NK-A&channels=news").await;
    client
        .send_json(r#"{"op":"subscribe","channels":["user:anyone"]}"#)
        .await;
    assert_eq!(client.next_json().await["code"], "forbidden");
    assert_eq!(
        relay
            .post("/api/publish", &tick_line("NK-A", 1.0, 1))
            .await
            .0,
        202
    );
    assert_eq!(client.next_json().await["symbol"], "NK-A");
}
