//! Liveness: pings, idle timeout, application heartbeats, the handshake (slowloris) timeout.

mod support;

use std::time::Duration;

use futures_util::StreamExt;
use support::TestRelay;
use tickrelay::Config;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_tungstenite::tungstenite::Message;

fn quick() -> Config {
    Config {
        ping_interval: Duration::from_millis(100),
        idle_timeout: Duration::from_millis(400),
        handshake_timeout: Duration::from_millis(300),
        ..Config::for_tests()
    }
}

#[tokio::test]
async fn the_relay_pings_and_a_silent_client_is_closed_with_4009() {
    let relay = TestRelay::start(quick()).await;
    // A raw client answers nothing, not even pings.
    let (mut silent, _) = support::raw_upgrade(relay.http, "/ws?symbols=A").await;
    // tungstenite answers pings automatically while it reads: that keeps a client alive.
    let mut alive = relay.client("?symbols=A").await;
    let mut pinged = false;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(1);
    while tokio::time::Instant::now() < deadline {
        match tokio::time::timeout(Duration::from_millis(50), alive.ws.next()).await {
            Ok(Some(Ok(Message::Ping(_)))) => pinged = true,
            Ok(Some(Ok(Message::Close(c)))) => panic!("an answering client was closed: {c:?}"),
            _ => {}
        }
    }
    assert!(pinged, "the relay sends WebSocket pings");
    assert_eq!(support::read_until_close(&mut silent).await, 4009);
    let (_, stats) = relay.get("/stats").await;
    assert!(stats["errors"]["idle_timeout"].as_u64() >= Some(1));
}

#[tokio::test]
async fn application_heartbeats_arrive_at_the_requested_interval() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"heartbeat","interval_ms":100}"#)
        .await;
    assert_eq!(client.next_json().await["type"], "heartbeat_set", "the ack");
    let started = tokio::time::Instant::now();
    for _ in 0..3 {
        let beat = client.next_json().await;
        assert_eq!(beat["type"], "heartbeat");
        assert!(beat["ts_ns"].as_u64().unwrap() > 0);
    }
    assert!(
        started.elapsed() >= Duration::from_millis(250),
        "paced, not a burst"
    );
    client
        .send_json(r#"{"op":"heartbeat","interval_ms":0}"#)
        .await;
    client.send_json(r#"{"op":"ping","id":1}"#).await;
    // Drain anything sent before the stop; after the pong no heartbeat may follow.
    while client.next_json().await["type"] != "pong" {}
    let quiet = tokio::time::timeout(Duration::from_millis(300), client.ws.next()).await;
    assert!(quiet.is_err(), "heartbeats stopped: {quiet:?}");
}

#[tokio::test]
async fn a_connection_that_never_finishes_its_request_is_dropped() {
    let relay = TestRelay::start(quick()).await;
    let mut slowloris = support::within(
        "the slowloris connection",
        tokio::net::TcpStream::connect(relay.http),
    )
    .await
    .unwrap();
    support::within(
        "the partial request to be sent",
        slowloris.write_all(b"GET /ws?symbols=A HTTP/1.1\r\nhost: x\r\n"),
    )
    .await
    .unwrap();
    let mut buf = [0u8; 512];
    let read = tokio::time::timeout(Duration::from_secs(5), slowloris.read(&mut buf)).await;
    let n = read
        .expect("the relay acts within the timeout")
        .unwrap_or(0);
    let answer = String::from_utf8_lossy(&buf[..n]);
    assert!(
        n == 0 || answer.starts_with("HTTP/1.1 408"),
        "dropped or 408: {answer}"
    );
    // Others are unaffected.
    assert_eq!(relay.get("/health").await.0, 200);
}

/// Every connection's task ends with it, however the client leaves: a clean close, a
/// dropped TCP connection, a protocol error, silence past the idle timeout, or a plain HTTP
/// request. Nothing of a session outlives it (`/stats` `tasks`), so churn cannot pile up
/// tasks, sockets or their memory.
#[tokio::test]
async fn every_connections_task_ends_with_it_however_the_client_leaves() {
    use std::sync::atomic::Ordering::Relaxed;
    let relay = TestRelay::start(quick()).await;
    for _ in 0..5 {
        let mut clean = relay.client("?symbols=A").await;
        clean.ws.close(None).await.expect("close");
        let (dropped, _) = support::raw_upgrade(relay.http, "/ws?symbols=A").await;
        drop(dropped);
        let (mut rude, _) = support::raw_upgrade(relay.http, "/ws?symbols=A").await;
        // An unmasked frame: a protocol error, closed with 1002.
        rude.write_all(&[0x81, 0x01, b'x']).await.expect("write");
        assert_eq!(support::read_until_close(&mut rude).await, 1002);
        let (mut silent, _) = support::raw_upgrade(relay.http, "/ws?symbols=A").await;
        assert_eq!(support::read_until_close(&mut silent).await, 4009);
        let _ = relay.get("/health").await;
    }
    let metrics = relay.metrics();
    support::wait_for("every task to end", || async {
        metrics.session_tasks.load(Relaxed) == 0 && metrics.http_tasks.load(Relaxed) == 0
    })
    .await;
    assert_eq!(metrics.sessions(), 0);
}
