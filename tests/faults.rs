//! Faults injected while ticks flow, each bounded in time: the relay killed with SIGKILL
//! and started again (a new history), a client's network that stops forwarding, a half-open
//! connection the relay must find by its pings, a full disk under `--record`, and the host
//! clock stepped back and forward under `recv_ns`. The clients are the Rust client
//! (`tickrelay-client`) in every encoding, each delivery checked as it arrives
//! (`faults_common::Seen`): every seq once and in order, or an explicit gap or reset.

mod faults_common;
mod support;

use std::time::Duration;

use faults_common::{Feed, Process, Proxy, Reader, readers, relay_seq, stats, wait_for};
use tickrelay::Config;

const SYMBOLS: [&str; 3] = ["A", "B", "C"];
/// One tick of each symbol every 2 ms: 1,500 ticks/s, a live feed a debug build keeps up with.
const PACE: Duration = Duration::from_millis(2);

/// Stops the feed, waits until the relay has sequenced everything written, then until every
/// client has reached the relay's newest seq of every symbol; returns the ticks the feed
/// wrote and the relay's newest seqs summed (equal when the relay lived throughout).
async fn drain(feed: Feed, http: std::net::SocketAddr, clients: &[Reader]) -> (u64, u64) {
    let written = feed.written.clone();
    feed.stop().await;
    let mut newest = Vec::new();
    for symbol in SYMBOLS {
        let mut seq = relay_seq(http, symbol).await;
        // The relay has sequenced the feed once two readings a moment apart agree.
        loop {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let again = relay_seq(http, symbol).await;
            if again == seq {
                break;
            }
            seq = again;
        }
        newest.push((symbol, seq));
    }
    for client in clients {
        wait_for(&format!("{} to reach {newest:?}", client.name), || async {
            client.check(|s| newest.iter().all(|(sym, seq)| s.at(sym) == *seq))
        })
        .await;
    }
    let sequenced = newest.iter().map(|(_, seq)| seq).sum();
    (written.load(std::sync::atomic::Ordering::SeqCst), sequenced)
}

/// `kill -9` of the relay while a feed publishes and clients read, then the relay started
/// again on the same ports: a new history (seqs from 1, a new epoch). Every client is told
/// with a `reset` per symbol, then follows the new history gap-free to its last tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_killed_mid_stream_restarts_and_every_client_is_reset_never_misled() {
    let mut relay = Process::start(&["--shards", "2"], &[]).await;
    let url = format!("ws://{}/ws", relay.http);
    let clients = readers(&url, &SYMBOLS, 6, Duration::from_secs(5)).await;
    let feed = Feed::start(relay.ingest, &SYMBOLS, PACE);
    for client in &clients {
        wait_for(
            &format!("{} to read 200 ticks of each symbol", client.name),
            || async { client.check(|s| SYMBOLS.iter().all(|sym| s.at(sym) >= 200)) },
        )
        .await;
    }

    relay.restart().await; // SIGKILL, then the binary again on the same ports

    for client in &clients {
        wait_for(
            &format!(
                "{} to be reset on every symbol and follow the new history",
                client.name
            ),
            || async {
                client.check(|s| {
                    SYMBOLS.iter().all(|sym| {
                        s.resets_of(sym) == 1 && s.ticks.get(*sym).map_or(0, Vec::len) >= 100
                    })
                })
            },
        )
        .await;
    }
    drain(feed, relay.http, &clients).await;
    for client in &clients {
        client.assert_never_misled();
        client.with(|s| {
            assert_eq!(
                s.resets.len(),
                SYMBOLS.len(),
                "{}: one reset per symbol",
                client.name
            );
            assert!(s.gaps.is_empty(), "{}: {:?}", client.name, s.gaps);
            assert_eq!(s.connects, 2, "{}: connected, then again once", client.name);
            for symbol in SYMBOLS {
                let after: Vec<u64> = s.ticks[symbol].iter().map(|t| t.0).collect();
                let first = after[0];
                assert_eq!(
                    after,
                    (first..first + after.len() as u64).collect::<Vec<_>>(),
                    "{}: {symbol} after the reset: every seq of the new history once",
                    client.name
                );
            }
        });
    }
}

