//! The client against a real relay with auth and TLS on: a token reads its user's private
//! channel and gets typed events, resumed across a cut connection; a refused or expired
//! token ends the stream with a clear error instead of a reconnect loop; `wss://` works with
//! a self-signed certificate added by `ca_file` and fails clearly without it.

mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{Value, json};
use support::{Proxy, TestRelay, WAIT, fast_backoff};
use tempfile::TempDir;
use tickrelay::{Config, Relay};
use tickrelay_client::{Client, ConnectError, Encoding, Error, Event, Item, Options};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

const SECRET: &[u8] = b"client-test-secret-0123456789abcdef-0123";

#[tokio::test]
async fn a_token_reads_its_private_channel_as_typed_events_across_a_cut() {
    for encoding in [Encoding::Json, Encoding::Protobuf, Encoding::Gzip] {
        private_channel_across_a_cut(encoding).await;
    }
}

async fn private_channel_across_a_cut(encoding: Encoding) {
    let (relay, _files) = secured().await;
    let proxy = Proxy::start(relay.config.listen).await;
    let options = Options::new()
        .channels(["user:alice", "news"])
        .encoding(encoding)
        .token(token("alice", 3600))
        .backoff(fast_backoff());
    let mut client = Client::connect(&proxy.url(), options)
        .await
        .expect("connects");
    publish_events(&relay, "user:alice", 1..=5).await;
    publish_events(&relay, "user:bob", 1..=3).await;
    publish_events(&relay, "news", 1..=2).await;
    let mut events = Vec::new();
    read_events(&mut client, &mut events, |e| {
        count(e, "user:alice") == 5 && count(e, "news") == 2
    })
    .await;
    // While the client is away, 6..=9 happen (a second client, connected directly, sees them
    // land); on its return the client resumes the channel and gets exactly those.
    let mut witness = Client::connect(
        &relay.url(),
        Options::new()
            .channels(["user:alice"])
            .token(token("alice", 3600)),
    )
    .await
    .expect("the witness connects");
    proxy.set_down(true);
    proxy.cut();
    publish_events(&relay, "user:alice", 6..=9).await;
    let mut seen = Vec::new();
    read_events(&mut witness, &mut seen, |e| e.iter().any(|e| e.seq == 9)).await;
    proxy.set_down(false);
    read_events(&mut client, &mut events, |e| count(e, "user:alice") == 9).await;

    let alice: Vec<(u64, u64)> = events
        .iter()
        .filter(|e| e.channel == "user:alice")
        .map(|e| {
            (
                e.seq,
                e.data.parse::<Value>().unwrap()["n"].as_u64().unwrap(),
            )
        })
        .collect();
    let expected: Vec<(u64, u64)> = (1..=9).map(|n| (n, n)).collect();
    assert_eq!(
        alice, expected,
        "{encoding:?}: every event of alice's channel once, in order"
    );
    assert!(
        events.iter().all(|e| e.channel != "user:bob"),
        "another user's channel never arrives: {events:?}"
    );
}

#[tokio::test]
async fn a_refused_token_is_a_clear_error_not_a_reconnect_loop() {
    let (relay, _files) = secured().await;
    let forged = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims("alice", 3600),
        &EncodingKey::from_secret(b"another-secret-of-the-same-length-012345").unwrap(),
    )
    .unwrap();
    for (token, code) in [
        (forged, "invalid_token"),
        (token("alice", -60), "token_expired"),
    ] {
        let options = Options::new().symbols(["A"]).token(token);
        match Client::connect(&relay.url(), options).await {
            Err(ConnectError::Unauthorized {
                status: 401,
                code: got,
                ..
            }) => assert_eq!(got, code),
            other => panic!("expected a 401 {code}, got {other:?}"),
        }
    }

    // A token that runs out while connected: the relay closes with 4002 and the stream
    // ends with the reason, instead of retrying a token that can only be refused again.
    let options = Options::new()
        .symbols(["A"])
        .token(token("alice", 2))
        .backoff(fast_backoff());
    let mut client = Client::connect(&relay.url(), options)
        .await
        .expect("connects");
    let ended = tokio::time::timeout(WAIT, async {
        let mut connects = 0;
        loop {
            match client.next().await {
                Some(Ok(Item::Connected(_))) => connects += 1,
                Some(Ok(Item::Disconnected(d))) => panic!("a reconnect after {d:?}"),
                Some(Ok(_)) => {}
                Some(Err(e)) => return (e, connects),
                None => panic!("the stream ended without saying why"),
            }
        }
    })
    .await
    .expect("the stream ends once the token runs out");
    assert_eq!(ended.1, 1, "no reconnect with the expired token");
    match ended.0 {
        Error::Unauthorized { code, .. } => assert_eq!(code, "token_expired"),
        other => panic!("expected token_expired, got {other:?}"),
    }
    assert!(client.next().await.is_none(), "the stream has ended");
}

