//! Rate tiers against a real relay (in-process, real sockets): a tier subscription beside the
//! raw one of the same symbol, in json and protobuf, and across a cut connection. The raw
//! stream keeps every seq; the tier's frames chain (`from_seq` = the last frame's seq + 1)
//! and no gap is reported that is not one.

mod support;

use std::time::Duration;

use support::{Proxy, TestRelay, Tracker, fast_backoff, read_until};
use tickrelay::Config;
use tickrelay_client::{Client, Encoding, Item, Options};

/// The relay's shortest default tier, so that a test sees many frames in a second.
const TIER: &str = "A@100ms";

fn relay_config() -> Config {
    Config {
        shards: 1,
        replay_depth: 100_000,
        ..Config::for_tests()
    }
}

async fn client(url: &str, encoding: Encoding) -> Client {
    let options = Options::new()
        .symbols(["A", TIER])
        .encoding(encoding)
        .backoff(fast_backoff());
    Client::connect(url, options)
        .await
        .expect("the client connects")
}

/// What every tier test checks once both streams reached `last`: the raw stream delivered
/// every seq once, the tier's frames chained from seq 1 to `last` (the tracker checked each
/// step) and counted every trade once, and nothing was reported missing.
fn check(tracker: &Tracker, last: u64) {
    let raw: Vec<u64> = tracker.seqs["A"].iter().map(|&(seq, _)| seq).collect();
    assert_eq!(
        raw,
        (1..=last).collect::<Vec<_>>(),
        "the raw stream, seq by seq"
    );
    let frames = &tracker.frames[TIER];
    assert_eq!(
        frames[0].0, 1,
        "the first frame stands for the first tick: {frames:?}"
    );
    assert!(frames.len() > 1, "several frames: {frames:?}");
    for pair in frames.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "from_seq chains: {frames:?}");
    }
    let trades: u64 = frames.iter().map(|&(_, _, trades)| trades).sum();
    assert_eq!(trades, last, "every trade counted once: {frames:?}");
    assert!(tracker.gaps.is_empty(), "no gap: {:?}", tracker.gaps);
    assert!(tracker.resets.is_empty(), "no reset: {:?}", tracker.resets);
    assert!(tracker.errors.is_empty(), "no error: {:?}", tracker.errors);
}

