//! RFC 6455 server MUSTs hold against hostile clients, and nobody else notices.

mod support;

use support::TestRelay;
use tickrelay::Config;
use tickrelay::session::wire::client_frame;
use tokio::io::AsyncWriteExt;

const MASK: [u8; 4] = [9, 8, 7, 6];

async fn close_code_after(relay: &TestRelay, bytes: &[u8]) -> u16 {
    let (mut stream, _) = support::raw_upgrade(relay.http, "/ws?symbols=H").await;
    support::within("the hostile bytes to be sent", stream.write_all(bytes))
        .await
        .unwrap();
    support::read_until_close(&mut stream).await
}

#[tokio::test]
async fn hostile_frames_get_the_right_close_codes_and_others_keep_receiving() {
    let relay = TestRelay::start(Config {
        max_message_bytes: 1024,
        ..Config::for_tests()
    })
    .await;
    let mut bystander = relay.client("?symbols=H").await;

    let mut unmasked = client_frame(true, 1, br#"{"op":"ping"}"#, MASK);
    unmasked[1] &= 0x7F;
    unmasked.drain(2..6);
    assert_eq!(
        close_code_after(&relay, &unmasked).await,
        1002,
        "unmasked client frame"
    );

    let big = client_frame(true, 1, &vec![b' '; 2000], MASK);
    assert_eq!(
        close_code_after(&relay, &big).await,
        1009,
        "frame over the limit"
    );

    let mut fragments = Vec::new();
    for _ in 0..3 {
        fragments.extend(client_frame(
            false,
            if fragments.is_empty() { 1 } else { 0 },
            &[b' '; 500],
            MASK,
        ));
    }
    fragments.extend(client_frame(true, 0, b"x", MASK));
    assert_eq!(
        close_code_after(&relay, &fragments).await,
        1009,
        "reassembled message over the limit"
    );

    assert_eq!(
        close_code_after(&relay, &client_frame(true, 1, &[0xC0, 0xAF], MASK)).await,
        1007,
        "invalid UTF-8"
    );
    assert_eq!(
        close_code_after(&relay, &client_frame(true, 3, b"?", MASK)).await,
        1002,
        "reserved opcode"
    );
    assert_eq!(
        close_code_after(&relay, &client_frame(true, 8, &1000u16.to_be_bytes(), MASK)).await,
        1000,
        "a clean close is echoed"
    );

    relay.publish_many("H", 3).await;
    let seen = bystander
        .ticks_until(&std::collections::BTreeMap::from([("H".to_owned(), 3)]))
        .await;
    assert_eq!(seen["H"], vec![1, 2, 3], "the bystander noticed nothing");
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(stats["errors"]["protocol_error"], 2);
    assert_eq!(stats["errors"]["message_too_big"], 2);
    assert_eq!(stats["errors"]["invalid_utf8"], 1);
}

#[tokio::test]
async fn garbage_instead_of_a_handshake_gets_400_and_the_relay_serves_on() {
    let relay = TestRelay::start(Config::for_tests()).await;
    let (status, _) = support::http_raw(relay.http, "GET", "/ws?symbols=A", "").await;
    assert_eq!(status, 400, "a GET /ws without Upgrade is refused");
    let mut junk = support::within(
        "the junk connection",
        tokio::net::TcpStream::connect(relay.http),
    )
    .await
    .unwrap();
    support::within("the junk bytes to be sent", junk.write_all(&[0xFF; 64]))
        .await
        .unwrap();
    drop(junk);
    assert_eq!(relay.get("/health").await.0, 200);
}

#[tokio::test]
async fn echo_endpoint_is_off_by_default_and_echoes_through_the_same_limits() {
    let relay = TestRelay::start(Config::for_tests()).await;
    assert_eq!(relay.get("/echo").await.0, 404);
    let relay = TestRelay::start(Config {
        conformance_echo: true,
        max_message_bytes: 64,
        ..Config::for_tests()
    })
    .await;
    let mut client = support::WsClient::connect(&format!("ws://{}/echo", relay.http)).await;
    client.send_json("héllo").await;
    assert_eq!(
        client.next_message().await,
        tokio_tungstenite::tungstenite::Message::text("héllo")
    );
    client.send_json(&"x".repeat(100)).await;
    assert_eq!(client.expect_close().await.0, 1009);
}
