//! Per-client encodings over real WebSockets: JSON, protobuf and gzip clients get the same
//! ticks, negotiation by query and by `Sec-WebSocket-Protocol`, protobuf control messages,
//! and gzip replies in the same compressed stream as the ticks.

mod support;

use std::collections::BTreeMap;

use flate2::{Decompress, FlushDecompress};
use prost::Message as _;
use serde_json::Value;
use support::{TestRelay, WAIT, WsClient, tick_line};
use tickrelay::Config;
use tickrelay::proto::{self, client_message, server_message};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::http::header::SEC_WEBSOCKET_PROTOCOL;

#[tokio::test]
async fn json_protobuf_and_gzip_clients_decode_the_same_ticks() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let query = "?symbols=ENC-A,ENC-B,ENC-Q&encoding=";
    let mut json = relay.client(&format!("{query}json")).await;
    let mut protobuf = WsClient::connect(&relay.url(&format!("{query}protobuf"))).await;
    let mut gzip = GzipClient::connect(&relay.url(&format!("{query}gzip"))).await;
    let Some(server_message::Msg::Welcome(welcome)) = next_server(&mut protobuf).await.msg else {
        panic!("a protobuf session opens with Welcome");
    };
    assert_eq!(welcome.encoding, "protobuf");
    let welcome = gzip.next_json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["encoding"].as_str()),
        (Some("welcome"), Some("gzip"))
    );

    let published = published_ticks();
    let mut ingest = relay.ingest().await;
    let lines: Vec<String> = published
        .iter()
        .map(|(line, _)| (*line).to_owned())
        .collect();
    ingest.send_lines(&lines).await;

    let mut from_json = Vec::new();
    let mut json_texts = Vec::new();
    while from_json.len() < published.len() {
        let text = next_text(&mut json).await;
        from_json.push(Decoded::from_json(&text));
        json_texts.push(text);
    }
    let mut from_protobuf = Vec::new();
    while from_protobuf.len() < published.len() {
        match next_server(&mut protobuf).await.msg {
            Some(server_message::Msg::Tick(tick)) => from_protobuf.push(Decoded::from_proto(tick)),
            other => panic!("expected a protobuf Tick, got {other:?}"),
        }
    }
    let mut from_gzip = Vec::new();
    let mut gzip_texts = Vec::new();
    while from_gzip.len() < published.len() {
        let text = gzip.next_text().await;
        from_gzip.push(Decoded::from_json(&text));
        gzip_texts.push(text);
    }

    // Per symbol, in seq order: the order across symbols is not part of the contract.
    let (json_by, protobuf_by, gzip_by) = (
        by_symbol(&from_json),
        by_symbol(&from_protobuf),
        by_symbol(&from_gzip),
    );
    assert_eq!(json_by, protobuf_by, "JSON and protobuf decode identically");
    assert_eq!(json_by, gzip_by, "JSON and gzip decode identically");

    let mut seqs: BTreeMap<&str, u64> = BTreeMap::new();
    let mut expected: BTreeMap<String, Vec<Decoded>> = BTreeMap::new();
    for (_, want) in &published {
        let seq = seqs.entry(want.symbol.as_str()).or_insert(0);
        *seq += 1;
        expected
            .entry(want.symbol.clone())
            .or_default()
            .push(Decoded {
                seq: *seq,
                ..want.clone()
            });
    }
    for (symbol, got) in &json_by {
        for (got, want) in got.iter().zip(&expected[symbol]) {
            assert!(got.recv_ns > 0, "recv_ns is stamped: {got:?}");
            let got = Decoded {
                recv_ns: 0,
                ..got.clone()
            };
            assert_eq!(&got, want, "values pass through every encoding exactly");
        }
        assert_eq!(got.len(), expected[symbol].len());
    }

    // The gzip stream carries byte-for-byte the JSON text a JSON client receives.
    let sorted = |texts: &[String], decoded: &[Decoded]| {
        let mut pairs: Vec<_> = decoded
            .iter()
            .map(|d| (d.symbol.clone(), d.seq))
            .zip(texts.iter().cloned())
            .collect();
        pairs.sort();
        pairs
    };
    assert_eq!(
        sorted(&gzip_texts, &from_gzip),
        sorted(&json_texts, &from_json)
    );
}

