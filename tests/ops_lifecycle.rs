//! Session lifecycle lines at info, from the real binary's log: connect, close with code
//! and reason, end, and refusals (the storm limit itself is a unit test in `limits.rs`).

mod ops_common;

use futures_util::StreamExt as _;
use ops_common::{WAIT, http_get, spawn};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;
use tokio_tungstenite::tungstenite::protocol::frame::coding::CloseCode;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connect_close_end_and_refusal_are_logged_at_info() {
    let relay = spawn(&["--max-connections", "1"], &[]);
    let url = format!("ws://{}/ws?symbols=BTC-USD", relay.http);
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let welcome = tokio::time::timeout(WAIT, ws.next())
        .await
        .expect("welcome in time");
    assert!(matches!(welcome, Some(Ok(Message::Text(_)))), "{welcome:?}");
    let line = relay.stderr_line(|l| l.contains("session connected"), "the connect line");
    assert!(
        line.contains("INFO") && line.contains("session=1") && line.contains("encoding=\"json\""),
        "{line}"
    );

    // The one allowed connection is held: the next is refused, and that is logged.
    let _refused = std::net::TcpStream::connect(relay.http).expect("tcp connect");
    let line = relay.stderr_line(|l| l.contains("connection refused"), "the refusal line");
    assert!(line.contains("--max-connections reached"), "{line}");

    ws.close(Some(CloseFrame {
        code: CloseCode::Normal,
        reason: "bye".into(),
    }))
    .await
    .expect("send close");
    let line = relay.stderr_line(|l| l.contains("session closing"), "the close line");
    assert!(
        line.contains("session=1") && line.contains("code=1000"),
        "{line}"
    );
    let line = relay.stderr_line(|l| l.contains("session ended"), "the end line");
    assert!(line.contains("session=1"), "{line}");
    assert_eq!(relay.stop(), Some(0));
}

/// Polls `f` every 50 ms until it gives a value, for at most 10 s.
#[allow(
    clippy::disallowed_methods,
    reason = "a plain test thread, not a shard's"
)]
fn support_within<T>(mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "not within 10 s: the relay did not free its one connection place"
        );
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
}

#[test]
fn a_refusal_storm_is_cut_to_the_rate_and_the_rest_counted() {
    // A handshake timeout far beyond the test's length: on a loaded box the storm can take
    // seconds, and the default 5 s would free the held place mid-test.
    let relay = spawn(
        &["--max-connections", "1", "--handshake-timeout", "120s"],
        &[],
    );
    // Hold the one allowed connection (a half-sent request keeps it open and counted).
    let mut held = std::net::TcpStream::connect(relay.http).expect("connect");
    std::io::Write::write_all(&mut held, b"GET /health HTTP/1.1\r\n").expect("write");
    relay.stderr_line(|l| l.contains("tickrelay started"), "the start line");
    let storm: u64 = 200;
    let refused: Vec<_> = (0..storm)
        .map(|_| std::net::TcpStream::connect(relay.http).expect("connect"))
        .collect();
    // The count is reported by the periodic "N similar log lines suppressed" line, or, when
    // the storm outlasts a second on a loaded box, carried by the next refusal let through
    // (which resets it): either way a refusal line names a count > 0.
    let suppressed = |l: &str| -> u64 {
        l.split("suppressed=")
            .nth(1)
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|n| n.trim_matches('"').parse().ok())
            .unwrap_or(0)
    };
    let line = relay.stderr_line(
        |l| l.contains("connection refused") && suppressed(l) > 0,
        "a refusal line with the suppressed count",
    );
    let count = suppressed(&line);
    assert!(count > 0 && count < storm, "{line}");
    // Every one of the storm was refused: the limit counts a connection from its accept, not
    // from when its (busy) shard first serves it, so a burst cannot slip past it.
    // A connect queued behind the storm is refused too: once it is answered, the relay has
    // dealt with every connect of the storm while `held` still held the place.
    let (status, body) = http_get(relay.http, "GET", "/stats");
    assert_eq!(
        status, 503,
        "a connect while the only place is held: {body}"
    );
    drop(refused);
    drop(held);
    let mut refused_polls = 1;
    let stats = support_within(|| match http_get(relay.http, "GET", "/stats") {
        (200, body) => Some(body),
        (503, _) => {
            refused_polls += 1;
            None
        }
        (status, body) => panic!("/stats answered {status}: {body}"),
    });
    let stats: serde_json::Value = serde_json::from_str(&stats).expect("/stats is JSON");
    assert_eq!(
        stats["connections_refused"].as_u64(),
        Some(storm + refused_polls),
        "every connect of the storm is refused while one connection holds the only place \
         (and {refused_polls} polls of /stats were refused): {stats}"
    );
    assert_eq!(relay.stop(), Some(0));
}
