//! The built-in simulated market (`--demo`): a random walk of trades and quotes over
//! `--demo-symbols` instruments at `--demo-rate` ticks/s, published every millisecond so the
//! stream is paced, not bursty; each quote also moves the instrument's order book
//! (`demo_books`).

use std::time::Duration;

use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};

use super::Inbox;
use super::demo_books::DemoBook;
use crate::event::Item;
use crate::shutdown::Shutdown;
use crate::tick::{Seq, Symbol, Tick, TickKind, now_ns};

/// A simulated instrument: a mid price that walks, and a spread.
#[derive(Debug)]
struct Instrument {
    symbol: Symbol,
    mid: f64,
    spread_bps: f64,
    book: DemoBook,
}

/// Runs the simulated market until shutdown.
pub async fn run(inbox: Inbox, symbols: usize, rate: u32, shutdown: Shutdown) {
    let mut rng = SmallRng::seed_from_u64(0x7AC4);
    let mut market = instruments(symbols, &mut rng);
    let mut clock = tokio::time::interval(Duration::from_millis(1));
    clock.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let per_ms = f64::from(rate) / 1000.0;
    let mut owed = 0.0;
    loop {
        tokio::select! {
            // Shutdown wins: the demo feed has nothing worth finishing.
            biased;
            () = shutdown.wait() => return,
            _ = clock.tick() => {}
        }
        owed += per_ms;
        let count = owed as usize;
        owed -= count as f64;
        let now = now_ns();
        let mut batch: Vec<Item> = Vec::with_capacity(count * 2);
        for _ in 0..count {
            let i = rng.random_range(0..market.len());
            let tick = step(&mut market[i], &mut rng, now);
            if let (Some(bid), Some(ask)) = (tick.bid, tick.ask) {
                let book = market[i].book.step(bid, ask, &mut rng, now);
                batch.push(Item::Book(book));
            }
            batch.push(Item::Tick(tick));
        }
        if inbox.publish_items(batch).await.is_err() {
            return;
        }
    }
}

fn step(inst: &mut Instrument, rng: &mut SmallRng, now: u64) -> Tick {
    // Geometric random walk: ~1 bp per tick.
    inst.mid *= 1.0 + rng.random_range(-1.0e-4..1.0e-4);
    let half = inst.mid * inst.spread_bps / 20_000.0;
    let round = |x: f64| (x * 100.0).round() / 100.0;
    let (kind, price, size, bid, ask, bid_size, ask_size) = if rng.random_bool(0.4) {
        let price = round(inst.mid + rng.random_range(-half..half));
        let size = (rng.random_range(0.001..5.0f64) * 1000.0).round() / 1000.0;
        (
            TickKind::Trade,
            Some(price),
            Some(size),
            None,
            None,
            None,
            None,
        )
    } else {
        let lot = |rng: &mut SmallRng| (rng.random_range(0.01..20.0f64) * 100.0).round() / 100.0;
        let (bs, asz) = (lot(rng), lot(rng));
        (
            TickKind::Quote,
            None,
            None,
            Some(round(inst.mid - half)),
            Some(round(inst.mid + half)),
            Some(bs),
            Some(asz),
        )
    };
    Tick {
        symbol: inst.symbol.clone(),
        kind,
        price,
        size,
        bid,
        ask,
        bid_size,
        ask_size,
        venue: None,
        ts_ns: now,
        seq: Seq(0),
        recv_ns: now,
    }
}

fn instruments(count: usize, rng: &mut SmallRng) -> Vec<Instrument> {
    let named = NAMED.iter().map(|(name, mid)| ((*name).to_owned(), *mid));
    let generated = (0..).map(|i| (format!("SIM{i:03}-USD"), 10.0 + f64::from(i) * 3.7));
    named
        .chain(generated)
        .take(count)
        .map(|(name, mid)| {
            let symbol = Symbol::parse(&name).expect("demo symbol names are valid by construction");
            Instrument {
                book: DemoBook::new(symbol.clone(), mid),
                symbol,
                mid,
                spread_bps: rng.random_range(1.0..8.0),
            }
        })
        .collect()
}

/// Well-known instruments and plausible starting prices; the rest are `SIMnnn-USD`.
const NAMED: &[(&str, f64)] = &[
    ("BTC-USD", 43250.5),
    ("ETH-USD", 2280.0),
    ("SOL-USD", 98.4),
    ("XRP-USD", 0.62),
    ("ADA-USD", 0.58),
    ("DOGE-USD", 0.091),
    ("AVAX-USD", 36.2),
    ("DOT-USD", 7.1),
    ("LINK-USD", 14.8),
    ("MATIC-USD", 0.85),
    ("LTC-USD", 71.3),
    ("BCH-USD", 245.0),
    ("ATOM-USD", 9.9),
    ("UNI-USD", 6.2),
    ("XLM-USD", 0.12),
    ("ETC-USD", 20.1),
    ("FIL-USD", 5.4),
    ("APT-USD", 8.8),
    ("ARB-USD", 1.9),
    ("OP-USD", 3.1),
    ("NEAR-USD", 3.6),
    ("AAVE-USD", 102.0),
    ("BTC-EUR", 39710.0),
    ("ETH-EUR", 2093.0),
    ("ETH-BTC", 0.0527),
    ("SOL-BTC", 0.00227),
    ("AAPL", 191.5),
    ("MSFT", 374.6),
    ("NVDA", 495.2),
    ("AMZN", 151.9),
    ("GOOGL", 138.1),
    ("META", 353.9),
    ("TSLA", 238.8),
    ("JPM", 170.3),
    ("V", 260.4),
    ("XOM", 100.2),
    ("SPY", 470.1),
    ("QQQ", 408.3),
    ("IWM", 197.6),
    ("GLD", 190.2),
    ("EUR-USD", 1.0915),
    ("GBP-USD", 1.2702),
    ("USD-JPY", 141.95),
    ("AUD-USD", 0.6741),
    ("USD-CAD", 1.3391),
    ("USD-CHF", 0.8574),
    ("NZD-USD", 0.6222),
    ("EUR-GBP", 0.8593),
    ("ES.FUT", 4781.25),
    ("NQ.FUT", 16830.5),
];
