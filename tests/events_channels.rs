//! Event channels over real sockets: events published by `POST /api/events` and the NDJSON
//! ingest arrive byte for byte in JSON, protobuf and gzip, with a per-channel seq, a
//! snapshot on subscribe and resume from the replay ring, and never through `*`.

mod support;

use flate2::{Decompress, FlushDecompress};
use prost::Message as _;
use serde_json::Value;
use support::{TestRelay, WsClient, tick_line, wait_for};
use tickrelay::Config;
use tickrelay::proto::{self, server_message};
use tokio_tungstenite::tungstenite::Message;

/// Published with odd spacing and escapes on purpose: the relay must not re-serialize it.
const DATA: &str =
    r#"{ "headline" : "Fed holds \u0022rates\u0022", "n": 1.50, "tags":["a" ,"b"] }"#;

fn event_line(channel: &str, data: &str) -> String {
    format!(r#"{{"channel":"{channel}","data":{data},"ts_ns":1764000000000000000}}"#)
}

#[tokio::test]
async fn events_arrive_byte_for_byte_in_all_three_encodings() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut json = relay.client("?channels=news").await;
    let mut protobuf = WsClient::connect(&relay.url("?channels=news&encoding=protobuf")).await;
    let mut gzip = Gzip::connect(&relay.url("?channels=news&encoding=gzip")).await;
    let Some(server_message::Msg::Welcome(welcome)) = next_server(&mut protobuf).await.msg else {
        panic!("protobuf sessions open with Welcome");
    };
    assert_eq!(welcome.channels, vec!["news".to_owned()]);
    let welcome: Value = serde_json::from_str(&gzip.next_text().await).unwrap();
    assert_eq!(welcome["channels"], serde_json::json!(["news"]));

    let (status, body) = relay.post("/api/events", &event_line("news", DATA)).await;
    assert_eq!(
        (status, &body["accepted"]),
        (202, &Value::from(1)),
        "{body}"
    );

    let expected = format!(
        r#"{{"type":"event","channel":"news","seq":1,"ts_ns":1764000000000000000,"data":{DATA}}}"#
    );
    assert_eq!(next_text(&mut json).await, expected);
    assert_eq!(gzip.next_text().await, expected);
    let Some(server_message::Msg::Event(event)) = next_server(&mut protobuf).await.msg else {
        panic!("protobuf clients get an Event");
    };
    assert_eq!(
        (event.channel.as_str(), event.seq, event.ts_ns),
        ("news", 1, 1_764_000_000_000_000_000)
    );
    assert_eq!(&event.data[..], DATA.as_bytes());
}

