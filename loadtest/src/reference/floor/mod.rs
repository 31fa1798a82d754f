//! The floor: the least work a relay can do and still deliver every tick in order.
//!
//! ```text
//! ingest read ──▶ lines → seq per symbol → one text frame each ──▶ Arc<Batch> to every shard
//! shard wake-up ──▶ append each frame to its subscribers' buffers ──▶ one write per subscriber
//! ```
//!
//! The main thread accepts connections, answers `/health`, does the upgrade, and reads the
//! ingest; each shard thread owns its subscribers outright. A frame is built once per tick:
//! `{"type":"tick",` + the ingest line's fields up to and including `"symbol":"X"`, then
//! `,"seq":N`, then the rest of the line, so `ts_ns` passes through untouched. A shard handles
//! every batch queued when it wakes, then writes each subscriber's buffer with one `write`; a
//! subscriber whose socket is full gets a task that waits for it to drain, and is dropped 64 MiB
//! behind (`shard.rs` holds that side). The 101 answer and the welcome are the first bytes of the
//! subscriber's buffer, written by its shard, so no tick can overtake them.

use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use anyhow::{Context, Result};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::mpsc;

use super::ServeArgs;
use super::http::{self, Request};

mod batch;
mod shard;

use batch::{Batch, ShardMsg};
use shard::run_shard;

/// Runs the floor server until the process is stopped.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let shards: Vec<mpsc::Sender<ShardMsg>> = (0..args.thread_count())
        .map(spawn_shard)
        .collect::<Result<_>>()?;
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    local.block_on(&rt, async {
        let ws = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let ingest = TcpListener::bind(args.ingest_tcp)
            .await
            .with_context(|| format!("binding --ingest-tcp {}", args.ingest_tcp))?;
        let shards = Rc::new(shards);
        tokio::task::spawn_local(accept_ingest(ingest, Rc::clone(&shards)));
        accept_clients(ws, &shards).await;
        Ok(())
    })
}

async fn accept_clients(listener: TcpListener, shards: &[mpsc::Sender<ShardMsg>]) {
    let mut session = 0u64;
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            // Out of fds, most likely: let some close before trying again.
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        session += 1;
        let shard = session as usize % shards.len();
        tokio::task::spawn_local(handshake(stream, session, shard, shards[shard].clone()));
    }
}

/// Answers a probe, or upgrades and hands the subscriber to its shard.
async fn handshake(
    mut stream: TcpStream,
    session: u64,
    shard: usize,
    to_shard: mpsc::Sender<ShardMsg>,
) {
    let Ok(Some(head)) = http::read_head(&mut stream).await else {
        return;
    };
    let (status, body) = match http::parse_request(&head) {
        Request::Upgrade { key, symbols } => {
            return join(stream, key, symbols, session, shard, to_shard).await;
        }
        Request::Health => ("200 OK", "ok".to_owned()),
        Request::NotFound => ("404 Not Found", String::new()),
        Request::Refused(why) => ("400 Bad Request", why),
    };
    let _ = http::answer(&mut stream, status, &body).await;
}

/// Hands an upgraded subscriber to its shard, the 101 answer and the welcome queued first.
async fn join(
    stream: TcpStream,
    key: String,
    symbols: Vec<String>,
    session: u64,
    shard: usize,
    to_shard: mpsc::Sender<ShardMsg>,
) {
    let mut greeting = http::switching_protocols(&key).into_bytes();
    let welcome = http::welcome(session, shard, &symbols, "loadtest-floor");
    http::text_frame(welcome.as_bytes(), &mut greeting);
    let _ = stream.set_nodelay(true);
    if let Ok(stream) = stream.into_std() {
        let _ = to_shard
            .send(ShardMsg::Join {
                stream,
                symbols,
                greeting,
            })
            .await;
    }
}

async fn accept_ingest(listener: TcpListener, shards: Rc<Vec<mpsc::Sender<ShardMsg>>>) {
    // Seqs are per server, whichever ingest connection a tick comes on.
    let seqs = Rc::new(RefCell::new(HashMap::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::task::spawn_local(ingest(stream, Rc::clone(&shards), Rc::clone(&seqs)));
    }
}

/// Reads NDJSON ticks; every read becomes one batch for every shard. A bad line is answered
/// with an error line and skipped, as the relay does.
async fn ingest(
    stream: TcpStream,
    shards: Rc<Vec<mpsc::Sender<ShardMsg>>>,
    seqs: Rc<RefCell<HashMap<Vec<u8>, u64>>>,
) {
    let (mut rd, mut wr) = stream.into_split();
    let mut buf = vec![0u8; READ_BUF];
    let mut pending: Vec<u8> = Vec::new();
    let mut line_no = 0u64;
    loop {
        let n = match rd.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        pending.extend_from_slice(&buf[..n]);
        let mut batch = Batch::default();
        let mut errors = String::new();
        let mut start = 0;
        for end in memchr::memchr_iter(b'\n', &pending) {
            line_no += 1;
            let line = pending[start..end].trim_ascii_end();
            start = end + 1;
            if let Err(why) = batch.push(line, &mut seqs.borrow_mut()) {
                errors.push_str(&format!(
                    "{{\"type\":\"error\",\"line\":{line_no},\"code\":\"bad_tick\",\"message\":\"{why}\"}}\n"
                ));
            }
        }
        pending.drain(..start);
        if !errors.is_empty() && wr.write_all(errors.as_bytes()).await.is_err() {
            return;
        }
        if batch.index.is_empty() {
            continue;
        }
        let batch = Arc::new(batch);
        for shard in shards.iter() {
            // A full queue holds the ingest back: TCP backpressure to the publisher.
            if shard
                .send(ShardMsg::Batch(Arc::clone(&batch)))
                .await
                .is_err()
            {
                return;
            }
        }
    }
}

fn spawn_shard(index: usize) -> Result<mpsc::Sender<ShardMsg>> {
    let (tx, rx) = mpsc::channel(SHARD_QUEUE);
    std::thread::Builder::new()
        .name(format!("floor-shard-{index}"))
        .spawn(move || {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("a current-thread runtime builds unless the OS is out of fds");
            let local = tokio::task::LocalSet::new();
            local.block_on(&rt, run_shard(rx));
        })
        .context("spawning a floor shard")?;
    Ok(tx)
}

/// One ingest read takes up to this much.
const READ_BUF: usize = 64 * 1024;
/// Batches queued per shard before the ingest waits.
const SHARD_QUEUE: usize = 1024;
