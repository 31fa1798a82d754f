//! Order books over real sockets: book updates published over NDJSON, protobuf and
//! `POST /api/publish` reach `book:SYMBOL:DEPTH` and `book:SYMBOL` subscribers with one seq
//! per update, the changes within each depth and the checksum of the client's top N; bad
//! updates are refused on the publisher's connection and change nothing.

mod book_common;
mod support;

use book_common::ClientBook;
use prost::Message as _;
use serde_json::Value;
use support::{TestRelay, WsClient, wait_for};
use tickrelay::Config;
use tickrelay::config::BookConfig;
use tickrelay::proto::{self, server_message};
use tokio_tungstenite::tungstenite::Message;

fn config(depths: &[u32]) -> Config {
    Config {
        book: BookConfig {
            book_depths: depths.to_vec(),
            ..BookConfig::default()
        },
        ..Config::for_tests()
    }
}

fn book_line(symbol: &str, snapshot: bool, bids: &str, asks: &str) -> String {
    format!(
        r#"{{"type":"book","symbol":"{symbol}","snapshot":{snapshot},"bids":{bids},"asks":{asks},"ts_ns":1764000000000000000}}"#
    )
}

/// The next book message (skipping acks).
async fn next_book(client: &mut WsClient) -> Value {
    loop {
        let message = client.next_json().await;
        if message["type"] == "book" {
            return message;
        }
        assert!(
            message["type"] == "subscribed",
            "expected a book message, got {message}"
        );
    }
}