#[tokio::test]
async fn encoding_is_negotiated_by_subprotocol_header() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (mut client, protocol) =
        connect_with_protocol(&relay.url("?symbols=NEG-A"), "tickrelay.protobuf").await;
    assert_eq!(
        protocol.as_deref(),
        Some("tickrelay.protobuf"),
        "the 101 names the chosen subprotocol"
    );
    let Some(server_message::Msg::Welcome(welcome)) = next_server(&mut client).await.msg else {
        panic!("protobuf Welcome first");
    };
    assert_eq!(welcome.encoding, "protobuf");
    assert_eq!(welcome.symbols, vec!["NEG-A".to_owned()]);
    relay.publish_many("NEG-A", 1).await;
    let Some(server_message::Msg::Tick(tick)) = next_server(&mut client).await.msg else {
        panic!("protobuf Tick");
    };
    assert_eq!((tick.symbol.as_str(), tick.seq), ("NEG-A", 1));

    // Several offers: the first tickrelay.* one wins and is named in the answer.
    let (client, protocol) =
        connect_with_protocol(&relay.url(""), "chat, tickrelay.gzip, tickrelay.json").await;
    assert_eq!(protocol.as_deref(), Some("tickrelay.gzip"));
    let mut gzip = GzipClient::with_client(client);
    assert_eq!(gzip.next_json().await["encoding"], "gzip");

    // Query and header naming the same encoding agree.
    let (mut client, protocol) =
        connect_with_protocol(&relay.url("?encoding=protobuf"), "tickrelay.protobuf").await;
    assert_eq!(protocol.as_deref(), Some("tickrelay.protobuf"));
    assert!(matches!(
        next_server(&mut client).await.msg,
        Some(server_message::Msg::Welcome(_))
    ));
}

#[tokio::test]
async fn encoding_is_negotiated_by_query_and_defaults_to_json() {
    let relay = TestRelay::start(Config::for_tests()).await;
    for (query, encoding) in [
        ("", "json"),
        ("?encoding=json", "json"),
        ("?encoding=protobuf", "protobuf"),
        ("?encoding=gzip", "gzip"),
    ] {
        let (ws, response) = tokio::time::timeout(
            WAIT,
            tokio_tungstenite::connect_async(relay.url(query).as_str()),
        )
        .await
        .expect("connect in time")
        .expect("upgrade accepted");
        assert!(
            response.headers().get(SEC_WEBSOCKET_PROTOCOL).is_none(),
            "{query}: no subprotocol offered, none answered"
        );
        let mut client = WsClient { ws };
        let seen = match client.next_message().await {
            Message::Text(text) => {
                let welcome: Value = serde_json::from_str(&text).expect("JSON welcome");
                assert_eq!(welcome["encoding"], "json", "{query}");
                "json"
            }
            Message::Binary(bytes) if encoding == "protobuf" => {
                let message = proto::ServerMessage::decode(&bytes[..]).expect("protobuf");
                let Some(server_message::Msg::Welcome(welcome)) = message.msg else {
                    panic!("{query}: Welcome first");
                };
                assert_eq!(welcome.encoding, "protobuf");
                "protobuf"
            }
            Message::Binary(bytes) => {
                let text = inflate_frame(&mut Decompress::new_gzip(15), &bytes);
                let welcome: Value = serde_json::from_str(&text).expect("gzip of JSON");
                assert_eq!(welcome["encoding"], "gzip", "{query}");
                "gzip"
            }
            other => panic!("{query}: unexpected {other:?}"),
        };
        assert_eq!(seen, encoding, "{query}");
    }
}

