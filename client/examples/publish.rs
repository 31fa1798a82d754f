//! Publishes NDJSON lines from stdin through an acking [`Publisher`]: every line is stored
//! by the relay exactly once, even across reconnects and failover.
//!
//! ```sh
//! cat ticks.ndjson | cargo run -p tickrelay-client --example publish -- feed-a 127.0.0.1:7001
//! ```
//!
//! Arguments: the publisher id, then the relay's NDJSON ingest addresses (the sequencer
//! first, then standbys; default `127.0.0.1:7001`). `--first-pseq N` continues a publisher
//! from pseq `N`. At the end it flushes and prints the counts.

use std::io::BufRead;
use std::net::SocketAddr;
use std::time::Duration;

use tickrelay_client::publisher::{Publisher, PublisherConfig};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut id = None;
    let mut addrs: Vec<SocketAddr> = Vec::new();
    let mut first_pseq = 1;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--first-pseq" => {
                first_pseq = args.next().ok_or("--first-pseq needs a value")?.parse()?
            }
            _ if id.is_none() => id = Some(arg),
            addr => addrs.push(addr.parse()?),
        }
    }
    let id = id.ok_or("usage: publish <id> [addr...] [--first-pseq N] < lines.ndjson")?;
    if addrs.is_empty() {
        addrs.push("127.0.0.1:7001".parse()?);
    }
    let publisher = Publisher::start(PublisherConfig {
        addrs,
        id,
        first_pseq,
        ..PublisherConfig::default()
    })
    .await?;

    // Stdin is read on its own thread: a blocking read must not stall the publisher's task.
    let (tx, mut rx) = tokio::sync::mpsc::channel::<std::io::Result<String>>(1024);
    std::thread::spawn(move || {
        for line in std::io::stdin().lock().lines() {
            if tx.blocking_send(line).is_err() {
                break;
            }
        }
    });
    while let Some(line) = rx.recv().await {
        publisher.send(line?).await?;
    }

    publisher.flush(Duration::from_secs(30)).await?;
    println!(
        "sent {} acked {} duplicates {} reconnects {} errors {}",
        publisher.sent(),
        publisher.acked(),
        publisher.duplicates(),
        publisher.reconnects(),
        publisher.errors().len()
    );
    for (pseq, code) in publisher.errors() {
        println!("  pseq {pseq}: {code}");
    }
    publisher.close().await;
    Ok(())
}
