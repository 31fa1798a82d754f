//! The end of a `books` run: book deliveries beside the same clients' ticks at the same rate,
//! and the relay's memory per book.

use std::fmt::Write as _;

use super::RunReport;
use super::units::{ratio, us};

/// The books run and the ticks run side by side.
pub fn books_table(books: &RunReport, ticks: &RunReport) -> String {
    let mut out = String::new();
    let (Some(b), Some(t)) = (books.phases.first(), ticks.phases.first()) else {
        return out;
    };
    let _ = writeln!(
        out,
        "\n== order books vs ticks: {} clients × {} of {} symbols, {:.0} updates/s in total \
         (book updates, then ticks)",
        b.fast.clients, books.config.symbols_per_client, books.config.symbols, b.target_rate
    );
    let _ = writeln!(
        out,
        "{:>6} {:>13} {:>9} {:>9} {:>9} {:>8} {:>9} {:>15} {:>6}",
        "", "deliveries/s", "p50", "p99", "p99.9", "lost", "seq errs", "relay CPU/deliv", "clean"
    );
    for (name, r, p) in [("books", books, b), ("ticks", ticks, t)] {
        let l = &p.fast.latency_us;
        let s = &p.fast.seq;
        let _ = writeln!(
            out,
            "{name:>6} {:>13.0} {:>9} {:>9} {:>9} {:>8} {:>9} {:>15} {:>6}",
            p.deliveries_per_s,
            us(l.p50_us),
            us(l.p99_us),
            us(l.p999_us),
            p.fast.lost,
            s.gaps + s.dups + s.out_of_order,
            p.relay_ns_per_delivery
                .map_or("-".into(), |ns| format!("{ns:.0} ns")),
            if r.clean { "yes" } else { "NO" }
        );
    }
    let cpu = match (b.relay_ns_per_delivery, t.relay_ns_per_delivery) {
        (Some(x), Some(y)) if y > 0.0 => Some(x / y),
        _ => None,
    };
    let p99 = (t.fast.latency_us.p99_us > 0)
        .then(|| b.fast.latency_us.p99_us as f64 / t.fast.latency_us.p99_us as f64);
    let _ = writeln!(
        out,
        "books ÷ ticks: relay CPU per delivery {}, p99 {}",
        ratio(cpu),
        ratio(p99)
    );
    if let Some(m) = &books.books {
        let _ = writeln!(
            out,
            "memory: {} books × {} levels a side: relay RSS {} KiB → {} KiB, {:.0} bytes per book",
            m.books, m.levels, m.relay_rss_before_kb, m.relay_rss_after_kb, m.bytes_per_book
        );
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::BookMemory;

    #[test]
    fn books_and_ticks_side_by_side_with_memory_per_book() {
        let mut books = crate::report::tests::sample();
        books.phases.truncate(1);
        let mut ticks = books.clone();
        books.phases[0].relay_ns_per_delivery = Some(3000.0);
        ticks.phases[0].relay_ns_per_delivery = Some(1000.0);
        books.phases[0].fast.latency_us.p99_us = 4000;
        ticks.phases[0].fast.latency_us.p99_us = 2000;
        books.books = Some(BookMemory {
            books: 100,
            levels: 100,
            relay_rss_before_kb: 10_000,
            relay_rss_after_kb: 12_000,
            bytes_per_book: 20_480.0,
        });
        let t = books_table(&books, &ticks);
        assert!(t.contains("relay CPU per delivery 3.00, p99 2.00"), "{t}");
        assert!(t.contains("20480 bytes per book"), "{t}");
    }
}
