//! Starting a scale-out deployment in any order: a relay started before its NATS server
//! retries the first connect (logging each try) and an edge started before its sequencer
//! waits for the stream's epoch; meanwhile `/ready` answers 503 `starting`, and once the
//! other side is up each starts and serves. Real `nats-server`, real relay processes.

mod nats_common;
mod ops_common;
mod support;

use std::io::Write as _;

use nats_common::NatsServer;
use ops_common::{Spawned, http_get, launch, spawn};
use support::WsClient;

/// A `--listen` address free now, so the test can ask `/ready` before the banner names it.
fn free_addr() -> String {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .to_string()
}

/// Waits for `/ready` to answer `status` with a body containing `word`.
fn ready_says(addr: &str, status: u16, word: &str) -> String {
    let addr = addr.parse().expect("address");
    let deadline = std::time::Instant::now() + ops_common::WAIT;
    loop {
        let (got, body) = http_get(addr, "GET", "/ready");
        if got == status && body.contains(word) {
            return body;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "/ready answered {got} {body}, not {status} {word}, for {:?}",
            ops_common::WAIT
        );
        // The test's own thread between two polls of a condition, not a shard.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_relay_started_before_nats_retries_and_then_serves() {
    let Some(mut nats) = NatsServer::start("before-nats") else {
        return;
    };
    nats.kill();
    let listen = free_addr();
    let mut relay = launch(
        &[
            "--role",
            "sequencer",
            "--nats",
            &nats.url(),
            "--listen",
            &listen,
        ],
        &[],
    );
    let line = relay.stderr_line(|l| l.contains("NATS not reachable yet"), "a retry line");
    assert!(line.contains("attempt=1"), "{line}");
    let body = ready_says(&listen, 503, "starting");
    assert!(body.contains("waiting for NATS"), "{body}");

    nats.resume();
    let connected = relay.stderr_line(|l| l.contains("NATS connect"), "the connect line");
    assert!(
        connected.contains("NATS connected") && !connected.contains("re-established"),
        "{connected}"
    );
    relay.banner();
    ready_says(&listen, 200, "ready");
    assert_eq!(relay.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_started_before_its_sequencer_waits_for_the_epoch_then_delivers() {
    let Some(nats) = NatsServer::start("edge-first") else {
        return;
    };
    let listen = free_addr();
    let mut edge = launch(
        &["--role", "edge", "--nats", &nats.url(), "--listen", &listen],
        &[],
    );
    edge.stderr_line(
        |l| l.contains("waiting for a sequencer to write the stream's epoch"),
        "the edge's waiting line",
    );
    let body = ready_says(&listen, 503, "starting");
    assert!(body.contains("epoch"), "{body}");

    let sequencer = spawn(&["--role", "sequencer", "--nats", &nats.url()], &[]);
    edge.banner();
    ready_says(&listen, 200, "ready");
    let mut client = WsClient::connect(&format!("ws://{listen}/ws?symbols=LATE-1")).await;
    assert_eq!(client.next_json().await["type"], "welcome");
    // The edge follows LATE-1 from the stream: the tick arrives live, or as the snapshot
    // if it was stored before the edge's consumer started.
    publish_and_read(&sequencer, &mut client).await;
    drop(client);
    assert_eq!(edge.stop(), Some(0));
}

/// Publishes a tick of LATE-1 to the sequencer and reads it on the edge's client.
async fn publish_and_read(sequencer: &Spawned, client: &mut WsClient) {
    let mut ingest = std::net::TcpStream::connect(sequencer.ingest).expect("ingest");
    ingest
        .write_all(b"{\"symbol\":\"LATE-1\",\"price\":7.25,\"size\":1,\"ts_ns\":1}\n")
        .expect("publish");
    loop {
        let message = client.next_json().await;
        if message["type"] == "tick" || message["type"] == "snapshot" {
            assert_eq!(message["symbol"], "LATE-1");
            assert_eq!(message["price"], 7.25);
            return;
        }
    }
}
