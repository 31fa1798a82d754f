//! The protobuf TCP ingest: varint length-delimited `tickrelay.v1.Tick`s in, exact values out;
//! bad messages answered on their connection without disturbing anyone else.

mod support;

use std::collections::BTreeMap;

use prost::Message as _;
use support::{Ingest, TestRelay, WAIT};
use tickrelay::Config;
use tickrelay::proto;

#[tokio::test]
async fn protobuf_ticks_reach_json_clients_with_exact_values() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=PBI-A,PBI-Q").await;
    let sent = [
        proto::Tick {
            price: Some(43250.5),
            size: Some(0.25),
            ts_ns: 1_764_000_000_123_456_789,
            ..trade("PBI-A")
        },
        proto::Tick {
            price: Some(123_456_789.123_456_79),
            size: Some(1e-9),
            venue: Some("XNAS".into()),
            ts_ns: u64::MAX,
            ..trade("PBI-A")
        },
        proto::Tick {
            symbol: "PBI-Q".into(),
            kind: proto::TickKind::Quote as i32,
            bid: Some(0.1),
            ask: Some(0.300_000_000_000_000_04),
            bid_size: Some(1e21),
            ask_size: Some(5e-324),
            ts_ns: 1,
            // Ignored on ingest: the relay sets both.
            seq: 999,
            recv_ns: 7,
            ..Default::default()
        },
        proto::Tick {
            // Kind unspecified: inferred (a price makes it a trade).
            kind: proto::TickKind::Unspecified as i32,
            price: Some(-17.125),
            ts_ns: 0,
            ..trade("PBI-A")
        },
    ];
    let mut bytes = Vec::new();
    for tick in &sent {
        tick.encode_length_delimited(&mut bytes)
            .expect("a Vec grows");
    }
    let mut ingest = Ingest::connect(relay.ingest_protobuf).await;
    // Split mid-message: the relay waits for the rest.
    let (first, rest) = bytes.split_at(bytes.len() / 2 + 3);
    ingest.send_raw(first).await;
    ingest.send_raw(rest).await;

    let mut seqs: BTreeMap<&str, u64> = BTreeMap::new();
    for want in &sent {
        let text = next_text(&mut client).await;
        let got: serde_json::Value = serde_json::from_str(&text).expect("JSON");
        let seq = seqs.entry(want.symbol.as_str()).or_insert(0);
        *seq += 1;
        assert_eq!(got["type"], "tick", "{text}");
        assert_eq!(got["symbol"], want.symbol.as_str(), "{text}");
        assert_eq!(got["seq"].as_u64(), Some(*seq), "relay sets seq: {text}");
        let kind = if want.bid.is_some() { "quote" } else { "trade" };
        assert_eq!(got["kind"], kind, "{text}");
        assert_eq!(
            number(&text, "ts_ns").and_then(|n| n.parse::<u64>().ok()),
            Some(want.ts_ns),
            "ts_ns passes through exactly: {text}"
        );
        let recv_ns: u64 = number(&text, "recv_ns").unwrap().parse().unwrap();
        assert!(
            recv_ns > 1_000_000_000_000_000_000,
            "relay stamps recv_ns: {text}"
        );
        for (key, value) in [
            ("price", want.price),
            ("size", want.size),
            ("bid", want.bid),
            ("ask", want.ask),
            ("bid_size", want.bid_size),
            ("ask_size", want.ask_size),
        ] {
            let got = number(&text, key).map(|n| n.parse::<f64>().expect("a JSON number"));
            assert_eq!(
                got.map(f64::to_bits),
                value.map(f64::to_bits),
                "{key} exact: {text}"
            );
        }
        assert_eq!(got["venue"].as_str(), want.venue.as_deref(), "{text}");
    }
}

