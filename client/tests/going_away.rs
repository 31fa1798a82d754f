//! A relay that closes with 1001 (going away: it is stopping) or 1012 (service restart) is
//! left at once, not after a backoff: the client reconnects after a small jitter only and
//! resumes wherever the URL leads now. The backoff here is an hour, so only the immediate
//! reconnect can pass within the tests' wait.

mod support;

use std::time::Duration;

use support::script::{Encoder, ScriptServer, tick, welcome};
use support::{Proxy, TestRelay, Tracker, WAIT, read_until};
use tickrelay::Config;
use tickrelay_client::{Backoff, Client, Encoding, Item, Options};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::protocol::CloseFrame;

/// Longer than any test waits: a reconnect that waits for it fails the test.
fn an_hour() -> Backoff {
    Backoff {
        initial: Duration::from_secs(3600),
        max: Duration::from_secs(3600),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_going_away_is_left_at_once_for_the_next_one_and_resumed() {
    let config = Config {
        shards: 1,
        ..Config::for_tests()
    };
    let mut stopping = TestRelay::start(config.clone()).await;
    let next = TestRelay::start(config).await;
    let balancer = Proxy::start(stopping.config.listen).await;
    let options = Options::new().symbols(["A"]).backoff(an_hour());
    let mut client = Client::connect(&balancer.url(), options)
        .await
        .expect("connects");
    let mut tracker = Tracker::default();
    stopping.publish("A", 3, 1, 3, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 3",
        |t| t.last("A") == Some(3),
        |_, _| {},
    )
    .await;

    // The other relay has its own history of A (5 ticks); new connections now go there.
    next.publish("A", 5, 2, 5, Duration::ZERO).await;
    next.wait_seq("A", 5).await;
    balancer.retarget(next.config.listen);
    stopping.stop().await;
    let mut closes = Vec::new();
    read_until(
        &mut client,
        &mut tracker,
        "the next relay's A seq 5",
        |t| t.last("A") == Some(5),
        |_, item| {
            if let Item::Disconnected(d) = item {
                closes.push(d.code);
            }
        },
    )
    .await;
    assert_eq!(closes, [Some(1001)]);
    assert_eq!(tracker.connects, 2);
    // The client resumed with the stopping relay's epoch; the next relay serves another
    // history, so it answered with a reset and its newest value.
    let reset = &tracker.resets[..];
    assert!(
        matches!(reset, [r] if (r.last_seq, r.seq) == (3, 5)),
        "{reset:?}"
    );
    assert_eq!(tracker.seqs["A"], [(5, 2_000_000_005)]);
}

#[tokio::test]
async fn a_service_restart_close_is_followed_at_once_by_a_resume() {
    let mut frames = Encoder::new(Encoding::Json, false);
    let mut first: Vec<Frame> = [welcome(1), tick("A", 1), tick("A", 2)]
        .iter()
        .map(|m| frames.frame(std::slice::from_ref(m)))
        .collect();
    first.push(Frame::Close(Some(CloseFrame {
        code: 1012.into(),
        reason: "service restart".into(),
    })));
    // The resume from 1: seq 2 again (the same tick, dropped as the overlap), then 3.
    let second = [welcome(2), tick("A", 2), tick("A", 3)]
        .iter()
        .map(|m| frames.frame(std::slice::from_ref(m)))
        .collect();
    let server = ScriptServer::start(vec![first, second]).await;
    let options = Options::new().symbols(["A"]).backoff(an_hour());
    let mut client = Client::connect(&server.url(), options)
        .await
        .expect("connects");
    let mut shape = Vec::new();
    while shape.last().map(String::as_str) != Some("tick 3") {
        let item = tokio::time::timeout(WAIT, client.next())
            .await
            .unwrap_or_else(|_| panic!("timed out after {shape:?}: no reconnect at once"))
            .expect("the stream goes on")
            .expect("no error");
        shape.push(match item {
            Item::Connected(c) => format!("connected {}", c.session),
            Item::Tick(t) => format!("tick {}", t.seq),
            Item::Disconnected(d) => format!("disconnected {:?}", d.code),
            other => format!("{other:?}"),
        });
    }
    assert_eq!(
        shape,
        [
            "connected 1",
            "tick 1",
            "tick 2",
            "disconnected Some(1012)",
            "connected 2",
            "tick 3"
        ]
    );
    let requests = server.requests();
    assert!(
        requests[1].contains("resume=A:1") && requests[1].contains("epoch=7"),
        "{requests:?}"
    );
}
