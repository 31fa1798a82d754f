//! A standby sequencer (docs/SCALING.md, "A standby sequencer"): two `--role sequencer`
//! processes on one stream, a real `nats-server -js`, real edges and WebSocket clients. One
//! holds the lease and sequences; the other answers `/ready` 503 `standby` and refuses
//! ingest until the first is killed, then continues every seq under the same epoch; a
//! deposed sequencer's late ticks are refused by the stream, never delivered.

mod faults_common;
mod nats_common;
mod ops_common;
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nats_common::NatsServer;
use ops_common::{Spawned, http_get, launch, spawn};
use support::WsClient;

/// A sequencer of ticks only, its `--listen` at `http` (known before it leads).
fn sequencer(nats: &NatsServer, http: SocketAddr) -> Spawned {
    sequencer_via(&nats.url(), http)
}

/// A sequencer reaching NATS at `url`.
fn sequencer_via(url: &str, http: SocketAddr) -> Spawned {
    let listen = http.to_string();
    launch(
        &nats_common::sequencer_args(url, &["--listen", &listen]),
        &[],
    )
}

fn free_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], nats_common::free_port()))
}

/// NDJSON ticks of `symbol` stamped `ts_ns` = `base + i` for `i` in `from..=to`.
fn lines(symbol: &str, base: u64, from: u64, to: u64) -> String {
    (from..=to)
        .map(|i| {
            format!(
                "{{\"symbol\":\"{symbol}\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}\n",
                base + i
            )
        })
        .collect()
}

fn publish(ingest: SocketAddr, lines: &str) {
    let mut stream = std::net::TcpStream::connect(ingest).expect("connect to ingest");
    stream.write_all(lines.as_bytes()).expect("write ticks");
}

async fn wait_standby(http: SocketAddr) {
    support::wait_for(
        "the second sequencer to say it is a standby",
        || async move {
            let answer = std::panic::catch_unwind(|| http_get(http, "GET", "/ready"));
            matches!(answer, Ok((503, body)) if body.contains("standby"))
        },
    )
    .await;
}

const BASE: u64 = 1_764_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_killed_sequencer_and_continues_every_seq() {
    let Some(nats) = NatsServer::start("standby") else {
        return;
    };
    let mut leader = sequencer(&nats, free_http());
    leader.banner();
    let second_http = free_http();
    let mut second = sequencer(&nats, second_http);
    wait_standby(second_http).await;
    let edge = spawn(&["--role", "edge", "--nats", &nats.url()], &[]);
    let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=F", edge.http)).await;
    let welcome = client.next_json().await;

    publish(leader.ingest, &lines("F", BASE, 1, 300));
    let (mut seen, mut other) = support::until_stamp(&mut client, BASE + 300).await;
    let mut trials = Vec::new();
    let mut next = 301;
    // Each trial kills the leader; the standby takes over; the killed one comes back as
    // the next standby. More trials: TICKRELAY_FAILOVER_TRIALS (docs/SCALING.md's figures).
    let rounds: usize = std::env::var("TICKRELAY_FAILOVER_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    for _ in 0..rounds {
        let killed = Instant::now();
        leader.child.kill().expect("kill -9 the leader");
        let _ = leader.child.wait();
        second.banner(); // printed once it holds the lease and listens
        publish(second.ingest, &lines("F", BASE, next, next + 99));
        let (more, messages) = support::until_stamp(&mut client, BASE + next).await;
        trials.push(killed.elapsed());
        seen.extend(more);
        other.extend(messages);
        let (more, messages) = support::until_stamp(&mut client, BASE + next + 99).await;
        seen.extend(more);
        other.extend(messages);
        next += 100;
        leader = second;
        let http = free_http();
        second = sequencer(&nats, http);
        wait_standby(http).await;
    }
    eprintln!(
        "failover, kill -9 of the leader to the first new tick at an edge, ms: {:?}",
        trials.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    support::assert_no_gap_or_reset(&other);
    let seqs: Vec<u64> = seen.iter().map(|t| t.0).collect();
    assert_eq!(
        seqs,
        (1..next).collect::<Vec<_>>(),
        "every seq once, in order, across failovers"
    );
    let stamps: Vec<u64> = seen.iter().map(|t| t.1 - BASE).collect();
    assert_eq!(stamps, seqs, "each seq the tick published at it");
    let mut again = WsClient::connect(&format!("ws://{}/ws?symbols=F", edge.http)).await;
    assert_eq!(
        again.next_json().await["epoch"],
        welcome["epoch"],
        "one history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_sequencer_is_refused_by_the_stream_and_stops() {
    let Some(nats) = NatsServer::start("deposed") else {
        return;
    };
    // The first sequencer reaches NATS through a proxy that can go quiet.
    let proxy = faults_common::Proxy::start(SocketAddr::from(([127, 0, 0, 1], nats.port))).await;
    let mut first = sequencer_via(&format!("nats://{}", proxy.addr), free_http());
    first.banner();
    let second_http = free_http();
    let mut second = sequencer(&nats, second_http);
    wait_standby(second_http).await;
    let edge = spawn(&["--role", "edge", "--nats", &nats.url()], &[]);
    let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=D", edge.http)).await;
    let _welcome = client.next_json().await;
    publish(first.ingest, &lines("D", BASE, 1, 50));
    let (mut seen, mut other) = support::until_stamp(&mut client, BASE + 50).await;

    // The first sequencer is cut off from NATS (the network goes quiet): it still takes
    // ticks and sequences them (more than the new leader will, so their seqs would run past
    // the new leader's if they were stored), but cannot publish them or renew its lease.
    // The standby takes over and sequences ten ticks.
    proxy.pause();
    const LATE: u64 = 1_000_000;
    publish(first.ingest, &lines("D", BASE + LATE, 1, 40));
    second.banner();
    publish(second.ingest, &lines("D", BASE, 51, 60));
    let (more, messages) = support::until_stamp(&mut client, BASE + 60).await;
    seen.extend(more);
    other.extend(messages);

    // The network comes back: the first one's publishes (buffered, then retried) reach the
    // stream, which refuses them (they follow its own last message, not the stream's); it
    // finds the lease is not its own and stops.
    proxy.resume();
    let deadline = Instant::now() + 3 * support::WAIT;
    let code = loop {
        if let Some(status) = first.child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let log: Vec<String> = first.stderr.try_iter().collect();
            panic!("the deposed sequencer did not stop: {log:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("deposed sequencer exited with {code:?}");
    publish(second.ingest, &lines("D", BASE, 61, 70));
    let (more, messages) = support::until_stamp(&mut client, BASE + 70).await;
    seen.extend(more);
    other.extend(messages);
    assert!(other.iter().all(|m| m["type"] != "gap"), "{other:?}");
    let stamps: Vec<u64> = seen.iter().map(|t| t.1 - BASE).collect();
    assert_eq!(
        stamps,
        (1..=70).collect::<Vec<_>>(),
        "no late tick of the deposed sequencer reaches a client"
    );
    let seqs: Vec<u64> = seen.iter().map(|t| t.0).collect();
    assert_eq!(seqs, (1..=70).collect::<Vec<_>>());
}
