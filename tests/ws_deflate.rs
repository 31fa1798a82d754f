//! permessage-deflate (RFC 7692) end to end: a real relay on free ports and a raw WebSocket
//! client over a real socket that offers the extension, reads RSV1 frames and inflates them
//! with its own flate2 inflater (tungstenite does not speak permessage-deflate, so the
//! client side is written here, against the RFC, not against the relay's code).

mod support;

use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress};
use serde_json::Value;
use support::{TestRelay, WsClient, wait_for, within};
use tickrelay::Config;
use tickrelay::config::{DeflateConfig, WsDeflate};
use tickrelay::session::wire::client_frame;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const MASK: [u8; 4] = [0x11, 0x22, 0x33, 0x44];

fn deflate_on(min_bytes: usize, max_clients: usize) -> Config {
    Config {
        deflate: DeflateConfig {
            ws_deflate: WsDeflate::On,
            ws_deflate_min_bytes: min_bytes,
            ws_deflate_max_clients: max_clients,
        },
        shards: 1,
        ..Config::for_tests()
    }
}

/// One server frame as it came off the wire.
#[derive(Debug)]
struct Frame {
    rsv1: bool,
    opcode: u8,
    payload: Vec<u8>,
    /// Header plus payload: what it cost on the wire.
    wire_len: usize,
}

/// A WebSocket client that may offer permessage-deflate and inflates what it receives.
struct DeflateClient {
    stream: TcpStream,
    buf: Vec<u8>,
    /// The `Sec-WebSocket-Extensions` answer, if any.
    extensions: Option<String>,
    /// The inflater for server messages; kept across messages unless the server said
    /// `server_no_context_takeover`.
    inflater: Decompress,
    window_bits: u8,
    /// Wire bytes of every data frame read.
    wire_bytes: usize,
}

impl DeflateClient {
    async fn connect(relay: &TestRelay, path: &str, offer: Option<&str>) -> Self {
        let stream = within("the client connection", TcpStream::connect(relay.http))
            .await
            .expect("connect");
        Self::upgrade(stream, path, offer).await
    }

    /// Upgrades an open connection to `path`, offering `offer`.
    async fn upgrade(mut stream: TcpStream, path: &str, offer: Option<&str>) -> Self {
        let offer = offer
            .map(|o| format!("sec-websocket-extensions: {o}\r\n"))
            .unwrap_or_default();
        let request = format!(
            "GET {path} HTTP/1.1\r\nhost: test\r\nupgrade: websocket\r\nconnection: upgrade\r\n\
             sec-websocket-key: dGhlIHNhbXBsZSBub25jZQ==\r\nsec-websocket-version: 13\r\n{offer}\r\n"
        );
        within("the upgrade request", stream.write_all(request.as_bytes()))
            .await
            .expect("write");
        let mut buf = Vec::new();
        let head_end = loop {
            if let Some(end) = buf.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            let mut chunk = [0u8; 4096];
            let n = within("the upgrade answer", stream.read(&mut chunk))
                .await
                .expect("read");
            assert!(n > 0, "closed during the upgrade");
            buf.extend_from_slice(&chunk[..n]);
        };
        let head = String::from_utf8_lossy(&buf[..head_end]).to_string();
        assert!(head.starts_with("HTTP/1.1 101"), "{head}");
        let extensions = head
            .lines()
            .find_map(|l| {
                let (name, value) = l.split_once(':')?;
                name.eq_ignore_ascii_case("sec-websocket-extensions")
                    .then(|| value.trim().to_owned())
            })
            .filter(|v| !v.is_empty());
        let window_bits = extensions
            .as_deref()
            .and_then(|e| e.split("server_max_window_bits=").nth(1))
            .and_then(|v| v.split(';').next())
            .map_or(15, |v| v.trim().parse().expect("bits"));
        buf.drain(..head_end);
        Self {
            stream,
            buf,
            extensions,
            inflater: Decompress::new_with_window_bits(false, window_bits),
            window_bits,
            wire_bytes: 0,
        }
    }

    fn context_takeover(&self) -> bool {
        !self
            .extensions
            .as_deref()
            .unwrap_or_default()
            .contains("server_no_context_takeover")
    }