/// The clients' network stops forwarding (nothing closed, nobody told) and refuses new
/// connections for a while: each client notices the silence itself (its liveness timeout),
/// retries until the network is back, then resumes exactly where it stopped.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_network_that_stops_forwarding_costs_no_tick_once_it_is_back() {
    let relay = support::TestRelay::start(Config {
        replay_depth: 100_000,
        ..Config::for_tests()
    })
    .await;
    let proxy = Proxy::start(relay.http).await;
    let clients = readers(&proxy.url(), &SYMBOLS, 3, Duration::from_secs(1)).await;
    let feed = Feed::start(relay.ingest, &SYMBOLS, PACE);
    for client in &clients {
        wait_for(
            &format!("{} to read 100 ticks of A", client.name),
            || async { client.check(|s| s.at("A") >= 100) },
        )
        .await;
    }

    proxy.set_down(true);
    proxy.pause();
    for client in &clients {
        wait_for(
            &format!("{} to give up the silent connection", client.name),
            || async { client.check(|s| !s.disconnects.is_empty()) },
        )
        .await;
    }
    wait_for("reconnects refused while the network is down", || async {
        proxy.refused.load(std::sync::atomic::Ordering::SeqCst) >= 3
    })
    .await;
    proxy.set_down(false);
    proxy.resume();

    let (written, sequenced) = drain(feed, relay.http, &clients).await;
    assert_eq!(sequenced, written, "every tick written was sequenced");
    for client in &clients {
        client.assert_never_misled();
        client.with(|s| {
            assert!(
                s.gaps.is_empty() && s.resets.is_empty(),
                "{}: {s:?}",
                client.name
            );
            assert!(
                s.disconnects.iter().all(|d| d.contains("no data")),
                "{}: given up for silence: {:?}",
                client.name,
                s.disconnects
            );
            for symbol in SYMBOLS {
                assert_eq!(
                    s.ticks[symbol].len() as u64,
                    s.at(symbol),
                    "{}: {symbol} 1..",
                    client.name
                );
            }
        });
    }
}

/// A half-open connection: the network between a client and the relay goes quiet without a
/// FIN. The relay finds it by its pings (no pong within `--idle-timeout`: 4009, counted) and
/// frees the session; when the network forwards again the client reads the close, reconnects
/// and resumes without losing a tick.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_half_open_connection_is_closed_by_the_relay_and_the_client_resumes() {
    let relay = support::TestRelay::start(Config {
        replay_depth: 100_000,
        ping_interval: Duration::from_millis(200),
        idle_timeout: Duration::from_secs(1),
        ..Config::for_tests()
    })
    .await;
    let proxy = Proxy::start(relay.http).await;
    // The clients wait far longer than the test: only the relay can notice the silence.
    let clients = readers(&proxy.url(), &SYMBOLS, 3, Duration::from_secs(600)).await;
    let feed = Feed::start(relay.ingest, &SYMBOLS, Duration::from_millis(10));
    for client in &clients {
        wait_for(
            &format!("{} to read 20 ticks of A", client.name),
            || async { client.check(|s| s.at("A") >= 20) },
        )
        .await;
    }

    proxy.pause();
    let http = relay.http;
    wait_for(
        "the relay to close the silent sessions with 4009",
        || async {
            let stats = stats(http).await;
            stats["errors"]["idle_timeout"].as_u64() == Some(clients.len() as u64)
                && stats["sessions"].as_u64() == Some(0)
        },
    )
    .await;
    proxy.resume();

    let (written, sequenced) = drain(feed, relay.http, &clients).await;
    assert_eq!(sequenced, written, "every tick written was sequenced");
    for client in &clients {
        client.assert_never_misled();
        client.with(|s| {
            assert!(
                s.gaps.is_empty() && s.resets.is_empty(),
                "{}: {s:?}",
                client.name
            );
            assert_eq!(s.connects, 2, "{}: reconnected once", client.name);
            assert!(
                s.disconnects[0].contains("4009"),
                "{}: the relay's close arrived: {:?}",
                client.name,
                s.disconnects
            );
            for symbol in SYMBOLS {
                assert_eq!(
                    s.ticks[symbol].len() as u64,
                    s.at(symbol),
                    "{}: {symbol} 1..",
                    client.name
                );
            }
        });
    }
}

/// `--record` to a full disk (`/dev/full`: every write fails with ENOSPC): the relay goes on
/// serving every tick, and says the recording failed: one write error, and every tick it
/// sequenced is either written or counted as not recorded.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_under_record_is_counted_and_clients_lose_nothing() {
    let relay = support::TestRelay::start(Config {
        shards: 1,
        record: Some("/dev/full".into()),
        ..Config::for_tests()
    })
    .await;
    let options = tickrelay_client::Options::new().symbols(["A"]);
    let client = Reader::connect("client", &relay.url(""), options).await;
    for (round, total) in [(1, 5_000), (2, 10_000)] {
        relay.publish_many("A", 5_000).await;
        wait_for(
            &format!("round {round}: the client to reach seq {total}"),
            || async { client.check(|s| s.at("A") == total) },
        )
        .await;
        let record = || async { stats(relay.http).await["record"].clone() };
        wait_for(
            &format!("round {round}: every tick accounted for"),
            || async {
                let r = record().await;
                r["written"].as_u64().unwrap_or(0) + r["not_recorded"].as_u64().unwrap_or(0)
                    == total
            },
        )
        .await;
        let r = record().await;
        assert_eq!(
            r["write_errors"], 1,
            "round {round}: the failure is counted once: {r}"
        );
        assert_eq!(r["written"], 0, "nothing reaches /dev/full: {r}");
    }
    client.assert_never_misled();
    client.with(|s| assert_eq!(s.ticks["A"].len(), 10_000));
    assert_eq!(relay.get("/ready").await.0, 200, "still serving");
}