#[tokio::test]
async fn channels_have_their_own_seq_snapshot_and_resume() {
    // One shard: once `live` has seen an event, the history late subscribers read has it too.
    let relay = TestRelay::start(Config {
        shards: 1,
        ..Config::for_tests()
    })
    .await;
    let mut star = relay.client("?symbols=*").await;
    let mut live = relay.client("?channels=news").await;
    // A symbol of the same name is another key: its ticks do not advance the channel's seq.
    let mut lines: Vec<String> = vec![tick_line("news", 1.0, 1)];
    lines.extend((1..=5).map(|i| event_line("news", &format!(r#"{{"i":{i}}}"#))));
    relay.ingest().await.send_lines(&lines).await;
    for seq in 1..=5u64 {
        let event = live.next_json().await;
        assert_eq!(
            (
                event["type"].as_str(),
                event["seq"].as_u64(),
                &event["data"]["i"]
            ),
            (Some("event"), Some(seq), &Value::from(seq)),
            "{event}"
        );
    }
    // `*` is every symbol, never a channel.
    let tick = star.next_json().await;
    assert_eq!(
        (tick["type"].as_str(), tick["symbol"].as_str()),
        (Some("tick"), Some("news"))
    );

    let mut late = relay.client("?channels=news").await;
    let snapshot = late.next_json().await;
    assert_eq!(
        (
            snapshot["type"].as_str(),
            snapshot["channel"].as_str(),
            snapshot["seq"].as_u64()
        ),
        (Some("snapshot"), Some("news"), Some(5))
    );
    assert_eq!(snapshot["data"], serde_json::json!({"i": 5}));

    let mut resumed = relay
        .client(&format!("?resume_channels=news:2&epoch={}", relay.epoch()))
        .await;
    let seqs: Vec<u64> = [
        resumed.next_json().await,
        resumed.next_json().await,
        resumed.next_json().await,
    ]
    .iter()
    .map(|e| e["seq"].as_u64().unwrap())
    .collect();
    assert_eq!(seqs, vec![3, 4, 5], "exactly the missed events, in order");

    // The control messages take channels too, with the same acks.
    let mut control = relay.client("").await;
    control
        .send_json(r#"{"op":"subscribe","symbols":["BTC-USD"],"channels":["news","alerts"]}"#)
        .await;
    let ack = control.next_json().await;
    assert_eq!(ack["type"], "subscribed");
    assert_eq!(ack["symbols"], serde_json::json!(["BTC-USD"]));
    assert_eq!(ack["channels"], serde_json::json!(["news", "alerts"]));
    assert_eq!(control.next_json().await["seq"], 5, "news snapshot");
    control
        .send_json(r#"{"op":"unsubscribe","channels":["news"]}"#)
        .await;
    assert_eq!(control.next_json().await["type"], "unsubscribed");
    relay
        .post("/api/events", &event_line("alerts", "true"))
        .await;
    let alert = control.next_json().await;
    assert_eq!(
        (alert["channel"].as_str(), &alert["data"]),
        (Some("alerts"), &Value::Bool(true))
    );
}

#[tokio::test]
async fn bad_events_are_refused_with_typed_errors() {
    let relay = TestRelay::start(Config {
        max_event_bytes: 32,
        ..Config::for_tests()
    })
    .await;
    let body = format!("{}\n{}", event_line("news", "1"), r#"{"channel":"news"}"#);
    let (status, reply) = relay.post("/api/events", &body).await;
    assert_eq!(status, 400, "{reply}");
    assert_eq!(
        (
            reply["code"].as_str(),
            reply["line"].as_u64(),
            reply["field"].as_str()
        ),
        (Some("missing_field"), Some(2), Some("data")),
        "all or nothing, the bad line named"
    );
    for (body, code) in [
        (event_line("bad channel", "1"), "invalid_channel"),
        (event_line("user:", "1"), "invalid_channel"),
        (
            event_line("news", r#""0123456789012345678901234567890123""#),
            "event_too_large",
        ),
        (event_line("news", "{nope}"), "bad_json"),
        (
            r#"[{"channel":"news","data":1,"extra":2}]"#.to_owned(),
            "unknown_field",
        ),
    ] {
        let (status, reply) = relay.post("/api/events", &body).await;
        assert_eq!(
            (status, reply["code"].as_str()),
            (400, Some(code)),
            "{body}: {reply}"
        );
    }
    // On the ingest port a bad event line is answered and skipped; the next one goes through.
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[
            r#"{"channel":"a b","data":1}"#.to_owned(),
            event_line("ok", "2"),
        ])
        .await;
    let reply = ingest.next_reply().await;
    assert_eq!(
        (reply["line"].as_u64(), reply["code"].as_str()),
        (Some(1), Some("invalid_channel"))
    );
    let mut client = relay.client("?channels=ok").await;
    assert_eq!(
        client.next_json().await["data"],
        2,
        "snapshot of the good line"
    );

    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"subscribe","channels":["no way"]}"#)
        .await;
    let error = client.next_json().await;
    assert_eq!(
        (error["type"].as_str(), error["code"].as_str()),
        (Some("error"), Some("invalid_channel"))
    );
    wait_for("invalid_channel counted", || async {
        relay.get("/stats").await.1["errors"]["invalid_channel"].as_u64() >= Some(3)
    })
    .await;
}

async fn next_text(client: &mut WsClient) -> String {
    match client.next_message().await {
        Message::Text(text) => text.to_string(),
        other => panic!("expected text, got {other:?}"),
    }
}

async fn next_server(client: &mut WsClient) -> proto::ServerMessage {
    match client.next_message().await {
        Message::Binary(bytes) => proto::ServerMessage::decode(&bytes[..]).expect("ServerMessage"),
        other => panic!("expected binary, got {other:?}"),
    }
}

/// A gzip client: one inflater for the connection's stream.
struct Gzip {
    ws: WsClient,
    inflate: Decompress,
}

impl Gzip {
    async fn connect(url: &str) -> Self {
        Self {
            ws: WsClient::connect(url).await,
            inflate: Decompress::new_gzip(15),
        }
    }

    async fn next_text(&mut self) -> String {
        let Message::Binary(frame) = self.ws.next_message().await else {
            panic!("gzip clients get binary frames");
        };
        let mut out = Vec::with_capacity(4096);
        let start = self.inflate.total_in();
        while ((self.inflate.total_in() - start) as usize) < frame.len() {
            let offset = (self.inflate.total_in() - start) as usize;
            out.reserve(4096);
            self.inflate
                .decompress_vec(&frame[offset..], &mut out, FlushDecompress::Sync)
                .expect("inflate");
        }
        String::from_utf8(out).expect("utf-8 JSON")
    }
}
