//! The `tickrelay` binary: parse flags, start the relay, wait for Ctrl-C or SIGTERM, drain,
//! exit 0.

use anyhow::Context as _;
use clap::Parser as _;
use tickrelay::{Config, Relay};
use tracing_subscriber::EnvFilter;

fn main() -> anyhow::Result<()> {
    let config = Config::parse();
    let filter =
        EnvFilter::try_new(&config.log).with_context(|| format!("--log {}", config.log))?;
    tracing_subscriber::fmt().with_env_filter(filter).init();

    let relay = Relay::start(config.clone())?;
    println!("tickrelay {} listening", env!("CARGO_PKG_VERSION"));
    println!(
        "  WebSocket: ws://{}/ws?symbols=BTC-USD,ETH-USD",
        relay.http_addr
    );
    println!(
        "  dashboard: http://{}/   stats: http://{}/stats",
        relay.http_addr, relay.http_addr
    );
    println!(
        "  ingest:    NDJSON tcp://{}   protobuf tcp://{}",
        relay.ingest_addr, relay.ingest_protobuf_addr
    );
    if config.demo {
        println!(
            "  demo market: {} symbols at {} ticks/s",
            config.demo_symbols, config.demo_rate
        );
    }

    let signals = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the signal runtime")?;
    signals.block_on(wait_for_signal())?;
    tracing::info!("shutdown requested: closing clients with 1001");
    relay.shutdown();
    relay.join();
    tracing::info!("tickrelay stopped");
    Ok(())
}

async fn wait_for_signal() -> anyhow::Result<()> {
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("installing the SIGTERM handler")?;
    tokio::select! {
        result = tokio::signal::ctrl_c() => result.context("waiting for Ctrl-C"),
        _ = term.recv() => Ok(()),
    }
}
