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

#[cfg(test)]
mod tests {
    use std::collections::HashSet;

    use super::*;
    use crate::book::BookKind;
    use crate::ingest::InboxReceiver;

    fn instrument(mid: f64, spread_bps: f64) -> Instrument {
        let symbol = Symbol::parse("BTC-USD").unwrap();
        Instrument {
            book: DemoBook::new(symbol.clone(), mid),
            symbol,
            mid,
            spread_bps,
        }
    }

    fn cents(x: f64) -> f64 {
        (x * 100.0).round() / 100.0
    }

    /// Whether `x` is a whole number of `unit`s (`unit` a power of ten below 1).
    fn in_units(x: f64, unit: f64) -> bool {
        ((x / unit).round() * unit - x).abs() < 1e-9
    }

    #[test]
    fn the_named_instruments_come_first_then_numbered_ones() {
        let mut rng = SmallRng::seed_from_u64(1);
        assert!(instruments(0, &mut rng).is_empty());
        let three = instruments(3, &mut rng);
        let names: Vec<&str> = three.iter().map(|i| i.symbol.as_str()).collect();
        assert_eq!(names, ["BTC-USD", "ETH-USD", "SOL-USD"]);
        let mids: Vec<f64> = three.iter().map(|i| i.mid).collect();
        assert_eq!(mids, [43250.5, 2280.0, 98.4]);
        let all = instruments(NAMED.len() + 2, &mut rng);
        assert_eq!(all.len(), NAMED.len() + 2);
        for (inst, (name, mid)) in all.iter().zip(NAMED) {
            assert_eq!((inst.symbol.as_str(), inst.mid), (*name, *mid));
        }
        let extra: Vec<(&str, f64)> = all[NAMED.len()..]
            .iter()
            .map(|i| (i.symbol.as_str(), i.mid))
            .collect();
        assert_eq!(extra[0], ("SIM000-USD", 10.0));
        assert_eq!(extra[1].0, "SIM001-USD");
        assert!((extra[1].1 - 13.7).abs() < 1e-9, "{}", extra[1].1);
        let distinct: HashSet<&str> = all.iter().map(|i| i.symbol.as_str()).collect();
        assert_eq!(distinct.len(), all.len(), "no symbol twice");
        for inst in &all {
            assert!(
                (1.0..8.0).contains(&inst.spread_bps),
                "{}: {} bp",
                inst.symbol,
                inst.spread_bps
            );
        }
    }

    #[test]
    fn steps_are_valid_ticks_around_the_walking_mid() {
        let mut rng = SmallRng::seed_from_u64(2);
        // A spread of 200 bp on 100: quotes one whole unit either side of the mid.
        let mut inst = instrument(100.0, 200.0);
        let (mut sizes, mut lots) = (Vec::new(), Vec::new());
        for now in 1..=400 {
            let before = inst.mid;
            let tick = step(&mut inst, &mut rng, now);
            assert!(
                (inst.mid / before - 1.0).abs() <= 1e-4,
                "a step moves the mid by at most 1 bp: {before} to {}",
                inst.mid
            );
            assert_eq!(tick.symbol, inst.symbol);
            assert_eq!((tick.ts_ns, tick.recv_ns, tick.seq), (now, now, Seq(0)));
            assert_eq!(tick.venue, None);
            let half = inst.mid * inst.spread_bps / 20_000.0;
            let (low, high) = (cents(inst.mid - half), cents(inst.mid + half));
            match tick.kind {
                TickKind::Trade => {
                    let price = tick.price.expect("a trade has a price");
                    assert!((low..=high).contains(&price), "{low} <= {price} <= {high}");
                    assert_eq!(price, cents(price), "in cents");
                    let size = tick.size.expect("a trade has a size");
                    assert!((0.001..=5.0).contains(&size), "size {size}");
                    assert!(in_units(size, 0.001), "size {size} in thousandths");
                    sizes.push(size);
                    assert_eq!((tick.bid, tick.ask), (None, None));
                    assert_eq!((tick.bid_size, tick.ask_size), (None, None));
                }
                TickKind::Quote => {
                    assert_eq!((tick.bid, tick.ask), (Some(low), Some(high)));
                    for lot in [tick.bid_size, tick.ask_size] {
                        let lot = lot.expect("a quote has both sizes");
                        assert!((0.01..=20.0).contains(&lot), "lot {lot}");
                        assert!(in_units(lot, 0.01), "lot {lot} in cents");
                        lots.push(lot);
                    }
                    assert_eq!((tick.price, tick.size), (None, None));
                }
            }
        }
        assert!(sizes.len() > 100 && lots.len() > 200, "both kinds occur");
        let max = |v: &[f64]| v.iter().copied().fold(0.0, f64::max);
        assert!(max(&sizes) > 2.5, "trade sizes span 0.001 to 5");
        assert!(max(&lots) > 10.0, "quote sizes span 0.01 to 20");
    }

