//! A standby sequencer (docs/SCALING.md, "A standby sequencer"): two `--role sequencer`
//! processes on one stream, a real `nats-server -js`, real edges and WebSocket clients. One
//! holds the lease and sequences; the other answers `/ready` 503 `standby` and refuses
//! ingest until the first is killed, then continues every seq under the same epoch; a
//! deposed sequencer's late ticks are refused by the stream, never delivered.

mod faults_common;
mod nats_common;
mod ops_common;
mod support;

use std::io::Write;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use nats_common::NatsServer;
use ops_common::{Spawned, http_get, launch, spawn};
use support::WsClient;

/// A sequencer of ticks only, its `--listen` at `http` (known before it leads).
fn sequencer(nats: &NatsServer, http: SocketAddr) -> Spawned {
    sequencer_via(&nats.url(), http)
}

/// A sequencer reaching NATS at `url`.
fn sequencer_via(url: &str, http: SocketAddr) -> Spawned {
    let listen = http.to_string();
    launch(
        &nats_common::sequencer_args(url, &["--listen", &listen]),
        &[],
    )
}

fn free_http() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], nats_common::free_port()))
}

/// NDJSON ticks of `symbol` stamped `ts_ns` = `base + i` for `i` in `from..=to`.
fn lines(symbol: &str, base: u64, from: u64, to: u64) -> String {
    (from..=to)
        .map(|i| {
            format!(
                "{{\"symbol\":\"{symbol}\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}\n",
                base + i
            )
        })
        .collect()
}

fn publish(ingest: SocketAddr, lines: &str) {
    let mut stream = std::net::TcpStream::connect(ingest).expect("connect to ingest");
    stream.write_all(lines.as_bytes()).expect("write ticks");
}

async fn wait_standby(http: SocketAddr) {
    support::wait_for(
        "the second sequencer to say it is a standby",
        || async move {
            let answer = std::panic::catch_unwind(|| http_get(http, "GET", "/ready"));
            matches!(answer, Ok((503, body)) if body.contains("standby"))
        },
    )
    .await;
}

