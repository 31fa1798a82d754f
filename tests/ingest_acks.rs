//! Acknowledged, exactly-once ingest on a single box (docs/PROTOCOL.md, "Acknowledged
//! ingest"): a publisher's hello, an ack once every line up to a pseq is settled, a resend
//! acknowledged again and stored once; on the NDJSON port, the protobuf port and
//! `POST /api/publish`. Scaled out, through a failover: tests/nats_standby.rs.

mod support;

use std::collections::BTreeMap;

use prost::Message as _;
use serde_json::Value;
use support::{Ingest, TestRelay, http_with, tick_line};
use tickrelay::Config;
use tickrelay::proto;

fn hello(publisher: &str, pseq: u64) -> String {
    format!(r#"{{"type":"hello","publisher":"{publisher}","pseq":{pseq}}}"#)
}

/// Reads replies until the ack of `pseq`; returns it and the error lines before it.
async fn until_ack(ingest: &mut Ingest, pseq: u64) -> (Value, Vec<Value>) {
    let mut errors = Vec::new();
    loop {
        let reply = ingest.next_reply().await;
        match reply["type"].as_str() {
            Some("ack") if reply["pseq"].as_u64() >= Some(pseq) => return (reply, errors),
            Some("ack") => {}
            _ => errors.push(reply),
        }
    }
}

/// Lines `from..=to` of a run of A ticks whose price is their pseq.
fn lines(symbol: &str, from: u64, to: u64) -> Vec<String> {
    (from..=to)
        .map(|i| tick_line(symbol, i as f64, i))
        .collect()
}

#[tokio::test]
async fn a_resend_after_a_reconnect_is_acknowledged_again_and_stored_once() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=ACK-A").await;
    let mut first = relay.ingest().await;
    first.send_lines(&[hello("feed-1", 1)]).await;
    first.send_lines(&lines("ACK-A", 1, 100)).await;
    let (ack, errors) = until_ack(&mut first, 100).await;
    assert_eq!(
        (ack["pseq"].as_u64(), ack["duplicates"].as_u64()),
        (Some(100), Some(0))
    );
    assert!(errors.is_empty(), "{errors:?}");
    drop(first);
    // The publisher did not see the acks of 51..100 (say): it sends them again, then more.
    let mut second = relay.ingest().await;
    second.send_lines(&[hello("feed-1", 51)]).await;
    second.send_lines(&lines("ACK-A", 51, 150)).await;
    let (ack, _) = until_ack(&mut second, 150).await;
    assert_eq!(
        (ack["pseq"].as_u64(), ack["duplicates"].as_u64()),
        (Some(150), Some(50))
    );
    // Every tick once, in order, seq = pseq here.
    let want = BTreeMap::from([("ACK-A".to_owned(), 150)]);
    let seen = client.ticks_until(&want).await;
    assert_eq!(seen["ACK-A"], (1..=150).collect::<Vec<u64>>());
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["ingest"]["duplicates"], 50);
    // Another publisher's pseqs are its own.
    let mut other = relay.ingest().await;
    other.send_lines(&[hello("feed-2", 51)]).await;
    other.send_lines(&lines("ACK-A", 151, 151)).await;
    let (ack, _) = until_ack(&mut other, 51).await;
    assert_eq!(ack["duplicates"], 0);
    let seen = client
        .ticks_until(&BTreeMap::from([("ACK-A".to_owned(), 151)]))
        .await;
    assert_eq!(seen["ACK-A"], vec![151]);
}

#[tokio::test]
async fn bad_lines_take_their_pseq_and_are_answered_before_the_ack_that_covers_them() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut ingest = relay.ingest().await;
    let mut sent = vec![hello("feed-b", 10)];
    sent.push(tick_line("ACK-B", 1.0, 1));
    sent.push("not json".into());
    sent.push(String::new());
    sent.push(tick_line("ACK-B", 2.0, 2));
    sent.push("{\"symbol\":\"\"}".into());
    ingest.send_lines(&sent).await;
    // pseqs 10..=14 on lines 2..=6.
    let (ack, errors) = until_ack(&mut ingest, 14).await;
    assert_eq!(ack["pseq"], 14);
    let lines: Vec<u64> = errors.iter().map(|e| e["line"].as_u64().unwrap()).collect();
    assert_eq!(lines, vec![3, 6], "{errors:?}");
    relay.wait_sequenced("ACK-B", 2).await;
}