#[tokio::test]
async fn wss_with_a_self_signed_certificate_added_by_ca_file() {
    let certified = rcgen::generate_simple_self_signed(vec!["127.0.0.1".into()]).unwrap();
    let files = tempfile::tempdir().unwrap();
    let cert = write(&files, "cert.pem", certified.cert.pem().as_bytes());
    let key = write(
        &files,
        "key.pem",
        certified.signing_key.serialize_pem().as_bytes(),
    );
    let handle = Relay::start(Config {
        tls_cert: Some(cert.clone()),
        tls_key: Some(key),
        ..Config::for_tests()
    })
    .expect("relay starts with TLS");
    let url = format!("wss://127.0.0.1:{}/ws", handle.http_addr.port());

    // Without the CA file nothing vouches for the certificate: a TLS error, said so.
    let refused = Client::connect(&url, Options::new().symbols(["TLS-A"])).await;
    assert!(
        matches!(&refused, Err(ConnectError::Tls(why)) if why.contains("certificate")),
        "{refused:?}"
    );

    let options = Options::new().symbols(["TLS-A"]).ca_file(&cert);
    let mut client = Client::connect(&url, options).await.expect("wss connects");
    let mut ingest = TcpStream::connect(handle.ingest_addr).await.unwrap();
    let lines: String = (1..=500)
        .map(|i| format!("{{\"symbol\":\"TLS-A\",\"price\":{i}.5,\"ts_ns\":{i}}}\n"))
        .collect();
    ingest.write_all(lines.as_bytes()).await.unwrap();
    let mut seqs = Vec::new();
    tokio::time::timeout(WAIT, async {
        while seqs.len() < 500 {
            match client.next().await.expect("stream open").expect("no error") {
                Item::Tick(t) | Item::Snapshot(t) => seqs.push((t.seq, t.price)),
                _ => {}
            }
        }
    })
    .await
    .expect("500 ticks over wss");
    let expected: Vec<_> = (1..=500u64).map(|i| (i, Some(i as f64 + 0.5))).collect();
    assert_eq!(seqs, expected);
    drop(client);
    handle.shutdown();
    tokio::task::spawn_blocking(move || handle.join())
        .await
        .unwrap();
}

/// A relay verifying HS256 tokens for audience `tickrelay`, with no leeway on `exp`, and the
/// directory of its secret file (removed when dropped).
async fn secured() -> (TestRelay, TempDir) {
    let files = tempfile::tempdir().unwrap();
    let relay = TestRelay::start(Config {
        jwt_secret_file: Some(write(&files, "secret", SECRET)),
        jwt_audience: Some("tickrelay".into()),
        jwt_leeway: Duration::ZERO,
        ..Config::for_tests()
    })
    .await;
    (relay, files)
}

fn claims(sub: &str, exp_in_s: i64) -> Value {
    let now = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    json!({"sub": sub, "exp": now + exp_in_s, "aud": "tickrelay"})
}

fn token(sub: &str, exp_in_s: i64) -> String {
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims(sub, exp_in_s),
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap()
}

/// Publishes events `{"n":N}` of `channel` on the NDJSON ingest port.
async fn publish_events(relay: &TestRelay, channel: &str, ns: std::ops::RangeInclusive<u64>) {
    let lines: String = ns
        .map(|n| format!("{{\"channel\":\"{channel}\",\"data\":{{\"n\":{n}}}}}\n"))
        .collect();
    let mut ingest = TcpStream::connect(relay.config.ingest_tcp).await.unwrap();
    ingest.write_all(lines.as_bytes()).await.unwrap();
    ingest.shutdown().await.unwrap();
}

async fn read_events(
    client: &mut Client,
    events: &mut Vec<Event>,
    done: impl Fn(&[Event]) -> bool,
) {
    tokio::time::timeout(WAIT, async {
        while !done(events) {
            match client.next().await.expect("stream open").expect("no error") {
                Item::Event(e) => events.push(e),
                Item::Error(e) => panic!("the relay answered an error: {e:?}"),
                _ => {}
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; events so far: {events:?}"));
}

fn count(events: &[Event], channel: &str) -> usize {
    events.iter().filter(|e| e.channel == channel).count()
}

fn write(dir: &TempDir, name: &str, contents: &[u8]) -> PathBuf {
    let path = dir.path().join(name);
    std::fs::write(&path, contents).unwrap();
    path
}