#[tokio::test]
async fn unknown_or_conflicting_encodings_are_refused_with_400_listing_supported() {
    let relay = TestRelay::start(Config::for_tests()).await;
    for (query, protocol, mentions) in [
        ("", Some("tickrelay.xml"), "tickrelay.xml"),
        ("?encoding=xml", None, "xml"),
        ("?encoding=json", Some("tickrelay.gzip"), "conflicts"),
        ("?encoding=gzip", Some("tickrelay.protobuf"), "conflicts"),
    ] {
        let (status, body) = raw_upgrade(relay.http, query, protocol).await;
        let case = format!("{query} / {protocol:?}");
        assert_eq!(status, 400, "{case}: {body}");
        assert_eq!(body["type"], "error", "{case}");
        assert_eq!(body["code"], "unknown_encoding", "{case}");
        assert!(
            body["message"]
                .as_str()
                .is_some_and(|m| m.contains(mentions)),
            "{case}: {body}"
        );
        assert_eq!(
            body["supported"],
            serde_json::json!(["json", "protobuf", "gzip"]),
            "{case}"
        );
    }

    // What a real client sees: the upgrade fails with the HTTP status.
    let mut request = relay.url("").into_client_request().expect("request");
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_static("tickrelay.xml"),
    );
    match support::within(
        "the refused upgrade",
        tokio_tungstenite::connect_async(request),
    )
    .await
    {
        Err(tokio_tungstenite::tungstenite::Error::Http(response)) => {
            assert_eq!(response.status(), 400);
        }
        other => panic!("expected an HTTP 400, got {:?}", other.map(|_| ())),
    }
}

#[tokio::test]
async fn protobuf_clients_send_binary_control_messages_and_get_protobuf_replies() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = WsClient::connect(&relay.url("?encoding=protobuf")).await;
    let Some(server_message::Msg::Welcome(welcome)) = next_server(&mut client).await.msg else {
        panic!("Welcome first");
    };
    assert!(welcome.symbols.is_empty());

    send_client(
        &mut client,
        client_message::Msg::Subscribe(proto::Symbols {
            symbols: vec!["PB-A".into(), "PB-B".into()],
        }),
    )
    .await;
    assert_eq!(
        next_server(&mut client).await.msg,
        Some(server_message::Msg::Ack(proto::Ack {
            op: "subscribed".into(),
            symbols: vec!["PB-A".into(), "PB-B".into()],
        }))
    );
    send_client(
        &mut client,
        client_message::Msg::Ping(proto::Ping { id: 42 }),
    )
    .await;
    assert_eq!(
        next_server(&mut client).await.msg,
        Some(server_message::Msg::Pong(proto::Pong { id: 42 }))
    );
    relay.publish_many("PB-A", 3).await;
    for seq in 1..=3u64 {
        let Some(server_message::Msg::Tick(tick)) = next_server(&mut client).await.msg else {
            panic!("tick {seq}");
        };
        assert_eq!((tick.symbol.as_str(), tick.seq), ("PB-A", seq));
        assert_eq!(tick.price, Some(100.0 + seq as f64 / 100.0));
        assert_eq!(tick.ts_ns, seq);
        assert_eq!(tick.kind, proto::TickKind::Trade as i32);
    }

    // Malformed and empty messages get a protobuf Error; the session stays usable.
    let bad_subscribe = proto::ClientMessage {
        msg: Some(client_message::Msg::Subscribe(proto::Symbols {
            symbols: vec!["bad symbol".into()],
        })),
    };
    for (bytes, code) in [
        (vec![0xFF, 0x01], "bad_message"),
        (vec![0x0A, 0x05, 0x0A], "bad_message"),
        (Vec::new(), "bad_message"),
        (bad_subscribe.encode_to_vec(), "invalid_symbol"),
    ] {
        client.send_binary(bytes.clone()).await;
        let Some(server_message::Msg::Error(error)) = next_server(&mut client).await.msg else {
            panic!("{bytes:02x?}: expected a protobuf Error");
        };
        assert_eq!(error.code, code, "{bytes:02x?}: {}", error.message);
        assert!(!error.message.is_empty());
    }
    send_client(
        &mut client,
        client_message::Msg::Ping(proto::Ping { id: 43 }),
    )
    .await;
    assert_eq!(
        next_server(&mut client).await.msg,
        Some(server_message::Msg::Pong(proto::Pong { id: 43 }))
    );
    // JSON text control messages are accepted too, and answered in protobuf.
    client.send_json(r#"{"op":"ping","id":44}"#).await;
    assert_eq!(
        next_server(&mut client).await.msg,
        Some(server_message::Msg::Pong(proto::Pong { id: 44 }))
    );
    relay.publish_many("PB-B", 1).await;
    let Some(server_message::Msg::Tick(tick)) = next_server(&mut client).await.msg else {
        panic!("ticks still flow after errors");
    };
    assert_eq!((tick.symbol.as_str(), tick.seq), ("PB-B", 1));
}

