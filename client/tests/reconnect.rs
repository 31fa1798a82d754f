//! The client against a real relay (in-process, real sockets): cut connections, frozen
//! connections, relay restarts, replay rings too short, subscription changes and slow
//! readers, each checked for exactly-once-or-gap delivery.

mod support;

use std::time::Duration;

use proptest::prelude::*;
use support::{Proxy, TestRelay, Tracker, fast_backoff, read_until};
use tickrelay::Config;
use tickrelay_client::{Client, Encoding, Error, GapReason, Item, Key, Options, SlowConsumer};

fn relay_config() -> Config {
    Config {
        shards: 1,
        replay_depth: 100_000,
        ..Config::for_tests()
    }
}

async fn client(url: &str, options: Options) -> Client {
    Client::connect(url, options.backoff(fast_backoff()))
        .await
        .expect("the client connects")
}

/// Ticks published in a live feed while the proxy cuts the client's connection three times:
/// every seq of both symbols arrives exactly once, with no gap and no reset.
async fn cuts_mid_stream_lose_nothing(encoding: Encoding) {
    let relay = TestRelay::start(relay_config()).await;
    let proxy = Proxy::start(relay.config.listen).await;
    let options = Options::new().symbols(["A", "B"]).encoding(encoding);
    let mut client = client(&proxy.url(), options).await;
    let pace = Duration::from_millis(5);
    let feed = async {
        tokio::join!(
            relay.publish("A", 2000, 1, 10, pace),
            relay.publish("B", 2000, 1, 10, pace)
        )
    };
    let mut tracker = Tracker::default();
    let (mut on_this_connection, mut cuts) = (0, 0);
    let read = read_until(
        &mut client,
        &mut tracker,
        "both symbols to reach seq 2000",
        |t| t.last("A") == Some(2000) && t.last("B") == Some(2000),
        // Three cuts, each after 300 items of the connection it cuts: counting items overall
        // could cut while the client was between connections (its backlog still being read).
        |_, item| {
            on_this_connection = match item {
                Item::Connected(_) => 0,
                _ => on_this_connection + 1,
            };
            if on_this_connection == 300 && cuts < 3 {
                cuts += 1;
                proxy.cut();
            }
        },
    );
    tokio::join!(feed, read);
    assert_eq!(tracker.disconnects.len(), 3, "{:?}", tracker.disconnects);
    assert!(tracker.gaps.is_empty(), "no gap: {:?}", tracker.gaps);
    assert!(tracker.resets.is_empty(), "no reset: {:?}", tracker.resets);
    for symbol in ["A", "B"] {
        let seqs: Vec<u64> = tracker.seqs[symbol].iter().map(|(s, _)| *s).collect();
        assert_eq!(
            seqs,
            (1..=2000).collect::<Vec<_>>(),
            "{symbol}: every seq once"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_cuts_mid_stream_lose_nothing() {
    cuts_mid_stream_lose_nothing(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_cuts_mid_stream_lose_nothing() {
    cuts_mid_stream_lose_nothing(Encoding::Protobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_cuts_mid_stream_lose_nothing() {
    cuts_mid_stream_lose_nothing(Encoding::Gzip).await;
}

/// A relay restart gives a new history. Whether the new history is ahead of the client's
/// position (the same seqs, other ticks) or behind it (seqs from 1), the client delivers a
/// reset first and never splices the new ticks onto the old ones.
async fn a_relay_restart_is_a_reset_never_a_silent_splice(encoding: Encoding) {
    let mut relay = TestRelay::start(relay_config()).await;
    let proxy = Proxy::start(relay.config.listen).await;
    let options = Options::new().symbols(["A"]).encoding(encoding);
    let mut client = client(&proxy.url(), options).await;
    let mut tracker = Tracker::default();
    relay.publish("A", 200, 1, 50, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 200",
        |t| t.last("A") == Some(200),
        |_, _| {},
    )
    .await;

    // 1. The new history reaches past the client's position before the client is back.
    proxy.set_down(true);
    relay.restart().await;
    relay.publish("A", 300, 2, 50, Duration::ZERO).await;
    relay.wait_seq("A", 300).await;
    proxy.set_down(false);
    read_until(
        &mut client,
        &mut tracker,
        "a reset, then A seq 300 of the new history",
        |t| t.resets.len() == 1 && t.last("A") == Some(300),
        |_, _| {},
    )
    .await;
    // The relay names its epoch in welcome; the client resumes with the old one and the
    // relay answers reset + the new history's newest value, which the client delivers.
    let reset = &tracker.resets[0];
    assert_eq!((reset.last_seq, reset.seq), (200, 300), "{reset:?}");
    assert!(reset.epoch.is_some(), "the new history's epoch: {reset:?}");
    let after: Vec<(u64, u64)> = tracker.seqs["A"].clone();
    assert_eq!(after.len(), 1, "the new history's newest value: {after:?}");
    assert!(
        after.iter().all(|(_, ts)| ts / 1_000_000_000 == 2),
        "every tick after the reset is of the new history"
    );

    // 2. The client is back before the new history has any tick: seqs start again at 1.
    relay.restart().await;
    read_until(
        &mut client,
        &mut tracker,
        "a reconnect",
        |t| t.connects == 3,
        |_, _| {},
    )
    .await;
    relay.publish("A", 50, 3, 10, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "a second reset, then A seq 50 of the third history",
        |t| t.resets.len() == 2 && t.last("A") == Some(50),
        |_, _| {},
    )
    .await;
    assert_eq!(
        (tracker.resets[1].last_seq, tracker.resets[1].seq),
        (300, 1)
    );
    assert!(tracker.gaps.is_empty(), "{:?}", tracker.gaps);
    assert_eq!(
        tracker.disconnects.len(),
        2,
        "one per restart: {:?}",
        tracker.disconnects
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_relay_restart_is_a_reset() {
    a_relay_restart_is_a_reset_never_a_silent_splice(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_relay_restart_is_a_reset() {
    a_relay_restart_is_a_reset_never_a_silent_splice(Encoding::Protobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_relay_restart_is_a_reset() {
    a_relay_restart_is_a_reset_never_a_silent_splice(Encoding::Gzip).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_connection_is_detected_and_resumed() {
    let relay = TestRelay::start(relay_config()).await;
    let proxy = Proxy::start(relay.config.listen).await;
    let options = Options::new()
        .symbols(["A"])
        .liveness_timeout(Duration::from_secs(2));
    let mut client = client(&proxy.url(), options).await;
    let mut tracker = Tracker::default();
    relay.publish("A", 100, 1, 50, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 100",
        |t| t.last("A") == Some(100),
        |_, _| {},
    )
    .await;
    proxy.freeze();
    relay.publish("A", 100, 1, 50, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 200 after the frozen connection is given up",
        |t| t.last("A") == Some(200),
        |_, _| {},
    )
    .await;
    assert_eq!(tracker.disconnects.len(), 1);
    assert!(
        tracker.disconnects[0].contains("no data"),
        "{:?}",
        tracker.disconnects
    );
    assert!(tracker.gaps.is_empty() && tracker.resets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_quiet_healthy_connection_is_kept() {
    let relay = TestRelay::start(relay_config()).await;
    let options = Options::new()
        .symbols(["A"])
        .liveness_timeout(Duration::from_secs(1));
    let mut client = client(&relay.url(), options).await;
    let mut tracker = Tracker::default();
    // Time passing without a tick is what this test is about: 2.5 liveness timeouts, in
    // which only the client's pings (answered with pongs) keep the connection alive.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    relay.publish("A", 1, 1, 1, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 1",
        |t| t.last("A") == Some(1),
        |_, _| {},
    )
    .await;
    assert!(tracker.disconnects.is_empty(), "{:?}", tracker.disconnects);
    assert_eq!(tracker.connects, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resume_older_than_the_ring_is_an_explicit_gap() {
    let relay = TestRelay::start(Config {
        replay_depth: 10,
        ..relay_config()
    })
    .await;
    let proxy = Proxy::start(relay.config.listen).await;
    let mut client = client(&proxy.url(), Options::new().symbols(["A"])).await;
    let mut tracker = Tracker::default();
    relay.publish("A", 5, 1, 5, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 5",
        |t| t.last("A") == Some(5),
        |_, _| {},
    )
    .await;
    proxy.set_down(true);
    proxy.cut();
    relay.publish("A", 100, 1, 50, Duration::ZERO).await;
    relay.wait_seq("A", 105).await;
    proxy.set_down(false);
    let mut snapshot = None;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 105",
        |t| t.last("A") == Some(105),
        |_, item| {
            if let Item::Snapshot(t) = item {
                snapshot = Some(t.seq);
            }
        },
    )
    .await;
    assert_eq!(tracker.gaps.len(), 1, "{:?}", tracker.gaps);
    let gap = &tracker.gaps[0];
    assert_eq!(
        (gap.from, gap.to, gap.reason),
        (6, 104, GapReason::NotReplayable)
    );
    assert_eq!(snapshot, Some(105), "the newest value follows the gap");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn subscriptions_change_while_running_and_a_resubscribe_resumes() {
    let relay = TestRelay::start(relay_config()).await;
    let mut client = client(&relay.url(), Options::new().symbols(["A"])).await;
    let mut tracker = Tracker::default();
    relay.publish("A", 3, 1, 3, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "A seq 3",
        |t| t.last("A") == Some(3),
        |_, _| {},
    )
    .await;

    client.subscribe(["B"]).unwrap();
    relay.publish("B", 1, 1, 1, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "B seq 1",
        |t| t.last("B") == Some(1),
        |_, _| {},
    )
    .await;

    // Control messages are handled in order: once C's first tick (or snapshot) arrives, A
    // is unsubscribed.
    client.unsubscribe(["A"]).unwrap();
    client.subscribe(["C"]).unwrap();
    relay.publish("C", 1, 1, 1, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "C seq 1",
        |t| t.last("C") == Some(1),
        |_, _| {},
    )
    .await;
    relay.publish("A", 5, 1, 5, Duration::ZERO).await;
    relay.wait_seq("A", 8).await;
    relay.publish("C", 1, 1, 1, Duration::ZERO).await;
    read_until(
        &mut client,
        &mut tracker,
        "C seq 2",
        |t| t.last("C") == Some(2),
        |_, _| {},
    )
    .await;
    assert_eq!(
        tracker.last("A"),
        Some(3),
        "no tick of A after unsubscribing"
    );

    // Subscribing again resumes: the five ticks published meanwhile arrive, exactly once.
    client.subscribe(["A"]).unwrap();
    read_until(
        &mut client,
        &mut tracker,
        "A seq 8",
        |t| t.last("A") == Some(8),
        |_, _| {},
    )
    .await;
    let seqs: Vec<u64> = tracker.seqs["A"].iter().map(|(s, _)| *s).collect();
    assert_eq!(seqs, (1..=8).collect::<Vec<_>>());
    assert!(tracker.gaps.is_empty() && tracker.errors.is_empty());
    assert_eq!(client.positions().get("A"), Some(&8));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_gets_the_newest_ticks_and_gaps_when_conflating() {
    let relay = TestRelay::start(relay_config()).await;
    let options = Options::new()
        .symbols(["A"])
        .buffer(8)
        .slow_consumer(SlowConsumer::Conflate);
    let mut client = client(&relay.url(), options).await;
    // Nobody reads while 2,000 ticks arrive: the buffer fills with 8 items, then conflation
    // holds a gap and the newest tick.
    relay.publish("A", 2000, 1, 2000, Duration::ZERO).await;
    support::wait_for(
        "8 items, a gap and the newest tick to be waiting",
        || async { client.backlog() == 10 },
    )
    .await;
    let mut tracker = Tracker::default();
    read_until(
        &mut client,
        &mut tracker,
        "A seq 2000",
        |t| t.last("A") == Some(2000),
        |_, _| {},
    )
    .await;
    assert!(
        !tracker.gaps.is_empty(),
        "a slow reader is told what it skipped"
    );
    assert!(tracker.gaps.iter().all(|g| matches!(
        g.reason,
        GapReason::ClientConflated | GapReason::RelayConflated
    )));
    assert!(tracker.items < 2000, "conflated: {} items", tracker.items);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_that_waits_is_cut_off_by_the_relay_and_loses_nothing() {
    let relay = TestRelay::start(Config {
        outbox_bytes: 16 * 1024,
        send_buffer_bytes: 4096,
        ..relay_config()
    })
    .await;
    // SlowConsumer::Wait (the default): with 16 items buffered the client stops reading.
    let mut client = client(&relay.url(), Options::new().symbols(["A"]).buffer(16)).await;
    relay
        .publish("A", 20_000, 1, 500, Duration::from_millis(1))
        .await;
    support::wait_for(
        "the relay to close the stalled client with 4008",
        || async { relay.slow_disconnects() >= 1 },
    )
    .await;
    let mut tracker = Tracker::default();
    read_until(
        &mut client,
        &mut tracker,
        "A seq 20000",
        |t| t.last("A") == Some(20_000),
        |_, _| {},
    )
    .await;
    assert!(
        tracker.gaps.is_empty() && tracker.resets.is_empty(),
        "{tracker:?}"
    );
    assert!(
        !tracker.disconnects.is_empty(),
        "the client was cut off and resumed"
    );
    assert_eq!(tracker.seqs["A"].len(), 20_000, "every seq once");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_reader_can_ask_for_an_error_instead() {
    let relay = TestRelay::start(relay_config()).await;
    let options = Options::new()
        .symbols(["A"])
        .buffer(8)
        .slow_consumer(SlowConsumer::Error);
    let mut client = client(&relay.url(), options).await;
    relay.publish("A", 100, 1, 100, Duration::ZERO).await;
    relay.wait_seq("A", 100).await;
    support::wait_for("8 items and the error to be waiting", || async {
        client.backlog() == 9
    })
    .await;
    let mut tracker = Tracker::default();
    let error = loop {
        match tokio::time::timeout(support::WAIT, client.next())
            .await
            .expect("the stream fails in time")
        {
            Some(Ok(item)) => tracker.feed(&item),
            Some(Err(e)) => break e,
            None => panic!("the stream ended without its error"),
        }
    };
    assert_eq!(error, Error::ConsumerTooSlow { capacity: 8 });
    assert_eq!(tracker.items, 8, "the buffered items come first");
    let next = tokio::time::timeout(support::WAIT, client.next()).await;
    assert!(matches!(next, Ok(None)), "then the stream ends");
    // The position tells a new client where to resume from.
    assert_eq!(client.positions().get("A").copied(), tracker.last("A"));
}

/// Under `*` a client may know more symbols than the relay lets it resume at once: it then
/// reconnects without positions, and the snapshots' jumps are delivered as explicit gaps.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_wildcard_with_too_many_positions_to_resume_falls_back_to_gaps() {
    // One shard: `wait_seq` reads /price from one shard, and the client's must have the
    // ticks too when it reconnects, or a snapshot at seq 4 would be no jump at all.
    let relay = TestRelay::start(Config {
        max_symbols_per_client: 2,
        shards: 1,
        ..relay_config()
    })
    .await;
    let proxy = Proxy::start(relay.config.listen).await;
    let mut client = client(&proxy.url(), Options::new().symbols(["*"])).await;
    let mut tracker = Tracker::default();
    for symbol in ["A", "B", "C"] {
        relay.publish(symbol, 3, 1, 3, Duration::ZERO).await;
    }
    let all_at = |seq| move |t: &Tracker| ["A", "B", "C"].iter().all(|s| t.last(s) == Some(seq));
    read_until(
        &mut client,
        &mut tracker,
        "A, B and C at seq 3",
        all_at(3),
        |_, _| {},
    )
    .await;
    proxy.set_down(true);
    proxy.cut();
    for symbol in ["A", "B", "C"] {
        relay.publish(symbol, 2, 1, 2, Duration::ZERO).await;
        relay.wait_seq(symbol, 5).await;
    }
    proxy.set_down(false);
    read_until(
        &mut client,
        &mut tracker,
        "A, B and C at seq 5",
        all_at(5),
        |_, _| {},
    )
    .await;
    assert_eq!(
        tracker.connects, 2,
        "reconnected despite the refused resume list"
    );
    let mut gaps: Vec<(String, u64, u64)> = tracker
        .gaps
        .iter()
        .map(|g| (g.key.name().to_owned(), g.from, g.to))
        .collect();
    gaps.sort();
    let expected: Vec<(String, u64, u64)> = ["A", "B", "C"]
        .iter()
        .map(|s| (s.to_string(), 4, 4))
        .collect();
    assert_eq!(gaps, expected, "each snapshot's jump is a gap");
    assert!(tracker.errors.is_empty() && tracker.resets.is_empty());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_refused_first_connection_names_the_relay_error() {
    let relay = TestRelay::start(relay_config()).await;
    let error = Client::connect(&relay.url(), Options::new().symbols(["bad symbol!"]))
        .await
        .expect_err("an invalid symbol is refused");
    let text = error.to_string();
    assert!(
        text.contains("400") && text.contains("invalid_symbol"),
        "{text}"
    );
}

/// Positions handed from one client to the next, with their epoch, resume exactly after
/// them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resume_from_positions_continues_in_a_new_client() {
    let relay = TestRelay::start(relay_config()).await;
    relay.publish("A", 20, 1, 20, Duration::ZERO).await;
    relay.wait_seq("A", 20).await;
    let options = Options::new()
        .symbols(["A"])
        .resume_from([("A", 12)])
        .resume_epoch(relay.epoch().to_string());
    let mut client = client(&relay.url(), options).await;
    let mut first = None;
    let mut tracker = Tracker::default();
    read_until(
        &mut client,
        &mut tracker,
        "A seq 20",
        |t| t.last("A") == Some(20),
        |_, item| {
            if first.is_none() {
                first = item.seq();
            }
        },
    )
    .await;
    assert_eq!(first, Some((Key::Symbol("A".into()), 13)));
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 6, ..ProptestConfig::default() })]

    /// Connections cut at random points of a live feed never cost or repeat a tick.
    #[test]
    fn random_disconnects_never_lose_or_repeat_a_tick(
        cuts in proptest::collection::btree_set(5usize..1200, 1..5),
        encoding in prop_oneof![Just(Encoding::Json), Just(Encoding::Protobuf), Just(Encoding::Gzip)],
    ) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let relay = TestRelay::start(relay_config()).await;
            let proxy = Proxy::start(relay.config.listen).await;
            let mut client = client(&proxy.url(), Options::new().symbols(["A"]).encoding(encoding)).await;
            let mut tracker = Tracker::default();
            let feed = relay.publish("A", 1000, 1, 10, Duration::from_millis(3));
            let read = read_until(
                &mut client,
                &mut tracker,
                "A seq 1000",
                |t| t.last("A") == Some(1000),
                |t, _| if cuts.contains(&t.items) { proxy.cut() },
            );
            tokio::join!(feed, read);
            assert!(tracker.gaps.is_empty() && tracker.resets.is_empty(), "{tracker:?}");
            assert_eq!(tracker.seqs["A"].len(), 1000);
        });
    }
}
