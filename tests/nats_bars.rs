//! Bars and tickers scaled out through NATS JetStream (docs/SCALING.md, "Bars and tickers"),
//! end to end: a real `nats-server -js`, real relay processes, real WebSocket clients. Two
//! edges serve the same bars with the same seqs; an edge started later shows the same
//! snapshot; a sequencer killed mid-bar and started again continues the open bars and the
//! 24-hour window from the stream.

mod nats_common;
mod ops_common;
mod support;

use std::collections::BTreeMap;
use std::io::Write;

use nats_common::NatsServer;
use ops_common::{Spawned, spawn};
use serde_json::Value;
use support::WsClient;
use support::bars::{
    Bar, MARKER, MINUTE, S, Trade, bar_of, line, model, now_ns, ticker_model, with_marker,
};

/// Bars close on trades only here (a day of grace), and updates go out quickly.
const DERIVED: [&str; 4] = ["--bar-grace", "24h", "--derived-interval", "50ms"];

fn relay(nats: &NatsServer, role: &str) -> Spawned {
    relay_with(nats, role, &[])
}

fn relay_with(nats: &NatsServer, role: &str, more: &[&str]) -> Spawned {
    let url = nats.url();
    let mut args = vec!["--role", role, "--nats", &url];
    args.extend(DERIVED);
    args.extend(more);
    spawn(&args, &[])
}

fn publish(relay: &Spawned, symbol: &str, trades: &[Trade]) {
    let mut text = String::new();
    for trade in trades {
        text.push_str(&line(symbol, *trade));
        text.push('\n');
    }
    let mut ingest = std::net::TcpStream::connect(relay.ingest).expect("connect to ingest");
    ingest.write_all(text.as_bytes()).expect("write trades");
}

async fn connect(relay: &Spawned, query: &str) -> WsClient {
    let mut client = WsClient::connect(&format!("ws://{}/ws{query}", relay.http)).await;
    let welcome = client.next_json().await;
    assert_eq!(welcome["type"], "welcome", "{welcome}");
    client
}

/// Every message of each channel (ticks under their symbol), in arrival order.
type Seen = BTreeMap<String, Vec<Value>>;

/// Reads into `seen` until a ticker shows the [`MARKER`] trade and each channel in `want`
/// has reached its open bar's final trade count.
async fn read_until_marker(client: &mut WsClient, want: &[(String, Bar)], seen: &mut Seen) {
    let done = |seen: &Seen| {
        let ticker = seen.iter().find(|(c, _)| c.starts_with("ticker:"));
        ticker.is_some_and(|(_, m)| m.last().is_some_and(|t| t["last"] == MARKER))
            && want.iter().all(|(channel, open)| {
                let last = seen.get(channel).and_then(|m| m.last()).map(bar_of);
                last.is_some_and(|b| (b.start_ns, b.trades) == (open.start_ns, open.trades))
            })
    };
    support::within("the bars and the ticker after the marker trade", async {
        while !done(seen) {
            record(seen, client.next_json().await);
        }
    })
    .await;
}

fn record(seen: &mut Seen, message: Value) {
    if let Some(key) = message["channel"].as_str().or(message["symbol"].as_str()) {
        seen.entry(key.to_owned()).or_default().push(message);
    }
}

