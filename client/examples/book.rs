//! A live order book: the top 5 levels of a book channel, printed after every update, the
//! checksum verified by the client (a mismatch or missing messages fetch the book again).
//!
//! ```sh
//! cargo run --release -p tickrelay-client --example book -- --url ws://127.0.0.1:8080/ws BTC-USD
//! ```
//!
//! With `--demo` the relay simulates a book for each of its symbols.

use tickrelay_client::{Client, Item, Options};

/// Levels shown a side.
const SHOWN: usize = 5;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut url = "ws://127.0.0.1:8080/ws".to_owned();
    let mut symbol = "BTC-USD".to_owned();
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--url" => url = args.next().ok_or("--url needs a value")?,
            name => symbol = name.to_owned(),
        }
    }
    // The relay's smallest default depth holds the top 5 and costs the least to follow.
    let channel = format!("book:{symbol}:10");
    let mut client = Client::connect(&url, Options::new().channels([channel])).await?;
    while let Some(item) = client.next().await {
        match item? {
            Item::Book(book) => {
                println!(
                    "{} seq {} checksum {}",
                    book.channel, book.seq, book.checksum
                );
                let asks: Vec<_> = book.asks.iter().take(SHOWN).collect();
                for level in asks.iter().rev() {
                    println!("    ask {:>16} {:>14}", level.price, level.size);
                }
                for level in book.bids.iter().take(SHOWN) {
                    println!("    bid {:>16} {:>14}", level.price, level.size);
                }
            }
            Item::BookResync(resync) => eprintln!("fetching the book again: {resync:?}"),
            Item::Error(error) => eprintln!("relay: {} {}", error.code, error.message),
            _ => {}
        }
    }
    Ok(())
}