#[tokio::test]
async fn a_json_client_sending_binary_gets_binary_not_supported_and_stays_open() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let mut client = relay.client("?symbols=JS-A").await;
    let subscribe = proto::ClientMessage {
        msg: Some(client_message::Msg::Subscribe(proto::Symbols {
            symbols: vec!["JS-B".into()],
        })),
    };
    client.send_binary(subscribe.encode_to_vec()).await;
    let reply = client.next_json().await;
    assert_eq!(
        (reply["type"].as_str(), reply["code"].as_str()),
        (Some("error"), Some("binary_not_supported")),
        "{reply}"
    );
    client.send_json(r#"{"op":"ping","id":5}"#).await;
    assert_eq!(
        client.next_json().await,
        serde_json::json!({"type":"pong","id":5})
    );
    let mut ingest = relay.ingest().await;
    ingest
        .send_lines(&[tick_line("JS-B", 1.5, 1), tick_line("JS-A", 2.5, 2)])
        .await;
    let tick = client.next_json().await;
    assert_eq!(
        (tick["symbol"].as_str(), tick["price"].as_f64()),
        (Some("JS-A"), Some(2.5)),
        "the binary subscribe to JS-B was not applied"
    );
}

#[tokio::test]
async fn gzip_replies_share_the_tick_stream_in_order() {
    let relay = TestRelay::start(Config::for_tests()).await;
    relay.publish_many("GZ-B", 2).await;
    support::wait_for("GZ-B sequenced", || async {
        relay.get("/price/GZ-B").await.1["seq"] == 2
    })
    .await;
    let mut client = GzipClient::connect(&relay.url("?symbols=GZ-A&encoding=gzip")).await;
    let welcome = client.next_json().await;
    assert_eq!(
        (welcome["type"].as_str(), welcome["encoding"].as_str()),
        (Some("welcome"), Some("gzip"))
    );
    assert_eq!(welcome["symbols"], serde_json::json!(["GZ-A"]));

    relay.publish_many("GZ-A", 3).await;
    for seq in 1..=3 {
        let tick = client.next_json().await;
        assert_eq!(
            (tick["type"].as_str(), tick["seq"].as_u64()),
            (Some("tick"), Some(seq))
        );
    }

    // Replies to several control messages, queued in one go, come back compressed in order.
    for text in [
        r#"{"op":"subscribe","symbols":["GZ-B"]}"#,
        "not json",
        r#"{"op":"ping","id":7}"#,
    ] {
        client.ws.send_json(text).await;
    }
    client.ws.send_binary(vec![1, 2, 3]).await;
    let replies = [
        client.next_json().await,
        client.next_json().await,
        client.next_json().await,
        client.next_json().await,
        client.next_json().await,
    ];
    assert_eq!(
        replies[0],
        serde_json::json!({"type":"subscribed","symbols":["GZ-B"]})
    );
    assert_eq!(
        (replies[1]["type"].as_str(), replies[1]["seq"].as_u64()),
        (Some("snapshot"), Some(2)),
        "{}",
        replies[1]
    );
    assert_eq!(
        (replies[2]["type"].as_str(), replies[2]["code"].as_str()),
        (Some("error"), Some("bad_message"))
    );
    assert_eq!(replies[3], serde_json::json!({"type":"pong","id":7}));
    assert_eq!(
        replies[4]["code"], "binary_not_supported",
        "a gzip client sends JSON text, not binary"
    );

    // Ticks keep flowing on the same stream after the replies.
    relay.publish_many("GZ-B", 1).await;
    let tick = client.next_json().await;
    assert_eq!(
        (tick["symbol"].as_str(), tick["seq"].as_u64()),
        (Some("GZ-B"), Some(3))
    );

    // The close handshake is plain WebSocket: the close frame is not compressed.
    client.ws.ws.close(None).await.expect("send close");
    assert_eq!(client.ws.expect_close().await.0, 1000);
}