    #[test]
    fn a_step_moves_the_mid_by_its_draw_and_trades_at_the_drawn_offset() {
        let mut rng = SmallRng::seed_from_u64(3);
        let mut inst = instrument(100.0, 200.0);
        let mut trades = 0;
        for now in 1..=50 {
            // The same draws step makes, in its order: the walk, trade or quote, the
            // trade's offset from the mid.
            let mut replay = rng.clone();
            let factor = 1.0 + replay.random_range(-1.0e-4..1.0e-4);
            let trade = replay.random_bool(0.4);
            let before = inst.mid;
            let tick = step(&mut inst, &mut rng, now);
            assert_eq!(inst.mid, before * factor, "step {now}");
            if trade {
                let half = inst.mid * inst.spread_bps / 20_000.0;
                let offset = replay.random_range(-half..half);
                assert_eq!(tick.price, Some(cents(inst.mid + offset)), "step {now}");
                trades += 1;
            }
        }
        assert!(trades > 0);
    }

    /// The next batch the demo hands over (it must come within seconds).
    async fn batch(rx: &mut InboxReceiver) -> Vec<Item> {
        let next = tokio::time::timeout(Duration::from_secs(5), rx.recv());
        next.await
            .expect("a batch within seconds")
            .expect("the demo is running")
            .items
    }

    #[tokio::test]
    async fn the_demo_paces_its_rate_per_millisecond_and_stops_on_shutdown() {
        let (inbox, mut rx) = Inbox::bounded(64);
        let shutdown = Shutdown::new();
        let demo = tokio::spawn(run(inbox, 2, 1500, shutdown.clone()));
        let mut counts = Vec::new();
        let mut books = HashSet::new();
        for _ in 0..6 {
            let items = batch(&mut rx).await;
            let mut ticks = 0;
            for (i, item) in items.iter().enumerate() {
                match item {
                    Item::Tick(tick) => {
                        assert!(["BTC-USD", "ETH-USD"].contains(&tick.symbol.as_str()));
                        ticks += 1;
                    }
                    Item::Book(book) => {
                        let Some(Item::Tick(quote)) = items.get(i + 1) else {
                            panic!("a book update comes before its quote");
                        };
                        assert_eq!(quote.kind, TickKind::Quote);
                        assert_eq!(book.channel.symbol(), &quote.symbol);
                        let first = books.insert(quote.symbol.clone());
                        let kind = if first {
                            BookKind::Snapshot
                        } else {
                            BookKind::Delta
                        };
                        assert_eq!(book.kind, kind, "a snapshot first, then deltas");
                    }
                    other => panic!("the demo sends ticks and books, not {other:?}"),
                }
            }
            counts.push(ticks);
        }
        assert_eq!(counts, [1, 2, 1, 2, 1, 2], "1.5 ticks a millisecond");
        shutdown.trigger();
        tokio::time::timeout(Duration::from_secs(5), demo)
            .await
            .expect("the demo stops on shutdown")
            .unwrap();
    }
}
