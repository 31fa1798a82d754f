//! The client's order books against a real relay (in-process, real sockets): random
//! snapshot/delta sequences give the independent model's book at every depth and seq, in
//! JSON and protobuf, across a cut connection.

#[path = "../../tests/book_common/mod.rs"]
mod book_common;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use book_common::{Model, Update, updates};
use proptest::prelude::*;
use support::{Proxy, TestRelay, fast_backoff};
use tickrelay::Config;
use tickrelay::config::BookConfig;
use tickrelay_client::{Book, Client, Encoding, Item, Options};
use tokio::io::AsyncWriteExt;

fn relay_config() -> Config {
    Config {
        book: BookConfig {
            book_depths: vec![2, 5],
            ..BookConfig::default()
        },
        ..Config::for_tests()
    }
}

const CHANNELS: [(&str, usize); 3] = [("book:P:2", 2), ("book:P:5", 5), ("book:P", usize::MAX)];

async fn publish(relay: &TestRelay, updates: &[Update]) {
    let mut ingest = tokio::net::TcpStream::connect(relay.config.ingest_tcp)
        .await
        .expect("ingest connects");
    let lines: String = updates.iter().map(|u| u.line("P") + "\n").collect();
    ingest
        .write_all(lines.as_bytes())
        .await
        .expect("ingest write");
}

fn states(updates: &[Update]) -> Vec<Model> {
    let mut model = Model::default();
    updates
        .iter()
        .map(|u| {
            model.apply(u);
            model.clone()
        })
        .collect()
}

fn text(book: &Book) -> (Vec<String>, Vec<String>) {
    let levels = |l: &[tickrelay_client::Level]| {
        l.iter()
            .map(|l| format!("{}:{}", l.price, l.size))
            .collect()
    };
    (levels(&book.bids), levels(&book.asks))
}

/// Reads items until every channel's book reached `last`, checking each book against the
/// model at its seq; returns the other items seen.
async fn follow(client: &mut Client, states: &[Model], last: u64) -> Vec<Item> {
    let mut at: BTreeMap<&str, u64> = CHANNELS.iter().map(|(c, _)| (*c, 0)).collect();
    let mut other = Vec::new();
    while at.values().any(|seq| *seq < last) {
        let item = tokio::time::timeout(Duration::from_secs(10), client.next())
            .await
            .expect("an item within 10 s")
            .expect("the stream goes on")
            .expect("no error");
        let Item::Book(book) = item else {
            other.push(item);
            continue;
        };
        let (channel, depth) = CHANNELS
            .iter()
            .find(|(c, _)| *c == book.channel)
            .expect("a subscribed channel");
        let model = &states[book.seq as usize - 1];
        assert_eq!(
            text(&book),
            model.top(*depth),
            "{channel} at seq {}",
            book.seq
        );
        assert_eq!(book.checksum, model.checksum(*depth));
        at.insert(channel, book.seq);
    }
    other
}

async fn run_case(encoding: Encoding, updates: Vec<Update>) {
    let relay = TestRelay::start(relay_config()).await;
    let options = Options::new()
        .channels(CHANNELS.iter().map(|(c, _)| *c))
        .encoding(encoding)
        .backoff(fast_backoff());
    let mut client = Client::connect(&relay.url(), options)
        .await
        .expect("connects");
    publish(&relay, &updates).await;
    let other = follow(&mut client, &states(&updates), updates.len() as u64).await;
    assert!(
        other.iter().all(|i| matches!(i, Item::Connected(_))),
        "no resync against a healthy relay: {other:?}"
    );
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    #[test]
    fn the_clients_books_are_the_models_at_every_depth_and_seq(updates in updates(1..50), protobuf in any::<bool>()) {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
        let encoding = if protobuf { Encoding::Protobuf } else { Encoding::Json };
        runtime.block_on(run_case(encoding, updates));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_connection_brings_every_book_back_from_a_fresh_snapshot() {
    let relay = TestRelay::start(relay_config()).await;
    let proxy = Proxy::start(relay.config.listen).await;
    let options = Options::new()
        .channels(CHANNELS.iter().map(|(c, _)| *c))
        .backoff(fast_backoff());
    let mut client = Client::connect(&proxy.url(), options)
        .await
        .expect("connects");
    let all: Vec<Update> = {
        let mut runner = proptest::test_runner::TestRunner::deterministic();
        proptest::strategy::ValueTree::current(&updates(40..41).new_tree(&mut runner).unwrap())
    };
    let states = states(&all);
    publish(&relay, &all[..20]).await;
    follow(&mut client, &states, 20).await;
    proxy.cut();
    publish(&relay, &all[20..]).await;
    let other = follow(&mut client, &states, all.len() as u64).await;
    assert!(
        other.iter().any(|i| matches!(i, Item::Disconnected(_))),
        "the cut was seen: {other:?}"
    );
}