/// One tick as every encoding should decode it.
#[derive(Clone, Debug, PartialEq)]
struct Decoded {
    symbol: String,
    seq: u64,
    kind: &'static str,
    ts_ns: u64,
    recv_ns: u64,
    price: Option<f64>,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
    bid_size: Option<f64>,
    ask_size: Option<f64>,
    venue: Option<String>,
}

impl Decoded {
    /// Reads a JSON tick, parsing numbers from their text with Rust's correctly rounded
    /// parser (serde_json's default float parsing may be off by an ulp on long mantissas).
    fn from_json(text: &str) -> Self {
        let value: Value = serde_json::from_str(text).expect("one JSON object per frame");
        assert_eq!(value["type"], "tick", "{text}");
        let float = |key| number_text(text, key).map(|n| n.parse::<f64>().expect("a number"));
        let int = |key| {
            number_text(text, key)
                .and_then(|n| n.parse::<u64>().ok())
                .unwrap_or_else(|| panic!("{key} is an integer in {text}"))
        };
        Self {
            symbol: value["symbol"].as_str().expect("symbol").to_owned(),
            seq: int("seq"),
            kind: match value["kind"].as_str() {
                Some("trade") => "trade",
                Some("quote") => "quote",
                other => panic!("kind {other:?}"),
            },
            ts_ns: int("ts_ns"),
            recv_ns: int("recv_ns"),
            price: float("price"),
            size: float("size"),
            bid: float("bid"),
            ask: float("ask"),
            bid_size: float("bid_size"),
            ask_size: float("ask_size"),
            venue: value["venue"].as_str().map(str::to_owned),
        }
    }

    fn from_proto(tick: proto::Tick) -> Self {
        Self {
            kind: match proto::TickKind::try_from(tick.kind) {
                Ok(proto::TickKind::Trade) => "trade",
                Ok(proto::TickKind::Quote) => "quote",
                other => panic!("kind {other:?}"),
            },
            symbol: tick.symbol,
            seq: tick.seq,
            ts_ns: tick.ts_ns,
            recv_ns: tick.recv_ns,
            price: tick.price,
            size: tick.size,
            bid: tick.bid,
            ask: tick.ask,
            bid_size: tick.bid_size,
            ask_size: tick.ask_size,
            venue: tick.venue,
        }
    }
}

