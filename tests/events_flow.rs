//! Events through the rest of the tick machinery: protobuf clients subscribe to channels
//! with `subscribe_channels` and get `ChannelAck`, `EventSnapshot` and `Event`; a conflating
//! slow client keeps the newest event per channel and is told the exact skipped seqs in a
//! `gap` naming the channel.

mod support;

use futures_util::SinkExt;
use prost::Message as _;
use support::{TestRelay, WsClient, wait_for};
use tickrelay::Config;
use tickrelay::config::SlowPolicy;
use tickrelay::proto::{self, client_message, server_message};
use tokio_tungstenite::tungstenite::Message;

async fn next_server(client: &mut WsClient) -> proto::ServerMessage {
    match client.next_message().await {
        Message::Binary(bytes) => proto::ServerMessage::decode(&bytes[..]).expect("ServerMessage"),
        other => panic!("expected binary, got {other:?}"),
    }
}

#[tokio::test]
async fn protobuf_clients_subscribe_to_channels_and_get_events() {
    let relay = TestRelay::start(Config::for_tests()).await;
    relay
        .post(
            "/api/events",
            r#"{"channel":"status.model","data":{"up":true}}"#,
        )
        .await;
    wait_for("the first event is sequenced", || async {
        relay.get("/stats").await.1["ticks_in"].as_u64() >= Some(1)
    })
    .await;
    let mut client = WsClient::connect(&relay.url("?encoding=protobuf")).await;
    let Some(server_message::Msg::Welcome(_)) = next_server(&mut client).await.msg else {
        panic!("Welcome first");
    };
    let subscribe = proto::ClientMessage {
        msg: Some(client_message::Msg::SubscribeChannels(proto::Channels {
            channels: vec!["status.model".into()],
        })),
    };
    client
        .ws
        .send(Message::binary(subscribe.encode_to_vec()))
        .await
        .unwrap();
    assert_eq!(
        next_server(&mut client).await.msg,
        Some(server_message::Msg::ChannelAck(proto::ChannelAck {
            op: "subscribed".into(),
            channels: vec!["status.model".into()],
        }))
    );
    // The first event reached the shard before the subscribe (then: an EventSnapshot) or
    // after it (then: the live Event); either way exactly once, seq 1.
    let first = match next_server(&mut client).await.msg {
        Some(server_message::Msg::EventSnapshot(e) | server_message::Msg::Event(e)) => e,
        other => panic!("the channel's first event, got {other:?}"),
    };
    assert_eq!((first.seq, &first.data[..]), (1, &br#"{"up":true}"#[..]));
    relay
        .post(
            "/api/events",
            r#"{"channel":"status.model","data":{"up":false}}"#,
        )
        .await;
    let Some(server_message::Msg::Event(event)) = next_server(&mut client).await.msg else {
        panic!("an Event");
    };
    assert_eq!((event.seq, &event.data[..]), (2, &br#"{"up":false}"#[..]));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflating_client_gets_the_newest_event_and_an_exact_gap() {
    let relay = TestRelay::start(Config {
        shards: 1,
        slow_policy: SlowPolicy::Conflate,
        outbox_bytes: 16 * 1024,
        send_buffer_bytes: 4096,
        ..Config::for_tests()
    })
    .await;
    let mut slow = support::slow_client(&relay, "?channels=alerts").await;
    assert_eq!(slow.next_json().await["type"], "welcome");
    let padding = "x".repeat(200);
    let lines: Vec<String> = (1..=5_000)
        .map(|i| format!(r#"{{"channel":"alerts","data":{{"i":{i},"pad":"{padding}"}}}}"#))
        .collect();
    relay.ingest().await.send_lines(&lines).await;
    wait_for("conflation happened", || async {
        relay.get("/stats").await.1["shards"][0]["conflated"].as_u64() > Some(0)
    })
    .await;
    let mut next = 1u64;
    let mut gaps = 0;
    while next <= 5_000 {
        let message = slow.next_json().await;
        match message["type"].as_str().unwrap() {
            "event" => {
                assert_eq!(message["seq"].as_u64(), Some(next), "in order: {message}");
                assert_eq!(
                    message["data"]["i"].as_u64(),
                    Some(next),
                    "data is the seq's own"
                );
                next += 1;
            }
            "gap" => {
                assert_eq!(message["channel"], "alerts", "{message}");
                assert!(message.get("symbol").is_none(), "{message}");
                assert_eq!(message["from"].as_u64(), Some(next));
                next = message["to"].as_u64().unwrap() + 1;
                gaps += 1;
            }
            other => panic!("unexpected {other}: {message}"),
        }
    }
    assert!(gaps >= 1, "the slow client was conflated");
}
