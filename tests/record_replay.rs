//! `--record` then `--replay`, through the real binary: a relay records what it sequenced,
//! a fresh relay replays the file, and a client of the second sees the same
//! (symbol, price, ts_ns) sequence; the recorded gaps are kept, scaled by `--replay-speed`.

mod ops_common;

use std::collections::BTreeMap;
use std::io::Write as _;

use futures_util::StreamExt as _;
use ops_common::{WAIT, spawn, temp_path};
use tokio_tungstenite::tungstenite::Message;

type Seen = BTreeMap<String, Vec<(f64, u64, u64)>>;

/// Every tick a client resuming from seq 0 gets, until each symbol has `want` ticks:
/// (price, ts_ns, recv_ns) per symbol, in seq order.
async fn ticks(http: std::net::SocketAddr, symbols: &[&str], want: usize) -> Seen {
    let resume: Vec<String> = symbols.iter().map(|s| format!("{s}:0")).collect();
    let url = format!(
        "ws://{http}/ws?symbols={}&resume={}",
        symbols.join(","),
        resume.join(",")
    );
    let (mut ws, _) = tokio_tungstenite::connect_async(url)
        .await
        .expect("connect");
    let mut seen: Seen = symbols
        .iter()
        .map(|s| ((*s).to_owned(), Vec::new()))
        .collect();
    let done = |seen: &Seen| seen.values().all(|v| v.len() >= want);
    let collect = async {
        while !done(&seen) {
            let Some(Ok(Message::Text(text))) = ws.next().await else {
                panic!("the feed ended early; have {seen:?}");
            };
            let m: serde_json::Value = serde_json::from_str(&text).expect("json");
            if m["type"] == "tick" {
                let symbol = m["symbol"].as_str().expect("symbol").to_owned();
                let entry = seen.get_mut(&symbol).expect("a subscribed symbol");
                assert_eq!(m["seq"].as_u64(), Some(entry.len() as u64 + 1), "{m}");
                entry.push((
                    m["price"].as_f64().expect("price"),
                    m["ts_ns"].as_u64().expect("ts_ns"),
                    m["recv_ns"].as_u64().expect("recv_ns"),
                ));
            }
        }
    };
    tokio::time::timeout(WAIT, collect)
        .await
        .expect("all ticks within the wait");
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recorded_run_replays_into_a_fresh_relay_with_the_same_ticks() {
    let file = temp_path("recording.ndjson");
    let path = file.display().to_string();
    let symbols = ["BTC-USD", "ETH-USD", "SOL-USD"];
    let per_symbol = 40;

    let first = spawn(&["--record", &path], &[]);
    let mut ingest = std::net::TcpStream::connect(first.ingest).expect("ingest");
    let mut published: BTreeMap<&str, Vec<(f64, u64)>> = BTreeMap::new();
    for i in 0..per_symbol {
        for (k, symbol) in symbols.iter().enumerate() {
            let price = 100.0 * (k as f64 + 1.0) + i as f64 * 0.25 + 0.1;
            let ts_ns = 1_764_000_000_000_000_000 + (i * 10 + k as u64) * 1_000_003;
            writeln!(
                ingest,
                r#"{{"symbol":"{symbol}","price":{price},"ts_ns":{ts_ns}}}"#
            )
            .expect("publish");
            published.entry(symbol).or_default().push((price, ts_ns));
        }
    }
    // The first relay's own client sees them: then they are sequenced (and recorded).
    ticks(first.http, &symbols, per_symbol as usize).await;
    assert_eq!(first.stop(), Some(0), "a clean stop closes the recording");

    let recording = std::fs::read_to_string(&file).expect("read the recording");
    assert_eq!(
        recording.lines().count(),
        symbols.len() * per_symbol as usize
    );
    assert!(
        recording
            .lines()
            .all(|l| l.starts_with(r#"{"type":"tick","symbol":""#))
    );

    let second = spawn(&["--replay", &path, "--replay-speed", "0"], &[]);
    second.stderr_line(
        |l| l.contains("--replay: finished"),
        "the end of the replay",
    );
    let replayed = ticks(second.http, &symbols, per_symbol as usize).await;
    for symbol in symbols {
        let got: Vec<(f64, u64)> = replayed[symbol].iter().map(|(p, t, _)| (*p, *t)).collect();
        assert_eq!(got, published[symbol], "{symbol}: (price, ts_ns) in order");
    }
    assert_eq!(second.stop(), Some(0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn replay_keeps_the_recorded_gaps_scaled_by_the_speed() {
    // Five ticks recorded 400 ms apart, played at 4×: 100 ms apart.
    let file = temp_path("paced.ndjson");
    let mut lines = String::new();
    for i in 0..5_u64 {
        let recv_ns = 1_764_000_000_000_000_000 + i * 400_000_000;
        lines.push_str(&format!(
            "{{\"type\":\"tick\",\"symbol\":\"P\",\"seq\":{},\"kind\":\"trade\",\"ts_ns\":{i},\"recv_ns\":{recv_ns},\"price\":{i}.5}}\n",
            i + 1
        ));
    }
    std::fs::write(&file, lines).expect("write the recording");
    let path = file.display().to_string();
    let relay = spawn(&["--replay", &path, "--replay-speed", "4"], &[]);
    relay.stderr_line(
        |l| l.contains("--replay: finished"),
        "the end of the replay",
    );
    let seen = ticks(relay.http, &["P"], 5).await;
    let recv: Vec<u64> = seen["P"].iter().map(|(_, _, recv_ns)| *recv_ns).collect();
    // Each tick is due 100 ms × i after the first on one schedule; timers fire late on a
    // busy machine, never early (the first one may be late too, hence the slack below).
    for (i, recv_ns) in recv.iter().enumerate() {
        let since_ms = (recv_ns - recv[0]) / 1_000_000;
        let due_ms = 100 * i as u64;
        assert!(
            since_ms + 50 >= due_ms && since_ms < due_ms + 300,
            "tick {i} at +{since_ms} ms, due at +{due_ms} ms: {recv:?}"
        );
    }
    let ts: Vec<u64> = seen["P"].iter().map(|(_, ts_ns, _)| *ts_ns).collect();
    assert_eq!(ts, vec![0, 1, 2, 3, 4], "ts_ns is passed through");
    assert_eq!(relay.stop(), Some(0));
}