/// The NDJSON lines published and what each must decode to (seq filled in per symbol).
fn published_ticks() -> Vec<(&'static str, Decoded)> {
    let tick = |symbol: &str, kind, ts_ns| Decoded {
        symbol: symbol.to_owned(),
        seq: 0,
        kind,
        ts_ns,
        recv_ns: 0,
        price: None,
        size: None,
        bid: None,
        ask: None,
        bid_size: None,
        ask_size: None,
        venue: None,
    };
    vec![
        (
            r#"{"symbol":"ENC-A","price":0.1,"size":1e-9,"ts_ns":1764000000000000001}"#,
            Decoded {
                price: Some(0.1),
                size: Some(1e-9),
                ..tick("ENC-A", "trade", 1_764_000_000_000_000_001)
            },
        ),
        (
            r#"{"symbol":"ENC-A","price":43250.5,"size":0.25,"venue":"XNAS","ts_ns":1764000000000000002}"#,
            Decoded {
                price: Some(43250.5),
                size: Some(0.25),
                venue: Some("XNAS".into()),
                ..tick("ENC-A", "trade", 1_764_000_000_000_000_002)
            },
        ),
        (
            r#"{"symbol":"ENC-B","kind":"trade","price":123456789.123456789,"size":3,"ts_ns":18446744073709551615}"#,
            Decoded {
                // The f64 nearest the published text (Rust's parser rounds correctly).
                price: Some("123456789.123456789".parse().expect("a float")),
                size: Some(3.0),
                ..tick("ENC-B", "trade", u64::MAX)
            },
        ),
        (
            r#"{"symbol":"ENC-Q","kind":"quote","bid":43250.5,"ask":43250.75,"bid_size":0.1,"ask_size":1e-9,"venue":"Coin\"base é","ts_ns":1764000000000000003}"#,
            Decoded {
                bid: Some(43250.5),
                ask: Some(43250.75),
                bid_size: Some(0.1),
                ask_size: Some(1e-9),
                venue: Some("Coin\"base é".into()),
                ..tick("ENC-Q", "quote", 1_764_000_000_000_000_003)
            },
        ),
        (
            r#"{"symbol":"ENC-Q","bid":0.30000000000000004,"bid_size":1e21,"ts_ns":0}"#,
            Decoded {
                bid: Some(0.300_000_000_000_000_04),
                bid_size: Some(1e21),
                ..tick("ENC-Q", "quote", 0)
            },
        ),
        (
            r#"{"symbol":"ENC-B","price":-17.125,"size":9007199254740993,"ts_ns":1764000000000000004}"#,
            Decoded {
                price: Some(-17.125),
                size: Some(9_007_199_254_740_993_f64),
                ..tick("ENC-B", "trade", 1_764_000_000_000_000_004)
            },
        ),
        (
            r#"{"symbol":"ENC-A","price":2.2250738585072014e-308,"ts_ns":1764000000000000005}"#,
            Decoded {
                price: Some(2.225_073_858_507_201_4e-308),
                ..tick("ENC-A", "trade", 1_764_000_000_000_000_005)
            },
        ),
    ]
}

fn by_symbol(ticks: &[Decoded]) -> BTreeMap<String, Vec<Decoded>> {
    let mut out: BTreeMap<String, Vec<Decoded>> = BTreeMap::new();
    for tick in ticks {
        out.entry(tick.symbol.clone())
            .or_default()
            .push(tick.clone());
    }
    out
}

/// The text of `"key":<number>` in a flat JSON object, as sent.
fn number_text<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    let needle = format!(",\"{key}\":");
    let start = text.find(&needle)? + needle.len();
    let rest = &text[start..];
    let end = rest.find([',', '}']).expect("a number ends at , or }");
    Some(&rest[..end])
}

/// A gzip client: one inflater for the whole connection, a sync flush per frame.
struct GzipClient {
    ws: WsClient,
    inflate: Decompress,
}

impl GzipClient {
    async fn connect(url: &str) -> Self {
        Self::with_client(WsClient::connect(url).await)
    }

    fn with_client(ws: WsClient) -> Self {
        Self {
            ws,
            inflate: Decompress::new_gzip(15),
        }
    }

    /// The next frame, inflated: must be a binary frame ending on a sync-flush marker.
    async fn next_text(&mut self) -> String {
        match self.ws.next_message().await {
            Message::Binary(bytes) => {
                assert!(
                    bytes.ends_with(&[0x00, 0x00, 0xFF, 0xFF]),
                    "every gzip frame ends with a sync flush"
                );
                inflate_frame(&mut self.inflate, &bytes)
            }
            other => panic!("a gzip client gets binary frames, got {other:?}"),
        }
    }

    /// The next frame as exactly one JSON object.
    async fn next_json(&mut self) -> Value {
        let text = self.next_text().await;
        serde_json::from_str(&text).unwrap_or_else(|e| panic!("{e}: one JSON object: {text:?}"))
    }
}

