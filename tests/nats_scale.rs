//! Scale-out through NATS JetStream (docs/SCALING.md), end to end: a real `nats-server -js`
//! on a free port, real relay processes (`--role sequencer`, `--role edge`) from the built
//! binary, real WebSocket clients, ticks published over the sequencer's TCP ingest.

mod nats_common;
mod ops_common;
mod support;

use std::collections::BTreeMap;
use std::io::Write;

use nats_common::NatsServer;
use ops_common::{Spawned, http_get, spawn};
use serde_json::Value;
use support::WsClient;

/// One tick as a client saw it: (symbol, seq, price, ts_ns).
type Seen = (String, u64, f64, u64);

fn sequencer(nats: &NatsServer) -> Spawned {
    spawn(&["--role", "sequencer", "--nats", &nats.url()], &[])
}

fn edge(nats: &NatsServer) -> Spawned {
    spawn(&["--role", "edge", "--nats", &nats.url()], &[])
}

/// Sends `ticks` (symbol, price, ts_ns) as NDJSON to the relay's ingest port.
fn publish(relay: &Spawned, ticks: &[(String, f64, u64)]) {
    let mut lines = String::new();
    for (symbol, price, ts_ns) in ticks {
        lines.push_str(&format!(
            "{{\"symbol\":\"{symbol}\",\"price\":{price},\"size\":1,\"ts_ns\":{ts_ns}}}\n"
        ));
    }
    let mut ingest = std::net::TcpStream::connect(relay.ingest).expect("connect to ingest");
    ingest.write_all(lines.as_bytes()).expect("write ticks");
}

async fn connect(relay: &Spawned, query: &str) -> (WsClient, Value) {
    let mut client = WsClient::connect(&format!("ws://{}/ws{query}", relay.http)).await;
    let welcome = client.next_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    (client, welcome)
}

/// Reads until `count` ticks arrived; every other message is returned beside them.
async fn ticks(client: &mut WsClient, count: usize) -> (Vec<Seen>, Vec<Value>) {
    let mut seen = Vec::new();
    let mut other = Vec::new();
    while seen.len() < count {
        let message = client.next_json().await;
        if message["type"] == "tick" {
            seen.push((
                message["symbol"].as_str().expect("symbol").to_owned(),
                message["seq"].as_u64().expect("seq"),
                message["price"].as_f64().expect("price"),
                message["ts_ns"].as_u64().expect("ts_ns"),
            ));
        } else {
            other.push(message);
        }
    }
    (seen, other)
}

fn stats(relay: &Spawned) -> Value {
    let (status, body) = http_get(relay.http, "GET", "/stats");
    assert_eq!(status, 200, "{body}");
    serde_json::from_str(&body).expect("stats JSON")
}

fn per_symbol(seen: &[Seen]) -> BTreeMap<String, Vec<(u64, f64, u64)>> {
    let mut by: BTreeMap<String, Vec<(u64, f64, u64)>> = BTreeMap::new();
    for (symbol, seq, price, ts_ns) in seen {
        by.entry(symbol.clone())
            .or_default()
            .push((*seq, *price, *ts_ns));
    }
    by
}

