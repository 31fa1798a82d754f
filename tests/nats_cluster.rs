//! Scale-out on a real 3-node JetStream cluster (three `nats-server` processes on loopback,
//! each with its own store, routes between them, the stream at replicas 3): one node is
//! killed with SIGKILL while ticks flow; every client still gets every seq once, in order,
//! and the relays name every node, so they carry on through the others.

mod nats_common;
mod ops_common;
mod support;

use std::io::Write;
use std::time::Duration;

use nats_common::{cluster, urls};
use ops_common::{Spawned, spawn};
use support::WsClient;

/// Ticks of `symbol` numbered `from..=to` in their ts_ns, 20 lines every 10 ms.
fn publish_paced(relay: &Spawned, symbol: &str, from: u64, to: u64) -> std::thread::JoinHandle<()> {
    let (addr, symbol) = (relay.ingest, symbol.to_owned());
    std::thread::spawn(move || {
        let mut ingest = std::net::TcpStream::connect(addr).expect("connect to ingest");
        let all: Vec<u64> = (from..=to).collect();
        for chunk in all.chunks(20) {
            let lines: String = chunk
                .iter()
                .map(|i| {
                    format!(
                        "{{\"symbol\":\"{symbol}\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}\n",
                        BASE + i
                    )
                })
                .collect();
            ingest.write_all(lines.as_bytes()).expect("write ticks");
            // The publisher's own thread, pacing the feed; not a shard.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(10));
        }
    })
}

const BASE: u64 = 1_764_000_000_000_000_000;

/// The index of the node (named `<name>-<i>`) leading most of the stream's consumers, asked
/// of the node at `url`.
async fn consumer_host(url: &str, name: &str) -> usize {
    use futures_util::StreamExt;
    let client = async_nats::connect(url)
        .await
        .expect("connect to the cluster");
    let stream = async_nats::jetstream::new(client)
        .get_stream("tickrelay")
        .await
        .expect("the stream");
    let mut counts = [0usize; 3];
    let mut consumers = stream.consumers();
    while let Some(Ok(info)) = consumers.next().await {
        let leader = info.cluster.and_then(|c| c.leader).unwrap_or_default();
        if let Some(i) = leader
            .strip_prefix(&format!("{name}-"))
            .and_then(|i| i.parse::<usize>().ok())
        {
            counts[i] += 1;
        }
    }
    (0..3).max_by_key(|i| counts[*i]).expect("three nodes")
}

/// Longest the clients may see nothing after a node dies. nats-server elects new leaders
/// for the dead node's groups within its election timeout (4 to 9 s); an edge sees the
/// stream's cluster change at its next look (every second), and a request to the old
/// leader may time out once first (2 s): about 12 s at most. Measured here: 0.7 to 10.4 s
/// from the kill to the last tick, on 2 cores beside two mutation runs, so
/// [`support::WAIT`]'s 10 s was too short. Not much more than 12 s: an edge that misses the
/// cluster change recovers only through its consumers' heartbeats, tens of seconds later
/// (one run without the change took 70 s), and that should fail here.
const FAILOVER: Duration = Duration::from_secs(15);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cluster_node_killed_while_ticks_flow_loses_nothing() {
    let Some(mut nodes) = cluster("trc") else {
        return;
    };
    let url = urls(&nodes);
    let sequencer = spawn(
        // Deeper than the feed: every tick stays in the stream, so a gap would be a loss.
        &nats_common::sequencer_args(&url, &["--nats-replicas", "3", "--replay-depth", "4096"]),
        &[],
    );
    let edges: Vec<Spawned> = (0..2)
        .map(|_| spawn(&["--role", "edge", "--nats", &url], &[]))
        .collect();
    let mut clients = Vec::new();
    for edge in &edges {
        let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=K", edge.http)).await;
        let _welcome = client.next_json().await;
        clients.push(client);
    }
    let feed = publish_paced(&sequencer, "K", 1, 1500);
    let (mut first, _) = support::until_stamp(&mut clients[0], BASE + 200).await;
    // The node that holds the edges' consumers: an edge connected to another node sees no
    // disconnect, only the stream's cluster change.
    let victim = consumer_host(&nodes[0].url(), "trc").await;
    nodes[victim].kill();
    feed.join().expect("publisher");
    let (rest, other) = support::until_stamp_within(&mut clients[0], BASE + 1500, FAILOVER).await;
    first.extend(rest);
    support::assert_no_gap_or_reset(&other);
    let (second, other) = support::until_stamp_within(&mut clients[1], BASE + 1500, FAILOVER).await;
    support::assert_no_gap_or_reset(&other);
    // Two nodes still answer: no edge says it is degraded.
    for edge in &edges {
        support::wait_for("the edge to answer /ready 200", || async {
            ops_common::http_get(edge.http, "GET", "/ready").0 == 200
        })
        .await;
    }
    for seen in [&first, &second] {
        let stamps: Vec<u64> = seen.iter().map(|t| t.1 - BASE).collect();
        let seqs: Vec<u64> = seen.iter().map(|t| t.0).collect();
        assert_eq!(
            stamps,
            (1..=1500).collect::<Vec<_>>(),
            "every tick once, in order"
        );
        assert_eq!(seqs, stamps, "each seq the tick published at it");
    }
}
