//! The derived channels' edges, through real sockets: names checked against what the relay
//! computes, never published to, read through their symbol's permission; a quiet bar closed
//! by the clock; a recording that keeps ticks only and replays into the same bars.

mod support;

use std::path::PathBuf;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::{Value, json};
use support::{TestRelay, wait_for, within};
use tickrelay::Config;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

const SECRET: &[u8] = b"derived-test-secret-0123456789abcdef-0123";

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("after 1970")
        .as_nanos() as u64
}

/// A directory of this test's files, removed when it drops.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> Self {
        let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
            .join(format!("derived-{}-{name}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        Self(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// The upgrade's refusal: status and JSON body.
async fn refused(relay: &TestRelay, query: &str) -> (u16, Value) {
    let request = relay.url(query).into_client_request().unwrap();
    match tokio_tungstenite::connect_async(request).await {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            let body = response.body().as_deref().unwrap_or(b"null");
            (
                response.status().as_u16(),
                serde_json::from_slice(body).unwrap_or(Value::Null),
            )
        }
        other => panic!(
            "{query}: expected an HTTP refusal, got {:?}",
            other.map(|_| ())
        ),
    }
}

#[tokio::test]
async fn derived_channels_are_checked_by_name_and_never_published() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, body) = refused(&relay, "?channels=bars:2m:BTC-USD").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("invalid_channel")),
        "{body}"
    );
    let message = body["message"].as_str().expect("a message");
    assert!(
        message.contains("1s, 1m, 5m or 1h"),
        "lists what is computed: {message}"
    );

    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"subscribe","channels":["bars:1m:"]}"#)
        .await;
    assert_eq!(client.next_json().await["code"], "invalid_channel");
    client
        .send_json(r#"{"op":"resume","from_channels":{"bars:90s:X":3}}"#)
        .await;
    assert_eq!(client.next_json().await["code"], "invalid_channel");
    client
        .send_json(r#"{"op":"subscribe","channels":["bars:5m:X","ticker:X"]}"#)
        .await;
    let ack = client.next_json().await;
    assert_eq!(ack["channels"], json!(["bars:5m:X", "ticker:X"]), "{ack}");

    // Only the relay writes them: publishing is refused and counted, by every route.
    let (status, body) = relay
        .post(
            "/api/events",
            r#"{"channel":"bars:1m:X","data":{"open":1}}"#,
        )
        .await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("reserved_channel")),
        "{body}"
    );
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[r#"{"channel":"ticker:X","data":1}"#.to_owned()])
        .await;
    assert_eq!(ingest.next_reply().await["code"], "reserved_channel");
    wait_for("both refusals counted", || async {
        relay.get("/stats").await.1["errors"]["reserved_channel"] == 2
    })
    .await;
}