/// A tier beside the raw stream of the same symbol: raw ticks exactly as without the tier,
/// tier frames with their own seqs and typed fields, no gap item.
async fn a_tier_beside_the_raw_stream_is_followed_apart(encoding: Encoding) {
    let relay = TestRelay::start(relay_config()).await;
    let mut client = client(&relay.url(), encoding).await;
    let feed = relay.publish("A", 300, 1, 5, Duration::from_millis(10));
    let mut tracker = Tracker::default();
    let mut typed = None;
    let read = read_until(
        &mut client,
        &mut tracker,
        "A and A@100ms to reach seq 300",
        |t| t.last("A") == Some(300) && t.last(TIER) == Some(300),
        |_, item| {
            if let Item::Tick(t) = item
                && let Some(tier) = &t.tier
            {
                typed = Some(tier.clone());
            }
        },
    );
    tokio::join!(feed, read);
    check(&tracker, 300);
    let tier = typed.expect("a tier tick");
    assert_eq!(tier.name, "100ms");
    assert!(
        tier.volume > 0.0 && tier.high.is_some() && tier.low.is_some(),
        "{tier:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_beside_the_raw_stream_is_followed_apart_json() {
    a_tier_beside_the_raw_stream_is_followed_apart(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tier_beside_the_raw_stream_is_followed_apart_protobuf() {
    a_tier_beside_the_raw_stream_is_followed_apart(Encoding::Protobuf).await;
}

/// The proxy cuts the connection twice while both streams flow: the client resumes the tier
/// as `A@100ms:SEQ` and the next frame chains onto the last one it delivered, with no false
/// gap; the raw stream loses and repeats nothing.
async fn a_cut_tier_resumes_where_it_stopped(encoding: Encoding) {
    let relay = TestRelay::start(relay_config()).await;
    let proxy = Proxy::start(relay.config.listen).await;
    let mut client = client(&proxy.url(), encoding).await;
    let feed = relay.publish("A", 600, 1, 5, Duration::from_millis(10));
    let mut tracker = Tracker::default();
    let (mut frames_here, mut cuts) = (0, 0);
    let read = read_until(
        &mut client,
        &mut tracker,
        "A and A@100ms to reach seq 600",
        |t| t.last("A") == Some(600) && t.last(TIER) == Some(600),
        // Each cut after two tier frames of the connection it cuts (of about twelve in the
        // feed), so that the tier has a position to resume.
        |_, item| {
            match item {
                Item::Connected(_) => frames_here = 0,
                Item::Tick(t) if t.tier.is_some() => frames_here += 1,
                _ => {}
            }
            if frames_here == 2 && cuts < 2 {
                cuts += 1;
                frames_here = 0;
                proxy.cut();
            }
        },
    );
    tokio::join!(feed, read);
    assert_eq!(cuts, 2);
    assert_eq!(tracker.disconnects.len(), 2, "{tracker:?}");
    check(&tracker, 600);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tier_resumes_where_it_stopped_json() {
    a_cut_tier_resumes_where_it_stopped(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cut_tier_resumes_where_it_stopped_protobuf() {
    a_cut_tier_resumes_where_it_stopped(Encoding::Protobuf).await;
}

/// A channel on a tier beside the channel itself: every event of `news`, and events of
/// `news@100ms` whose `from_seq` chains from 1 to the last seq, with no gap.
async fn a_channel_tier_beside_the_channel_is_followed_apart(encoding: Encoding) {
    use tokio::io::AsyncWriteExt;
    let relay = TestRelay::start(relay_config()).await;
    let options = Options::new()
        .channels(["news", "news@100ms"])
        .encoding(encoding)
        .backoff(fast_backoff());
    let mut client = Client::connect(&relay.url(), options)
        .await
        .expect("the client connects");
    let feed = async {
        let mut ingest = tokio::net::TcpStream::connect(relay.config.ingest_tcp)
            .await
            .expect("ingest connects");
        for i in 1..=60u64 {
            let line = format!("{{\"channel\":\"news\",\"data\":{{\"i\":{i}}},\"ts_ns\":{i}}}\n");
            ingest
                .write_all(line.as_bytes())
                .await
                .expect("ingest write");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        ingest.flush().await.expect("ingest flush");
    };
    let read = async {
        let (mut raw, mut frames, mut other) = (Vec::new(), Vec::new(), Vec::new());
        while raw.last() != Some(&60) || frames.last().map(|&(_, seq)| seq) != Some(60) {
            let item = tokio::time::timeout(support::WAIT, client.next())
                .await
                .unwrap_or_else(|_| panic!("timed out: raw {raw:?}, frames {frames:?}"))
                .expect("the stream goes on")
                .expect("no error");
            match item {
                Item::Event(e) => match e.tier {
                    Some(tier) => {
                        assert_eq!(tier.name, "100ms");
                        frames.push((tier.from_seq, e.seq));
                    }
                    None => raw.push(e.seq),
                },
                Item::Connected(_) => {}
                other_item => other.push(other_item),
            }
        }
        (raw, frames, other)
    };
    let ((), (raw, frames, other)) = tokio::join!(feed, read);
    assert_eq!(raw, (1..=60).collect::<Vec<_>>(), "the channel, seq by seq");
    assert_eq!(frames[0].0, 1, "{frames:?}");
    assert!(frames.len() > 1, "several frames: {frames:?}");
    for pair in frames.windows(2) {
        assert_eq!(pair[1].0, pair[0].1 + 1, "from_seq chains: {frames:?}");
    }
    assert!(other.is_empty(), "no gap, reset or error: {other:?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_tier_beside_the_channel_is_followed_apart_json() {
    a_channel_tier_beside_the_channel_is_followed_apart(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_channel_tier_beside_the_channel_is_followed_apart_protobuf() {
    a_channel_tier_beside_the_channel_is_followed_apart(Encoding::Protobuf).await;
}