/// libfaketime, when installed (Debian's `libfaketime`), steps the relay's wall clock
/// (`CLOCK_REALTIME`, read by `tick::now_ns` for `recv_ns`) while its monotonic clock, which
/// drives timers, runs on.
const LIBFAKETIME: &str = "/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1";

/// The host clock stepped back an hour and forward again, six times, while a live feed
/// flows (so ticks stamped before a step are fanned out after it): `recv_ns` follows the
/// clock (the steps are seen), and nothing is reordered, repeated or stalled: every client
/// gets every seq of every symbol once, in the order published.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_host_clock_step_under_recv_ns_reorders_and_stalls_nothing() {
    if !std::path::Path::new(LIBFAKETIME).exists() {
        assert!(
            std::env::var_os("CI").is_none(),
            "{LIBFAKETIME} is missing (apt-get install libfaketime; .ci/packages.sh)"
        );
        eprintln!("SKIPPED: {LIBFAKETIME} is not installed");
        return;
    }
    let dir = tempfile::tempdir().expect("a temp dir");
    let offset = dir.path().join("faketime");
    std::fs::write(&offset, "+0\n").expect("write the clock offset");
    let env = [
        ("LD_PRELOAD", LIBFAKETIME),
        (
            "FAKETIME_TIMESTAMP_FILE",
            offset.to_str().expect("utf-8 path"),
        ),
        // Read the offset on every clock read, so a step takes effect at once.
        ("FAKETIME_NO_CACHE", "1"),
        // A host clock step moves CLOCK_REALTIME only; timers keep the monotonic clock.
        ("FAKETIME_DONT_FAKE_MONOTONIC", "1"),
    ];
    let relay = Process::start(&["--shards", "2"], &env).await;
    let url = format!("ws://{}/ws", relay.http);
    let clients = readers(&url, &SYMBOLS, 3, Duration::from_secs(5)).await;
    let feed = Feed::start(relay.ingest, &SYMBOLS, PACE);
    for (n, step) in ["-3600", "+0", "+7200", "+0", "-3600", "+0"]
        .iter()
        .enumerate()
    {
        std::fs::write(&offset, format!("{step}\n")).expect("step the clock");
        let from = clients[0].check(|s| s.at("A"));
        for client in &clients {
            wait_for(
                &format!("step {n} ({step} s): {} to read 50 more ticks", client.name),
                || async { client.check(|s| s.at("A") >= from + 50) },
            )
            .await;
        }
    }
    let (written, sequenced) = drain(feed, relay.http, &clients).await;
    assert_eq!(sequenced, written, "every tick written was sequenced");
    let hour_ns = 3_600_000_000_000i128;
    for client in &clients {
        client.assert_never_misled();
        client.with(|s| {
            assert!(
                s.disconnects.is_empty(),
                "{}: {:?}",
                client.name,
                s.disconnects
            );
            for symbol in SYMBOLS {
                let ticks = &s.ticks[symbol];
                let seqs: Vec<u64> = ticks.iter().map(|t| t.0).collect();
                assert_eq!(
                    seqs,
                    (1..=ticks.len() as u64).collect::<Vec<_>>(),
                    "{}",
                    client.name
                );
                assert!(
                    ticks.windows(2).all(|w| w[0].1 < w[1].1),
                    "{}: publish order",
                    client.name
                );
                // The steps were seen: recv_ns went back by about an hour, and forward by two.
                let jumps: Vec<i128> = ticks
                    .windows(2)
                    .map(|w| i128::from(w[1].2) - i128::from(w[0].2))
                    .collect();
                assert!(
                    jumps.iter().any(|&j| j < -hour_ns / 2),
                    "{}: {symbol} stepped back",
                    client.name
                );
                assert!(
                    jumps.iter().any(|&j| j > hour_ns * 3 / 2),
                    "{}: {symbol} stepped forward",
                    client.name
                );
            }
        });
    }
}