const BASE: u64 = 1_764_000_000_000_000_000;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_standby_takes_over_a_killed_sequencer_and_continues_every_seq() {
    let Some(nats) = NatsServer::start("standby") else {
        return;
    };
    let mut leader = sequencer(&nats, free_http());
    leader.banner();
    let second_http = free_http();
    let mut second = sequencer(&nats, second_http);
    wait_standby(second_http).await;
    let edge = spawn(&["--role", "edge", "--nats", &nats.url()], &[]);
    let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=F", edge.http)).await;
    let welcome = client.next_json().await;

    publish(leader.ingest, &lines("F", BASE, 1, 300));
    let (mut seen, mut other) = support::until_stamp(&mut client, BASE + 300).await;
    let mut trials = Vec::new();
    let mut next = 301;
    // Each trial kills the leader; the standby takes over; the killed one comes back as
    // the next standby. More trials: TICKRELAY_FAILOVER_TRIALS (docs/SCALING.md's figures).
    let rounds: usize = std::env::var("TICKRELAY_FAILOVER_TRIALS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(2);
    for _ in 0..rounds {
        let killed = Instant::now();
        leader.child.kill().expect("kill -9 the leader");
        let _ = leader.child.wait();
        second.banner(); // printed once it holds the lease and listens
        publish(second.ingest, &lines("F", BASE, next, next + 99));
        let (more, messages) = support::until_stamp(&mut client, BASE + next).await;
        trials.push(killed.elapsed());
        seen.extend(more);
        other.extend(messages);
        let (more, messages) = support::until_stamp(&mut client, BASE + next + 99).await;
        seen.extend(more);
        other.extend(messages);
        next += 100;
        leader = second;
        let http = free_http();
        second = sequencer(&nats, http);
        wait_standby(http).await;
    }
    eprintln!(
        "failover, kill -9 of the leader to the first new tick at an edge, ms: {:?}",
        trials.iter().map(Duration::as_millis).collect::<Vec<_>>()
    );
    support::assert_no_gap_or_reset(&other);
    let seqs: Vec<u64> = seen.iter().map(|t| t.0).collect();
    assert_eq!(
        seqs,
        (1..next).collect::<Vec<_>>(),
        "every seq once, in order, across failovers"
    );
    let stamps: Vec<u64> = seen.iter().map(|t| t.1 - BASE).collect();
    assert_eq!(stamps, seqs, "each seq the tick published at it");
    let mut again = WsClient::connect(&format!("ws://{}/ws?symbols=F", edge.http)).await;
    assert_eq!(
        again.next_json().await["epoch"],
        welcome["epoch"],
        "one history"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_deposed_sequencer_is_refused_by_the_stream_and_stops() {
    let Some(nats) = NatsServer::start("deposed") else {
        return;
    };
    // The first sequencer reaches NATS through a proxy that can go quiet.
    let proxy = faults_common::Proxy::start(SocketAddr::from(([127, 0, 0, 1], nats.port))).await;
    let mut first = sequencer_via(&format!("nats://{}", proxy.addr), free_http());
    first.banner();
    let second_http = free_http();
    let mut second = sequencer(&nats, second_http);
    wait_standby(second_http).await;
    let edge = spawn(&["--role", "edge", "--nats", &nats.url()], &[]);
    let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=D", edge.http)).await;
    let _welcome = client.next_json().await;
    publish(first.ingest, &lines("D", BASE, 1, 50));
    let (mut seen, mut other) = support::until_stamp(&mut client, BASE + 50).await;

    // The first sequencer is cut off from NATS (the network goes quiet): it still takes
    // ticks and sequences them (more than the new leader will, so their seqs would run past
    // the new leader's if they were stored), but cannot publish them or renew its lease.
    // The standby takes over and sequences ten ticks.
    proxy.pause();
    const LATE: u64 = 1_000_000;
    publish(first.ingest, &lines("D", BASE + LATE, 1, 40));
    second.banner();
    publish(second.ingest, &lines("D", BASE, 51, 60));
    let (more, messages) = support::until_stamp(&mut client, BASE + 60).await;
    seen.extend(more);
    other.extend(messages);

    // The network comes back: the first one's publishes (buffered, then retried) reach the
    // stream, which refuses them (they follow its own last message, not the stream's); it
    // finds the lease is not its own and stops.
    proxy.resume();
    let deadline = Instant::now() + 3 * support::WAIT;
    let code = loop {
        if let Some(status) = first.child.try_wait().expect("wait") {
            break status.code();
        }
        if Instant::now() >= deadline {
            let log: Vec<String> = first.stderr.try_iter().collect();
            panic!("the deposed sequencer did not stop: {log:#?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("deposed sequencer exited with {code:?}");
    publish(second.ingest, &lines("D", BASE, 61, 70));
    let (more, messages) = support::until_stamp(&mut client, BASE + 70).await;
    seen.extend(more);
    other.extend(messages);
    assert!(other.iter().all(|m| m["type"] != "gap"), "{other:?}");
    let stamps: Vec<u64> = seen.iter().map(|t| t.1 - BASE).collect();
    assert_eq!(
        stamps,
        (1..=70).collect::<Vec<_>>(),
        "no late tick of the deposed sequencer reaches a client"
    );
    let seqs: Vec<u64> = seen.iter().map(|t| t.0).collect();
    assert_eq!(seqs, (1..=70).collect::<Vec<_>>());
}

/// Docs/SCALING.md's figure: an acking publisher (the client crate's `Publisher`, given
/// both sequencers' ingest addresses) sends `TICKRELAY_FAILOVER_RATE` ticks/s (5,000) while
/// the leader is killed with SIGKILL; it resends what it had not seen acknowledged to the
/// standby that took over. Every tick is stored exactly once: the edge's client sees each
/// once, in order, seq = the publisher's pseq, no gap or reset.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acking_publisher_through_a_failover_has_every_tick_stored_exactly_once() {
    acking_publisher_through("acking", |leader| {
        leader.child.kill().expect("kill -9 the leader");
        let _ = leader.child.wait();
    })
    .await;
}

/// The same with the leader stopped by SIGTERM (a rolling restart): it stops reading, stores
/// what it holds and hands the lease over. What it stored after the last ack its publisher
/// read comes back from the publisher to the new leader as resends (thousands here):
/// acknowledged as duplicates, not stored again; every tick is stored exactly once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_acking_publisher_through_a_sigterm_handover_has_every_tick_stored_exactly_once() {
    acking_publisher_through("handover", |leader| {
        leader.signal("TERM");
        let status = leader.child.wait().expect("the leader exits");
        assert!(status.success(), "a SIGTERM'd leader exits 0: {status:?}");
    })
    .await;
}

/// An acking publisher at `TICKRELAY_FAILOVER_RATE` ticks/s; `stop` ends the leader a
/// quarter of the way in.
async fn acking_publisher_through(name: &str, stop: impl FnOnce(&mut ops_common::Spawned)) {
    use tickrelay_client::publisher::{Publisher, PublisherConfig};
    let Some(nats) = NatsServer::start(name) else {
        return;
    };
    // The stream keeps every tick of the run (`--replay-depth`), so an edge that falls
    // behind on this busy box catches up instead of skipping (an explicit gap) past ticks
    // the stream no longer holds.
    let url = nats.url();
    let (listen, depth) = (free_http().to_string(), "32768");
    let extra = ["--listen", listen.as_str(), "--replay-depth", depth];
    let mut leader = launch(&nats_common::sequencer_args(&url, &extra), &[]);
    leader.banner();
    // The standby's ingest address, known before it listens (it refuses connects until then).
    let (second_http, second_ingest) = (free_http(), free_http());
    let (listen, ingest) = (second_http.to_string(), second_ingest.to_string());
    let extra = [
        "--listen",
        listen.as_str(),
        "--ingest-tcp",
        ingest.as_str(),
        "--replay-depth",
        depth,
    ];
    let mut second = launch(&nats_common::sequencer_args(&url, &extra), &[]);
    wait_standby(second_http).await;
    let edge = spawn(
        &["--role", "edge", "--nats", &url, "--replay-depth", depth],
        &[],
    );
    let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=X", edge.http)).await;
    let _welcome = client.next_json().await;
    // A second edge: what it serves must be identical.
    let other_edge = spawn(
        &["--role", "edge", "--nats", &url, "--replay-depth", depth],
        &[],
    );
    let url2 = format!("ws://{}/ws?symbols=X", other_edge.http);
    let mut client2 = WsClient::connect(&url2).await;
    let _welcome = client2.next_json().await;

    let rate: u64 = std::env::var("TICKRELAY_FAILOVER_RATE")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(5_000);
    let total = rate * 4;
    let config = PublisherConfig {
        addrs: vec![leader.ingest, second_ingest],
        id: "failover-feed".into(),
        ..PublisherConfig::default()
    };
    let publisher = Publisher::start(config)
        .await
        .expect("the publisher starts");
    // The client reads as the ticks flow (a client that stops reading is a slow consumer).
    // Each tick's arrival time too: the failover is the kill to the first tick after the
    // longest silence.
    let reading2 =
        tokio::spawn(async move { support::until_stamp(&mut client2, BASE + total + 1).await });
    let reading = tokio::spawn(async move {
        let mut arrivals = Vec::new();
        let mut other = Vec::new();
        loop {
            let message = client.next_json().await;
            if message["type"] != "tick" {
                other.push(message);
                continue;
            }
            let seq = message["seq"].as_u64().expect("seq");
            let stamp = message["ts_ns"].as_u64().expect("ts_ns");
            arrivals.push((seq, stamp, Instant::now()));
            if stamp == BASE + total + 1 {
                return (arrivals, other);
            }
        }
    });
    // Paced in 1 ms steps; the leader dies a quarter of the way in.
    let started = Instant::now();
    let mut killed = None;
    let mut stop = Some(stop);
    for pseq in 1..=total {
        let line = format!(
            "{{\"symbol\":\"X\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}",
            BASE + pseq
        );
        publisher.send(line).await.expect("send");
        if pseq % (rate / 1000).max(1) == 0 {
            let due = started + Duration::from_micros(pseq * 1_000_000 / rate);
            tokio::time::sleep_until(due.into()).await;
        }
        if pseq == total / 4 {
            let acked = publisher.acked();
            let stop = stop.take().expect("stopped once");
            stop(&mut leader);
            killed = Some((Instant::now(), acked));
        }
    }
    publisher
        .flush(3 * support::WAIT)
        .await
        .expect("every tick acknowledged");
    // Whether any tick was stored but not yet acknowledged at the kill is up to timing; a
    // hundred the old leader acknowledged before it died, sent again to the new one, are
    // certainly stored: the new leader read them from the stream, and stores none again.
    let (_, acked) = killed.expect("the leader was killed");
    assert!(acked >= 100, "the publisher saw acks before the kill");
    let mut again = vec![format!(
        r#"{{"type":"hello","publisher":"failover-feed","pseq":{}}}"#,
        acked - 99
    )];
    again.extend((acked - 99..=acked).map(|pseq| {
        format!(
            "{{\"symbol\":\"X\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}",
            BASE + pseq
        )
    }));
    let mut resend = support::Ingest::connect(second_ingest).await;
    resend.send_lines(&again).await;
    let ack = loop {
        let reply = resend.next_reply().await;
        if reply["type"] == "ack" && reply["pseq"] == acked {
            break reply;
        }
    };
    assert_eq!(ack["duplicates"], 100, "{ack}");
    let last = format!(
        "{{\"symbol\":\"X\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}",
        BASE + total + 1
    );
    publisher.send(last).await.expect("send");
    publisher.flush(support::WAIT).await.expect("acknowledged");
    let total = total + 1;
    let (arrivals, other) = reading.await.expect("the client reads");
    let seen: Vec<(u64, u64)> = arrivals
        .iter()
        .map(|&(seq, stamp, _)| (seq, stamp))
        .collect();
    let (seen2, other2) = reading2.await.expect("the second edge's client reads");
    support::assert_no_gap_or_reset(&other2);
    assert!(
        seen2 == seen,
        "both edges serve the same (seq, tick) sequence"
    );
    let (killed_at, _) = killed.expect("the leader was killed");
    let resumed = arrivals
        .windows(2)
        .filter(|w| w[1].2 > killed_at)
        .max_by_key(|w| w[1].2 - w[0].2)
        .map(|w| w[1].2 - killed_at);
    support::assert_no_gap_or_reset(&other);
    // Seq n is the n-th tick: nothing lost, stored twice or reordered.
    let wrong: Vec<(u64, u64)> = seen
        .iter()
        .map(|&(seq, stamp)| (seq, stamp - BASE))
        .enumerate()
        .filter(|&(i, (seq, stamp))| seq != i as u64 + 1 || stamp != seq)
        .map(|(_, pair)| pair)
        .take(10)
        .collect();
    assert!(
        wrong.is_empty(),
        "first (seq, tick) out of place: {wrong:?}"
    );
    assert_eq!(seen.len() as u64, total, "every tick once");
    let (killed_at, at) = killed.expect("the leader was killed");
    let killed_at = killed_at - started;
    second.banner();
    let (_, stats) = http_get(second.http, "GET", "/stats");
    eprintln!(
        "acking publisher at {rate}/s, {total} ticks, leader killed with {at} acked ({killed_at:?} \
         after start); failover (kill to the first tick after the longest silence) {:?} ms; \
         reconnects {}, duplicates reported {}, standby stats: {}",
        resumed.map(|d| d.as_millis()),
        publisher.reconnects(),
        publisher.duplicates(),
        serde_json::from_str::<serde_json::Value>(&stats)
            .map(|s| s["ingest"].clone())
            .unwrap_or_default(),
    );
    assert!(
        publisher.reconnects() >= 1,
        "the publisher moved to the standby"
    );
    publisher.close().await;
    drop(second);
}

/// Scaled out, an ack means stored by the stream, not sequenced: a leader cut off from NATS
/// sequences what it is sent but acknowledges none of it; killed, it leaves every tick
/// unacknowledged, and the publisher sends them all again to the standby that takes over.
/// (A leader that acknowledged what it had only sequenced would lose them all.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acks_wait_for_the_stream_so_what_a_killed_leader_never_stored_is_resent() {
    use tickrelay_client::publisher::{Publisher, PublisherConfig};
    let Some(nats) = NatsServer::start("unstored") else {
        return;
    };
    let proxy = faults_common::Proxy::start(SocketAddr::from(([127, 0, 0, 1], nats.port))).await;
    let mut leader = sequencer_via(&format!("nats://{}", proxy.addr), free_http());
    leader.banner();
    let (second_http, second_ingest) = (free_http(), free_http());
    let url = nats.url();
    let (listen, ingest) = (second_http.to_string(), second_ingest.to_string());
    let extra = ["--listen", listen.as_str(), "--ingest-tcp", ingest.as_str()];
    let _second = launch(&nats_common::sequencer_args(&url, &extra), &[]);
    wait_standby(second_http).await;
    let edge = spawn(&["--role", "edge", "--nats", &nats.url()], &[]);
    let mut client = WsClient::connect(&format!("ws://{}/ws?symbols=U", edge.http)).await;
    let _welcome = client.next_json().await;
    let config = PublisherConfig {
        addrs: vec![leader.ingest, second_ingest],
        id: "unstored-feed".into(),
        ..PublisherConfig::default()
    };
    let publisher = Publisher::start(config)
        .await
        .expect("the publisher starts");
    let tick = |i: u64| {
        format!(
            "{{\"symbol\":\"U\",\"price\":1.5,\"size\":1,\"ts_ns\":{}}}",
            BASE + i
        )
    };
    for i in 1..=10 {
        publisher.send(tick(i)).await.expect("send");
    }
    publisher
        .flush(support::WAIT)
        .await
        .expect("stored and acknowledged");
    // Cut off from NATS, the leader sequences 40 more (its counters say so) and stores none.
    proxy.pause();
    for i in 11..=50 {
        publisher.send(tick(i)).await.expect("send");
    }
    let leader_http = leader.http;
    support::wait_for("the leader to sequence all 50", || async move {
        let (_, stats) = http_get(leader_http, "GET", "/stats");
        serde_json::from_str::<serde_json::Value>(&stats).expect("stats")["ticks_in"] == 50
    })
    .await;
    leader.child.kill().expect("kill -9 the leader");
    let _ = leader.child.wait();
    assert_eq!(
        publisher.acked(),
        10,
        "nothing the stream did not store is acknowledged"
    );
    publisher
        .flush(3 * support::WAIT)
        .await
        .expect("resent and acknowledged");
    let (seen, other) = support::until_stamp(&mut client, BASE + 50).await;
    support::assert_no_gap_or_reset(&other);
    let pairs: Vec<(u64, u64)> = seen
        .iter()
        .map(|&(seq, stamp)| (seq, stamp - BASE))
        .collect();
    assert_eq!(pairs, (1..=50).map(|i| (i, i)).collect::<Vec<_>>());
    publisher.close().await;
}