#[tokio::test]
async fn a_bad_hello_or_one_after_the_first_line_is_refused_and_closes_the_connection() {
    let relay = TestRelay::start(Config::for_tests()).await;
    for (sent, line) in [
        (vec![hello("bad id", 1)], 1),
        (vec![hello("feed", 0)], 1),
        (vec![tick_line("ACK-C", 1.0, 1), hello("feed", 1)], 2),
    ] {
        let mut ingest = relay.ingest().await;
        ingest.send_lines(&sent).await;
        let reply = ingest.next_reply().await;
        assert_eq!(
            (reply["code"].as_str(), reply["line"].as_u64()),
            (Some("bad_hello"), Some(line)),
            "{sent:?}: {reply}"
        );
        let end = support::within("the relay to close", ingest.replies.next_line()).await;
        assert!(matches!(end, Ok(None)), "{sent:?}: closed after the answer");
    }
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["errors"]["bad_hello"], 3);
}

#[tokio::test]
async fn the_protobuf_port_takes_a_hello_message_and_acks_in_json() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut bytes = Vec::new();
    let hello = proto::IngestHello {
        hello: Some(proto::PublisherHello {
            publisher: "pb-feed".into(),
            pseq: 7,
        }),
    };
    hello.encode_length_delimited(&mut bytes).unwrap();
    for i in 1..=3u64 {
        let tick = proto::Tick {
            symbol: "ACK-P".into(),
            kind: proto::TickKind::Trade as i32,
            price: Some(i as f64),
            ts_ns: i,
            ..Default::default()
        };
        tick.encode_length_delimited(&mut bytes).unwrap();
    }
    let mut ingest = Ingest::connect(relay.ingest_protobuf).await;
    ingest.send_raw(&bytes).await;
    let (ack, errors) = until_ack(&mut ingest, 9).await;
    assert_eq!((ack["pseq"].as_u64(), errors.len()), (Some(9), 0));
    // The same three again: acknowledged, not stored.
    let mut again = Ingest::connect(relay.ingest_protobuf).await;
    again.send_raw(&bytes).await;
    let (ack, _) = until_ack(&mut again, 9).await;
    assert_eq!(ack["duplicates"], 3);
    relay.wait_sequenced("ACK-P", 3).await;
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["ingest"]["duplicates"], 3);
}

#[tokio::test]
async fn post_api_publish_with_a_publisher_and_pseq_answers_once_durable_and_dedupes() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let host = relay.http.to_string();
    let body = lines("ACK-H", 1, 3).join("\n");
    let post = |pseq: &'static str| {
        let (host, body) = (host.clone(), body.clone());
        async move {
            let headers = [
                ("host", host.as_str()),
                ("tickrelay-publisher", "http-feed"),
                ("tickrelay-pseq", pseq),
            ];
            let (status, text) =
                http_with(relay.http, "POST", "/api/publish", &headers, &body).await;
            (status, serde_json::from_str::<Value>(&text).unwrap())
        }
    };
    let (status, reply) = post("1").await;
    assert_eq!(status, 202, "{reply}");
    assert_eq!(
        (reply["pseq"].as_u64(), reply["duplicates"].as_u64()),
        (Some(3), Some(0))
    );
    // Resent with pseq 2: items 2 and 3 were stored (duplicates), the third is new (pseq 4).
    let (status, reply) = post("2").await;
    assert_eq!(status, 202);
    assert_eq!(
        (reply["pseq"].as_u64(), reply["duplicates"].as_u64()),
        (Some(4), Some(2))
    );
    relay.wait_sequenced("ACK-H", 4).await;
    let (status, reply) = post("x").await;
    assert_eq!((status, reply["code"].as_str()), (400, Some("bad_hello")));
    let headers = [("host", host.as_str()), ("tickrelay-publisher", "only")];
    let (status, _) = http_with(relay.http, "POST", "/api/publish", &headers, &body).await;
    assert_eq!(status, 400, "a publisher without a pseq");
}
