//! Random snapshot/delta sequences through a real relay: at every seq and every depth the
//! checksum the relay sends is the independent model's, and each client's book (built from
//! the messages alone) is the model's top N; a lagging conflating client and a resuming one
//! end with the same book.

mod book_common;
mod support;

use std::collections::BTreeMap;

use book_common::{ClientBook, Model, Update, model_states, scripted, updates};
use proptest::prelude::*;
use serde_json::Value;
use support::{TestRelay, WsClient, slow_client, wait_for};
use tickrelay::Config;
use tickrelay::config::BookConfig;

const DEPTHS: [u32; 2] = [2, 5];

fn config() -> Config {
    Config {
        book: BookConfig {
            book_depths: DEPTHS.to_vec(),
            ..BookConfig::default()
        },
        ..Config::for_tests()
    }
}

/// Each view's depth by channel name.
fn views(symbol: &str) -> BTreeMap<String, usize> {
    let mut views: BTreeMap<String, usize> = DEPTHS
        .iter()
        .map(|d| (format!("book:{symbol}:{d}"), *d as usize))
        .collect();
    views.insert(format!("book:{symbol}"), usize::MAX);
    views
}

/// Reads book messages until every channel in `books` has seq `last`, applying each
/// (which checks its checksum against the client's own book) and checking it against the
/// model at its seq; returns every message read.
async fn follow(
    client: &mut WsClient,
    books: &mut BTreeMap<String, ClientBook>,
    states: &[Model],
    last: u64,
) -> Vec<Value> {
    let depths = views_of(books);
    let mut seen = Vec::new();
    while books.values().any(|b| b.seq < last) {
        let message = client.next_json().await;
        if message["type"] != "book" {
            assert!(
                matches!(
                    message["type"].as_str(),
                    Some("subscribed" | "resumed" | "gap")
                ),
                "{message}"
            );
            seen.push(message);
            continue;
        }
        let channel = message["channel"].as_str().unwrap().to_owned();
        let depth = depths[&channel];
        let book = books.get_mut(&channel).unwrap();
        let before = book.seq;
        let seq = book.apply(&message, depth);
        let from = message["from_seq"].as_u64().unwrap_or(seq);
        assert!(
            message["snapshot"] == true || from == before + 1,
            "{channel}: after seq {before} came {message}"
        );
        let model = &states[seq as usize - 1];
        assert_eq!(
            message["checksum"].as_u64(),
            Some(u64::from(model.checksum(depth))),
            "{channel} at seq {seq}"
        );
        assert_eq!(book.top(depth), model.top(depth), "{channel} at seq {seq}");
        seen.push(message);
    }
    seen
}

fn views_of(books: &BTreeMap<String, ClientBook>) -> BTreeMap<String, usize> {
    books
        .keys()
        .map(|name| {
            let depth = name.rsplit(':').next().and_then(|d| d.parse().ok());
            (
                name.clone(),
                depth
                    .filter(|_| name.matches(':').count() == 2)
                    .unwrap_or(usize::MAX),
            )
        })
        .collect()
}

async fn publish(relay: &TestRelay, symbol: &str, updates: &[Update]) {
    let mut ingest = relay.ingest().await;
    let lines: Vec<String> = updates.iter().map(|u| u.line(symbol)).collect();
    for chunk in lines.chunks(200) {
        ingest.send_lines(chunk).await;
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 8, ..ProptestConfig::default() })]

    #[test]
    fn random_updates_give_every_depth_the_models_book_and_checksum(updates in updates(1..60)) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        runtime.block_on(async {
            let relay = TestRelay::start(config()).await;
            let names = views("P-1");
            let channels: Vec<&str> = names.keys().map(String::as_str).collect();
            let mut client = relay.client(&format!("?channels={}", channels.join(","))).await;
            let mut books: BTreeMap<String, ClientBook> = names.keys().map(|n| (n.clone(), ClientBook::default())).collect();
            publish(&relay, "P-1", &updates).await;
            let states = model_states(&updates);
            follow(&mut client, &mut books, &states, updates.len() as u64).await;
            for (name, depth) in &names {
                let (bids, asks) = books[name].len();
                prop_assert!(bids <= *depth && asks <= *depth, "{} holds its depth only", name);
            }
            Ok(())
        })?;
    }
}

