//! Several messages per frame (`?batch=on`), over real WebSockets: what a client has pending
//! at a write goes out as one frame (json: newline-separated messages; protobuf: one
//! `ServerBatch`; gzip: one sync-flushed piece of the stream), every message once and in
//! order, frames within `--batch-max-bytes`; a client without `batch` is unchanged.

mod support;

use std::collections::BTreeMap;

use flate2::{Decompress, FlushDecompress};
use prost::Message as _;
use serde_json::Value;
use support::{TestRelay, WsClient, slow_client, wait_for};
use tickrelay::Config;
use tickrelay::proto;
use tokio_tungstenite::tungstenite::Message;

/// A relay whose clients can hold a large backlog without being disconnected, with a
/// small kernel send buffer, so a client that stops reading makes messages wait at the
/// relay (where a batch forms) instead of in the kernel.
fn backlog_config() -> Config {
    Config {
        outbox_bytes: 64 * 1024 * 1024,
        outbox_max_age: std::time::Duration::from_secs(300),
        send_buffer_bytes: 8 * 1024,
        ..Config::for_tests()
    }
}

/// How a frame turns back into messages, per encoding.
enum Decoder {
    Json,
    Protobuf,
    Gzip(Box<Decompress>),
}

impl Decoder {
    /// The messages of one frame, as JSON values (protobuf: ticks as `{"symbol","seq"}`).
    fn messages(&mut self, frame: Message) -> Vec<Value> {
        match (self, frame) {
            (Self::Json, Message::Text(text)) => split_ndjson(&text),
            (Self::Protobuf, Message::Binary(bytes)) => {
                let batch =
                    proto::ServerBatch::decode(&bytes[..]).expect("every frame is a ServerBatch");
                assert!(
                    !batch.messages.is_empty(),
                    "a batch holds a message or more"
                );
                batch.messages.into_iter().map(proto_to_json).collect()
            }
            (Self::Gzip(inflate), Message::Binary(bytes)) => {
                assert!(
                    bytes.ends_with(&[0, 0, 0xFF, 0xFF]),
                    "one sync flush per frame"
                );
                split_ndjson(&inflate_frame(inflate, &bytes))
            }
            (_, other) => panic!("unexpected frame {other:?}"),
        }
    }
}

fn split_ndjson(text: &str) -> Vec<Value> {
    assert!(!text.ends_with('\n'), "no newline after the last message");
    text.split('\n')
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line:?}")))
        .collect()
}

fn proto_to_json(message: proto::ServerMessage) -> Value {
    use proto::server_message::Msg;
    match message.msg.expect("msg set") {
        Msg::Tick(t) => serde_json::json!({"type": "tick", "symbol": t.symbol, "seq": t.seq}),
        Msg::Welcome(_) => serde_json::json!({"type": "welcome"}),
        Msg::Ack(a) => serde_json::json!({"type": a.op}),
        Msg::Pong(p) => serde_json::json!({"type": "pong", "id": p.id}),
        other => serde_json::json!({"type": format!("{other:?}")}),
    }
}

fn inflate_frame(inflate: &mut Decompress, frame: &[u8]) -> String {
    let mut out = Vec::with_capacity(frame.len() * 8 + 256);
    let start = inflate.total_in();
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(64 * 1024);
        }
        let consumed = usize::try_from(inflate.total_in() - start).expect("small");
        inflate
            .decompress_vec(&frame[consumed..], &mut out, FlushDecompress::Sync)
            .expect("valid gzip stream");
        let consumed = usize::try_from(inflate.total_in() - start).expect("small");
        if consumed == frame.len() && out.len() < out.capacity() {
            break;
        }
    }
    String::from_utf8(out).expect("UTF-8 JSON")
}

/// Reads frames until `symbol` reached `last`; returns the tick seqs in arrival order and
/// the number of messages each frame held.
async fn read_ticks(
    client: &mut WsClient,
    decoder: &mut Decoder,
    symbol: &str,
    last: u64,
) -> (Vec<u64>, Vec<usize>) {
    let mut seqs = Vec::new();
    let mut per_frame = Vec::new();
    while seqs.last() != Some(&last) {
        let messages = decoder.messages(client.next_message().await);
        per_frame.push(messages.len());
        for message in messages {
            if message["type"] == "tick" {
                assert_eq!(message["symbol"], symbol);
                seqs.push(message["seq"].as_u64().expect("a seq"));
            }
        }
    }
    (seqs, per_frame)
}

/// Waits until the relay holds at least `bytes` for the one session (it stopped reading).
async fn wait_for_backlog(relay: &TestRelay, bytes: u64) {
    wait_for("a backlog at the relay", || async {
        let (_, sessions) = relay.get("/api/sessions").await;
        sessions["sessions"].as_array().is_some_and(|all| {
            all.iter()
                .any(|s| s["outbox_bytes"].as_u64() >= Some(bytes))
        })
    })
    .await;
}

