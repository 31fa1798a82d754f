//! Bars and 24-hour tickers through real sockets: trades in over TCP ingest, bar and ticker
//! channels out over WebSocket, compared with an independent computation written here
//! (docs/PROTOCOL.md, "Bars and tickers"). Trades are stamped in the past, so no test waits
//! for an interval to pass: bars close on the trades' event time.

mod support;

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::{Config as Cases, TestCaseError, TestRunner};
use serde_json::Value;
use support::bars::{
    Bar, MARKER, MINUTE, S, Trade, bar_of, line, model, now_ns, ticker_model, with_marker,
};
use support::{TestRelay, WsClient, within};
use tickrelay::Config;

const INTERVALS: [(&str, u64); 4] = [
    ("1s", S),
    ("1m", MINUTE),
    ("5m", 5 * MINUTE),
    ("1h", 3600 * S),
];

/// Bars never close by the clock during a test (a day of grace): only trades close them.
fn config() -> Config {
    let mut config = Config::for_tests();
    config.derived.bar_grace = Duration::from_secs(86_400);
    config.derived.derived_interval = Duration::from_millis(20);
    config
}

/// Every channel's messages so far, in arrival order.
#[derive(Default)]
struct Seen(BTreeMap<String, Vec<Value>>);

impl Seen {
    async fn read_until(
        &mut self,
        client: &mut WsClient,
        what: &str,
        done: impl Fn(&Self) -> bool,
    ) {
        within(what, async {
            while !done(self) {
                let m = client.next_json().await;
                if let Some(channel) = m["channel"].as_str() {
                    self.0.entry(channel.to_owned()).or_default().push(m);
                }
            }
        })
        .await;
    }

    fn of(&self, channel: &str) -> &[Value] {
        self.0.get(channel).map_or(&[], Vec::as_slice)
    }
}

/// Publishes `trades` of a fresh `symbol` and checks every bars channel and the ticker
/// against the model, then what a late subscriber's snapshots show.
async fn bars_match_the_model(
    relay: &TestRelay,
    symbol: &str,
    trades: &[Trade],
) -> Result<(), TestCaseError> {
    let channels: Vec<String> = INTERVALS
        .iter()
        .map(|(name, _)| format!("bars:{name}:{symbol}"))
        .chain([format!("ticker:{symbol}")])
        .collect();
    let mut client = relay
        .client(&format!("?channels={}", channels.join(",")))
        .await;
    let late_before = relay.metrics().derived.late_trades.load(Relaxed);
    let lines: Vec<String> = trades.iter().map(|t| line(symbol, *t)).collect();
    relay.ingest().await.send_lines(&lines).await;

    let models: Vec<_> = INTERVALS.iter().map(|(_, ns)| model(trades, *ns)).collect();
    let (minute_closed, minute_open, _) = &models[1];
    let mut seen = Seen::default();
    seen.read_until(
        &mut client,
        "each channel's last update and the ticker",
        |seen| {
            let bars_done = INTERVALS
                .iter()
                .zip(&models)
                .all(|((name, _), (_, open, _))| {
                    let last = seen.of(&format!("bars:{name}:{symbol}")).last().map(bar_of);
                    last.map(|b| (b.start_ns, b.trades)) == open.map(|b| (b.start_ns, b.trades))
                });
            let ticker = seen.of(&format!("ticker:{symbol}")).last();
            bars_done && ticker.is_some_and(|t| t["last"] == MARKER)
        },
    )
    .await;

    for ((name, _), (closed, open, _)) in INTERVALS.iter().zip(&models) {
        let messages = seen.of(&format!("bars:{name}:{symbol}"));
        let seqs: Vec<u64> = messages
            .iter()
            .map(|m| m["seq"].as_u64().expect("seq"))
            .collect();
        prop_assert_eq!(
            &seqs,
            &(1..=seqs.len() as u64).collect::<Vec<_>>(),
            "{}: gap-free",
            name
        );
        let got: Vec<Bar> = messages.iter().map(bar_of).filter(|b| b.closed).collect();
        prop_assert_eq!(&got, closed, "{}: every closed bar once, in order", name);
        prop_assert_eq!(messages.last().map(bar_of), *open, "{}: the open bar", name);
        for pair in messages.windows(2) {
            let (a, b) = (bar_of(&pair[0]), bar_of(&pair[1]));
            prop_assert!(
                a.start_ns < b.start_ns || (a.start_ns == b.start_ns && !a.closed),
                "{}: nothing about a bar after its close: {:?} then {:?}",
                name,
                a,
                b
            );
        }
    }
    let late: u64 = models.iter().map(|(_, _, late)| late).sum();
    prop_assert_eq!(
        relay.metrics().derived.late_trades.load(Relaxed) - late_before,
        late
    );

    let ticker = seen
        .of(&format!("ticker:{symbol}"))
        .last()
        .expect("a ticker")
        .clone();
    check_ticker(&ticker, trades)?;

    // A late subscriber's snapshots: the last closed bars (up to --bar-history) and the open
    // one; the ticker as last sent.
    let (history, minute) = (config().derived.bar_history, format!("bars:1m:{symbol}"));
    let mut late = relay
        .client(&format!("?channels={minute},ticker:{symbol}"))
        .await;
    let mut snapshots = Seen::default();
    snapshots
        .read_until(&mut late, "the snapshots", |s| s.0.len() == 2)
        .await;
    let snapshot = &snapshots.of(&minute)[0];
    prop_assert_eq!(&snapshot["type"], "bar_snapshot");
    prop_assert_eq!(
        &snapshot["seq"],
        &seen.of(&minute).last().expect("a bar")["seq"]
    );
    let bars: Vec<Bar> = snapshot["bars"]
        .as_array()
        .expect("bars")
        .iter()
        .map(bar_of)
        .collect();
    let mut want: Vec<Bar> = minute_closed[minute_closed.len().saturating_sub(history)..].to_vec();
    want.extend(*minute_open);
    prop_assert_eq!(bars, want);
    let ticker_snapshot = &snapshots.of(&format!("ticker:{symbol}"))[0];
    prop_assert_eq!(&ticker_snapshot["type"], "ticker_snapshot");
    for field in [
        "seq",
        "last",
        "open",
        "high",
        "low",
        "volume",
        "change",
        "change_percent",
        "ts_ns",
    ] {
        prop_assert_eq!(&ticker_snapshot[field], &ticker[field], "{}", field);
    }
    Ok(())
}

