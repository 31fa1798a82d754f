//! A small latency monitor: once a second, how old the ticks are when they reach this
//! process, measured from the source event time (`ts_ns`) and from the relay's ingest time
//! (`recv_ns`), with the gaps, resets and reconnects seen.
//!
//! ```sh
//! cargo run --release -p tickrelay-client --example latency -- --url ws://127.0.0.1:8080/ws '*'
//! ```
//!
//! Both ages compare clocks: they are meaningful on one machine or with synchronised clocks.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use tickrelay_client::{Client, Item, Options};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "ws://127.0.0.1:8080/ws".to_owned();
    let mut symbols = Vec::new();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            symbol => symbols.push(symbol.to_owned()),
        }
    }
    if symbols.is_empty() {
        symbols.push("*".into());
    }
    let mut client = Client::connect(&url, Options::new().symbols(symbols)).await?;
    let mut window = Window::default();
    let mut every_second = tokio::time::interval(Duration::from_secs(1));
    every_second.tick().await;
    loop {
        tokio::select! {
            item = client.next() => match item {
                Some(item) => window.add(&item?),
                None => return Ok(()),
            },
            _ = every_second.tick() => {
                println!("{}", window.report());
                window = Window::default();
            }
        }
    }
}

/// One second of observations.
#[derive(Default)]
struct Window {
    from_source_us: Vec<u64>,
    from_relay_us: Vec<u64>,
    gaps: usize,
    resets: usize,
    reconnects: usize,
}

impl Window {
    fn add(&mut self, item: &Item) {
        match item {
            Item::Tick(t) => {
                let now = SystemTime::now()
                    .duration_since(UNIX_EPOCH)
                    .map_or(0, |d| d.as_nanos() as u64);
                self.from_source_us
                    .push(now.saturating_sub(t.ts_ns) / 1_000);
                self.from_relay_us
                    .push(now.saturating_sub(t.recv_ns) / 1_000);
            }
            Item::Gap(_) => self.gaps += 1,
            Item::Reset(_) => self.resets += 1,
            Item::Connected(c) if c.resumed > 0 => self.reconnects += 1,
            _ => {}
        }
    }

    fn report(&mut self) -> String {
        format!(
            r#"{{"ticks":{},"from_source_us":{},"from_relay_us":{},"gaps":{},"resets":{},"reconnects":{}}}"#,
            self.from_source_us.len(),
            percentiles(&mut self.from_source_us),
            percentiles(&mut self.from_relay_us),
            self.gaps,
            self.resets,
            self.reconnects
        )
    }
}

fn percentiles(values: &mut [u64]) -> String {
    if values.is_empty() {
        return "null".into();
    }
    values.sort_unstable();
    let at = |q: f64| values[((values.len() - 1) as f64 * q).round() as usize];
    format!(
        r#"{{"p50":{},"p99":{},"max":{}}}"#,
        at(0.5),
        at(0.99),
        values[values.len() - 1]
    )
}