/// Publishes `ticks` to a client that does not read until the relay holds a backlog for
/// it, then reads everything.
async fn batches_carry_every_message_once_in_order(
    encoding: &str,
    mut decoder: Decoder,
    ticks: u64,
) {
    let relay = TestRelay::start(backlog_config()).await;
    let query = format!("?symbols=B&batch=on&encoding={encoding}");
    let mut client = slow_client(&relay, &query).await;
    relay.publish_many("B", ticks).await;
    wait_for_backlog(&relay, 16 * 1024).await;
    let (seqs, per_frame) = read_ticks(&mut client, &mut decoder, "B", ticks).await;
    assert_eq!(
        seqs,
        (1..=ticks).collect::<Vec<u64>>(),
        "every tick once, in order"
    );
    assert!(
        per_frame.iter().any(|&n| n > 1),
        "a backlog goes out as frames of several messages: {per_frame:?}"
    );
    let messages: usize = per_frame.iter().sum();
    assert!(per_frame.len() < messages, "{} frames", per_frame.len());
}

#[tokio::test]
async fn json_batches_are_newline_separated_messages() {
    batches_carry_every_message_once_in_order("json", Decoder::Json, 3_000).await;
}

#[tokio::test]
async fn protobuf_batches_are_server_batches() {
    batches_carry_every_message_once_in_order("protobuf", Decoder::Protobuf, 3_000).await;
}

#[tokio::test]
async fn gzip_batches_are_one_sync_flush_each() {
    // A batch compresses to a few bytes per tick: more of them fill the kernel's buffers.
    let inflate = Box::new(Decompress::new_gzip(15));
    batches_carry_every_message_once_in_order("gzip", Decoder::Gzip(inflate), 30_000).await;
}

#[tokio::test]
async fn a_batch_frame_stays_within_the_cap() {
    let cap = 2_000;
    let relay = TestRelay::start(Config {
        batch_max_bytes: cap,
        ..backlog_config()
    })
    .await;
    let mut client = slow_client(&relay, "?symbols=C&batch=on").await;
    relay.publish_many("C", 2_000).await;
    wait_for_backlog(&relay, 32 * 1024).await;
    let mut seqs = Vec::new();
    let mut several = 0;
    while seqs.last() != Some(&2_000) {
        let Message::Text(text) = client.next_message().await else {
            panic!("json frames are text")
        };
        assert!(
            text.len() <= cap,
            "{} bytes over the {cap}-byte cap",
            text.len()
        );
        let messages = split_ndjson(&text);
        several += usize::from(messages.len() > 1);
        seqs.extend(
            messages
                .iter()
                .filter(|m| m["type"] == "tick")
                .map(|m| m["seq"].as_u64().unwrap()),
        );
    }
    assert_eq!(seqs, (1..=2_000).collect::<Vec<u64>>());
    assert!(
        several > 0,
        "frames under the cap still carry several messages"
    );
}

#[tokio::test]
async fn replies_and_ticks_share_batches_in_order() {
    let relay = TestRelay::start(backlog_config()).await;
    let mut client = WsClient::connect(&relay.url("?symbols=D&batch=on")).await;
    let first = split_ndjson(&text_of(client.next_message().await));
    assert_eq!(first[0]["type"], "welcome", "welcome first: {first:?}");
    client.send_json(r#"{"op":"ping","id":7}"#).await;
    let pong = split_ndjson(&text_of(client.next_message().await));
    assert_eq!(pong, vec![serde_json::json!({"type":"pong","id":7})]);
    relay.publish_many("D", 500).await;
    let mut seen = BTreeMap::<String, Vec<u64>>::new();
    while seen.get("D").and_then(|v| v.last()) != Some(&500) {
        for message in split_ndjson(&text_of(client.next_message().await)) {
            if message["type"] == "tick" {
                seen.entry("D".into())
                    .or_default()
                    .push(message["seq"].as_u64().unwrap());
            }
        }
    }
    assert_eq!(seen["D"], (1..=500).collect::<Vec<u64>>());
}

#[tokio::test]
async fn without_batch_every_frame_is_one_message() {
    let relay = TestRelay::start(backlog_config()).await;
    let mut client = slow_client(&relay, "?symbols=E").await;
    relay.publish_many("E", 2_000).await;
    wait_for_backlog(&relay, 64 * 1024).await;
    let mut seqs = Vec::new();
    while seqs.last() != Some(&2_000) {
        let text = text_of(client.next_message().await);
        assert!(!text.contains('\n'), "one JSON object per frame: {text:?}");
        let message: Value = serde_json::from_str(&text).unwrap();
        if message["type"] == "tick" {
            seqs.push(message["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(seqs, (1..=2_000).collect::<Vec<u64>>());
}

#[tokio::test]
async fn a_bad_batch_value_is_refused_before_the_upgrade() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let refused = support::within(
        "the refused upgrade",
        tokio_tungstenite::connect_async(relay.url("?symbols=A&batch=yes")),
    )
    .await
    .unwrap_err();
    let tokio_tungstenite::tungstenite::Error::Http(response) = refused else {
        panic!("expected an HTTP refusal, got {refused}")
    };
    assert_eq!(response.status(), 400);
    let body: Value = serde_json::from_slice(response.body().as_deref().unwrap()).unwrap();
    assert_eq!(body["code"], "bad_request");
    let message = body["message"].as_str().unwrap();
    assert!(message.contains("on or off"), "{body}");
}

fn text_of(message: Message) -> String {
    match message {
        Message::Text(text) => text.to_string(),
        other => panic!("a JSON client gets text frames, got {other:?}"),
    }
}