/// The ticker's fields are the model's over the window ending at its own `ts_ns`.
fn check_ticker(ticker: &Value, trades: &[Trade]) -> Result<(), TestCaseError> {
    let t = ticker["ts_ns"].as_u64().expect("ts_ns");
    let want = ticker_model(trades, t);
    let fields = ["last", "open", "high", "low", "volume", "change"];
    for (field, want) in fields.iter().zip(want) {
        prop_assert_eq!(
            ticker[*field].as_f64(),
            Some(want),
            "{} in {}",
            field,
            ticker
        );
    }
    let percent = if want[1] == 0.0 {
        0.0
    } else {
        want[5] / want[1] * 100.0
    };
    let got = ticker["change_percent"].as_f64().expect("change_percent");
    // A quotient: compared to 1e-12 in case the JSON reader rounds its last bit otherwise.
    prop_assert!(
        (got - percent).abs() <= percent.abs() * 1e-12,
        "{} vs {}",
        got,
        percent
    );
    Ok(())
}

/// Trades of ~50 minutes that start 20 minutes before an hour ends, going back in time
/// now and then (late trades): every interval's boundaries are crossed.
fn trades() -> impl Strategy<Value = Vec<(i64, u32, u32)>> {
    proptest::collection::vec((-4_000i64..25_000, 4u32..4000, 0u32..20), 1..120)
}

fn stamped(steps: &[(i64, u32, u32)], base: u64) -> Vec<Trade> {
    let mut ts = base;
    let trades = steps
        .iter()
        .map(|&(delta_ms, price, size)| {
            ts = (ts as i64 + delta_ms * 1_000_000).max(base as i64) as u64;
            (ts, f64::from(price) / 4.0, f64::from(size) / 2.0)
        })
        .collect();
    with_marker(trades)
}

/// Runs `cases` proptest cases, each on a fresh symbol of one relay.
fn cases<T: std::fmt::Debug>(
    cases: u32,
    strategy: impl Strategy<Value = T>,
    check: impl Fn(&TestRelay, &str, T) -> Result<(), TestCaseError>,
) {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");
    let relay = runtime.block_on(TestRelay::start(config()));
    let mut runner = TestRunner::new(Cases {
        cases,
        failure_persistence: None,
        ..Cases::default()
    });
    let n = AtomicUsize::new(0);
    let _guard = runtime.enter();
    runner
        .run(&strategy, |value| {
            check(&relay, &format!("P{}", n.fetch_add(1, Relaxed)), value)
        })
        .unwrap();
}

#[test]
fn bars_equal_an_independent_computation_across_boundaries_and_late_trades() {
    let hour = 3600 * S;
    let base = (now_ns() - 3 * hour) / hour * hour + 40 * MINUTE;
    cases(12, trades(), |relay, symbol, steps| {
        let trades = stamped(&steps, base);
        tokio::runtime::Handle::current().block_on(bars_match_the_model(relay, symbol, &trades))
    });
}

#[test]
fn the_ticker_is_the_last_24_hours_of_1_minute_bars() {
    // Trades over 30 hours ending an hour ago, half of them within minutes of 24 hours
    // before the last: the window's first minute is where they fall in or out.
    let before_end = prop_oneof![0u64..30 * 3600, 86_400u64 - 180..86_400 + 180];
    let strategy = proptest::collection::vec((before_end, 4u32..4000, 1u32..20), 2..60);
    cases(12, strategy, |relay, symbol, offsets| {
        let end = now_ns() - 3600 * S;
        let mut trades: Vec<Trade> = offsets
            .iter()
            .map(|&(secs, price, size)| {
                (
                    end - secs * S,
                    f64::from(price) / 4.0,
                    f64::from(size) / 2.0,
                )
            })
            .collect();
        trades.sort_by_key(|t| t.0);
        // The window ends at the marker, a millisecond after `end`.
        trades.push((end, 1.0, 1.0));
        let trades = with_marker(trades);
        tokio::runtime::Handle::current().block_on(async {
            let mut client = relay.client(&format!("?channels=ticker:{symbol}")).await;
            let lines: Vec<String> = trades.iter().map(|t| line(symbol, *t)).collect();
            relay.ingest().await.send_lines(&lines).await;
            let ticker = within("the ticker after the last trade", async {
                loop {
                    let ticker = client.next_json().await;
                    if ticker["type"] == "ticker" && ticker["last"] == MARKER {
                        return ticker;
                    }
                }
            })
            .await;
            check_ticker(&ticker, &trades)
        })
    });
}
