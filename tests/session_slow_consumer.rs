//! A client that stops reading never slows the others: `disconnect` closes it with 4008,
//! `conflate` keeps the latest tick per symbol and reports the skipped seqs as a gap.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::Ordering;
use std::time::Duration;

use support::{TestRelay, tick_line};
use tickrelay::Config;
use tickrelay::config::SlowPolicy;

/// The tests of this file run one at a time: each floods a relay with thousands of
/// ticks, and run side by side they starved each other's readers on a 2-core box (a
/// reading client was cut off as slow), and skewed the stuck-client timing.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

fn small_budget() -> Config {
    Config {
        outbox_bytes: 16 * 1024,
        outbox_max_age: Duration::from_millis(300),
        send_buffer_bytes: 16 * 1024,
        ..Config::for_tests()
    }
}

/// Publishes `count` ticks per symbol in chunks of 500 rounds every 5 ms (100k rounds/s:
/// fast, but paced like a feed rather than one socket-sized burst).
async fn publish(relay: &TestRelay, symbols: &[&str], count: u64) {
    let mut ingest = relay.ingest().await;
    for chunk in (1..=count).collect::<Vec<_>>().chunks(500) {
        let lines: Vec<String> = chunk
            .iter()
            .flat_map(|i| {
                symbols
                    .iter()
                    .map(move |s| tick_line(s, 1.0 + *i as f64, *i))
            })
            .collect();
        ingest.send_lines(&lines).await;
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_client_is_disconnected_with_4008_and_others_lose_nothing() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    // The reading client reads each burst of 500 ticks (~65 KB) before the next is sent,
    // so its backlog never nears the 1 MiB budget, however slow the box; the stalled one
    // accumulates all ~2.6 MB. (With the reader racing a free-running publisher, a debug
    // build on a loaded box fell behind by more than 1 MiB and was cut off: 1 run in 10.)
    let relay = TestRelay::start(Config {
        shards: 1,
        outbox_bytes: 1024 * 1024,
        outbox_max_age: Duration::from_secs(2),
        ..small_budget()
    })
    .await;
    let mut slow = support::slow_client(&relay, "?symbols=A").await;
    let mut fast = relay.client("?symbols=A").await;
    // The slow client reads as soon as the relay has decided it is slow (not before: then
    // it would not be slow): the close frame waits behind what the kernel holds for it, and
    // the relay gives it 1 s (RFC 6455 §7.1.1) before it drops the connection.
    let metrics = relay
        .handle
        .as_ref()
        .expect("relay running")
        .shared
        .metrics
        .clone();
    let closed = tokio::spawn(async move {
        let decided = || metrics.shard(0).slow_disconnects.load(Ordering::Relaxed) == 1;
        support::within("the slow consumer decision", async {
            while !decided() {
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        })
        .await;
        slow.expect_close().await
    });
    let mut ingest = relay.ingest().await;
    let mut seen = Vec::new();
    for chunk in (1..=20_000u64).collect::<Vec<_>>().chunks(500) {
        let lines: Vec<String> = chunk
            .iter()
            .map(|i| tick_line("A", 1.0 + *i as f64, *i))
            .collect();
        ingest.send_lines(&lines).await;
        let last = *chunk.last().expect("chunks are not empty");
        seen.extend(
            fast.ticks_until(&BTreeMap::from([("A".to_owned(), last)]))
                .await
                .remove("A")
                .unwrap_or_default(),
        );
    }
    assert_eq!(
        seen,
        (1..=20_000).collect::<Vec<u64>>(),
        "the reading client lost nothing"
    );
    let (code, reason) = closed.await.expect("the slow client's task");
    assert_eq!((code, reason.as_str()), (4008, "slow consumer"));
    assert_eq!(
        relay.get("/stats").await.1["shards"][0]["slow_disconnects"],
        1
    );

    // After it, a fresh client gets a correct stream.
    let mut fresh = relay.client("?symbols=A").await;
    assert_eq!(
        fresh.next_json().await["seq"],
        20_000,
        "snapshot of the last value"
    );
    publish(&relay, &["A"], 1).await;
    assert_eq!(fresh.next_json().await["seq"], 20_001);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_conflating_client_gets_the_latest_ticks_and_exact_gaps() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = TestRelay::start(Config {
        shards: 1,
        slow_policy: SlowPolicy::Conflate,
        ..small_budget()
    })
    .await;
    let mut slow = support::slow_client(&relay, "?symbols=A,B").await;
    assert_eq!(slow.next_json().await["type"], "welcome");
    publish(&relay, &["A", "B"], 20_000).await;
    support::wait_for("conflation happened", || async {
        relay.get("/stats").await.1["shards"][0]["conflated"].as_u64() > Some(0)
    })
    .await;
    // Now read everything: per symbol the seqs received plus the gaps reported must cover
    // 1..=20000 exactly once, in order, and end with the newest tick itself: the client
    // lagged until the end, so the last thing of each symbol is a gap up to 19,999 and
    // then tick 20,000 (a gap may never swallow the newest tick).
    let mut next: BTreeMap<String, u64> = BTreeMap::from([("A".into(), 1), ("B".into(), 1)]);
    let mut gaps: BTreeMap<String, u64> = BTreeMap::new();
    let mut last_tick: BTreeMap<String, u64> = BTreeMap::new();
    while last_tick.values().filter(|seq| **seq == 20_000).count() < 2 {
        let msg = slow.next_json().await;
        let symbol = msg["symbol"].as_str().unwrap().to_owned();
        let expected = next[&symbol];
        match msg["type"].as_str().unwrap() {
            "tick" => {
                assert_eq!(
                    msg["seq"].as_u64(),
                    Some(expected),
                    "{symbol}: in order, nothing unexplained missing"
                );
                *next.get_mut(&symbol).unwrap() += 1;
                last_tick.insert(symbol, expected);
            }
            "gap" => {
                assert_eq!(
                    msg["from"].as_u64(),
                    Some(expected),
                    "{symbol}: gap starts where the stream stopped"
                );
                let to = msg["to"].as_u64().unwrap();
                assert!(
                    to >= expected,
                    "{symbol}: a gap covers at least one seq: {msg}"
                );
                assert!(
                    to < 20_000,
                    "{symbol}: the gap swallowed the newest tick (it must end before it, \
                     and the newest tick follow): {msg}"
                );
                *next.get_mut(&symbol).unwrap() = to + 1;
                *gaps.entry(symbol).or_default() += 1;
            }
            other => panic!("unexpected {other}: {msg}"),
        }
    }
    assert!(
        gaps.get("A") >= Some(&1) && gaps.get("B") >= Some(&1),
        "both symbols were conflated at least once: {gaps:?}"
    );
    let (_, stats) = relay.get("/stats").await;
    assert_eq!(
        stats["shards"][0]["slow_disconnects"], 0,
        "conflation does not disconnect"
    );
}

/// Publishes one tick of `symbol` per round and waits for `reader` to receive it, `rounds`
/// times; returns the total time. Each round is at least one fan-out turn of the shard.
async fn round_trips(
    ingest: &mut support::Ingest,
    reader: &mut support::WsClient,
    symbol: &str,
    first_seq: u64,
    rounds: u64,
) -> Duration {
    let started = tokio::time::Instant::now();
    for seq in first_seq..first_seq + rounds {
        ingest.send_lines(&[tick_line(symbol, 1.0, seq)]).await;
        let tick = reader.next_json().await;
        assert_eq!(
            (tick["type"].as_str(), tick["seq"].as_u64()),
            (Some("tick"), Some(seq)),
            "the bystander receives every tick, in order: {tick}"
        );
    }
    started.elapsed()
}

/// A client whose socket is full stays on its shard (a budget it never reaches), and the
/// shard's other client is not slowed: round trips with the stuck client present take
/// about as long as without it. A shard that spent even 10 ms per turn on the stuck
/// client would add 10 ms to every round (4 s over 400), far above the allowance of 5 ms
/// per round, which a loaded box never needs (a round trip is well under 1 ms idle).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stuck_client_does_not_delay_the_other_clients_of_its_shard() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    const ROUNDS: u64 = 400;
    let relay = TestRelay::start(Config {
        shards: 1,
        outbox_bytes: 64 * 1024 * 1024,
        outbox_max_age: Duration::from_secs(600),
        ..small_budget()
    })
    .await;
    let mut bystander = relay.client("?symbols=A").await;
    let mut ingest = relay.ingest().await;
    let alone = round_trips(&mut ingest, &mut bystander, "A", 1, ROUNDS).await;

    let _stuck = support::slow_client(&relay, "?symbols=A").await;
    // ~650 KB for a client whose socket takes ~20 KB: it is stuck from here on.
    let fill_to = ROUNDS + 5_000;
    let lines: Vec<String> = (ROUNDS + 1..=fill_to)
        .map(|seq| tick_line("A", 1.0, seq))
        .collect();
    ingest.send_lines(&lines).await;
    bystander
        .ticks_until(&BTreeMap::from([("A".to_owned(), fill_to)]))
        .await;
    let with_stuck = round_trips(&mut ingest, &mut bystander, "A", fill_to + 1, ROUNDS).await;

    assert_eq!(
        relay.shard_stat(0, "slow_disconnects").await,
        0,
        "the stuck client stayed connected (within its budget) for the whole test"
    );
    let allowance = Duration::from_millis(5) * ROUNDS as u32;
    assert!(
        with_stuck < alone * 2 + allowance,
        "{ROUNDS} round trips took {with_stuck:?} with a stuck client on the shard, \
         {alone:?} without: the stuck client stalls its shard"
    );
}

/// `--outbox-max-age` alone: a byte budget the client never reaches, and still the client
/// whose oldest frame waits longer than the age limit is disconnected.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_whose_oldest_frame_is_too_old_is_disconnected() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = TestRelay::start(Config {
        shards: 1,
        outbox_bytes: 64 * 1024 * 1024,
        outbox_max_age: Duration::from_millis(300),
        ..small_budget()
    })
    .await;
    let mut stuck = support::slow_client(&relay, "?symbols=A").await;
    // ~650 KB: far below 64 MiB, but it cannot drain, so its oldest frame ages.
    relay.publish_many("A", 5_000).await;
    // The budget is checked when a tick reaches the client: keep them coming until it is
    // cut off (bounded like every wait).
    let mut ingest = relay.ingest().await;
    let deadline = tokio::time::Instant::now() + support::WAIT;
    for seq in 5_001.. {
        if relay.shard_stat(0, "slow_disconnects").await == 1 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for the stuck client to be disconnected for age"
        );
        ingest.send_lines(&[tick_line("A", 1.0, seq)]).await;
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let (code, reason) = stuck.expect_close().await;
    assert_eq!((code, reason.as_str()), (4008, "slow consumer"));
}

