//! The naive server: what a first tokio-tungstenite relay looks like.
//!
//! ```text
//! ingest lines ──serde_json──▶ seq ──serialize once──▶ broadcast ring ──▶ one task per client:
//!                                                                         filter, send (one
//!                                                                         write per message)
//! ```
//!
//! A multi-thread tokio runtime; every client task receives every tick and keeps those of its
//! symbols. A client that falls a whole ring ([`RING`] ticks) behind is disconnected, so its
//! loss shows as a closed client, never as a silent gap.

use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::broadcast;
use tokio_tungstenite::tungstenite::handshake::server::{ErrorResponse, Request, Response};
use tokio_tungstenite::tungstenite::{Message, Utf8Bytes};

use super::ServeArgs;
use super::http;
use crate::latency::now_ns;

/// Runs the naive server until the process is stopped.
pub fn serve(args: &ServeArgs) -> Result<()> {
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(args.thread_count())
        .enable_all()
        .build()?;
    rt.block_on(async {
        let ws = TcpListener::bind(args.listen)
            .await
            .with_context(|| format!("binding --listen {}", args.listen))?;
        let ingest = TcpListener::bind(args.ingest_tcp)
            .await
            .with_context(|| format!("binding --ingest-tcp {}", args.ingest_tcp))?;
        let (ticks, _) = broadcast::channel(RING);
        tokio::spawn(accept_ingest(ingest, ticks.clone()));
        let mut session = 0u64;
        loop {
            let Ok((stream, _)) = ws.accept().await else {
                // Out of fds, most likely: let some close before trying again.
                tokio::time::sleep(Duration::from_millis(10)).await;
                continue;
            };
            session += 1;
            tokio::spawn(client(stream, ticks.subscribe(), session));
        }
    })
}

/// One serialized tick, shared by every client task.
#[derive(Debug)]
struct Outgoing {
    symbol: String,
    text: Utf8Bytes,
}

/// An ingest line (the fields the harness publishes and the relay's optional ones).
#[derive(Deserialize)]
struct IngestTick {
    symbol: String,
    ts_ns: u64,
    kind: Option<String>,
    price: Option<f64>,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
}

/// A tick as the relay sends it, field order included.
#[derive(Serialize)]
struct WireTick<'a> {
    r#type: &'static str,
    symbol: &'a str,
    seq: u64,
    kind: &'a str,
    ts_ns: u64,
    recv_ns: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    price: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    size: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    bid: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ask: Option<f64>,
}

async fn accept_ingest(listener: TcpListener, ticks: broadcast::Sender<Arc<Outgoing>>) {
    // Seqs are per server, whichever ingest connection a tick comes on.
    let seqs = Arc::new(Mutex::new(HashMap::new()));
    loop {
        let Ok((stream, _)) = listener.accept().await else {
            tokio::time::sleep(Duration::from_millis(10)).await;
            continue;
        };
        tokio::spawn(ingest(stream, ticks.clone(), Arc::clone(&seqs)));
    }
}

/// Parses each line, gives it the symbol's next seq, serializes it once and broadcasts it.
async fn ingest(
    stream: TcpStream,
    ticks: broadcast::Sender<Arc<Outgoing>>,
    seqs: Arc<Mutex<HashMap<String, u64>>>,
) {
    let (rd, mut wr) = stream.into_split();
    let mut lines = BufReader::new(rd).lines();
    let mut line_no = 0u64;
    while let Ok(Some(line)) = lines.next_line().await {
        line_no += 1;
        let tick: IngestTick = match serde_json::from_str(&line) {
            Ok(t) => t,
            Err(e) => {
                let answer = serde_json::json!({
                    "type": "error", "line": line_no, "code": "bad_tick", "message": e.to_string()
                });
                if wr
                    .write_all(format!("{answer}\n").as_bytes())
                    .await
                    .is_err()
                {
                    return;
                }
                continue;
            }
        };
        let seq = {
            let mut seqs = seqs
                .lock()
                .expect("no thread panics while holding the seqs");
            let seq = seqs.entry(tick.symbol.clone()).or_insert(0);
            *seq += 1;
            *seq
        };
        let kind = tick.kind.as_deref().unwrap_or(if tick.price.is_some() {
            "trade"
        } else {
            "quote"
        });
        let wire = WireTick {
            r#type: "tick",
            symbol: &tick.symbol,
            seq,
            kind,
            ts_ns: tick.ts_ns,
            recv_ns: now_ns(),
            price: tick.price,
            size: tick.size,
            bid: tick.bid,
            ask: tick.ask,
        };
        let text = serde_json::to_string(&wire).expect("a tick serializes");
        // No receivers (no clients yet) is not an error.
        let _ = ticks.send(Arc::new(Outgoing {
            symbol: tick.symbol,
            text: text.into(),
        }));
    }
}

/// One client: a probe answered, or the upgrade, the welcome, then its symbols' ticks.
async fn client(
    mut stream: TcpStream,
    mut ticks: broadcast::Receiver<Arc<Outgoing>>,
    session: u64,
) {
    if is_probe(&stream).await {
        if let Ok(Some(_)) = http::read_head(&mut stream).await {
            let _ = http::answer(&mut stream, "200 OK", "ok").await;
        }
        return;
    }
    let mut symbols = Vec::new();
    // tungstenite's callback signature, not ours: its error is the whole HTTP answer.
    #[allow(clippy::result_large_err)]
    let callback = |req: &Request, resp: Response| -> Result<Response, ErrorResponse> {
        match http::query_symbols(req.uri().query().unwrap_or_default()) {
            Ok(s) => {
                symbols = s;
                Ok(resp)
            }
            Err(why) => {
                let mut refusal = ErrorResponse::new(Some(why));
                *refusal.status_mut() = 400.try_into().expect("400 is a status code");
                Err(refusal)
            }
        }
    };
    let Ok(ws) = tokio_tungstenite::accept_hdr_async(stream, callback).await else {
        return;
    };
    let (mut sink, mut incoming) = ws.split();
    let welcome = http::welcome(session, 0, &symbols, "loadtest-naive");
    if sink.send(Message::text(welcome)).await.is_err() {
        return;
    }
    let wanted: HashSet<String> = symbols.into_iter().collect();
    loop {
        tokio::select! {
            tick = ticks.recv() => match tick {
                Ok(t) if wanted.contains(&t.symbol) => {
                    if sink.send(Message::Text(t.text.clone())).await.is_err() {
                        return;
                    }
                }
                Ok(_) => {}
                // Lagged a whole ring, or the ingest is gone: the client is dropped.
                Err(_) => return,
            },
            msg = incoming.next() => if !matches!(msg, Some(Ok(_))) {
                return;
            },
        }
    }
}

/// Whether the request is `GET /health` or `GET /ready` (looked at without consuming it, so
/// a WebSocket request still reaches tungstenite whole).
async fn is_probe(stream: &TcpStream) -> bool {
    let mut start = [0u8; 12];
    for _ in 0..100 {
        match stream.peek(&mut start).await {
            Ok(n) if n == start.len() => {
                return start.starts_with(b"GET /health") || start.starts_with(b"GET /ready");
            }
            Ok(0) | Err(_) => return false,
            Ok(_) => tokio::time::sleep(Duration::from_millis(1)).await,
        }
    }
    false
}

/// Ticks the broadcast ring holds: a client this far behind is disconnected.
const RING: usize = 64 * 1024;
