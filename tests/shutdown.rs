//! Graceful shutdown: every client gets close 1001 "going away".

mod support;

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

/// Regression: the sequencer woke the shards before closing their queues, so a shard could
/// find its queue empty rather than closed and wait forever (about half of idle shutdowns).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_relays_always_finish_shutting_down() {
    for _ in 0..10 {
        let mut relay = TestRelay::start(Config::for_tests()).await;
        tokio::time::timeout(std::time::Duration::from_secs(10), relay.stop())
            .await
            .expect("an idle relay stops within its drain timeout");
    }
}