/// `?slow=` overrides `--slow-policy` for that client, both ways.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slow_query_parameter_overrides_the_default_policy() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let disconnecting = TestRelay::start(Config {
        shards: 1,
        slow_policy: SlowPolicy::Disconnect,
        ..small_budget()
    })
    .await;
    let mut conflating = support::slow_client(&disconnecting, "?symbols=A&slow=conflate").await;
    assert_eq!(conflating.next_json().await["type"], "welcome");
    publish(&disconnecting, &["A"], 3_000).await;
    support::wait_for("the ?slow=conflate client conflated", || async {
        disconnecting.shard_stat(0, "conflated").await > 0
    })
    .await;
    assert_eq!(
        disconnecting.shard_stat(0, "slow_disconnects").await,
        0,
        "?slow=conflate is not disconnected under --slow-policy disconnect"
    );

    let conflating_relay = TestRelay::start(Config {
        shards: 1,
        slow_policy: SlowPolicy::Conflate,
        ..small_budget()
    })
    .await;
    let mut disconnected =
        support::slow_client(&conflating_relay, "?symbols=A&slow=disconnect").await;
    publish(&conflating_relay, &["A"], 3_000).await;
    support::wait_for("the ?slow=disconnect client disconnected", || async {
        conflating_relay.shard_stat(0, "slow_disconnects").await == 1
    })
    .await;
    assert_eq!(
        conflating_relay.shard_stat(0, "conflated").await,
        0,
        "?slow=disconnect does not conflate under --slow-policy conflate"
    );
    let (code, _) = disconnected.expect_close().await;
    assert_eq!(code, 4008);
}