#[tokio::test]
async fn bars_and_tickers_are_refused_on_a_rate_tier_wherever_they_are_named() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, body) = refused(&relay, "?channels=bars:1m:BTC-USD@1s").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &json!("invalid_channel")),
        "{body}"
    );
    let message = body["message"].as_str().expect("a message");
    assert!(message.contains("no rate tier"), "says why: {message}");
    let (status, body) = refused(&relay, "?resume_channels=ticker:BTC-USD@5s:3").await;
    assert_eq!((status, &body["code"]), (400, &json!("invalid_channel")));

    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"subscribe","channels":["ticker:X@1s"]}"#)
        .await;
    assert_eq!(client.next_json().await["code"], "invalid_channel");
    client
        .send_json(r#"{"op":"resume","from_channels":{"bars:1m:X@100ms":3}}"#)
        .await;
    assert_eq!(client.next_json().await["code"], "invalid_channel");
    // The same names without a tier, and an event channel on a tier, are accepted.
    client
        .send_json(r#"{"op":"subscribe","channels":["bars:1m:X","ticker:X","news@1s"]}"#)
        .await;
    let ack = client.next_json().await;
    assert_eq!(
        ack["channels"],
        json!(["bars:1m:X", "ticker:X", "news@1s"]),
        "{ack}"
    );
}

#[tokio::test]
async fn a_token_reads_the_bars_and_ticker_of_the_symbols_it_may_read() {
    let dir = TempDir::new("token");
    let secret = dir.0.join("secret");
    std::fs::write(&secret, SECRET).unwrap();
    let relay = TestRelay::start(Config {
        jwt_secret_file: Some(secret),
        ..Config::for_tests()
    })
    .await;
    let claims = json!({"sub": "ann", "exp": now_ns() / 1_000_000_000 + 600, "allow": ["BTC-*"]});
    let token = encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let mut client = relay
        .client(&format!(
            "?channels=bars:1m:BTC-USD,ticker:BTC-EUR&token={token}"
        ))
        .await;
    let (status, body) = refused(&relay, &format!("?channels=bars:1m:ETH-USD&token={token}")).await;
    assert_eq!(
        (status, &body["code"]),
        (403, &json!("forbidden")),
        "{body}"
    );
    client
        .send_json(r#"{"op":"subscribe","channels":["ticker:ETH-USD"]}"#)
        .await;
    assert_eq!(client.next_json().await["code"], "forbidden");
    // Through its symbol, not its name: the token names no `bars:` pattern.
    relay
        .ingest()
        .await
        .send_lines(&[support::tick_line(
            "BTC-USD",
            5.0,
            now_ns() - 60_000_000_000,
        )])
        .await;
    let bar = within("the bar of an allowed symbol", async {
        loop {
            let m = client.next_json().await;
            if m["type"] == "bar" {
                return m;
            }
        }
    })
    .await;
    assert_eq!(
        (bar["channel"].as_str(), bar["close"].as_f64()),
        (Some("bars:1m:BTC-USD"), Some(5.0))
    );
}

#[tokio::test]
async fn a_quiet_bar_closes_once_its_interval_and_the_grace_are_over() {
    let mut config = Config::for_tests();
    config.derived.bar_grace = Duration::from_millis(100);
    config.derived.derived_interval = Duration::from_millis(20);
    let relay = TestRelay::start(config).await;
    let mut client = relay.client("?channels=bars:1s:Q").await;
    let ts = now_ns();
    relay
        .ingest()
        .await
        .send_lines(&[support::tick_line("Q", 7.5, ts)])
        .await;
    let mut messages = Vec::new();
    within("the bar's closed message", async {
        loop {
            let m = client.next_json().await;
            let closed = m["closed"] == true;
            messages.push(m);
            if closed {
                break;
            }
        }
    })
    .await;
    let seqs: Vec<u64> = messages
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>());
    let closed = messages.last().unwrap();
    assert_eq!(
        closed["start_ns"].as_u64(),
        Some(ts / 1_000_000_000 * 1_000_000_000)
    );
    assert_eq!(
        (closed["trades"].as_u64(), closed["close"].as_f64()),
        (Some(1), Some(7.5))
    );
    // Its close is final: a trade stamped inside it now is late, and the bar stays closed.
    relay
        .ingest()
        .await
        .send_lines(&[support::tick_line("Q", 9.0, ts)])
        .await;
    wait_for("the late trade counted", || async {
        relay.get("/stats").await.1["derived"]["late_trades"].as_u64() >= Some(1)
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recording_keeps_ticks_only_and_its_replay_recomputes_the_same_bars() {
    let dir = TempDir::new("record");
    let file = dir.0.join("recording.ndjson");
    let mut config = Config::for_tests();
    config.derived.bar_grace = Duration::from_secs(86_400);
    config.derived.derived_interval = Duration::from_millis(20);
    let mut recording = TestRelay::start(Config {
        record: Some(file.clone()),
        ..config.clone()
    })
    .await;
    let base = now_ns() / 60_000_000_000 * 60_000_000_000 - 3_600_000_000_000;
    let lines: Vec<String> = (0..300u64)
        .map(|i| support::tick_line("R", 100.0 + (i % 17) as f64 / 4.0, base + i * 1_700_000_000))
        .collect();
    recording.ingest().await.send_lines(&lines).await;
    recording.wait_sequenced("R", 300).await;
    let original = snapshot_when(&recording, 300).await;
    recording.stop().await;
    let text = std::fs::read_to_string(&file).expect("the recording");
    assert_eq!(text.lines().count(), 300);
    assert!(
        text.lines().all(|l| l.starts_with(r#"{"type":"tick""#)),
        "ticks only"
    );

    let replay = TestRelay::start(Config {
        replay: Some(file),
        replay_speed: 0.0,
        ..config
    })
    .await;
    replay.wait_sequenced("R", 300).await;
    let replayed = snapshot_when(&replay, 300).await;
    assert_eq!(replayed["bars"], original["bars"]);
}

/// The `bars:1m:R` snapshot once its bars hold `trades` trades (the last update after the
/// last trade has gone out): asked again until then, within the tests' wait.
async fn snapshot_when(relay: &TestRelay, trades: u64) -> Value {
    let total = |s: &Value| -> u64 {
        let bars = s["bars"].as_array();
        bars.map_or(0, |b| b.iter().filter_map(|b| b["trades"].as_u64()).sum())
    };
    within("a snapshot holding every trade", async {
        loop {
            let mut fresh = relay.client("?channels=bars:1m:R").await;
            let snapshot = fresh.next_json().await;
            if total(&snapshot) == trades {
                return snapshot;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    })
    .await
}