    async fn frame(&mut self) -> Frame {
        loop {
            if let Some(frame) = self.parse() {
                return frame;
            }
            let mut chunk = [0u8; 16 * 1024];
            let n = within("a frame from the relay", self.stream.read(&mut chunk))
                .await
                .expect("read");
            assert!(n > 0, "connection ended");
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    fn parse(&mut self) -> Option<Frame> {
        let buf = &self.buf;
        if buf.len() < 2 {
            return None;
        }
        assert_eq!(buf[0] & 0x80, 0x80, "the relay sends whole messages");
        assert_eq!(buf[0] & 0x30, 0, "RSV2/RSV3 never set");
        let (len, head) = match buf[1] & 0x7F {
            126 if buf.len() >= 4 => (u16::from_be_bytes([buf[2], buf[3]]) as usize, 4),
            127 if buf.len() >= 10 => (
                u64::from_be_bytes(buf[2..10].try_into().unwrap()) as usize,
                10,
            ),
            126 | 127 => return None,
            n => (n as usize, 2),
        };
        if buf.len() < head + len {
            return None;
        }
        let frame = Frame {
            rsv1: buf[0] & 0x40 != 0,
            opcode: buf[0] & 0x0F,
            payload: buf[head..head + len].to_vec(),
            wire_len: head + len,
        };
        self.buf.drain(..head + len);
        Some(frame)
    }

    /// The next data message, inflated when it is compressed, with its frame.
    async fn message(&mut self) -> (Vec<u8>, Frame) {
        loop {
            let frame = self.frame().await;
            if frame.opcode >= 0x8 {
                assert!(!frame.rsv1, "RFC 7692 §6.1: no RSV1 on control frames");
                assert_ne!(frame.opcode, 0x8, "closed: {:?}", frame.payload);
                continue;
            }
            self.wire_bytes += frame.wire_len;
            if !frame.rsv1 {
                return (frame.payload.clone(), frame);
            }
            assert!(
                self.extensions.is_some(),
                "RSV1 without a negotiated extension"
            );
            if !self.context_takeover() {
                self.inflater = Decompress::new_with_window_bits(false, self.window_bits);
            }
            let mut input = frame.payload.clone();
            input.extend_from_slice(&[0, 0, 0xff, 0xff]);
            let mut out = Vec::with_capacity(1 << 20);
            self.inflater
                .decompress_vec(&input, &mut out, FlushDecompress::Sync)
                .expect("a compressed frame inflates");
            return (out, frame);
        }
    }

    async fn json(&mut self) -> (Value, Frame) {
        let (bytes, frame) = self.message().await;
        (
            serde_json::from_slice(&bytes).expect("inflates to JSON"),
            frame,
        )
    }

    async fn send(&mut self, frame: Vec<u8>) {
        within("a client frame", self.stream.write_all(&frame))
            .await
            .expect("write");
    }

    /// Sends `text` compressed (RSV1), as a client without context takeover does.
    async fn send_compressed(&mut self, opcode: u8, bytes: &[u8]) {
        self.send(client_frame(true, 0x40 | opcode, &compress(bytes), MASK))
            .await;
    }

    /// Reads frames until a close; returns its code.
    async fn close_code(&mut self) -> u16 {
        loop {
            let frame = self.frame().await;
            if frame.opcode == 0x8 {
                return u16::from_be_bytes([frame.payload[0], frame.payload[1]]);
            }
        }
    }
}

/// Raw deflate of one message with its sync-flush tail cut (RFC 7692 §7.2.1).
fn compress(bytes: &[u8]) -> Vec<u8> {
    let mut deflate = Compress::new(Compression::new(6), false);
    let mut out = Vec::with_capacity(bytes.len() + 64);
    loop {
        if out.capacity() - out.len() < 64 {
            out.reserve(out.capacity());
        }
        let before = out.len();
        deflate
            .compress_vec(
                &bytes[deflate.total_in() as usize..],
                &mut out,
                FlushCompress::Sync,
            )
            .unwrap();
        if deflate.total_in() as usize == bytes.len() && out.len() < out.capacity() {
            break;
        }
        assert!(out.len() > before || out.capacity() - out.len() < 64);
    }
    assert!(out.ends_with(&[0, 0, 0xff, 0xff]));
    out.truncate(out.len() - 4);
    out
}

async fn stats(relay: &TestRelay) -> Value {
    relay.get("/stats").await.1
}

#[tokio::test]
async fn an_offering_client_gets_compressed_ticks_it_inflates_with_context_takeover() {
    let relay = TestRelay::start(deflate_on(0, 100)).await;
    let mut client = DeflateClient::connect(
        &relay,
        "/ws?symbols=BTC-USD",
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(
        client.extensions.as_deref(),
        Some("permessage-deflate; client_no_context_takeover")
    );
    let (welcome, frame) = client.json().await;
    assert_eq!(welcome["type"], "welcome");
    assert!(frame.rsv1, "the welcome is compressed");
    assert_eq!(frame.opcode, 0x1, "text, as for any JSON client");
    let mut plain = relay.client("?symbols=BTC-USD").await;
    relay.publish_many("BTC-USD", 300).await;
    let mut plain_bytes = 0;
    for seq in 1..=300u64 {
        let (tick, frame) = client.json().await;
        assert!(frame.rsv1, "tick {seq} is compressed");
        assert_eq!(
            (tick["type"].as_str(), tick["seq"].as_u64()),
            (Some("tick"), Some(seq))
        );
        let Value::String(_) = &tick["symbol"] else {
            panic!("{tick}")
        };
        let same = plain.next_json().await;
        assert_eq!(
            same, tick,
            "the deflate client reads what a plain client reads"
        );
        plain_bytes += serde_json::to_vec(&same).unwrap().len() + 4;
    }
    assert!(
        client.wire_bytes * 2 < plain_bytes,
        "{} bytes compressed vs ~{plain_bytes} plain",
        client.wire_bytes
    );
    let stats = stats(&relay).await;
    assert_eq!(stats["deflate"]["clients"], 1);
    let (fed, made) = (
        stats["deflate_bytes_in"].as_u64().unwrap(),
        stats["deflate_bytes_out"].as_u64().unwrap(),
    );
    assert!(fed > 0 && made * 2 < fed, "{made} of {fed}");
}

#[tokio::test]
async fn server_no_context_takeover_and_window_bits_are_honoured() {
    let relay = TestRelay::start(Config {
        conformance_echo: true,
        ..deflate_on(0, 100)
    })
    .await;
    let mut client = DeflateClient::connect(
        &relay,
        "/echo",
        Some("permessage-deflate; server_no_context_takeover; server_max_window_bits=9"),
    )
    .await;
    assert_eq!(
        client.extensions.as_deref(),
        Some(
            "permessage-deflate; server_no_context_takeover; client_no_context_takeover; server_max_window_bits=9"
        )
    );
    // 1,000 pseudo-random letters three times over: the only matches are 1,000 bytes back,
    // which a compressor with a 4 KiB window uses (~1 KB out) and one kept to 2^9 = 512
    // bytes cannot (~3 KB out). (flate2's inflater does not police the window, so the
    // size is what shows it.)
    let text = letters(1000).repeat(3);
    for round in 0..3 {
        client
            .send(client_frame(true, 0x1, text.as_bytes(), MASK))
            .await;
        let (echo, frame) = client.message().await;
        assert!(frame.rsv1);
        assert_eq!(echo, text.as_bytes(), "round {round}");
        assert!(
            frame.payload.len() > 2_500,
            "{} bytes: a match reached past the 512-byte window",
            frame.payload.len()
        );
    }
    // Without a window limit, no context takeover alone: the same message twice compresses
    // the same both times (with takeover the second would be a few bytes pointing back), and
    // each inflates with a fresh inflater.
    let mut client = DeflateClient::connect(
        &relay,
        "/echo",
        Some("permessage-deflate; server_no_context_takeover"),
    )
    .await;
    let text = letters(1000);
    let mut sizes = Vec::new();
    for _ in 0..2 {
        client
            .send(client_frame(true, 0x1, text.as_bytes(), MASK))
            .await;
        let (echo, frame) = client.message().await;
        assert_eq!((echo, frame.rsv1), (text.clone().into_bytes(), true));
        sizes.push(frame.payload.len());
    }
    assert!(sizes[1] > 500 && sizes[1] == sizes[0], "{sizes:?}");
}

/// `len` pseudo-random lowercase letters (no repeats a compressor could use nearby).
fn letters(len: usize) -> String {
    let mut state = 0x2545_f491_u32;
    (0..len)
        .map(|_| {
            state = state.wrapping_mul(1_103_515_245).wrapping_add(12_345);
            char::from(b'a' + (state >> 16) as u8 % 26)
        })
        .collect()
}

#[tokio::test]
async fn a_client_that_does_not_offer_is_unchanged() {
    let relay = TestRelay::start(deflate_on(0, 100)).await;
    let mut raw = DeflateClient::connect(&relay, "/ws?symbols=ETH-USD", None).await;
    assert_eq!(raw.extensions, None);
    let (welcome, frame) = raw.json().await;
    assert_eq!(
        (welcome["type"].as_str(), frame.rsv1),
        (Some("welcome"), false)
    );
    let mut ws = WsClient::connect(&relay.url("?symbols=ETH-USD")).await;
    assert_eq!(ws.next_json().await["type"], "welcome");
    relay.publish_many("ETH-USD", 20).await;
    for seq in 1..=20u64 {
        let (tick, frame) = raw.json().await;
        assert!(!frame.rsv1);
        assert_eq!(tick["seq"], seq);
        assert_eq!(ws.next_json().await["seq"], seq);
    }
    assert_eq!(stats(&relay).await["deflate"]["clients"], 0);
}

#[tokio::test]
async fn off_by_default_negotiates_nothing() {
    let relay = TestRelay::start(Config {
        shards: 1,
        ..Config::for_tests()
    })
    .await;
    let mut client = DeflateClient::connect(
        &relay,
        "/ws?symbols=BTC-USD",
        Some("permessage-deflate; client_max_window_bits"),
    )
    .await;
    assert_eq!(client.extensions, None, "--ws-deflate is off by default");
    let (welcome, frame) = client.json().await;
    assert_eq!(
        (welcome["type"].as_str(), frame.rsv1),
        (Some("welcome"), false)
    );
    // Without the extension, RSV1 from the client is a protocol error (RFC 6455 §5.2).
    client
        .send(client_frame(
            true,
            0x41,
            &compress(b"{\"op\":\"ping\"}"),
            MASK,
        ))
        .await;
    assert_eq!(client.close_code().await, 1002);
}

#[tokio::test]
async fn past_the_cap_clients_negotiate_nothing_until_a_place_frees() {
    let relay = TestRelay::start(deflate_on(0, 1)).await;
    let offer = Some("permessage-deflate");
    let first = DeflateClient::connect(&relay, "/ws", offer).await;
    assert!(first.extensions.is_some());
    let mut second = DeflateClient::connect(&relay, "/ws", offer).await;
    assert_eq!(second.extensions, None, "over --ws-deflate-max-clients");
    let (welcome, frame) = second.json().await;
    assert_eq!(
        (welcome["type"].as_str(), frame.rsv1),
        (Some("welcome"), false)
    );
    assert_eq!(stats(&relay).await["deflate"]["clients"], 1);
    drop(first);
    wait_for(
        "the first client's deflate place to be released",
        || async { stats(&relay).await["deflate"]["clients"] == 0 },
    )
    .await;
    let third = DeflateClient::connect(&relay, "/ws", offer).await;
    assert!(third.extensions.is_some());
}

#[tokio::test]
async fn malformed_offers_are_declined_never_refused() {
    let relay = TestRelay::start(deflate_on(0, 100)).await;
    for offer in [
        "permessage-deflate; server_max_window_bits=16",
        "permessage-deflate; server_max_window_bits",
        "permessage-deflate; client_max_window_bits=07",
        "permessage-deflate; server_no_context_takeover; server_no_context_takeover",
        "permessage-deflate; mystery",
        "permessage-deflate; server_max_window_bits=8",
        "x-webkit-deflate-frame",
    ] {
        let mut client = DeflateClient::connect(&relay, "/ws", Some(offer)).await;
        assert_eq!(client.extensions, None, "{offer}");
        let (welcome, frame) = client.json().await;
        assert_eq!(
            (welcome["type"].as_str(), frame.rsv1),
            (Some("welcome"), false)
        );
        // The next offer in the same header is taken.
        let both = format!("{offer}, permessage-deflate; server_no_context_takeover");
        let client = DeflateClient::connect(&relay, "/ws", Some(&both)).await;
        assert_eq!(
            client.extensions.as_deref(),
            Some("permessage-deflate; server_no_context_takeover; client_no_context_takeover"),
            "{both}"
        );
    }
    // A header that breaks the grammar (an unterminated quoted string) is ignored whole.
    let broken = "permessage-deflate; server_max_window_bits=\"10, permessage-deflate";
    let mut client = DeflateClient::connect(&relay, "/ws", Some(broken)).await;
    assert_eq!(client.extensions, None);
    assert_eq!(client.json().await.0["type"], "welcome");
}

#[tokio::test]
async fn compressed_control_messages_are_inflated_and_answered() {
    let relay = TestRelay::start(deflate_on(0, 100)).await;
    let mut client = DeflateClient::connect(&relay, "/ws", Some("permessage-deflate")).await;
    assert_eq!(client.json().await.0["type"], "welcome");
    client
        .send_compressed(0x1, br#"{"op":"ping","id":7}"#)
        .await;
    let (pong, _) = client.json().await;
    assert_eq!(
        (pong["type"].as_str(), pong["id"].as_u64()),
        (Some("pong"), Some(7))
    );
    // A compressed message in fragments: RSV1 on the first frame only.
    let compressed = compress(br#"{"op":"subscribe","symbols":["BTC-USD"]}"#);
    let (a, b) = compressed.split_at(compressed.len() / 2);
    client.send(client_frame(false, 0x41, a, MASK)).await;
    client.send(client_frame(true, 0x00, b, MASK)).await;
    let (ack, _) = client.json().await;
    assert_eq!(ack["type"], "subscribed", "{ack}");
    let stats = stats(&relay).await;
    let inflated =
        br#"{"op":"ping","id":7}"#.len() + br#"{"op":"subscribe","symbols":["BTC-USD"]}"#.len();
    assert_eq!(stats["inflate_bytes_out"], inflated as u64);
    assert!(stats["inflate_bytes_in"].as_u64().unwrap() > 0);
    // RSV1 on a continuation frame is a protocol error.
    client.send(client_frame(false, 0x01, b"{", MASK)).await;
    client.send(client_frame(true, 0x40, b"}", MASK)).await;
    assert_eq!(client.close_code().await, 1002);
}

#[tokio::test]
async fn a_deflate_bomb_closes_1009_is_counted_and_stalls_nobody() {
    let relay = TestRelay::start(deflate_on(0, 100)).await;
    let mut watcher = relay.client("?symbols=SOL-USD").await;
    let mut bomber = DeflateClient::connect(&relay, "/ws", Some("permessage-deflate")).await;
    assert_eq!(bomber.json().await.0["type"], "welcome");
    // 32 MiB of spaces: ~32 KiB compressed, within --max-message-bytes (64 KiB) on the wire,
    // 500 times over it once inflated.
    let mut bomb = br#"{"op":"ping","id":1,"pad":""#.to_vec();
    bomb.resize(32 << 20, b' ');
    let compressed = compress(&bomb);
    assert!(compressed.len() < 64 * 1024, "{}", compressed.len());
    bomber
        .send(client_frame(true, 0x41, &compressed, MASK))
        .await;
    // The relay says why (an error message, compressed like any), then closes 1009.
    let (error, _) = bomber.json().await;
    assert_eq!(error["code"], "inflated_too_big", "{error}");
    assert_eq!(bomber.close_code().await, 1009);
    assert_eq!(stats(&relay).await["errors"]["inflated_too_big"], 1);
    relay.publish_many("SOL-USD", 3).await;
    for seq in 1..=3u64 {
        assert_eq!(watcher.next_json().await["seq"], seq);
    }
    // Corrupt deflate data: 1007, counted.
    let mut corrupt = DeflateClient::connect(&relay, "/ws", Some("permessage-deflate")).await;
    assert_eq!(corrupt.json().await.0["type"], "welcome");
    corrupt
        .send(client_frame(true, 0x41, &[0xff; 16], MASK))
        .await;
    let (error, _) = corrupt.json().await;
    assert_eq!(error["code"], "bad_deflate");
    assert_eq!(corrupt.close_code().await, 1007);
    wait_for("bad_deflate counted", || async {
        stats(&relay).await["errors"]["bad_deflate"] == 1
    })
    .await;
}

#[tokio::test]
async fn short_messages_go_out_plain_below_the_minimum() {
    let relay = TestRelay::start(deflate_on(1024, 100)).await;
    let mut client =
        DeflateClient::connect(&relay, "/ws?symbols=BTC-USD", Some("permessage-deflate")).await;
    assert!(client.extensions.is_some());
    let (_, frame) = client.json().await;
    assert!(!frame.rsv1, "a welcome under 1 KiB goes out plain");
    relay.publish_many("BTC-USD", 5).await;
    for seq in 1..=5u64 {
        let (tick, frame) = client.json().await;
        assert_eq!((tick["seq"].as_u64(), frame.rsv1), (Some(seq), false));
    }
}

#[tokio::test]
async fn after_closing_first_the_relay_waits_for_the_clients_close_before_its_fin() {
    // A client that inflates asynchronously (Node's WebSocket) loses the last compressed
    // message and the close code (1006) if the FIN comes right behind the close frame.
    let relay = TestRelay::start(deflate_on(0, 100)).await;
    let mut client = DeflateClient::connect(&relay, "/ws", Some("permessage-deflate")).await;
    assert_eq!(client.json().await.0["type"], "welcome");
    client
        .send(client_frame(true, 0x41, &[0xff; 16], MASK))
        .await;
    assert_eq!(client.json().await.0["code"], "bad_deflate");
    assert_eq!(client.close_code().await, 1007);
    let mut byte = [0u8; 1];
    let early = tokio::time::timeout(
        std::time::Duration::from_millis(300),
        client.stream.read(&mut byte),
    )
    .await;
    assert!(
        early.is_err(),
        "no FIN before the client answered the close: {early:?}"
    );
    client
        .send(client_frame(true, 0x8, &1007u16.to_be_bytes(), MASK))
        .await;
    let n = within(
        "the relay's FIN after the client's close",
        client.stream.read(&mut byte),
    )
    .await
    .expect("read");
    assert_eq!(n, 0, "the relay closes once the closing handshake is done");
}

#[tokio::test]
async fn a_batching_client_inflates_each_frame_to_newline_separated_messages() {
    let relay = TestRelay::start(Config {
        outbox_bytes: 64 * 1024 * 1024,
        outbox_max_age: std::time::Duration::from_secs(300),
        send_buffer_bytes: 8 * 1024,
        ..deflate_on(0, 100)
    })
    .await;
    // A small receive buffer: what the client does not read waits at the relay.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.set_recv_buffer_size(4096).expect("small buffer");
    let stream = within("the client connection", socket.connect(relay.http))
        .await
        .expect("connect");
    let path = "/ws?symbols=BTC-USD&batch=on";
    let mut client = DeflateClient::upgrade(stream, path, Some("permessage-deflate")).await;
    relay.publish_many("BTC-USD", 30_000).await;
    wait_for("a backlog at the relay", || async {
        let (_, sessions) = relay.get("/api/sessions").await;
        sessions["sessions"][0]["outbox_bytes"].as_u64() > Some(16 * 1024)
    })
    .await;
    let mut seqs = Vec::new();
    let mut several = 0;
    while seqs.last() != Some(&30_000) {
        let (bytes, frame) = client.message().await;
        assert!(frame.rsv1, "a batch is compressed as one message");
        let text = String::from_utf8(bytes).expect("UTF-8");
        let messages: Vec<Value> = text
            .split('\n')
            .map(|line| serde_json::from_str(line).expect("one JSON message per line"))
            .collect();
        several += usize::from(messages.len() > 1);
        seqs.extend(
            messages
                .iter()
                .filter(|m| m["type"] == "tick")
                .map(|m| m["seq"].as_u64().unwrap()),
        );
    }
    assert_eq!(
        seqs,
        (1..=30_000).collect::<Vec<u64>>(),
        "every tick once, in order"
    );
    assert!(
        several > 0,
        "a backlog goes out as frames of several messages"
    );
}
