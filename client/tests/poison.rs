//! One message the client cannot read never stops its stream. An event's `data` is
//! delivered exactly as the server sent it, whatever a JSON parser would refuse in it (the
//! relay itself refuses such `data` at ingest); a message that
//! still does not decode is delivered as an `Undecodable` item counted at its seq, and the
//! next one is read: no reconnect (which would bring the message back as a snapshot, for
//! ever), no gap for it.

mod support;

use support::script::{Encoder, ScriptServer, event, raw, tick, welcome};
use support::{TestRelay, WAIT, fast_backoff};
use tickrelay::Config;
use tickrelay_client::{Client, Encoding, Event, Item, Key, Options};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Valid JSON that a plain `serde_json::Value` refuses: a number beyond f64 and an unpaired
/// surrogate escape. tickrelay refuses such `data` at ingest since it checks every event's
/// `data` with a strict decoder; a relay of another version, or another server speaking the
/// protocol, may still send it, and the client must pass it on untouched.
const POISON: &str = r#"{"overflow":1e400,"text":"\ud800"}"#;

const ENCODINGS: [Encoding; 3] = [Encoding::Json, Encoding::Protobuf, Encoding::Gzip];

#[tokio::test]
async fn an_event_a_json_parser_refuses_is_delivered_as_published() {
    for encoding in ENCODINGS {
        let mut frames = Encoder::new(encoding, false);
        let script = [
            welcome(1),
            event("news", 1, r#"{"n":1}"#),
            event("news", 2, POISON),
            event("news", 3, r#"{"n":3}"#),
        ]
        .iter()
        .map(|m| frames.frame(std::slice::from_ref(m)))
        .collect();
        let server = ScriptServer::start(vec![script]).await;
        let options = Options::new()
            .channels(["news"])
            .encoding(encoding)
            .batch(false)
            .backoff(fast_backoff());
        let mut client = Client::connect(&server.url(), options)
            .await
            .expect("connects");
        let events = read_events(&mut client, 3).await;
        let seen: Vec<(u64, &str)> = events.iter().map(|e| (e.seq, e.data.get())).collect();
        assert_eq!(
            seen,
            [(1, r#"{"n":1}"#), (2, POISON), (3, r#"{"n":3}"#)],
            "{encoding:?}: every event once, its data byte for byte"
        );
        assert_eq!(server.requests().len(), 1, "{encoding:?}: one connection");
    }
}

/// The relay itself refuses the poison at ingest, answered on the publisher's connection
/// (`bad_json`, field `data`), and subscribers see the events around it with no hole.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_relay_refuses_a_poison_event_and_delivers_the_rest() {
    let relay = TestRelay::start(Config {
        shards: 1,
        ..Config::for_tests()
    })
    .await;
    let options = Options::new().channels(["news"]).backoff(fast_backoff());
    let mut live = Client::connect(&relay.url(), options)
        .await
        .expect("connects");
    let answers = publish(&relay, "news", &[r#"{"n":1}"#, POISON, r#"{"n":3}"#]).await;
    assert!(
        answers.contains(r#""line":2"#) && answers.contains(r#""code":"bad_json""#),
        "the poison's line answered: {answers}"
    );
    let events = read_events(&mut live, 2).await;
    let seen: Vec<(u64, &str)> = events.iter().map(|e| (e.seq, e.data.get())).collect();
    assert_eq!(seen, [(1, r#"{"n":1}"#), (2, r#"{"n":3}"#)]);
}

#[tokio::test]
async fn undecodable_messages_are_items_counted_at_their_seq_and_the_stream_goes_on() {
    let deep = format!("{}{}", "[".repeat(20_000), "]".repeat(20_000));
    for encoding in ENCODINGS {
        let mut frames = Encoder::new(encoding, false);
        let bad_event = raw(
            r#"{"type":"event","channel":"news","seq":3,"ts_ns":"soon","data":{}}"#,
            &event("news", 3, r#"{"a":"#).proto,
        );
        let garbage = raw(r#"{"type":"event","channel":"#, &[0xff, 0xff, 0xff]);
        let script = [
            welcome(1),
            event("news", 1, r#"{"n":1}"#),
            event("news", 2, &deep),
            bad_event,
            garbage,
            tick("A", 1),
            event("news", 4, r#"{"n":4}"#),
        ]
        .iter()
        .map(|m| frames.frame(std::slice::from_ref(m)))
        .collect();
        let server = ScriptServer::start(vec![script]).await;
        // The script sends unbatched frames (one message each).
        let options = Options::new()
            .symbols(["A"])
            .channels(["news"])
            .encoding(encoding)
            .batch(false)
            .backoff(fast_backoff());
        let mut client = Client::connect(&server.url(), options)
            .await
            .expect("connects");
        let mut items = Vec::new();
        while !items
            .iter()
            .any(|i| matches!(i, Item::Event(e) if e.seq == 4))
        {
            let item = tokio::time::timeout(WAIT, client.next())
                .await
                .unwrap_or_else(|_| panic!("{encoding:?}: timed out; items so far: {items:?}"))
                .expect("the stream goes on")
                .expect("no error");
            assert!(
                !matches!(item, Item::Disconnected(_)),
                "{encoding:?}: no reconnect on a bad message: {item:?} after {items:?}"
            );
            items.push(item);
        }
        let shape: Vec<String> = items.iter().map(shape).collect();
        assert_eq!(
            shape,
            [
                "connected",
                "event news 1",
                "event news 2",
                "undecodable news 3",
                "undecodable",
                "tick A 1",
                "event news 4"
            ],
            "{encoding:?}"
        );
        assert!(
            matches!(&items[2], Item::Event(e) if e.data.get() == deep),
            "{encoding:?}: 20,000 levels delivered as published"
        );
        assert_eq!(server.requests().len(), 1, "{encoding:?}: one connection");
    }
}

fn shape(item: &Item) -> String {
    match item {
        Item::Connected(_) => "connected".into(),
        Item::Event(e) => format!("event {} {}", e.channel, e.seq),
        Item::Tick(t) => format!("tick {} {}", t.symbol, t.seq),
        Item::Undecodable(u) => match (&u.key, u.seq) {
            (Some(Key::Channel(c)), Some(seq)) => format!("undecodable {c} {seq}"),
            (None, None) => "undecodable".into(),
            other => format!("undecodable {other:?}"),
        },
        other => format!("{other:?}"),
    }
}

/// Publishes one event per `data` on `channel` through the NDJSON ingest port; returns
/// what the relay answered on the connection.
async fn publish(relay: &TestRelay, channel: &str, data: &[&str]) -> String {
    let lines: String = data
        .iter()
        .map(|d| format!("{{\"channel\":\"{channel}\",\"data\":{d}}}\n"))
        .collect();
    let mut ingest = TcpStream::connect(relay.config.ingest_tcp)
        .await
        .expect("ingest connects");
    ingest
        .write_all(lines.as_bytes())
        .await
        .expect("ingest write");
    ingest.shutdown().await.expect("ingest shutdown");
    let mut answers = String::new();
    tokio::time::timeout(WAIT, ingest.read_to_string(&mut answers))
        .await
        .expect("the relay closes the connection after its answers")
        .expect("ingest read");
    answers
}

/// Reads the next `n` events, failing on a reconnect, an undecodable item or an error.
async fn read_events(client: &mut Client, n: usize) -> Vec<Event> {
    let mut events = Vec::new();
    tokio::time::timeout(WAIT, async {
        while events.len() < n {
            match client.next().await.expect("stream open").expect("no error") {
                Item::Event(e) => events.push(e),
                Item::Connected(_) | Item::Tick(_) | Item::Snapshot(_) => {}
                other => panic!("only events expected, got {other:?} after {events:?}"),
            }
        }
    })
    .await
    .unwrap_or_else(|_| panic!("timed out; events so far: {events:?}"));
    events
}
