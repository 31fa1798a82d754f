//! Graceful shutdown: every client gets its queued ticks, then close 1001 "going away";
//! the relay's threads always finish; the binary exits 0 on SIGTERM.

mod support;

use std::io::BufRead;
use std::time::Duration;

use support::TestRelay;
use tickrelay::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_sends_1001_to_every_client() {
    let mut relay = TestRelay::start(Config::for_tests()).await;
    let mut clients = Vec::new();
    for _ in 0..6 {
        clients.push(relay.client("?symbols=A").await);
    }
    relay.publish_many("A", 50).await;
    relay.stop().await;
    for client in &mut clients {
        let (code, reason) = client.expect_close().await;
        assert_eq!((code, reason.as_str()), (1001, "going away"));
    }
}

/// A client that was behind when shutdown began still gets every tick queued for it, in
/// order, before the 1001: shutdown flushes backlogs within `--drain-timeout`, it does not
/// drop them as the slow-consumer close does.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_flushes_each_clients_backlog_before_the_1001() {
    const TICKS: u64 = 5_000;
    let mut relay = TestRelay::start(Config {
        shards: 1,
        // Budgets it never reaches: the backlog is still queued when shutdown begins.
        outbox_bytes: 64 * 1024 * 1024,
        outbox_max_age: Duration::from_secs(600),
        send_buffer_bytes: 16 * 1024,
        drain_timeout: Duration::from_secs(5),
        ..Config::for_tests()
    })
    .await;
    // ~650 KB of ticks for a socket that holds ~20 KB: most of it waits in the outbox.
    let mut behind = support::slow_client(&relay, "?symbols=A").await;
    relay.publish_many("A", TICKS).await;
    // One shard: once /price shows the last seq, every tick was fanned out to the client.
    relay.wait_sequenced("A", TICKS).await;
    relay.begin_shutdown();

    let (messages, code, reason) = behind.messages_until_close().await;
    assert_eq!(messages[0]["type"], "welcome");
    let seqs: Vec<u64> = messages[1..]
        .iter()
        .map(|m| {
            assert_eq!(m["type"], "tick", "only ticks after the welcome: {m}");
            m["seq"].as_u64().expect("a tick has a seq")
        })
        .collect();
    assert!(
        seqs == (1..=TICKS).collect::<Vec<u64>>(),
        "the backlog was flushed before the close: got {} ticks (first {:?}, last {:?}) of {TICKS}",
        seqs.len(),
        seqs.first(),
        seqs.last()
    );
    assert_eq!((code, reason.as_str()), (1001, "going away"));
    relay.stop().await;
}

/// Regression: the sequencer woke the shards before closing their queues, so a shard could
/// find its queue empty rather than closed and wait forever (about half of idle shutdowns).
/// `stop` fails the test (it does not hang) if the threads are still running after 10 s.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_relays_always_finish_shutting_down() {
    for _ in 0..10 {
        let mut relay = TestRelay::start(Config::for_tests()).await;
        relay.stop().await;
    }
}

/// The binary: SIGTERM closes every client with 1001, and the process exits 0.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_1001_and_exits_0() {
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_tickrelay"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--ingest-tcp",
            "127.0.0.1:0",
            "--ingest-tcp-protobuf",
            "127.0.0.1:0",
            "--shards",
            "1",
            "--log",
            "warn",
        ])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .expect("start the relay binary");
    let stdout = child.stdout.take().expect("piped stdout");
    let mut kill_on_failure = KillOnDrop(Some(child.id()));
    // `  WebSocket: ws://ADDR/ws?...` names the bound address. The reader keeps draining
    // stdout after it: a closed pipe would make the relay's next println! panic.
    let (url_tx, url_rx) = tokio::sync::oneshot::channel();
    std::thread::spawn(move || {
        let mut url_tx = Some(url_tx);
        for line in std::io::BufReader::new(stdout)
            .lines()
            .map_while(Result::ok)
        {
            let url = line
                .trim()
                .strip_prefix("WebSocket: ")
                .and_then(|url| url.split('?').next());
            if let Some(url) = url
                && let Some(tx) = url_tx.take()
            {
                let _ = tx.send(url.to_owned());
            }
        }
    });
    let url = support::within("the relay binary to print its WebSocket address", url_rx)
        .await
        .expect("the binary prints `WebSocket: ws://...`");
    let mut client = support::WsClient::connect(&format!("{url}?symbols=A")).await;
    assert_eq!(client.next_json().await["type"], "welcome");

    let status = std::process::Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("run kill");
    assert!(status.success(), "kill -TERM");
    let (code, reason) = client.expect_close().await;
    assert_eq!((code, reason.as_str()), (1001, "going away"));
    let exit = support::within(
        "the relay binary to exit after SIGTERM",
        tokio::task::spawn_blocking(move || child.wait()),
    )
    .await
    .expect("waiter thread")
    .expect("wait for the relay");
    // Reaped: its pid may belong to another process now.
    kill_on_failure.0 = None;
    assert_eq!(exit.code(), Some(0), "exit status after SIGTERM: {exit}");
}

/// Kills the child (by pid) if the test fails before it has been reaped.
struct KillOnDrop(Option<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        if let Some(pid) = self.0 {
            let _ = std::process::Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .stderr(std::process::Stdio::null())
                .status();
        }
    }
}
