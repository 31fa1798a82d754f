//! Order books on a rate tier (`book:SYMBOL:DEPTH@TIER`) over real WebSockets: at most one
//! message per interval, each the whole book at the channel's depth as of its seq (checksum
//! and levels equal to an independent model), `from_seq` chaining onto the previous
//! message's seq; raw subscribers of the same book beside it unchanged; a resume gets the
//! tier's last book; protobuf carries the tier.

mod book_common;
mod support;

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use book_common::{ClientBook, Model, Update, model_states, scripted};
use prost::Message as _;
use serde_json::Value;
use support::{TestRelay, WsClient, wait_for};
use tickrelay::Config;
use tickrelay::config::BookConfig;
use tickrelay::proto::{self, server_message};
use tokio_tungstenite::tungstenite::Message;

const DEPTH: usize = 2;

fn config() -> Config {
    Config {
        book: BookConfig {
            book_depths: vec![DEPTH as u32, 10],
            ..BookConfig::default()
        },
        ..Config::for_tests()
    }
}

/// Publishes `updates` of `symbol` in chunks of 20 lines spread over about `span`.
async fn publish_over(relay: &TestRelay, symbol: &str, updates: &[Update], span: Duration) {
    let mut ingest = relay.ingest().await;
    let lines: Vec<String> = updates.iter().map(|u| u.line(symbol)).collect();
    let chunks = lines.len().div_ceil(20).max(1) as u32;
    for chunk in lines.chunks(20) {
        ingest.send_lines(chunk).await;
        tokio::time::sleep(span / chunks).await;
    }
}

async fn wait_book(relay: &TestRelay, symbol: &str, seq: u64) {
    wait_for("every update applied", || async {
        relay.get(&format!("/book/{symbol}")).await.1["seq"] == seq
    })
    .await;
}

/// The next book message (skipping the welcome, acks and heartbeats).
async fn next_book(client: &mut WsClient) -> Value {
    loop {
        let message = client.next_json().await;
        match message["type"].as_str() {
            Some("book") => return message,
            Some("welcome" | "subscribed" | "heartbeat") => {}
            _ => panic!("expected a book message, got {message}"),
        }
    }
}

/// Reads book messages until one reaches `last`, checking each against the model.
async fn follow(
    client: &mut WsClient,
    book: &mut ClientBook,
    states: &[Model],
    last: u64,
) -> Vec<Value> {
    let mut seen = Vec::new();
    while book.seq < last {
        let message = next_book(client).await;
        let seq = book.apply(&message, DEPTH);
        assert_eq!(
            book.top(DEPTH),
            states[seq as usize - 1].top(DEPTH),
            "the model's top levels at seq {seq}"
        );
        seen.push(message);
    }
    seen
}

#[tokio::test]
async fn a_book_on_a_tier_is_the_whole_book_at_most_once_an_interval_and_chains() {
    let relay = TestRelay::start(config()).await;
    let updates = scripted(600, 11, 20);
    let states = model_states(&updates);
    publish_over(&relay, "BT", &updates[..1], Duration::ZERO).await;
    wait_book(&relay, "BT", 1).await;
    let channel = format!("book:BT:{DEPTH}");
    let mut raw = relay.client(&format!("?channels={channel}")).await;
    let mut tier = relay.client(&format!("?channels={channel}@100ms")).await;
    let first = next_book(&mut tier).await;
    assert_eq!(
        (first["snapshot"].as_bool(), first["tier"].as_str()),
        (Some(true), Some("100ms")),
        "the tier's first message is the book: {first}"
    );
    assert_eq!(first["channel"], channel.as_str());
    assert_eq!(
        (first["seq"].as_u64(), first["from_seq"].as_u64()),
        (Some(1), Some(1))
    );

    let started = Instant::now();
    let last = updates.len() as u64;
    publish_over(&relay, "BT", &updates[1..], Duration::from_millis(1500)).await;
    let mut book = ClientBook::default();
    book.apply(&first, DEPTH);
    let frames = follow(&mut tier, &mut book, &states, last).await;
    let elapsed = started.elapsed();
    // A slower box only makes fewer messages: the bound cannot fail for speed.
    let most = (elapsed.as_millis() / 100) as usize + 2;
    assert!(
        frames.len() <= most,
        "{} messages in {elapsed:?}",
        frames.len()
    );
    assert!(
        frames.len() > 2,
        "a stream, not one message: {}",
        frames.len()
    );
    let mut next = 2;
    for frame in &frames {
        assert_eq!(frame["snapshot"], true, "each is the whole book: {frame}");
        assert_eq!(frame["tier"], "100ms");
        let (from, seq) = (
            frame["from_seq"].as_u64().unwrap(),
            frame["seq"].as_u64().unwrap(),
        );
        assert_eq!(
            from, next,
            "from_seq chains onto the previous message: {frame}"
        );
        assert!(seq >= from);
        next = seq + 1;
    }

    // The raw subscriber beside it: every update, one seq each, the same book at the end.
    let mut raw_book = ClientBook::default();
    let raw_seen = follow(&mut raw, &mut raw_book, &states, last).await;
    let seqs: Vec<u64> = raw_seen
        .iter()
        .map(|m| m["seq"].as_u64().unwrap())
        .collect();
    assert_eq!(seqs, (1..=last).collect::<Vec<_>>(), "raw: every update");
    assert!(raw_seen.iter().all(|m| m.get("tier").is_none()));
    assert_eq!(raw_book.top(DEPTH), book.top(DEPTH));
}

