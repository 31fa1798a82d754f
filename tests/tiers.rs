//! Rate tiers over real WebSockets (`SYMBOL@TIER`, `CHANNEL@TIER`): at most one frame per
//! interval per key, the newest value, `from_seq` chaining exactly onto the previous frame's
//! `seq`, the interval's trades added up; raw subscribers beside them unchanged; snapshot,
//! resume, changing tier in place, unknown tiers and protobuf.

mod support;

use std::time::{Duration, Instant};

use prost::Message as _;
use serde_json::Value;
use support::{Ingest, TestRelay, WsClient, tick_line, within};
use tickrelay::Config;
use tickrelay::proto;
use tokio_tungstenite::tungstenite::Message;

/// Publishes `count` trades of `symbol` spread over about `span`, price 100 + seq, size 0.5.
async fn publish_over(
    ingest: &mut Ingest,
    symbol: &str,
    seqs: std::ops::RangeInclusive<u64>,
    span: Duration,
) {
    let count = seqs.clone().count() as u32;
    let pause = span / count.max(1);
    for seq in seqs {
        ingest.send_lines(&[trade(symbol, seq)]).await;
        tokio::time::sleep(pause).await;
    }
}

fn trade(symbol: &str, seq: u64) -> String {
    format!(
        r#"{{"symbol":"{symbol}","price":{},"size":0.5,"ts_ns":{seq}}}"#,
        100 + seq
    )
}

/// Reads tier frames of `symbol` until one reaches `last`; returns them (ticks only).
async fn tier_frames_until(client: &mut WsClient, last: u64) -> Vec<Value> {
    let mut frames = Vec::new();
    while frames
        .last()
        .is_none_or(|f: &Value| f["seq"].as_u64() < Some(last))
    {
        let message = client.next_json().await;
        if message["type"] == "tick" {
            frames.push(message);
        }
    }
    frames
}

#[tokio::test]
async fn a_tier_sends_the_newest_tick_once_per_interval_chaining_from_seq() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut ingest = relay.ingest().await;
    ingest.send_lines(&[trade("T", 1)]).await;
    relay.wait_sequenced("T", 1).await;
    let mut raw = relay.client("?symbols=T").await;
    let mut tier = relay.client("?symbols=T@100ms").await;
    let snapshot = tier.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["tier"].as_str()),
        (Some("snapshot"), Some("100ms")),
        "{snapshot}"
    );
    assert_eq!(
        (snapshot["seq"].as_u64(), snapshot["from_seq"].as_u64()),
        (Some(1), Some(1))
    );
    let started = Instant::now();
    publish_over(&mut ingest, "T", 2..=200, Duration::from_millis(1200)).await;
    let frames = tier_frames_until(&mut tier, 200).await;
    let elapsed = started.elapsed();
    // A slower box only makes fewer frames: the bound cannot fail for speed.
    let most = (elapsed.as_millis() / 100) as usize + 2;
    assert!(
        frames.len() <= most,
        "{} frames in {elapsed:?}",
        frames.len()
    );
    assert!(
        frames.len() > 1,
        "a stream, not one frame: {}",
        frames.len()
    );
    let mut next = 2;
    let mut trades = 0;
    for frame in &frames {
        let (from, seq) = (
            frame["from_seq"].as_u64().unwrap(),
            frame["seq"].as_u64().unwrap(),
        );
        assert_eq!(
            from, next,
            "from_seq chains onto the previous frame: {frame}"
        );
        assert_eq!(frame["tier"], "100ms");
        assert_eq!(
            frame["price"].as_f64(),
            Some(100.0 + seq as f64),
            "the newest tick"
        );
        assert_eq!(frame["trades"].as_u64(), Some(seq - from + 1), "{frame}");
        assert_eq!(
            frame["volume"].as_f64(),
            Some(0.5 * (seq - from + 1) as f64)
        );
        assert_eq!(frame["high"].as_f64(), Some(100.0 + seq as f64));
        assert_eq!(frame["low"].as_f64(), Some(100.0 + from as f64));
        trades += frame["trades"].as_u64().unwrap();
        next = seq + 1;
    }
    assert_eq!(trades, 199, "every trade counted once");
    let seqs = raw.ticks_until(&[("T".to_string(), 200)].into()).await;
    assert_eq!(
        seqs["T"],
        (2..=200).collect::<Vec<u64>>(),
        "raw clients get every tick"
    );
}

#[tokio::test]
async fn a_quiet_key_sends_nothing_and_a_new_subscriber_chains_onto_the_snapshot() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut ingest = relay.ingest().await;
    let mut first = relay.client("?symbols=Q@100ms").await;
    ingest.send_lines(&[trade("Q", 1), trade("Q", 2)]).await;
    let frame = tier_frames_until(&mut first, 2).await.pop().unwrap();
    assert_eq!(
        (frame["from_seq"].as_u64(), frame["seq"].as_u64()),
        (Some(1), Some(2))
    );
    // The second subscriber's snapshot is the last frame; the next frame chains onto it.
    let mut second = relay.client("?symbols=Q@100ms").await;
    let snapshot = second.next_json().await;
    assert_eq!(
        (snapshot["type"].as_str(), snapshot["seq"].as_u64()),
        (Some("snapshot"), Some(2))
    );
    // Quiet for several intervals: no frame (a ping answered proves nothing was queued).
    tokio::time::sleep(Duration::from_millis(350)).await;
    second.send_json(r#"{"op":"ping","id":1}"#).await;
    assert_eq!(
        second.next_json().await["type"],
        "pong",
        "no frame while nothing changed"
    );
    ingest.send_lines(&[trade("Q", 3)]).await;
    for client in [&mut first, &mut second] {
        let frame = tier_frames_until(client, 3).await.pop().unwrap();
        assert_eq!(
            (frame["from_seq"].as_u64(), frame["seq"].as_u64()),
            (Some(3), Some(3))
        );
    }
}