/// A symbol that ticked only once while its client lagged skipped nothing: it gets that
/// tick and no gap (an empty `gap` with `to < from` would be a lie about a loss).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_symbol_that_ticked_once_during_a_lag_gets_its_tick_and_no_gap() {
    let _one_at_a_time = ONE_AT_A_TIME.lock().await;
    let relay = TestRelay::start(Config {
        shards: 1,
        slow_policy: SlowPolicy::Conflate,
        ..small_budget()
    })
    .await;
    let mut slow = support::slow_client(&relay, "?symbols=BUSY,ONCE").await;
    assert_eq!(slow.next_json().await["type"], "welcome");
    publish(&relay, &["BUSY"], 3_000).await;
    support::wait_for("the client lagging (conflation started)", || async {
        relay.shard_stat(0, "conflated").await > 0
    })
    .await;
    relay.publish_many("ONCE", 1).await;
    relay.wait_sequenced("ONCE", 1).await;
    let mut once = Vec::new();
    let mut busy_done = false;
    while !busy_done || once.is_empty() {
        let msg = slow.next_json().await;
        match (msg["symbol"].as_str(), msg["type"].as_str()) {
            (Some("ONCE"), _) => once.push(msg),
            (Some("BUSY"), Some("tick")) => busy_done |= msg["seq"] == 3_000,
            (Some("BUSY"), Some("gap")) => {}
            _ => panic!("unexpected {msg}"),
        }
    }
    assert_eq!(once.len(), 1, "ONCE: exactly one message: {once:?}");
    assert_eq!(
        (once[0]["type"].as_str(), once[0]["seq"].as_u64()),
        (Some("tick"), Some(1)),
        "ONCE: its one tick, no gap: {}",
        once[0]
    );
}