#[tokio::test]
async fn a_resume_on_a_book_tier_gets_the_tiers_last_book_and_protobuf_names_the_tier() {
    let relay = TestRelay::start(config()).await;
    let updates = scripted(200, 5, 20);
    let states = model_states(&updates);
    let channel = format!("book:RB:{DEPTH}");
    let tiered = format!("{channel}@100ms");
    let mut holder = relay.client(&format!("?channels={tiered}")).await;
    publish_over(&relay, "RB", &updates, Duration::from_millis(500)).await;
    let last = updates.len() as u64;
    wait_book(&relay, "RB", last).await;
    let mut book = ClientBook::default();
    follow(&mut holder, &mut book, &states, last).await;

    // A client that left at seq 3 of this relay's history: a gap for what it missed, then
    // the tier's last book, standing for it.
    let epoch = relay.epoch();
    let mut resumed = relay
        .client(&format!("?resume_channels={tiered}:3&epoch={epoch}"))
        .await;
    let mut gap = None;
    let message = loop {
        let message = resumed.next_json().await;
        match message["type"].as_str() {
            Some("gap") => gap = Some(message),
            Some("book") => break message,
            _ => {}
        }
    };
    let gap = gap.expect("a gap before the book");
    assert_eq!(
        (gap["from"].as_u64(), gap["tier"].as_str()),
        (Some(4), Some("100ms")),
        "{gap}"
    );
    assert_eq!(gap["to"].as_u64(), Some(last - 1), "{gap}");
    assert_eq!(
        (message["snapshot"].as_bool(), message["tier"].as_str()),
        (Some(true), Some("100ms"))
    );
    let mut fresh = ClientBook::default();
    assert_eq!(fresh.apply(&message, DEPTH), last);
    assert_eq!(fresh.top(DEPTH), states[last as usize - 1].top(DEPTH));

    // Protobuf: the same book message, naming its tier.
    let mut proto_client =
        WsClient::connect(&relay.url(&format!("?channels={tiered}&encoding=protobuf"))).await;
    let book_msg = loop {
        let Message::Binary(bytes) = proto_client.next_message().await else {
            continue;
        };
        let decoded = proto::ServerMessage::decode(bytes.as_ref()).unwrap();
        if let Some(server_message::Msg::Book(book)) = decoded.msg {
            break book;
        }
    };
    assert_eq!(
        (
            book_msg.channel.as_str(),
            book_msg.tier.as_str(),
            book_msg.snapshot,
            book_msg.seq
        ),
        (channel.as_str(), "100ms", true, last)
    );
    let levels: BTreeMap<&str, usize> =
        BTreeMap::from([("bids", book_msg.bids.len()), ("asks", book_msg.asks.len())]);
    assert!(levels.values().all(|n| *n <= DEPTH), "{levels:?}");
}
