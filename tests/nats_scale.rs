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

/// A sequencer of ticks only: the counts these tests check are of ticks (bars and tickers
/// through NATS: nats_bars.rs).
fn sequencer(nats: &NatsServer) -> Spawned {
    let url = nats.url();
    spawn(&nats_common::sequencer_args(&url, &[]), &[])
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

/// Polls `/stats` until `path` (e.g. `["nats", "acked"]`) reaches `at_least`.
async fn wait_stat(relay: &Spawned, path: &[&str], at_least: u64) {
    support::wait_for(&format!("{path:?} >= {at_least}"), || async {
        let mut value = stats(relay);
        for step in path {
            value = value[*step].take();
        }
        value.as_u64().unwrap_or(0) >= at_least
    })
    .await;
}

/// Every seq from 1 to `last` accounted for exactly once, in order: as a tick, or inside
/// an explicit `gap` announced before the tick after it.
fn accounted(messages: &[Value], symbol: &str, last: u64) -> (u64, u64) {
    let (mut next, mut ticks, mut gapped) = (1, 0, 0);
    for message in messages {
        match message["type"].as_str() {
            Some("tick") => {
                assert_eq!(
                    message["seq"].as_u64(),
                    Some(next),
                    "silent jump at {message}"
                );
                next += 1;
                ticks += 1;
            }
            Some("gap") => {
                assert_eq!(message["symbol"], symbol, "{message}");
                assert_eq!(message["from"].as_u64(), Some(next), "{message}");
                let to = message["to"].as_u64().expect("gap to");
                gapped += to + 1 - next;
                next = to + 1;
            }
            _ => {}
        }
    }
    assert_eq!(next, last + 1, "up to {last}");
    (ticks, gapped)
}

async fn messages_until_seq(client: &mut WsClient, last: u64) -> Vec<Value> {
    let mut messages = Vec::new();
    loop {
        let message = client.next_json().await;
        let done = message["type"] == "tick" && message["seq"].as_u64() == Some(last);
        messages.push(message);
        if done {
            return messages;
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn what_the_stream_no_longer_holds_reaches_clients_as_an_explicit_gap() {
    let Some(nats) = NatsServer::start("gap") else {
        return;
    };
    // The stream keeps 5 ticks per symbol: an edge stalled for longer loses the rest (with
    // bars on it would keep a day of 1-minute bars, and as many ticks).
    let url = nats.url();
    let sequencer = spawn(
        &nats_common::sequencer_args(&url, &["--replay-depth", "5"]),
        &[],
    );
    let e = edge(&nats);
    let (mut client, _) = connect(&e, "?symbols=G").await;
    // Fewer than the stream keeps: the edge cannot miss these however slow it is.
    publish(&sequencer, &series("G", 1, 4));
    let (first, _) = ticks(&mut client, 4).await;
    assert_eq!(first.last().map(|t| t.1), Some(4));

    e.signal("STOP");
    publish(&sequencer, &series("G", 5, 3000));
    wait_stat(&sequencer, &["nats", "acked"], 3000).await;
    e.signal("CONT");
    let messages = messages_until_seq(&mut client, 3000).await;
    let everything: Vec<Value> = first
        .iter()
        .map(|t| serde_json::json!({"type": "tick", "seq": t.1}))
        .chain(messages)
        .collect();
    let (ticks, gapped) = accounted(&everything, "G", 3000);
    assert!(gapped > 0, "the stalled edge lost ticks, and said so");
    assert_eq!(ticks + gapped, 3000);
    wait_stat(&e, &["nats", "gaps"], gapped).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_killed_and_restarted_mid_stream_loses_nothing_and_edges_recover() {
    let Some(mut nats) = NatsServer::start("outage") else {
        return;
    };
    let sequencer = sequencer(&nats);
    let e = edge(&nats);
    let (mut client, _) = connect(&e, "?symbols=N").await;
    publish(&sequencer, &series("N", 1, 200));
    let (before, _) = ticks(&mut client, 200).await;
    assert_eq!(before.last().map(|t| t.1), Some(200));

    nats.kill();
    // Accepted while NATS is down: the sequencer holds them until it can publish.
    publish(&sequencer, &series("N", 201, 400));
    support::wait_for("the edge to report degraded", || async {
        http_get(e.http, "GET", "/ready") == (503, r#"{"status":"degraded"}"#.to_owned())
    })
    .await;
    assert_eq!(stats(&e)["sessions"], 1, "the edge keeps its clients");
    nats.resume();
    let (after, other) = ticks(&mut client, 200).await;
    let seqs: Vec<u64> = after.iter().map(|t| t.1).collect();
    assert_eq!(
        seqs,
        (201..=400).collect::<Vec<_>>(),
        "nothing lost, nothing repeated"
    );
    assert!(other.iter().all(|m| m["type"] != "gap"), "{other:?}");
    support::wait_for("the edge to be ready again", || async {
        http_get(e.http, "GET", "/ready").0 == 200
    })
    .await;
    let (edge_stats, seq_stats) = (stats(&e), stats(&sequencer));
    assert!(
        edge_stats["nats"]["reconnects"].as_u64() >= Some(1),
        "{edge_stats}"
    );
    assert_eq!(
        (
            seq_stats["nats"]["acked"].as_u64(),
            seq_stats["ticks_in"].as_u64()
        ),
        (Some(400), Some(400)),
        "every accepted tick is in the stream: {seq_stats}"
    );
    assert!(edge_stats["errors"]["nats_unavailable"].as_u64() >= Some(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_malformed_message_on_a_tick_subject_is_counted_and_skipped() {
    let Some(nats) = NatsServer::start("malformed") else {
        return;
    };
    let sequencer = sequencer(&nats);
    let e = edge(&nats);
    let (mut client, _) = connect(&e, "?symbols=M").await;
    publish(&sequencer, &series("M", 1, 3));
    let (first, _) = ticks(&mut client, 3).await;
    assert_eq!(first.len(), 3);

    let raw = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    let js = async_nats::jetstream::new(raw);
    for garbage in [&b"not protobuf \xff"[..], b""] {
        js.publish("tickrelay.tick.M", bytes::Bytes::copy_from_slice(garbage))
            .await
            .expect("publish")
            .await
            .expect("stored");
    }
    publish(&sequencer, &series("M", 4, 6));
    let (rest, other) = ticks(&mut client, 3).await;
    let seqs: Vec<u64> = rest.iter().map(|t| t.1).collect();
    assert_eq!(
        seqs,
        vec![4, 5, 6],
        "the bad messages are skipped, the feed goes on"
    );
    assert!(other.is_empty(), "{other:?}");
    wait_stat(&e, &["errors", "bad_nats_message"], 2).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscribe_and_resume_messages_on_an_edge_are_served_from_the_stream() {
    let Some(nats) = NatsServer::start("control") else {
        return;
    };
    let sequencer = sequencer(&nats);
    publish(&sequencer, &series("C1", 1, 30));
    publish(&sequencer, &series("C2", 1, 4));
    let e = edge(&nats);
    let (mut client, welcome) = connect(&e, "").await;
    let epoch = welcome["epoch"].as_u64().expect("epoch");
    client
        .send_json(&format!(
            r#"{{"op":"resume","from":{{"C1":25}},"epoch":{epoch}}}"#
        ))
        .await;
    let (replayed, _) = ticks(&mut client, 5).await;
    let seqs: Vec<u64> = replayed.iter().map(|t| t.1).collect();
    assert_eq!(seqs, vec![26, 27, 28, 29, 30]);
    client
        .send_json(r#"{"op":"subscribe","symbols":["C2"]}"#)
        .await;
    let snapshot = loop {
        let message = client.next_json().await;
        if message["type"] == "snapshot" {
            break message;
        }
    };
    assert_eq!(
        (snapshot["symbol"].as_str(), snapshot["seq"].as_u64()),
        (Some("C2"), Some(4))
    );
}

/// `count` ticks of `symbol` from seq 1, priced apart from [`series`]'s: a tick of the new
/// history is never mistaken for one of the old.
fn new_series(symbol: &str, from: u64, to: u64) -> Vec<(String, f64, u64)> {
    series(symbol, from, to)
        .into_iter()
        .map(|(symbol, price, ts_ns)| (symbol, price + 1000.0, ts_ns))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deleted_stream_is_a_new_history_and_the_edge_resets_its_clients_onto_it() {
    let Some(nats) = NatsServer::start("deleted") else {
        return;
    };
    let first = sequencer(&nats);
    let edge = edge(&nats);
    let (mut client, welcome) = connect(&edge, "?symbols=D1,D2").await;
    let old_epoch = welcome["epoch"].as_u64().expect("epoch");
    // D3: a symbol of the old history only.
    let (mut watcher, _) = connect(&edge, "?symbols=D3").await;
    let mut old = series("D1", 1, 10);
    old.extend(series("D2", 1, 10));
    old.extend(series("D3", 1, 3));
    publish(&first, &old);
    let (before, _) = ticks(&mut client, 20).await;
    assert_eq!(before.len(), 20, "{before:?}");
    let _ = ticks(&mut watcher, 3).await;
    assert_eq!(http_get(edge.http, "GET", "/price/D3").0, 200);
    assert_eq!(first.stop(), Some(0));

    let raw = async_nats::connect(nats.url())
        .await
        .expect("connect to NATS");
    async_nats::jetstream::new(raw)
        .delete_stream("tickrelay")
        .await
        .expect("delete the stream");
    let second = sequencer(&nats);
    // Published as soon as the new history exists, before the edge can have noticed it.
    let mut new = new_series("D1", 1, 5);
    new.extend(new_series("D2", 1, 5));
    publish(&second, &new);

    // The client stays connected: a `reset` for each symbol, then the new history from its
    // first seq, each tick once and in order; never an old tick after its symbol's reset,
    // never a new one before it.
    let mut reset: BTreeMap<String, u64> = BTreeMap::new();
    let mut after: BTreeMap<String, Vec<(u64, f64)>> = BTreeMap::new();
    while after.values().map(Vec::len).sum::<usize>() < 10 {
        let message = client.next_json().await;
        let symbol = message["symbol"].as_str().unwrap_or_default().to_owned();
        match message["type"].as_str() {
            Some("reset") => {
                let epoch = message["epoch"].as_u64().expect("reset names the epoch");
                assert!(
                    reset.insert(symbol, epoch).is_none(),
                    "one reset: {message}"
                );
            }
            Some("tick") => {
                let (seq, price) = (message["seq"].as_u64(), message["price"].as_f64());
                let (seq, price) = (seq.expect("seq"), price.expect("price"));
                let new_history = price > 1000.0;
                assert_eq!(
                    new_history,
                    reset.contains_key(&symbol),
                    "a tick of the history its reset says: {message}"
                );
                if new_history {
                    after.entry(symbol).or_default().push((seq, price));
                }
            }
            _ => panic!("only ticks and resets: {message}"),
        }
    }
    let new_epoch = reset.get("D1").copied().expect("D1 was reset");
    assert_ne!(new_epoch, old_epoch, "a new stream, a new history");
    assert_eq!(reset.get("D2"), Some(&new_epoch), "{reset:?}");
    for symbol in ["D1", "D2"] {
        let seqs: Vec<u64> = after[symbol].iter().map(|t| t.0).collect();
        assert_eq!(
            seqs,
            (1..=5).collect::<Vec<_>>(),
            "{symbol}: the new history"
        );
    }
    // And it goes on, live.
    publish(&second, &new_series("D1", 6, 7));
    let (live, other) = ticks(&mut client, 2).await;
    assert_eq!(
        live.iter().map(|t| (t.0.as_str(), t.1)).collect::<Vec<_>>(),
        [("D1", 6), ("D1", 7)],
        "{other:?}"
    );

    let reset = watcher.next_json().await;
    assert_eq!(
        (reset["type"].as_str(), reset["epoch"].as_u64()),
        (Some("reset"), Some(new_epoch)),
        "{reset}"
    );

    // A new connection is welcomed into the new history, and nothing of the old one is
    // served: no snapshot of D3 (the new history has no tick of it yet), no price.
    let (mut fresh, welcome) = connect(&edge, "?symbols=D3,D2").await;
    assert_eq!(welcome["epoch"].as_u64(), Some(new_epoch), "{welcome}");
    publish(&second, &new_series("D2", 6, 6));
    let (_, snapshots) = ticks(&mut fresh, 1).await;
    let snapshots: Vec<(&str, u64)> = snapshots
        .iter()
        .map(|m| {
            (
                m["symbol"].as_str().unwrap_or_default(),
                m["seq"].as_u64().unwrap_or(0),
            )
        })
        .collect();
    assert_eq!(snapshots, [("D2", 5)], "the new history's snapshots only");
    assert_eq!(http_get(edge.http, "GET", "/price/D3").0, 404);
    // A resume naming the old epoch gets `reset` and the new history's snapshot.
    let query = format!("?resume=D1:10&epoch={old_epoch}");
    let (mut resumed, _) = connect(&edge, &query).await;
    let reset = resumed.next_json().await;
    assert_eq!(
        (reset["type"].as_str(), reset["epoch"].as_u64()),
        (Some("reset"), Some(new_epoch)),
        "{reset}"
    );
    let snapshot = resumed.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(7)),
        "{snapshot}"
    );
    // One naming the new epoch continues exactly.
    let query = format!("?resume=D1:5&epoch={new_epoch}");
    let (mut resumed, _) = connect(&edge, &query).await;
    let (replayed, other) = ticks(&mut resumed, 2).await;
    let seqs: Vec<u64> = replayed.iter().map(|t| t.1).collect();
    assert_eq!(seqs, [6, 7], "{other:?}");
    assert!(other.iter().all(|m| m["type"] == "resumed"), "{other:?}");
    assert_eq!(edge.stop(), Some(0), "the edge never stopped on its own");
}

/// Publishes `ticks` in chunks of 50 lines, 10 ms apart, on one connection (a feed that
/// keeps flowing while something is killed).
fn publish_paced(relay: &Spawned, ticks: Vec<(String, f64, u64)>) -> std::thread::JoinHandle<()> {
    let addr = relay.ingest;
    std::thread::spawn(move || {
        let mut ingest = std::net::TcpStream::connect(addr).expect("connect to ingest");
        for chunk in ticks.chunks(50) {
            let mut lines = String::new();
            for (symbol, price, ts_ns) in chunk {
                lines.push_str(&format!(
                    "{{\"symbol\":\"{symbol}\",\"price\":{price},\"size\":1,\"ts_ns\":{ts_ns}}}\n"
                ));
            }
            if ingest.write_all(lines.as_bytes()).is_err() {
                return; // the sequencer was killed under it
            }
            // The publisher's own thread, pacing the feed; not a shard.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(std::time::Duration::from_millis(10));
        }
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edge_killed_mid_stream_its_clients_resume_on_another_exactly() {
    let Some(nats) = NatsServer::start("edge-kill") else {
        return;
    };
    let sequencer = sequencer(&nats);
    let mut a = edge(&nats);
    let b = edge(&nats);
    let (mut client, welcome) = connect(&a, "?symbols=K1,K2").await;
    let epoch = welcome["epoch"].as_u64().expect("epoch");
    let mut feed = series("K1", 1, 1500);
    feed.extend(series("K2", 1, 1500));
    feed.sort_by_key(|t| (t.2, t.0.clone()));
    let publisher = publish_paced(&sequencer, feed);
    let (before, _) = ticks(&mut client, 300).await;
    // A crash (SIGKILL), not a goodbye: the client learns it from a dead socket.
    a.child.kill().expect("kill -9 the edge");
    let _ = a.child.wait();
    drop(client);

    let last = per_symbol(&before);
    let positions: Vec<String> = last
        .iter()
        .map(|(s, t)| format!("{s}:{}", t.last().expect("read").0))
        .collect();
    let query = format!(
        "?symbols=K1,K2&resume={}&epoch={epoch}",
        positions.join(",")
    );
    let (mut resumed, _) = connect(&b, &query).await;
    let missing: usize =
        last.values().map(|t| 1500 - t.len()).sum::<usize>() + 1500 * (2 - last.len());
    let (after, other) = ticks(&mut resumed, missing).await;
    publisher.join().expect("publisher");
    support::assert_no_gap_or_reset(&other);
    let mut all = before;
    all.extend(after);
    for (symbol, seen) in per_symbol(&all) {
        let seqs: Vec<u64> = seen.iter().map(|t| t.0).collect();
        assert_eq!(
            seqs,
            (1..=1500).collect::<Vec<_>>(),
            "{symbol}: every seq once, in order"
        );
        let stamps: Vec<u64> = seen
            .iter()
            .map(|t| t.2 - 1_764_000_000_000_000_000)
            .collect();
        assert_eq!(
            stamps, seqs,
            "{symbol}: each seq is the tick published at it"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sequencer_killed_mid_burst_never_misleads_a_client() {
    let Some(nats) = NatsServer::start("sequencer-kill") else {
        return;
    };
    let mut first = sequencer(&nats);
    let e = edge(&nats);
    let (mut client, welcome) = connect(&e, "?symbols=Q").await;
    let publisher = publish_paced(&first, series("Q", 1, 3000));
    let (mut seen, mut other) = ticks(&mut client, 200).await;
    first.child.kill().expect("kill -9 the sequencer");
    let _ = first.child.wait();
    publisher.join().expect("publisher");

    // A second sequencer continues the stream's history; its ticks are marked by ts_ns.
    let second = sequencer(&nats);
    const MARK: u64 = 1_000_000;
    let marked: Vec<(String, f64, u64)> = (1..=100)
        .map(|i| ("Q".to_owned(), 1.0, 1_764_000_000_000_000_000 + MARK + i))
        .collect();
    publish(&second, &marked);
    loop {
        let (more, messages) = ticks(&mut client, 1).await;
        other.extend(messages);
        let done = more[0].3 == 1_764_000_000_000_000_000 + MARK + 100;
        seen.extend(more);
        if done {
            break;
        }
    }
    support::assert_no_gap_or_reset(&other);
    let seqs: Vec<u64> = seen.iter().map(|t| t.1).collect();
    assert_eq!(
        seqs,
        (1..=seqs.len() as u64).collect::<Vec<_>>(),
        "gap-free, once, in order"
    );
    // What the first sequencer stored is a prefix of its feed (what it lost was never given
    // a seq), then every tick of the second, in order.
    let stamps: Vec<u64> = seen
        .iter()
        .map(|t| t.3 - 1_764_000_000_000_000_000)
        .collect();
    let stored = stamps.iter().take_while(|s| **s < MARK).count();
    assert!(
        stored >= 200,
        "at least what the client read before the kill"
    );
    assert_eq!(
        stamps[..stored],
        (1..=stored as u64).collect::<Vec<_>>()[..]
    );
    assert_eq!(
        stamps[stored..],
        (MARK + 1..=MARK + 100).collect::<Vec<_>>()[..]
    );
    let (_, again) = connect(&second, "?symbols=Q").await;
    assert_eq!(again["epoch"], welcome["epoch"], "the same history");
}

/// Each tick message of `symbol` in the stream, in stream order, as its seq (from its
/// `Nats-Msg-Id`, `<epoch>:<subject>:<seq>:<writer>`).
async fn stored_seqs(nats: &NatsServer, symbol: &str) -> Vec<u64> {
    let client = async_nats::connect(nats.url()).await.expect("connect");
    let js = async_nats::jetstream::new(client);
    let mut stream = js.get_stream("tickrelay").await.expect("the stream");
    let last = stream.info().await.expect("info").state.last_sequence;
    let subject = format!("tickrelay.tick.{symbol}");
    let mut seqs = Vec::new();
    for at in 1..=last {
        let Ok(message) = stream.get_raw_message(at).await else {
            continue;
        };
        if message.subject.as_str() != subject {
            continue;
        }
        let id = message
            .headers
            .get("Nats-Msg-Id")
            .expect("a message id")
            .to_string();
        seqs.push(
            id.rsplit(':')
                .nth(1)
                .and_then(|s| s.parse().ok())
                .expect("seq"),
        );
    }
    seqs
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_publish_lost_mid_window_is_stored_in_order_all_the_same() {
    let Some(nats) = NatsServer::start("lost-publish") else {
        return;
    };
    // The sequencer reaches NATS through a proxy that swallows its 300th tick publish:
    // later publishes of the same window get through, the lost one's ack never comes.
    let proxy = nats_common::PubDropper::start(nats.port, "tickrelay.tick.", 300);
    let url = proxy.url();
    let sequencer = spawn(&nats_common::sequencer_args(&url, &[]), &[]);
    let e = edge(&nats);
    let (mut client, _) = connect(&e, "?symbols=L").await;
    publish(&sequencer, &series("L", 1, 1000));
    let (seen, other) = ticks(&mut client, 1000).await;
    assert_eq!(proxy.dropped.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert!(other.iter().all(|m| m["type"] != "gap"), "{other:?}");
    let seqs: Vec<u64> = seen.iter().map(|t| t.1).collect();
    assert_eq!(
        seqs,
        (1..=1000).collect::<Vec<_>>(),
        "the client: once, in order"
    );
    assert_eq!(
        stored_seqs(&nats, "L").await,
        (1..=1000).collect::<Vec<_>>(),
        "the stream: every seq once, in seq order"
    );
    let retried = stats(&sequencer)["nats"]["retried"].as_u64();
    assert!(
        retried >= Some(1),
        "the lost publish went again: {retried:?}"
    );
}