#[tokio::test]
async fn a_book_reaches_every_depth_with_the_checksum_of_its_top_levels() {
    let relay = TestRelay::start(config(&[2, 10])).await;
    let mut top2 = relay.client("?channels=book:BTC-USD:2").await;
    let mut top10 = relay.client("?channels=book:BTC-USD:10").await;
    let mut full = relay.client("?channels=book:BTC-USD").await;
    let mut ingest = relay.ingest().await;
    // The protocol's test vector, spelled with trailing zeros and as numbers and strings.
    let snapshot = book_line(
        "BTC-USD",
        true,
        r#"[["99.50","1.250"],[99,0.5],["98","7"]]"#,
        r#"[[100.5,"2.0"],["101",3],[102,1]]"#,
    );
    ingest.send_lines(&[snapshot]).await;
    let first = next_book(&mut top2).await;
    assert_eq!(first["channel"], "book:BTC-USD:2");
    assert_eq!(
        (first["seq"].as_u64(), &first["snapshot"]),
        (Some(1), &Value::Bool(true))
    );
    assert_eq!(
        first["bids"],
        serde_json::json!([["99.5", "1.25"], ["99", "0.5"]])
    );
    assert_eq!(
        first["asks"],
        serde_json::json!([["100.5", "2"], ["101", "3"]])
    );
    assert_eq!(
        first["checksum"], 438_061_936,
        "docs/PROTOCOL.md's test vector"
    );
    let (mut book2, mut book10, mut book_full) = (
        ClientBook::default(),
        ClientBook::default(),
        ClientBook::default(),
    );
    book2.apply(&first, 2);
    book10.apply(&next_book(&mut top10).await, 10);
    book_full.apply(&next_book(&mut full).await, usize::MAX);
    assert_eq!(book10.len(), (3, 3));

    // The best bid goes: depth 2 gets its removal and the level entering the top 2.
    ingest
        .send_lines(&[book_line("BTC-USD", false, r#"[["99.5",0]]"#, "[]")])
        .await;
    let delta2 = next_book(&mut top2).await;
    assert_eq!(
        (delta2["seq"].as_u64(), &delta2["snapshot"]),
        (Some(2), &Value::Bool(false))
    );
    assert_eq!(
        delta2["bids"],
        serde_json::json!([["99.5", "0"], ["98", "7"]])
    );
    assert_eq!(delta2["asks"], serde_json::json!([]));
    book2.apply(&delta2, 2);
    let delta10 = next_book(&mut top10).await;
    assert_eq!(
        delta10["bids"],
        serde_json::json!([["99.5", "0"]]),
        "98 was already in its top 10"
    );
    book10.apply(&delta10, 10);
    book_full.apply(&next_book(&mut full).await, usize::MAX);
    // A change below the top 2 still advances depth 2's seq, with nothing to change.
    ingest
        .send_lines(&[book_line("BTC-USD", false, "[]", r#"[["102","4"]]"#)])
        .await;
    let quiet = next_book(&mut top2).await;
    assert_eq!(
        (quiet["seq"].as_u64(), &quiet["asks"]),
        (Some(3), &serde_json::json!([]))
    );
    book2.apply(&quiet, 2);
    assert_eq!(book10.apply(&next_book(&mut top10).await, 10), 3);
    assert_eq!(book_full.apply(&next_book(&mut full).await, usize::MAX), 3);
    assert_eq!(
        book2.top(2),
        book_full.top(2),
        "every depth holds the same book"
    );
    assert_eq!(book10.top(10), book_full.top(10));

    // A subscriber arriving now gets the book itself (not the last delta) at seq 3.
    let mut late = relay.client("?channels=book:BTC-USD:2").await;
    let snapshot = next_book(&mut late).await;
    assert_eq!(
        (snapshot["seq"].as_u64(), &snapshot["snapshot"]),
        (Some(3), &Value::Bool(true))
    );
    let mut fresh = ClientBook::default();
    fresh.apply(&snapshot, 2);
    assert_eq!(fresh.top(2), book2.top(2));
    // So does the HTTP read beside /price.
    let (status, body) = relay.get("/book/BTC-USD?depth=2").await;
    assert_eq!(
        (status, &body["seq"], &body["checksum"]),
        (200, &Value::from(3), &snapshot["checksum"]),
        "{body}"
    );
    let (status, body) = relay.get("/book/BTC-USD").await;
    assert_eq!(
        (status, body["bids"].as_array().map(Vec::len)),
        (200, Some(2)),
        "{body}"
    );
    let (status, body) = relay.get("/book/BTC-USD?depth=3").await;
    assert_eq!(
        (status, &body["code"]),
        (400, &Value::from("invalid_channel")),
        "{body}"
    );
    let (status, body) = relay.get("/book/NOPE?depth=2").await;
    assert_eq!(
        (status, &body["code"]),
        (404, &Value::from("unknown_symbol")),
        "{body}"
    );
}

#[tokio::test]
async fn refused_book_updates_are_answered_counted_and_change_nothing() {
    let relay = TestRelay::start(config(&[10])).await;
    let mut ingest = relay.ingest().await;
    let good = book_line("ETH-USD", true, r#"[["2000","1"]]"#, r#"[["2001","1"]]"#);
    ingest
        .send_lines(&[
            book_line("ETH-USD", false, r#"[["2000","1"]]"#, "[]"),
            good,
            book_line("ETH-USD", false, r#"[["2002","1"]]"#, "[]"),
            book_line("ETH-USD", false, r#"[["2000","-1"]]"#, "[]"),
            book_line("ETH-USD", false, r#"[["NaN","1"]]"#, "[]"),
            book_line("ETH-USD", false, r#"[["1e999","1"]]"#, "[]"),
            book_line("ETH-USD", false, "[]", r#"[["2001","0"],["1999.5","3"]]"#),
        ])
        .await;
    let mut replies = Vec::new();
    for _ in 0..6 {
        let reply = ingest.next_reply().await;
        replies.push((
            reply["line"].as_u64().unwrap(),
            reply["code"].as_str().unwrap().to_owned(),
        ));
    }
    replies.sort();
    let want: Vec<(u64, String)> = [
        (1, "book_no_snapshot"),
        (3, "book_crossed"),
        (4, "negative_size"),
        (5, "not_finite"),
        (6, "bad_decimal"),
        (7, "book_crossed"),
    ]
    .iter()
    .map(|(l, c)| (*l, (*c).to_owned()))
    .collect();
    assert_eq!(replies, want);
    let (_, book) = relay.get("/book/ETH-USD?depth=10").await;
    assert_eq!(book["seq"], 1, "only the snapshot was applied: {book}");
    assert_eq!(book["bids"], serde_json::json!([["2000", "1"]]));
    assert_eq!(book["asks"], serde_json::json!([["2001", "1"]]));
    // The next good update applies to the book as it was before the refusals.
    ingest
        .send_lines(&[book_line("ETH-USD", false, r#"[["1999","2"]]"#, "[]")])
        .await;
    wait_for("the good delta", || async {
        relay.get("/book/ETH-USD").await.1["seq"] == 2
    })
    .await;
    let (_, book) = relay.get("/book/ETH-USD").await;
    assert_eq!(
        book["bids"],
        serde_json::json!([["2000", "1"], ["1999", "2"]])
    );
    assert_eq!(book["asks"], serde_json::json!([["2001", "1"]]));
    let errors = relay.get("/stats").await.1["errors"].clone();
    assert_eq!(errors["book_crossed"], 2, "{errors}");
    assert_eq!(
        (
            errors["book_no_snapshot"].as_u64(),
            errors["negative_size"].as_u64()
        ),
        (Some(1), Some(1))
    );
}

#[tokio::test]
async fn depths_not_offered_and_book_channel_publishing_are_refused_by_name() {
    let relay = TestRelay::start(config(&[10, 25])).await;
    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"subscribe","channels":["book:BTC-USD:11"]}"#)
        .await;
    let refused = client.next_json().await;
    assert_eq!(refused["code"], "invalid_channel", "{refused}");
    let message = refused["message"].as_str().unwrap();
    assert!(
        message.contains("10, 25"),
        "names the offered depths: {message}"
    );
    let refused = support::within(
        "the refused upgrade",
        tokio_tungstenite::connect_async(relay.url("?channels=book:BTC-USD:7")),
    )
    .await;
    let Err(tokio_tungstenite::tungstenite::Error::Http(response)) = refused else {
        panic!("expected an HTTP refusal, got {refused:?}");
    };
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(
        (response.status().as_u16(), &body["code"]),
        (400, &Value::from("invalid_channel")),
        "{body}"
    );
    let event = r#"{"channel":"book:BTC-USD","data":{"bids":[]}}"#;
    let (status, body) = relay.post("/api/events", event).await;
    assert_eq!(
        (status, &body["code"]),
        (400, &Value::from("reserved_channel")),
        "{body}"
    );
    // `*` never covers a book.
    let mut all = relay.client("?symbols=*").await;
    relay
        .post(
            "/api/publish",
            &book_line("SOL-USD", true, r#"[["1","1"]]"#, "[]"),
        )
        .await;
    relay.publish_many("SOL-USD", 1).await;
    let first = all.next_json().await;
    assert_eq!(
        first["type"], "tick",
        "a book message never reaches *: {first}"
    );
}

#[tokio::test]
async fn post_publish_takes_book_updates_and_answers_a_refusal_with_its_line() {
    let relay = TestRelay::start(config(&[10])).await;
    let body = [
        book_line("ADA-USD", true, r#"[["0.5","10"]]"#, r#"[["0.51","10"]]"#),
        book_line("ADA-USD", false, r#"[["0.52","1"]]"#, "[]"),
        book_line("ADA-USD", false, r#"[["0.49","1"]]"#, "[]"),
    ]
    .join("\n");
    let (status, answer) = relay.post("/api/publish", &body).await;
    assert_eq!(
        (status, &answer["code"], &answer["line"]),
        (400, &Value::from("book_crossed"), &Value::from(2)),
        "{answer}"
    );
    assert_eq!(
        (answer["accepted"].as_u64(), answer["refused"].as_u64()),
        (Some(2), Some(1))
    );
    let (_, book) = relay.get("/book/ADA-USD").await;
    assert_eq!(
        (book["seq"].as_u64(), &book["bids"]),
        (Some(2), &serde_json::json!([["0.5", "10"], ["0.49", "1"]]))
    );
    let (status, answer) = relay
        .post(
            "/api/publish",
            &book_line("ADA-USD", false, r#"[["0.49","0"]]"#, "[]"),
        )
        .await;
    assert_eq!(
        (status, &answer["accepted"]),
        (202, &Value::from(1)),
        "{answer}"
    );
}

#[tokio::test]
async fn protobuf_publishers_and_clients_carry_books_exactly() {
    let relay = TestRelay::start(config(&[2])).await;
    let mut client =
        WsClient::connect(&relay.url("?channels=book:XRP-USD:2&encoding=protobuf")).await;
    client.next_message().await; // welcome
    let level = |p: &str, s: &str| proto::BookLevel {
        price: p.into(),
        size: s.into(),
    };
    let frame = proto::IngestBook {
        book: Some(proto::BookInput {
            symbol: "XRP-USD".into(),
            snapshot: true,
            bids: vec![level("0.6100", "5"), level("0.60", "1.50")],
            asks: vec![level("0.62", "2")],
            ts_ns: 9,
        }),
    };
    let tick = proto::Tick {
        symbol: "XRP-USD".into(),
        price: Some(0.61),
        ts_ns: 1,
        ..Default::default()
    };
    let mut bytes = frame.encode_length_delimited_to_vec();
    bytes.extend(tick.encode_length_delimited_to_vec());
    let mut stream = tokio::net::TcpStream::connect(relay.ingest_protobuf)
        .await
        .unwrap();
    tokio::io::AsyncWriteExt::write_all(&mut stream, &bytes)
        .await
        .unwrap();
    let Message::Binary(frame) = client.next_message().await else {
        panic!("protobuf clients get binary frames");
    };
    let Some(server_message::Msg::Book(book)) =
        proto::ServerMessage::decode(&frame[..]).unwrap().msg
    else {
        panic!("a Book message");
    };
    assert_eq!(
        (book.channel.as_str(), book.seq, book.snapshot),
        ("book:XRP-USD:2", 1, true)
    );
    let text: Vec<(String, String)> = book
        .bids
        .iter()
        .map(|l| (l.price.clone(), l.size.clone()))
        .collect();
    assert_eq!(
        text,
        [
            ("0.61".to_owned(), "5".to_owned()),
            ("0.6".to_owned(), "1.5".to_owned())
        ]
    );
    assert_eq!(book.checksum, crc32fast::hash(b"0.61:5|0.6:1.5|0.62:2"));
    wait_for("the tick beside the book", || async {
        relay.get("/price/XRP-USD").await.0 == 200
    })
    .await;
}

#[tokio::test]
async fn a_token_reads_a_book_exactly_when_it_reads_its_symbol() {
    const SECRET: &[u8] = b"book-test-secret-0123456789abcdef-0123";
    let secret = TempFile::new("secret", SECRET);
    let relay = TestRelay::start(Config {
        jwt_secret_file: Some(secret.0.clone()),
        ..config(&[10])
    })
    .await;
    let exp = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs()
        + 600;
    let claims = serde_json::json!({"sub": "trader", "exp": exp, "allow": ["BTC-*"]});
    let token = jsonwebtoken::encode(
        &jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET).unwrap(),
    )
    .unwrap();
    let mut client = relay.client(&format!("?token={token}")).await;
    client
        .send_json(r#"{"op":"subscribe","channels":["book:BTC-USD:10","book:BTC-USD"]}"#)
        .await;
    assert_eq!(client.next_json().await["type"], "subscribed");
    client
        .send_json(r#"{"op":"subscribe","channels":["book:ETH-USD:10"]}"#)
        .await;
    let refused = client.next_json().await;
    assert_eq!(refused["code"], "forbidden", "{refused}");
}

/// A file that is removed when the test ends.
struct TempFile(std::path::PathBuf);

impl TempFile {
    fn new(name: &str, contents: &[u8]) -> Self {
        let path =
            std::env::temp_dir().join(format!("tickrelay-book-{}-{name}", std::process::id()));
        std::fs::write(&path, contents).unwrap();
        Self(path)
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

#[tokio::test]
async fn the_demo_market_moves_books_whose_checksums_hold() {
    let relay = TestRelay::start(Config {
        demo: true,
        ..config(&[10])
    })
    .await;
    let mut client = relay.client("?channels=book:BTC-USD:10,book:ETH-USD").await;
    let mut books = std::collections::BTreeMap::<String, ClientBook>::new();
    let mut seen = 0;
    while seen < 40 {
        let message = next_book(&mut client).await;
        let channel = message["channel"].as_str().unwrap().to_owned();
        let depth = if channel.ends_with(":10") {
            10
        } else {
            usize::MAX
        };
        let book = books.entry(channel).or_default();
        // Every message follows the one before (the first is the book itself).
        assert!(
            message["snapshot"] == true || message["seq"].as_u64() == Some(book.seq + 1),
            "{message}"
        );
        book.apply(&message, depth);
        let (bids, asks) = book.len();
        assert!(
            bids > 0 && asks > 0 && bids <= depth && asks <= depth,
            "a two-sided book"
        );
        seen += 1;
    }
}