#[tokio::test]
async fn a_malformed_protobuf_message_is_answered_and_nobody_else_stalls() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=PBM-A,PBM-B").await;
    let mut bad = Ingest::connect(relay.ingest_protobuf).await;
    let mut good = Ingest::connect(relay.ingest_protobuf).await;

    let mut bytes = Vec::new();
    let message = |tick: proto::Tick, bytes: &mut Vec<u8>| {
        tick.encode_length_delimited(bytes).expect("a Vec grows");
    };
    message(priced("PBM-A", 1.0), &mut bytes);
    // 2: three bytes that are not a Tick (field 31, wire type 7).
    bytes.extend_from_slice(&[3, 0xFF, 0xFF, 0xFF]);
    // 3: an enum value no TickKind has.
    message(
        proto::Tick {
            kind: 9,
            ..priced("PBM-A", 1.0)
        },
        &mut bytes,
    );
    // 4: a valid message that is not a valid tick.
    message(
        proto::Tick {
            price: Some(f64::NAN),
            ..priced("PBM-A", 1.0)
        },
        &mut bytes,
    );
    // 5: an empty symbol.
    message(priced("", 1.0), &mut bytes);
    message(priced("PBM-A", 2.0), &mut bytes);
    bad.send_raw(&bytes).await;

    for (line, code) in [
        (2, "bad_protobuf"),
        (3, "bad_protobuf"),
        (4, "not_finite"),
        (5, "invalid_symbol"),
    ] {
        let reply = bad.next_reply().await;
        assert_eq!(
            (
                reply["type"].as_str(),
                reply["line"].as_u64(),
                reply["code"].as_str()
            ),
            (Some("error"), Some(line), Some(code)),
            "{reply}"
        );
        assert!(reply["message"].as_str().is_some_and(|m| !m.is_empty()));
    }

    let mut more = Vec::new();
    for price in [1.0, 2.0] {
        message(priced("PBM-B", price), &mut more);
    }
    good.send_raw(&more).await;

    let mut prices: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    while prices.values().map(Vec::len).sum::<usize>() < 4 {
        let text = next_text(&mut client).await;
        let tick: serde_json::Value = serde_json::from_str(&text).unwrap();
        prices
            .entry(tick["symbol"].as_str().unwrap().to_owned())
            .or_default()
            .push(tick["price"].as_f64().unwrap());
    }
    assert_eq!(prices["PBM-A"], vec![1.0, 2.0], "the bad ones were skipped");
    assert_eq!(prices["PBM-B"], vec![1.0, 2.0]);

    // The connection that sent junk keeps working (length framing was intact).
    let mut again = Vec::new();
    message(priced("PBM-A", 3.0), &mut again);
    bad.send_raw(&again).await;
    let text = next_text(&mut client).await;
    assert!(text.contains(r#""symbol":"PBM-A","seq":3"#), "{text}");
}

#[tokio::test]
async fn an_oversized_length_prefix_closes_only_that_connection() {
    let relay = TestRelay::start(Config {
        max_ingest_line: 1024,
        ..Config::for_tests()
    })
    .await;
    let mut client = relay.client("?symbols=PBO-A").await;
    let mut doomed = Ingest::connect(relay.ingest_protobuf).await;
    let mut other = Ingest::connect(relay.ingest_protobuf).await;

    let mut bytes = Vec::new();
    priced("PBO-A", 1.0)
        .encode_length_delimited(&mut bytes)
        .expect("a Vec grows");
    // 2: a length of 1025 (varint 0x81 0x08), over the limit, and the start of its body.
    bytes.extend_from_slice(&[0x81, 0x08]);
    bytes.extend_from_slice(&[0u8; 512]);
    doomed.send_raw(&bytes).await;

    let reply = doomed.next_reply().await;
    assert_eq!(
        (
            reply["type"].as_str(),
            reply["line"].as_u64(),
            reply["code"].as_str()
        ),
        (Some("error"), Some(2), Some("line_too_long")),
        "{reply}"
    );
    // Then the relay hangs up: a length-delimited stream has no point to resync at.
    expect_hangup(&mut doomed).await;

    let tick = next_text(&mut client).await;
    assert!(tick.contains(r#""symbol":"PBO-A","seq":1"#), "{tick}");
    let mut more = Vec::new();
    priced("PBO-A", 2.0)
        .encode_length_delimited(&mut more)
        .expect("a Vec grows");
    other.send_raw(&more).await;
    let tick = next_text(&mut client).await;
    assert!(
        tick.contains(r#""symbol":"PBO-A","seq":2"#),
        "the other connection still flows: {tick}"
    );
}

fn trade(symbol: &str) -> proto::Tick {
    proto::Tick {
        symbol: symbol.into(),
        kind: proto::TickKind::Trade as i32,
        ..Default::default()
    }
}

fn priced(symbol: &str, price: f64) -> proto::Tick {
    proto::Tick {
        price: Some(price),
        ts_ns: 1_764_000_000_000_000_000,
        ..trade(symbol)
    }
}

/// The text of `"key":<number>` in a flat JSON object, as sent (parsed with Rust's correctly
/// rounded parser; serde_json's default float parsing may be off by an ulp).
fn number<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(",\"{key}\":");
    let start = text.find(&needle)? + needle.len();
    let rest = &text[start..];
    let end = rest.find([',', '}']).expect("a number ends at , or }");
    Some(&rest[..end])
}

async fn next_text(client: &mut support::WsClient) -> String {
    match client.next_message().await {
        tokio_tungstenite::tungstenite::Message::Text(text) => text.to_string(),
        other => panic!("a JSON client gets text frames, got {other:?}"),
    }
}

// Regression: ten bytes with the continuation bit set were answered with `bad_protobuf` but
// neither consumed nor fatal, so the decoder looped on them forever, holding the ingest
// thread: no other publisher's ticks got through.
#[tokio::test]
async fn an_invalid_length_prefix_closes_only_that_connection() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=PBV-A").await;
    let mut doomed = Ingest::connect(relay.ingest_protobuf).await;
    let mut other = Ingest::connect(relay.ingest_protobuf).await;
    doomed.send_raw(&[0xFF; 10]).await;
    let reply = doomed.next_reply().await;
    assert_eq!(
        (reply["line"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("bad_protobuf")),
        "{reply}"
    );
    // Like an oversized length: no way to find the next message, so the relay hangs up.
    expect_hangup(&mut doomed).await;
    let mut bytes = Vec::new();
    priced("PBV-A", 1.0)
        .encode_length_delimited(&mut bytes)
        .expect("a Vec grows");
    other.send_raw(&bytes).await;
    let tick = next_text(&mut client).await;
    assert!(tick.contains(r#""symbol":"PBV-A","seq":1"#), "{tick}");
}

/// Waits for the relay to close an ingest connection (EOF or reset), failing after [`WAIT`].
async fn expect_hangup(ingest: &mut Ingest) {
    let end = tokio::time::timeout(WAIT, ingest.replies.next_line())
        .await
        .expect("the relay closes the connection in time");
    assert!(
        matches!(end, Ok(None) | Err(_)),
        "connection closed, got {end:?}"
    );
}
