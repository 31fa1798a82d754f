//! Many clients over several shards while ticks flow: every client gets every tick of its
//! symbols, in order, without a gap.

mod support;

use std::collections::BTreeMap;

use support::{TestRelay, tick_line};
use tickrelay::Config;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_hundred_clients_over_shards_see_gap_free_ordered_seqs() {
    let relay = TestRelay::start(Config {
        shards: 3,
        ..Config::for_tests()
    })
    .await;
    let symbols = ["S0", "S1", "S2", "S3", "S4"];
    const PER_SYMBOL: u64 = 300;

    // The first clients subscribe before any tick exists (their streams must start at
    // seq 1, with no snapshot); the rest connect while ticks flow (a snapshot, then the
    // next seq).
    const EARLY: usize = 12;
    let mut clients = Vec::new();
    let connect = |i: usize| {
        let mine = format!("{},{}", symbols[i % 5], symbols[(i + 2) % 5]);
        let url = format!("?symbols={mine}");
        let relay = &relay;
        async move { (mine, relay.client(&url).await) }
    };
    for i in 0..EARLY {
        clients.push(connect(i).await);
    }
    let ingest_addr = relay.ingest;
    let publisher = tokio::spawn(async move {
        let mut ingest = support::Ingest::connect(ingest_addr).await;
        for round in 1..=PER_SYMBOL {
            let lines: Vec<String> = symbols
                .iter()
                .map(|s| tick_line(s, 10.0 + round as f64 * 0.25, round))
                .collect();
            ingest.send_lines(&lines).await;
            if round % 20 == 0 {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
        }
    });
    for i in EARLY..200 {
        clients.push(connect(i).await);
    }
    let per_shard: Vec<u64> = relay
        .metrics()
        .shards()
        .map(|s| s.sessions.load(std::sync::atomic::Ordering::Relaxed))
        .collect();
    assert!(
        per_shard.iter().all(|n| *n > 0),
        "clients spread over every shard: {per_shard:?}"
    );
    publisher.await.unwrap();

    let mut checks = Vec::new();
    for (i, (mine, mut client)) in clients.into_iter().enumerate() {
        checks.push(tokio::spawn(async move {
            let want: BTreeMap<String, u64> = mine
                .split(',')
                .map(|s| (s.to_owned(), PER_SYMBOL))
                .collect();
            let mut snapshot_seq: BTreeMap<String, u64> = BTreeMap::new();
            let mut seen: BTreeMap<String, Vec<u64>> = BTreeMap::new();
            let done = |seen: &BTreeMap<String, Vec<u64>>, snap: &BTreeMap<String, u64>| {
                want.keys().all(|s| {
                    seen.get(s).and_then(|v| v.last()).or(snap.get(s)) == Some(&PER_SYMBOL)
                })
            };
            if i < EARLY {
                // Subscribed before the first tick: the first message is seq 1 itself.
                let first = client.next_json().await;
                assert_eq!(
                    (first["type"].as_str(), first["seq"].as_u64()),
                    (Some("tick"), Some(1)),
                    "a client subscribed before any tick receives seq 1 first: {first}"
                );
                let symbol = first["symbol"].as_str().unwrap_or_default().to_owned();
                seen.entry(symbol).or_default().push(1);
            }
            while !done(&seen, &snapshot_seq) {
                let msg = client.next_json().await;
                let symbol = msg["symbol"].as_str().unwrap_or_default().to_owned();
                let seq = msg["seq"].as_u64().unwrap_or_default();
                match msg["type"].as_str() {
                    Some("snapshot") => {
                        assert!(!seen.contains_key(&symbol), "snapshot comes before ticks");
                        assert!(
                            !snapshot_seq.contains_key(&symbol),
                            "one snapshot per symbol: {msg}"
                        );
                        assert!((1..=PER_SYMBOL).contains(&seq), "snapshot seq: {msg}");
                        assert_eq!(msg["ts_ns"].as_u64(), Some(seq), "snapshot ts_ns: {msg}");
                        assert_eq!(
                            msg["price"].as_f64(),
                            Some(10.0 + seq as f64 * 0.25),
                            "the snapshot is the value published as that seq: {msg}"
                        );
                        snapshot_seq.insert(symbol, seq);
                    }
                    Some("tick") => {
                        // Without a snapshot the symbol had no value when the client
                        // subscribed, so its stream must start at seq 1.
                        let expected = seen
                            .get(&symbol)
                            .and_then(|v| v.last())
                            .or(snapshot_seq.get(&symbol))
                            .map_or(1, |l| l + 1);
                        assert!(
                            want.contains_key(&symbol),
                            "only subscribed symbols arrive: {msg}"
                        );
                        assert_eq!(seq, expected, "{symbol}: gap-free and ordered");
                        assert_eq!(msg["ts_ns"].as_u64(), Some(seq), "ts_ns passes through");
                        assert_eq!(
                            msg["price"].as_f64(),
                            Some(10.0 + seq as f64 * 0.25),
                            "price is exact"
                        );
                        seen.entry(symbol).or_default().push(seq);
                    }
                    other => panic!("unexpected message {other:?}: {msg}"),
                }
            }
        }));
    }
    for check in checks {
        check.await.expect("client saw a gap-free stream");
    }
}
