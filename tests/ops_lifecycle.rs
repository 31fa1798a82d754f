//! Session lifecycle lines at info, from the real binary's log: connect, close with code
//! and reason, end, and refusals (the storm limit itself is a unit test in `limits.rs`).

mod ops_common;

use futures_util::StreamExt as _;
use ops_common::{WAIT, spawn};
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

#[test]
fn a_refusal_storm_is_cut_to_the_rate_and_the_rest_counted() {
    let relay = spawn(&["--max-connections", "1"], &[]);
    // Hold the one allowed connection (a half-sent request keeps it open and counted).
    let mut held = std::net::TcpStream::connect(relay.http).expect("connect");
    std::io::Write::write_all(&mut held, b"GET /health HTTP/1.1\r\n").expect("write");
    relay.stderr_line(|l| l.contains("tickrelay started"), "the start line");
    let storm = 200;
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
    drop(refused);
    assert_eq!(relay.stop(), Some(0));
}