fn series(symbol: &str, from: u64, to: u64) -> Vec<(String, f64, u64)> {
    (from..=to)
        .map(|i| {
            (
                symbol.to_owned(),
                100.0 + i as f64 / 4.0,
                1_764_000_000_000_000_000 + i,
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_on_two_edges_get_identical_gap_free_sequences() {
    let Some(nats) = NatsServer::start("identical") else {
        return;
    };
    let sequencer = sequencer(&nats);
    let (a, b) = (edge(&nats), edge(&nats));
    const SYMBOLS: u64 = 30;
    const PER_SYMBOL: u64 = 100;
    let names: Vec<String> = (0..SYMBOLS).map(|i| format!("S{i:02}")).collect();
    let query = format!("?symbols={}", names.join(","));
    let (mut on_a, welcome_a) = connect(&a, &query).await;
    let (mut on_b, welcome_b) = connect(&b, &query).await;
    let (mut everything, _) = connect(&b, "?symbols=*").await;
    assert_eq!(
        welcome_a["epoch"], welcome_b["epoch"],
        "one history, one epoch"
    );

    // Interleaved over the symbols, as a market publishes.
    let mut all = Vec::new();
    for i in 1..=PER_SYMBOL {
        for name in &names {
            all.push((
                name.clone(),
                100.0 + i as f64 / 4.0,
                1_764_000_000_000_000_000 + i,
            ));
        }
    }
    for chunk in all.chunks(500) {
        publish(&sequencer, chunk);
    }
    let total = (SYMBOLS * PER_SYMBOL) as usize;
    let (seen_a, _) = ticks(&mut on_a, total).await;
    let (seen_b, _) = ticks(&mut on_b, total).await;
    let (seen_all, _) = ticks(&mut everything, total).await;
    let (by_a, by_b) = (per_symbol(&seen_a), per_symbol(&seen_b));
    assert_eq!(by_a, by_b, "both edges deliver the same history");
    assert_eq!(by_a, per_symbol(&seen_all), "a `*` client sees it too");
    assert_eq!(by_a.len(), SYMBOLS as usize);
    for (symbol, ticks) in &by_a {
        let seqs: Vec<u64> = ticks.iter().map(|t| t.0).collect();
        assert_eq!(
            seqs,
            (1..=PER_SYMBOL).collect::<Vec<_>>(),
            "{symbol}: gap-free from 1"
        );
        assert_eq!(
            ticks[9].1,
            100.0 + 10.0 / 4.0,
            "{symbol}: prices pass through"
        );
    }
    let published = stats(&sequencer)["nats"]["acked"].as_u64();
    assert_eq!(
        published,
        Some(SYMBOLS * PER_SYMBOL),
        "each tick stored once"
    );
    assert_eq!(stats(&a)["role"], "edge");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_resumes_on_a_fresh_edge_exactly_after_what_it_read() {
    let Some(nats) = NatsServer::start("resume") else {
        return;
    };
    let sequencer = sequencer(&nats);
    let a = edge(&nats);
    let (mut reader, welcome) = connect(&a, "?symbols=R1").await;
    let epoch = welcome["epoch"].as_u64().expect("epoch");
    publish(&sequencer, &series("R1", 1, 50));
    publish(&sequencer, &series("R2", 1, 3));
    let (read, _) = ticks(&mut reader, 20).await;
    assert_eq!(read.last().map(|t| t.1), Some(20));
    drop(reader);

    // Edge B starts after every tick was published: it serves them from JetStream.
    let b = edge(&nats);
    let query = format!("?resume=R1:20&epoch={epoch}");
    let (mut resumed, welcome_b) = connect(&b, &query).await;
    assert_eq!(welcome_b["epoch"], epoch);
    let (replayed, other) = ticks(&mut resumed, 30).await;
    let seqs: Vec<u64> = replayed.iter().map(|t| t.1).collect();
    assert_eq!(seqs, (21..=50).collect::<Vec<_>>(), "exactly k+1.., once");
    assert!(other.iter().all(|m| m["type"] != "gap"), "{other:?}");
    publish(&sequencer, &series("R1", 51, 55));
    let (live, _) = ticks(&mut resumed, 5).await;
    let seqs: Vec<u64> = live.iter().map(|t| t.1).collect();
    assert_eq!(
        seqs,
        (51..=55).collect::<Vec<_>>(),
        "the live feed goes on from the replay"
    );

    let (mut snapshot, _) = connect(&b, "?symbols=R2").await;
    let first = snapshot.next_json().await;
    assert_eq!(
        (first["type"].as_str(), first["seq"].as_u64()),
        (Some("snapshot"), Some(3)),
        "{first}"
    );

    let wrong = format!("?resume=R1:20&epoch={}", epoch + 1);
    let (mut stranger, _) = connect(&b, &wrong).await;
    let reset = stranger.next_json().await;
    assert_eq!(reset["type"], "reset", "{reset}");
    assert_eq!(reset["epoch"], epoch);
    let next = stranger.next_json().await;
    assert_eq!(
        (next["type"].as_str(), next["seq"].as_u64()),
        (Some("snapshot"), Some(55)),
        "{next}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sequencer_continues_every_seq_under_the_same_epoch() {
    let Some(nats) = NatsServer::start("restart") else {
        return;
    };
    let first = sequencer(&nats);
    publish(&first, &series("X", 1, 10));
    let e = edge(&nats);
    let (mut client, welcome) = connect(&e, "?symbols=X").await;
    let snapshot = client.next_json().await;
    assert_eq!(snapshot["seq"], 10, "{snapshot}");
    assert_eq!(first.stop(), Some(0));

    let second = sequencer(&nats);
    publish(&second, &series("X", 11, 15));
    let (live, _) = ticks(&mut client, 5).await;
    let seqs: Vec<u64> = live.iter().map(|t| t.1).collect();
    assert_eq!(
        seqs,
        (11..=15).collect::<Vec<_>>(),
        "continued from the stream, not from 1"
    );
    let (_, again) = connect(&second, "?symbols=X").await;
    assert_eq!(
        again["epoch"], welcome["epoch"],
        "the epoch lives with the stream"
    );
}

#[test]
fn a_sequencer_or_edge_without_nats_refuses_to_start_naming_the_flags() {
    for role in ["sequencer", "edge"] {
        let (code, _, stderr) = ops_common::run(&["--role", role, "--listen", "127.0.0.1:0"], &[]);
        assert_ne!(code, Some(0), "{role} started without --nats");
        assert!(
            stderr.contains("--role") && stderr.contains("--nats"),
            "{stderr}"
        );
    }
}