#[tokio::test]
async fn a_lagging_conflating_client_catches_up_with_one_merged_message_per_book() {
    // A small send buffer too: a relay slowed down by a busy box writes bigger batches, and a
    // default one (doubled by the kernel) could take the whole feed without the client reading.
    let relay = TestRelay::start(Config {
        outbox_bytes: 4096,
        send_buffer_bytes: 4096,
        ..config()
    })
    .await;
    let names = views("LAG");
    let channels: Vec<&str> = names.keys().map(String::as_str).collect();
    let mut slow = slow_client(
        &relay,
        &format!("?channels={}&slow=conflate", channels.join(",")),
    )
    .await;
    let updates = scripted(3000, 7, 20);
    publish(&relay, "LAG", &updates).await;
    let last = updates.len() as u64;
    wait_for("every update applied", || async {
        relay.get("/book/LAG").await.1["seq"] == last
    })
    .await;
    let stats = relay.get("/stats").await.1;
    let conflated: u64 = (0..2)
        .filter_map(|s| stats["shards"][s]["conflated"].as_u64())
        .sum();
    assert!(conflated > 0, "the client lagged: {stats}");
    let welcome = slow.next_json().await;
    assert_eq!(welcome["type"], "welcome");
    let mut books: BTreeMap<String, ClientBook> = names
        .keys()
        .map(|n| (n.clone(), ClientBook::default()))
        .collect();
    let states = model_states(&updates);
    let seen = follow(&mut slow, &mut books, &states, last).await;
    let merged = seen.iter().filter(|m| m["from_seq"].is_u64()).count();
    assert!(
        merged > 0,
        "at least one merged message stood for skipped seqs"
    );
}

#[tokio::test]
async fn a_resume_replays_the_ring_or_sends_a_gap_and_the_book() {
    let relay = TestRelay::start(Config {
        replay_depth: 16,
        ..config()
    })
    .await;
    let channel = "book:RES:2";
    let mut live = relay.client(&format!("?channels={channel}")).await;
    let updates = scripted(10, 3, 20);
    publish(&relay, "RES", &updates).await;
    let states = model_states(&updates);
    let mut books = BTreeMap::from([(channel.to_owned(), ClientBook::default())]);
    let history = follow(&mut live, &mut books, &states, 11).await;
    // Where a client that left at seq 4 stood.
    let mut at4 = BTreeMap::from([(channel.to_owned(), ClientBook::default())]);
    for message in history
        .iter()
        .filter(|m| m["type"] == "book")
        .take_while(|m| m["seq"].as_u64() <= Some(4))
    {
        at4.get_mut(channel).unwrap().apply(message, 2);
    }
    let mut back = relay
        .client(&format!(
            "?resume_channels={channel}:4&epoch={}",
            relay.epoch()
        ))
        .await;
    let replayed = follow(&mut back, &mut at4.clone(), &states, 11).await;
    let seqs: Vec<u64> = replayed.iter().filter_map(|m| m["seq"].as_u64()).collect();
    assert_eq!(
        seqs,
        (5..=11).collect::<Vec<_>>(),
        "exactly the missed messages, from the ring"
    );

    // Past the ring: a gap naming the seqs, then the book itself.
    let more = scripted(40, 5, 20);
    publish(&relay, "RES", &more[1..]).await;
    let all: Vec<Update> = updates.iter().chain(&more[1..]).cloned().collect();
    let states = model_states(&all);
    let last = all.len() as u64;
    wait_for("the new updates", || async {
        relay.get("/book/RES").await.1["seq"] == last
    })
    .await;
    let mut late = relay
        .client(&format!(
            "?resume_channels={channel}:4&epoch={}",
            relay.epoch()
        ))
        .await;
    let mut book = at4.clone();
    let replayed = follow(&mut late, &mut book, &states, last).await;
    let gap = replayed.iter().find(|m| m["type"] == "gap").expect("a gap");
    assert_eq!(
        (&gap["channel"], gap["from"].as_u64()),
        (&Value::from(channel), Some(5)),
        "{gap}"
    );
    let snapshot = replayed.iter().find(|m| m["type"] == "book").unwrap();
    assert_eq!(
        (&snapshot["snapshot"], snapshot["seq"].as_u64()),
        (&Value::Bool(true), Some(last))
    );
    assert_eq!(gap["to"].as_u64(), Some(last - 1));

    // Another history: a reset, then the book.
    let mut other = relay
        .client(&format!("?resume_channels={channel}:4&epoch=1"))
        .await;
    let reset = other.next_json().await;
    assert_eq!(
        (&reset["type"], &reset["channel"]),
        (&Value::from("reset"), &Value::from(channel)),
        "{reset}"
    );
    let mut fresh = ClientBook::default();
    assert_eq!(fresh.apply(&other.next_json().await, 2), last);
    assert_eq!(fresh.top(2), states[last as usize - 1].top(2));
}
