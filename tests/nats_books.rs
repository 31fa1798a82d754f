//! Order books scaled out through NATS JetStream, end to end: a real `nats-server -js`,
//! relay processes (`--role sequencer`, `--role edge`), book updates over the sequencer's
//! ingest. Every edge rebuilds the same book and sends the same seqs and checksums; a late
//! edge and a restarted sequencer start from the newest checkpoint.

mod book_common;
mod nats_common;
mod ops_common;
mod support;

use std::collections::BTreeMap;
use std::io::Write;

use book_common::{ClientBook, Model, Update, scripted};
use nats_common::NatsServer;
use ops_common::{Spawned, spawn};
use serde_json::Value;
use support::WsClient;

/// Retention of 16 messages a subject, a checkpoint every 10 updates: a book's first
/// snapshot is gone from the stream once 16 updates followed it.
const SEQUENCER: [&str; 6] = [
    "--book-depths",
    "2,10",
    "--replay-depth",
    "16",
    "--book-checkpoint-updates",
    "10",
];

fn sequencer(nats: &NatsServer) -> Spawned {
    let url = nats.url();
    let mut args = vec!["--role", "sequencer", "--nats", &url];
    args.extend(SEQUENCER);
    spawn(&args, &[])
}

fn edge(nats: &NatsServer) -> Spawned {
    spawn(
        &[
            "--role",
            "edge",
            "--nats",
            &nats.url(),
            "--book-depths",
            "2,10",
        ],
        &[],
    )
}

fn publish(relay: &Spawned, symbol: &str, updates: &[Update]) {
    let lines: String = updates.iter().map(|u| u.line(symbol) + "\n").collect();
    let mut ingest = std::net::TcpStream::connect(relay.ingest).expect("connect to ingest");
    ingest
        .write_all(lines.as_bytes())
        .expect("write book updates");
}

fn model_at(updates: &[Update], seq: u64) -> Model {
    let mut model = Model::default();
    for update in &updates[..seq as usize] {
        model.apply(update);
    }
    model
}

async fn connect(relay: &Spawned, query: &str) -> WsClient {
    let mut client = WsClient::connect(&format!("ws://{}/ws{query}", relay.http)).await;
    let welcome = client.next_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    client
}

/// Reads one channel's book messages until seq `last`; returns (seq, checksum) of each,
/// checking each against the client's own book.
async fn read_book(
    client: &mut WsClient,
    depth: usize,
    last: u64,
    book: &mut ClientBook,
) -> Vec<(u64, u64)> {
    let mut seen = Vec::new();
    while book.seq < last {
        let message = client.next_json().await;
        match message["type"].as_str() {
            Some("book") => {
                let before = book.seq;
                let seq = book.apply(&message, depth);
                assert!(
                    message["snapshot"] == true || seq == before + 1,
                    "after {before}: {message}"
                );
                seen.push((seq, message["checksum"].as_u64().unwrap()));
            }
            Some("subscribed" | "gap") => {}
            _ => panic!("unexpected {message}"),
        }
    }
    seen
}

#[tokio::test]
async fn two_edges_rebuild_the_same_book_and_send_the_same_checksums() {
    let Some(nats) = NatsServer::start("books-two-edges") else {
        return;
    };
    let seq_relay = sequencer(&nats);
    let (a, b) = (edge(&nats), edge(&nats));
    let mut on_a = connect(&a, "?channels=book:BTC-USD:2").await;
    let mut on_b = connect(&b, "?channels=book:BTC-USD:2").await;
    let updates = scripted(60, 11, 15);
    publish(&seq_relay, "BTC-USD", &updates);
    let last = updates.len() as u64;
    let (mut book_a, mut book_b) = (ClientBook::default(), ClientBook::default());
    let seen_a: BTreeMap<u64, u64> = read_book(&mut on_a, 2, last, &mut book_a)
        .await
        .into_iter()
        .collect();
    let seen_b: BTreeMap<u64, u64> = read_book(&mut on_b, 2, last, &mut book_b)
        .await
        .into_iter()
        .collect();
    for (seq, checksum) in &seen_a {
        if let Some(other) = seen_b.get(seq) {
            assert_eq!(
                checksum, other,
                "seq {seq}: both edges send the same checksum"
            );
        }
        assert_eq!(
            *checksum,
            u64::from(model_at(&updates, *seq).checksum(2)),
            "seq {seq}"
        );
    }
    let model = model_at(&updates, last);
    assert_eq!(book_a.top(2), model.top(2));
    assert_eq!(book_b.top(2), model.top(2));
    // A client of the full book on either edge, late: the book itself, identical.
    let mut full_a = connect(&a, "?channels=book:BTC-USD").await;
    let mut full_b = connect(&b, "?channels=book:BTC-USD").await;
    let (snap_a, snap_b): (Value, Value) = (full_a.next_json().await, full_b.next_json().await);
    assert_eq!(
        (snap_a["seq"].as_u64(), &snap_a["checksum"]),
        (Some(last), &snap_b["checksum"])
    );
    assert_eq!(
        snap_a["checksum"].as_u64(),
        Some(u64::from(model.checksum(usize::MAX)))
    );
}

#[tokio::test]
async fn a_late_edge_starts_a_book_from_its_newest_checkpoint() {
    let Some(nats) = NatsServer::start("books-late-edge") else {
        return;
    };
    let seq_relay = sequencer(&nats);
    let updates = scripted(45, 5, 15);
    publish(&seq_relay, "ETH-USD", &updates);
    let last = updates.len() as u64;
    // The first edge sees every update arrive, so the stream has them all before the late one.
    let first = edge(&nats);
    let mut watcher = connect(&first, "?channels=book:ETH-USD:10").await;
    read_book(&mut watcher, 10, last, &mut ClientBook::default()).await;
    // Seq 1 (the publisher's snapshot) left the stream long ago: only a checkpoint can
    // start this edge's book.
    let late = edge(&nats);
    let mut client = connect(&late, "?channels=book:ETH-USD:10").await;
    let mut book = ClientBook::default();
    read_book(&mut client, 10, last, &mut book).await;
    assert_eq!(book.top(10), model_at(&updates, last).top(10));
}

#[tokio::test]
async fn a_restarted_sequencer_continues_each_book_from_the_stream() {
    let Some(nats) = NatsServer::start("books-restart") else {
        return;
    };
    let first = sequencer(&nats);
    let updates = scripted(60, 9, 15);
    publish(&first, "SOL-USD", &updates[..25]);
    let e = edge(&nats);
    let mut client = connect(&e, "?channels=book:SOL-USD:10").await;
    let mut book = ClientBook::default();
    read_book(&mut client, 10, 25, &mut book).await;
    assert_eq!(first.stop(), Some(0));

    let second = sequencer(&nats);
    // A few at a time, read before the next: the stream keeps only 16 a subject here, and
    // this test is about the seqs continuing, not about an edge skipping to a checkpoint.
    let mut seen = Vec::new();
    for (i, chunk) in updates[25..].chunks(5).enumerate() {
        publish(&second, "SOL-USD", chunk);
        let end = 25 + i * 5 + chunk.len();
        seen.extend(read_book(&mut client, 10, end as u64, &mut book).await);
    }
    let last = updates.len() as u64;
    let seqs: Vec<u64> = seen.iter().map(|(seq, _)| *seq).collect();
    assert_eq!(
        seqs,
        (26..=last).collect::<Vec<_>>(),
        "the book's seq continued from the stream"
    );
    for (seq, checksum) in seen {
        assert_eq!(
            checksum,
            u64::from(model_at(&updates, seq).checksum(10)),
            "seq {seq}"
        );
    }
}