/// Inflates one frame's bytes with the connection's inflater; the frame must hold whole
/// messages (everything it holds comes out now, nothing is left for the next frame).
fn inflate_frame(inflate: &mut Decompress, frame: &[u8]) -> String {
    let mut out = Vec::with_capacity(frame.len() * 4 + 256);
    let start = inflate.total_in();
    loop {
        if out.capacity() - out.len() < 256 {
            out.reserve(4096);
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
    String::from_utf8(out).expect("gzip frames inflate to UTF-8 JSON")
}

async fn next_text(client: &mut WsClient) -> String {
    match client.next_message().await {
        Message::Text(text) => text.to_string(),
        other => panic!("a JSON client gets text frames, got {other:?}"),
    }
}

async fn next_server(client: &mut WsClient) -> proto::ServerMessage {
    match client.next_message().await {
        Message::Binary(bytes) => {
            proto::ServerMessage::decode(&bytes[..]).expect("one ServerMessage per frame")
        }
        other => panic!("a protobuf client gets binary frames, got {other:?}"),
    }
}

async fn send_client(client: &mut WsClient, msg: client_message::Msg) {
    let bytes = proto::ClientMessage { msg: Some(msg) }.encode_to_vec();
    client.send_binary(bytes).await;
}

/// Connects offering `protocol` in `Sec-WebSocket-Protocol`; returns the client and the
/// subprotocol the server answered with.
async fn connect_with_protocol(url: &str, protocol: &str) -> (WsClient, Option<String>) {
    let mut request = url.into_client_request().expect("valid url");
    request.headers_mut().insert(
        SEC_WEBSOCKET_PROTOCOL,
        HeaderValue::from_str(protocol).expect("ASCII"),
    );
    let (ws, response) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(request))
        .await
        .expect("connect in time")
        .expect("upgrade accepted");
    let answered = response
        .headers()
        .get(SEC_WEBSOCKET_PROTOCOL)
        .map(|v| v.to_str().expect("ASCII").to_owned());
    (WsClient { ws }, answered)
}

/// Sends a WebSocket upgrade request by hand and reads the (refusal) response: status and
/// JSON body, read to its `content-length`.
async fn raw_upgrade(
    addr: std::net::SocketAddr,
    query: &str,
    protocol: Option<&str>,
) -> (u16, Value) {
    let mut stream = support::within("the raw upgrade connection", TcpStream::connect(addr))
        .await
        .expect("connect");
    let protocol = protocol
        .map(|p| format!("sec-websocket-protocol: {p}\r\n"))
        .unwrap_or_default();
    let request = format!(
        "GET /ws{query} HTTP/1.1\r\nhost: test\r\nconnection: Upgrade\r\nupgrade: websocket\r\n\
         sec-websocket-version: 13\r\nsec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\n{protocol}\r\n"
    );
    support::within(
        "the upgrade request to be sent",
        stream.write_all(request.as_bytes()),
    )
    .await
    .expect("write");
    let read = async {
        let mut response = Vec::new();
        let mut chunk = [0u8; 4096];
        loop {
            let n = stream.read(&mut chunk).await.expect("read");
            assert!(n > 0, "connection closed before a full response");
            response.extend_from_slice(&chunk[..n]);
            let text = String::from_utf8_lossy(&response).to_string();
            let Some((head, body)) = text.split_once("\r\n\r\n") else {
                continue;
            };
            let length: usize = head
                .lines()
                .find_map(|l| {
                    let (name, value) = l.split_once(':')?;
                    name.eq_ignore_ascii_case("content-length")
                        .then(|| value.trim().parse().ok())?
                })
                .expect("content-length");
            if body.len() >= length {
                let status = head.split(' ').nth(1).and_then(|s| s.parse().ok());
                return (
                    status.expect("status line"),
                    serde_json::from_str(&body[..length]).expect("JSON body"),
                );
            }
        }
    };
    support::within("the refusal response to the upgrade", read).await
}
