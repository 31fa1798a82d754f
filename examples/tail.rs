//! Prints one JSON line per tick, snapshot, event, gap or reset of the given symbols, and
//! keeps going across disconnects and relay restarts (connection changes go to stderr).
//!
//! ```sh
//! cargo run --release --example tail -- --url ws://127.0.0.1:8080/ws BTC-USD ETH-USD
//! ```
//!
//! Options: `--encoding json|protobuf|gzip`, `--slow wait|conflate|error`, `--heartbeat-ms N`,
//! `--channels news,user:alice`, `--token JWT`, `--ca-file PEM` (trust a self-signed relay's
//! certificate for `wss://`). It lives in the root package (a dev-dependency on the
//! `tickrelay-client` crate) so that the quick start runs from the repository root.

use std::io::Write as _;
use std::time::Duration;

use tickrelay_client::{Client, Encoding, Item, Options, SlowConsumer};

#[tokio::main(flavor = "current_thread")]
async fn main() -> std::process::ExitCode {
    match run().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("tail: {e}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "ws://127.0.0.1:8080/ws".to_owned();
    let mut options = Options::new();
    let mut symbols = Vec::new();
    let mut channels = false;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = |name: &str| args.next().ok_or(format!("{name} needs a value"));
        match arg.as_str() {
            "--url" => url = value("--url")?,
            "--encoding" => options = options.encoding(value("--encoding")?.parse::<Encoding>()?),
            "--slow" => {
                let policy = match value("--slow")?.as_str() {
                    "wait" => SlowConsumer::Wait,
                    "conflate" => SlowConsumer::Conflate,
                    "error" => SlowConsumer::Error,
                    other => {
                        return Err(
                            format!("--slow {other}: expected wait, conflate or error").into()
                        );
                    }
                };
                options = options.slow_consumer(policy);
            }
            "--channels" => {
                let list = value("--channels")?;
                channels = true;
                options = options.channels(list.split(',').filter(|c| !c.is_empty()));
            }
            "--token" => options = options.token(value("--token")?),
            "--ca-file" => options = options.ca_file(value("--ca-file")?),
            "--heartbeat-ms" => {
                let ms: u64 = value("--heartbeat-ms")?.parse()?;
                options = options.heartbeat(Duration::from_millis(ms));
            }
            "-h" | "--help" => {
                println!(
                    "usage: tail [--url ws://HOST:PORT/ws | wss://...] [--encoding json|protobuf|gzip] [--slow wait|conflate|error] [--heartbeat-ms N] [--channels C,...] [--token JWT] [--ca-file PEM] SYMBOL..."
                );
                return Ok(());
            }
            flag if flag.starts_with("--") => return Err(format!("unknown flag {flag}").into()),
            symbol => symbols.push(symbol.to_owned()),
        }
    }
    if symbols.is_empty() && !channels {
        return Err("name at least one symbol (or `*`), or --channels".into());
    }
    let mut client = Client::connect(&url, options.symbols(symbols)).await?;
    let stdout = std::io::stdout();
    while let Some(item) = client.next().await {
        let item = item?;
        let line = serde_json::to_string(&item)?;
        match item {
            Item::Connected(_) | Item::Disconnected(_) => eprintln!("{line}"),
            _ => {
                let mut out = stdout.lock();
                writeln!(out, "{line}")?;
                out.flush()?;
            }
        }
    }
    Ok(())
}