/// The open bar each of `channels` ends with, by the model.
fn open_bars(symbol: &str, trades: &[Trade]) -> Vec<(String, Bar)> {
    [("1s", S), ("1m", MINUTE)]
        .iter()
        .map(|(name, ns)| {
            let (_, open, _) = model(trades, *ns);
            (
                format!("bars:{name}:{symbol}"),
                open.expect("the marker opens or joins a bar"),
            )
        })
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_edges_serve_identical_bars_and_a_later_edge_the_same_snapshot() {
    let Some(nats) = NatsServer::start("bars-identical") else {
        return;
    };
    let sequencer = relay(&nats, "sequencer");
    let (a, b) = (relay(&nats, "edge"), relay(&nats, "edge"));
    let query = "?channels=bars:1s:B,bars:1m:B,ticker:B";
    let (mut on_a, mut on_b) = (connect(&a, query).await, connect(&b, query).await);
    let base = now_ns() / MINUTE * MINUTE - 2 * 3600 * S;
    let trades: Vec<Trade> = (0..400u64)
        .map(|i| {
            (
                base + i * 700_000_000 + (i % 7) * 90_000_000,
                100.0 + (i % 13) as f64 / 4.0,
                (i % 5) as f64,
            )
        })
        .collect();
    let trades = with_marker(trades);
    publish(&sequencer, "B", &trades);
    let want = open_bars("B", &trades);
    let (mut seen_a, mut seen_b) = (Seen::new(), Seen::new());
    read_until_marker(&mut on_a, &want, &mut seen_a).await;
    read_until_marker(&mut on_b, &want, &mut seen_b).await;
    assert_eq!(
        seen_a, seen_b,
        "the same messages with the same seqs on both edges"
    );
    for (channel, messages) in &seen_a {
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{channel}: gap-free"
        );
    }
    let (closed, _, _) = model(&trades, MINUTE);
    let got: Vec<Bar> = seen_a["bars:1m:B"]
        .iter()
        .map(bar_of)
        .filter(|b| b.closed)
        .collect();
    assert_eq!(got, closed, "the bars are the trades'");

    // An edge started now reads the channels' history from the stream: same snapshot.
    let c = relay(&nats, "edge");
    let snapshot = |relay: &Spawned| {
        let url = format!("ws://{}/ws?channels=bars:1m:B,ticker:B", relay.http);
        async move {
            let mut client = WsClient::connect(&url).await;
            let _welcome = client.next_json().await;
            let mut snapshots = BTreeMap::new();
            while snapshots.len() < 2 {
                let m = client.next_json().await;
                snapshots.insert(m["type"].as_str().expect("type").to_owned(), m);
            }
            snapshots
        }
    };
    let (on_a_now, on_c) = (snapshot(&a).await, snapshot(&c).await);
    assert_eq!(
        on_a_now, on_c,
        "a later edge shows the same closed bars and ticker"
    );
    assert!(
        on_c["bar_snapshot"]["bars"].as_array().expect("bars").len() > 1,
        "{on_c:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restarted_sequencer_continues_the_open_bars_and_the_24_hour_window() {
    let Some(nats) = NatsServer::start("bars-restart") else {
        return;
    };
    // A replay depth far below a day of 1-minute bars: the stream keeps enough of them
    // anyway (its per-subject limit is raised for bars), or the window would come back short.
    let shallow = ["--replay-depth", "16"];
    let mut first = relay_with(&nats, "sequencer", &shallow);
    let e = relay(&nats, "edge");
    let mut client = connect(&e, "?symbols=W&channels=bars:1s:W,bars:1m:W,ticker:W").await;
    // A day and more of trades, one every 20 minutes, then a busy last minute that the
    // restart cuts in two.
    let end = now_ns() / MINUTE * MINUTE - 3600 * S;
    let mut trades: Vec<Trade> = (0..80u64)
        .map(|i| {
            (
                end - (80 - i) * 20 * MINUTE,
                50.0 + (i % 11) as f64,
                1.0 + (i % 3) as f64,
            )
        })
        .collect();
    let busy: Vec<Trade> = (0..40u64)
        .map(|i| {
            (
                end + 10 * S + i * 100_000_000,
                60.0 + (i % 9) as f64 / 4.0,
                0.5,
            )
        })
        .collect();
    trades.extend_from_slice(&busy[..25]);
    publish(&first, "W", &trades);
    let ticks = trades.len();
    let mut seen = Seen::new();
    support::within("the first sequencer's ticks on the edge", async {
        while seen.get("W").map_or(0, Vec::len) < ticks {
            record(&mut seen, client.next_json().await);
        }
    })
    .await;
    // Killed, not stopped: whatever it had not published of the open bars is gone with it.
    first.child.kill().expect("kill the sequencer");
    let _ = first.child.wait();

    let second = relay_with(&nats, "sequencer", &shallow);
    trades.extend_from_slice(&busy[25..]);
    let later: Vec<Trade> = (1..=5u64)
        .map(|i| (end + i * MINUTE + 5 * S, 70.0 + i as f64, 2.0))
        .collect();
    trades.extend(later.iter().copied());
    let trades = with_marker(trades);
    publish(&second, "W", &trades[ticks..]);
    let want = open_bars("W", &trades);
    read_until_marker(&mut client, &want, &mut seen).await;

    for (channel, messages) in seen.iter().filter(|(c, _)| c.contains(':')) {
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().expect("seq"))
            .collect();
        assert_eq!(
            seqs,
            (1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{channel}: continued, gap-free"
        );
    }
    for (name, ns) in [("1s", S), ("1m", MINUTE)] {
        let channel = format!("bars:{name}:W");
        let (closed, open, _) = model(&trades, ns);
        let got: Vec<Bar> = seen[&channel]
            .iter()
            .map(bar_of)
            .filter(|b| b.closed)
            .collect();
        assert_eq!(
            got, closed,
            "{channel}: every bar closed once, across the restart"
        );
        assert_eq!(
            seen[&channel].last().map(bar_of),
            open,
            "{channel}: the open bar"
        );
    }
    let ticker = seen["ticker:W"].last().expect("a ticker");
    let want = ticker_model(&trades, ticker["ts_ns"].as_u64().expect("ts_ns"));
    for (field, want) in ["last", "open", "high", "low", "volume", "change"]
        .iter()
        .zip(want)
    {
        assert_eq!(ticker[*field].as_f64(), Some(want), "{field} in {ticker}");
    }
}
