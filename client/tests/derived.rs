//! Bars and tickers through the client, against a real relay (in-process, real sockets): in
//! each encoding they arrive as typed items, each channel's seqs once and in order across a
//! cut connection (the client resumes them like any channel), and the closed bars are the
//! trades'.

#[path = "../../tests/support/bars.rs"]
#[allow(dead_code, unreachable_pub)]
mod bars;
mod support;

use std::collections::BTreeMap;
use std::time::Duration;

use bars::{MARKER, MINUTE, S, Trade, line, model, now_ns, with_marker};
use support::{Proxy, TestRelay, fast_backoff};
use tickrelay::Config;
use tickrelay_client::{Client, Encoding, Item, Options};
use tokio::io::AsyncWriteExt;

async fn publish(relay: &TestRelay, trades: &[Trade]) {
    let mut text = String::new();
    for trade in trades {
        text.push_str(&line("X", *trade));
        text.push('\n');
    }
    let mut ingest = tokio::net::TcpStream::connect(relay.config.ingest_tcp)
        .await
        .expect("ingest connects");
    ingest
        .write_all(text.as_bytes())
        .await
        .expect("trades sent");
}

async fn typed_and_resumed(encoding: Encoding) {
    let mut config = Config::for_tests();
    config.derived.bar_grace = Duration::from_secs(86_400);
    config.derived.derived_interval = Duration::from_millis(20);
    let relay = TestRelay::start(config).await;
    let proxy = Proxy::start(relay.config.listen).await;
    let base = now_ns() / MINUTE * MINUTE - 3600 * S;
    let trades: Vec<Trade> = (0..600u64)
        .map(|i| (base + i * 330_000_000, 10.0 + (i % 23) as f64 / 4.0, 1.0))
        .collect();
    let trades = with_marker(trades);
    publish(&relay, &trades[..300]).await;
    relay.wait_seq("X", 300).await;
    let options = Options::new()
        .channels(["bars:1s:X", "bars:1m:X", "ticker:X"])
        .encoding(encoding)
        .backoff(fast_backoff());
    let mut client = Client::connect(&proxy.url(), options)
        .await
        .expect("connects");

    // Per channel: (seq, the item) in delivery order.
    let mut seen: BTreeMap<String, Vec<(u64, Item)>> = BTreeMap::new();
    let (mut live, mut cut, mut connects) = (false, false, 0);
    let read = async {
        loop {
            let item = client
                .next()
                .await
                .expect("the stream goes on")
                .expect("no error");
            if let Some((key, seq)) = item.seq() {
                seen.entry(key.name().to_owned())
                    .or_default()
                    .push((seq, item.clone()));
            }
            assert!(!matches!(item, Item::Gap(_) | Item::Reset(_)), "{item:?}");
            connects += usize::from(matches!(item, Item::Connected(_)));
            // Live after the snapshots (the ticker's comes last), then cut mid-stream while
            // the rest is published.
            if !live && matches!(item, Item::Ticker(_)) {
                publish(&relay, &trades[300..450]).await;
                live = true;
            }
            let bars_in = seen.get("bars:1s:X").map_or(0, Vec::len);
            if live && !cut && bars_in >= 20 {
                proxy.cut();
                publish(&relay, &trades[450..]).await;
                cut = true;
            }
            if matches!(&item, Item::Ticker(t) if t.last == MARKER) {
                return;
            }
        }
    };
    tokio::time::timeout(support::WAIT, read)
        .await
        .expect("the marker trade's ticker");
    assert!(
        cut && connects == 2,
        "cut mid-stream and resumed: {connects} connections"
    );

    for (channel, items) in &seen {
        let seqs: Vec<u64> = items.iter().map(|(s, _)| *s).collect();
        let first = seqs[0];
        assert_eq!(
            seqs,
            (first..first + seqs.len() as u64).collect::<Vec<_>>(),
            "{channel}"
        );
    }
    let bars = &seen["bars:1s:X"];
    assert!(
        matches!(bars[0].1, Item::BarSnapshot(_)),
        "subscribed after trades: a snapshot first, {:?}",
        bars[0].1
    );
    // The snapshot's closed bars, then each closed message: the model's closed bars.
    let mut closed: Vec<(u64, u64)> = Vec::new();
    for (_, item) in bars {
        match item {
            Item::BarSnapshot(s) => closed.extend(
                s.bars
                    .iter()
                    .filter(|b| b.closed)
                    .map(|b| (b.start_ns, b.trades)),
            ),
            Item::Bar(b) if b.bar.closed => closed.push((b.bar.start_ns, b.bar.trades)),
            Item::Bar(_) => {}
            other => panic!("a bars channel delivers bars: {other:?}"),
        }
    }
    let (want, _, _) = model(&trades, S);
    let want: Vec<(u64, u64)> = want.iter().map(|b| (b.start_ns, b.trades)).collect();
    let history = Config::for_tests().derived.bar_history;
    let first_shown = want.len() - closed.len();
    assert!(
        closed.len() >= history.min(want.len()),
        "the snapshot showed its history"
    );
    assert_eq!(
        closed,
        want[first_shown..],
        "every closed bar once, across the cut"
    );
    assert!(
        seen["ticker:X"]
            .iter()
            .all(|(_, i)| matches!(i, Item::Ticker(_)))
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_bars_and_tickers_are_typed_and_resumed() {
    typed_and_resumed(Encoding::Json).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_bars_and_tickers_are_typed_and_resumed() {
    typed_and_resumed(Encoding::Protobuf).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gzip_bars_and_tickers_are_typed_and_resumed() {
    typed_and_resumed(Encoding::Gzip).await;
}