#[tokio::test]
async fn changing_tier_in_place_replaces_the_old_tier() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=R@1s").await;
    client
        .send_json(r#"{"op":"subscribe","symbols":["R@100ms"]}"#)
        .await;
    let replaced = client.next_json().await;
    assert_eq!(replaced["type"], "unsubscribed", "{replaced}");
    assert_eq!(replaced["symbols"], serde_json::json!(["R@1s"]));
    let added = client.next_json().await;
    assert_eq!(added["type"], "subscribed");
    assert_eq!(added["symbols"], serde_json::json!(["R@100ms"]));
    let mut ingest = relay.ingest().await;
    ingest.send_lines(&[trade("R", 1)]).await;
    let frame = tier_frames_until(&mut client, 1).await.pop().unwrap();
    assert_eq!(frame["tier"], "100ms", "only the new tier: {frame}");
}

#[tokio::test]
async fn an_unknown_tier_is_refused_naming_the_offered_ones() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("").await;
    client
        .send_json(r#"{"op":"subscribe","symbols":["R@2s"]}"#)
        .await;
    let error = client.next_json().await;
    assert_eq!(error["code"], "invalid_symbol", "{error}");
    let message = error["message"].as_str().unwrap();
    assert!(message.contains("100ms, 250ms, 1s or 5s"), "{message}");
    client
        .send_json(r#"{"op":"subscribe","symbols":["*@1s"]}"#)
        .await;
    assert_eq!(
        client.next_json().await["code"],
        "invalid_symbol",
        "no tier of *"
    );
}

#[tokio::test]
async fn a_resume_on_a_tier_gets_one_frame_standing_for_what_it_missed() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut ingest = relay.ingest().await;
    let mut keeper = relay.client("?symbols=S@100ms").await;
    ingest
        .send_lines(&(1..=10).map(|s| trade("S", s)).collect::<Vec<_>>())
        .await;
    let last = tier_frames_until(&mut keeper, 10).await.pop().unwrap();
    assert_eq!(last["seq"], 10);
    // A client that had seq 4 of the tier comes back.
    let mut back = relay
        .client(&format!("?resume=S@100ms:4&epoch={}", relay.epoch()))
        .await;
    let caught_up = back.next_json().await;
    assert_eq!(caught_up["type"], "tick", "{caught_up}");
    assert_eq!(
        (caught_up["from_seq"].as_u64(), caught_up["seq"].as_u64()),
        (Some(5), Some(10))
    );
    assert_eq!(caught_up["trades"], 6);
    ingest.send_lines(&[trade("S", 11)]).await;
    let next = tier_frames_until(&mut back, 11).await.pop().unwrap();
    assert_eq!(
        next["from_seq"], 11,
        "the next frame chains onto the catch-up"
    );
}

#[tokio::test]
async fn a_channel_tier_sends_the_newest_event_and_what_it_stands_for() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?channels=news@100ms").await;
    let events: Vec<String> = (1..=5)
        .map(|i| format!(r#"{{"channel":"news","data":{{"n":{i}}}}}"#))
        .collect();
    let mut ingest = relay.ingest().await;
    ingest.send_lines(&events).await;
    let frame = loop {
        let message = client.next_json().await;
        if message["type"] == "event" && message["seq"] == 5 {
            break message;
        }
    };
    assert_eq!(frame["tier"], "100ms");
    assert_eq!(frame["data"], serde_json::json!({"n": 5}));
    assert!(frame["from_seq"].as_u64() <= Some(5));
    assert!(
        frame.get("trades").is_none(),
        "no trades on a channel: {frame}"
    );
}

#[tokio::test]
async fn protobuf_tier_frames_carry_the_tier_fields() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = WsClient::connect(&relay.url("?symbols=P@100ms&encoding=protobuf")).await;
    let _welcome = client.next_message().await;
    let mut ingest = relay.ingest().await;
    ingest.send_lines(&[trade("P", 1), trade("P", 2)]).await;
    let tick = loop {
        let Message::Binary(bytes) = client.next_message().await else {
            panic!("binary frames")
        };
        let message = proto::ServerMessage::decode(&bytes[..]).unwrap();
        if let Some(proto::server_message::Msg::Tick(tick)) = message.msg
            && tick.seq == 2
        {
            break tick;
        }
    };
    assert_eq!(
        (tick.tier.as_str(), tick.from_seq, tick.trades),
        ("100ms", 1, 2)
    );
    assert_eq!(
        (tick.high, tick.low, tick.volume),
        (Some(102.0), Some(101.0), 1.0)
    );
}

#[tokio::test]
async fn tier_keys_and_raw_keys_of_one_symbol_are_separate_subscriptions() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=U,U@100ms").await;
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[trade("U", 1), tick_line("U", 2.0, 2)])
        .await;
    let mut raw = Vec::new();
    let mut tiered = None;
    while raw.len() < 2 || tiered.is_none() {
        let message = within("ticks of U", client.next_json()).await;
        if message["type"] != "tick" {
            continue;
        }
        if message.get("tier").is_some() {
            tiered = Some(message);
        } else {
            raw.push(message["seq"].as_u64().unwrap());
        }
    }
    assert_eq!(raw, vec![1, 2]);
}
