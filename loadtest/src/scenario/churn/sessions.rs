//! The ways one churn session lives: read in an encoding (or resume), control messages, a
//! raw permessage-deflate session (reading or stalled), a dropped connection, a refreshed
//! token. Each returns the last (symbol, seq) it read, when it tracks one.

use std::time::Duration;

use anyhow::{Context, Result};
use futures_util::{SinkExt, StreamExt};
use serde::Deserialize;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

use super::counts::{ChurnCounts, ChurnPlan, EVENT_CHANNEL};
use crate::client::{accept_key, encode_client_frame, parse_frame_header};
use std::sync::atomic::Ordering::Relaxed;

type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<TcpStream>>;

async fn connect(plan: &ChurnPlan, query: &str) -> Result<Ws> {
    let url = format!("ws://{}/ws{query}", plan.ws);
    let (ws, _) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .context("handshake timed out")??;
    Ok(ws)
}

/// The fields a churn client looks at in a JSON message.
#[derive(Deserialize)]
struct Seen {
    #[serde(rename = "type")]
    kind: String,
    symbol: Option<String>,
    seq: Option<u64>,
    epoch: Option<u64>,
}

/// Where a session stopped reading: a symbol's last seq, in the relay's history `epoch` (a
/// resume names both, or the relay cannot tell it from a restarted relay's seqs).
#[derive(Debug, Clone)]
pub(super) struct Position {
    pub(super) symbol: String,
    pub(super) seq: u64,
    pub(super) epoch: Option<u64>,
}

impl Position {
    /// The connect query that resumes after this position.
    pub(super) fn resume_query(&self) -> String {
        let Self { symbol, seq, .. } = self;
        match self.epoch {
            Some(epoch) => format!("?symbols={symbol}&resume={symbol}:{seq}&epoch={epoch}"),
            None => format!("?symbols={symbol}&resume={symbol}:{seq}"),
        }
    }
}

/// Reads for `lifetime`, closes; the last tick's position. `resumed_after`: the seq a
/// resume named, to check the first tick follows it (or a `gap` or `reset` says why not).
pub(super) async fn ws_session(
    plan: &ChurnPlan,
    query: &str,
    lifetime: Duration,
    counts: &ChurnCounts,
    resumed_after: Option<u64>,
) -> Result<Option<Position>> {
    let mut ws = connect(plan, query).await?;
    let mut position = None;
    let mut epoch = None;
    let mut first = resumed_after;
    let until = tokio::time::Instant::now() + lifetime;
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, ws.next()).await {
        let msg = msg?;
        counts.messages.fetch_add(1, Relaxed);
        if let Message::Text(text) = &msg {
            let seen: Seen = serde_json::from_str(text)?;
            match seen.kind.as_str() {
                "tick" => {
                    if let (Some(after), Some(seq)) = (first.take(), seen.seq) {
                        let exact = if seq == after + 1 {
                            &counts.resumed_exactly
                        } else {
                            &counts.resumed_wrongly
                        };
                        exact.fetch_add(1, Relaxed);
                    }
                    position = seen.symbol.zip(seen.seq).map(|(symbol, seq)| Position {
                        symbol,
                        seq,
                        epoch,
                    });
                }
                // The relay said why the next tick is not the one after the resume's seq.
                "gap" | "reset" => first = None,
                "welcome" => epoch = seen.epoch,
                "event" => {
                    counts.events_received.fetch_add(1, Relaxed);
                }
                "error" => {
                    counts.errors.fetch_add(1, Relaxed);
                }
                _ => {}
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(position)
}

/// Subscribes, asks for a snapshot and unsubscribes by control message while reading.
pub(super) async fn control_session(
    plan: &ChurnPlan,
    symbol: &str,
    lifetime: Duration,
    counts: &ChurnCounts,
) -> Result<Option<Position>> {
    let mut ws = connect(plan, "").await?;
    let ops = [
        format!(r#"{{"op":"subscribe","symbols":["{symbol}"],"channels":["{EVENT_CHANNEL}"]}}"#),
        format!(r#"{{"op":"snapshot","symbols":["{symbol}"]}}"#),
        format!(r#"{{"op":"unsubscribe","symbols":["{symbol}"]}}"#),
    ];
    let step = lifetime / ops.len() as u32;
    for op in ops {
        ws.send(Message::text(op)).await?;
        let until = tokio::time::Instant::now() + step;
        while let Ok(Some(msg)) = tokio::time::timeout_at(until, ws.next()).await {
            if let Message::Text(text) = msg? {
                counts.messages.fetch_add(1, Relaxed);
                let seen: Seen = serde_json::from_str(&text)?;
                match seen.kind.as_str() {
                    "subscribed" | "unsubscribed" => {
                        counts.control_acks.fetch_add(1, Relaxed);
                    }
                    "error" => {
                        counts.errors.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
        }
    }
    let _ = ws.close(None).await;
    Ok(None)
}

/// A session with a token, refreshed halfway through.
pub(super) async fn refresh_session(
    plan: &ChurnPlan,
    symbol: &str,
    lifetime: Duration,
    counts: &ChurnCounts,
) -> Result<Option<Position>> {
    let token = plan.token.as_ref().context("a key to sign with")?;
    let mut ws = connect(plan, &format!("?symbols={symbol}&token={}", token())).await?;
    for _ in 0..2 {
        let until = tokio::time::Instant::now() + lifetime / 2;
        while let Ok(Some(msg)) = tokio::time::timeout_at(until, ws.next()).await {
            if let Message::Text(text) = msg? {
                counts.messages.fetch_add(1, Relaxed);
                let seen: Seen = serde_json::from_str(&text)?;
                match seen.kind.as_str() {
                    "authenticated" => {
                        counts.refreshes.fetch_add(1, Relaxed);
                    }
                    "error" => {
                        counts.errors.fetch_add(1, Relaxed);
                    }
                    _ => {}
                }
            }
        }
        let refresh = format!(r#"{{"op":"refresh","token":"{}"}}"#, token());
        ws.send(Message::text(refresh)).await?;
    }
    let _ = ws.close(None).await;
    Ok(None)
}

/// A raw session offering permessage-deflate; with `stall`, it reads nothing for its
/// lifetime (a small receive buffer, so the relay's own slow-consumer policy holds the rest).
pub(super) async fn deflate_session(
    plan: &ChurnPlan,
    symbol: &str,
    lifetime: Duration,
    counts: &ChurnCounts,
    stall: bool,
) -> Result<Option<Position>> {
    let socket = socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::STREAM, None)?;
    if stall {
        socket.set_recv_buffer_size(4096)?;
    }
    socket.set_nonblocking(true)?;
    let stream = tokio::net::TcpSocket::from_std_stream(socket.into());
    let mut stream =
        tokio::time::timeout(Duration::from_secs(5), stream.connect(plan.ws)).await??;
    let key = "dGhlIHNhbXBsZSBub25jZQ==";
    let request = format!(
        "GET /ws?symbols={symbol} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\
         Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n\r\n",
        plan.ws
    );
    stream.write_all(request.as_bytes()).await?;
    let mut buf = vec![0u8; 64 * 1024];
    let mut have = Vec::new();
    let head_end = loop {
        let n = tokio::time::timeout(Duration::from_secs(5), stream.read(&mut buf)).await??;
        anyhow::ensure!(n > 0, "closed during the upgrade");
        have.extend_from_slice(&buf[..n]);
        if let Some(i) = have.windows(4).position(|w| w == b"\r\n\r\n") {
            break i + 4;
        }
    };
    let head = String::from_utf8_lossy(&have[..head_end]).to_ascii_lowercase();
    anyhow::ensure!(head.starts_with("http/1.1 101"), "upgrade refused");
    anyhow::ensure!(
        head.contains(&accept_key(key).to_ascii_lowercase()),
        "bad accept key"
    );
    if head.contains("permessage-deflate") {
        counts.deflate_sessions.fetch_add(1, Relaxed);
    }
    if stall {
        tokio::time::sleep(lifetime).await;
        return Ok(None);
    }
    let mut rest = have.split_off(head_end);
    let until = tokio::time::Instant::now() + lifetime;
    loop {
        // Every whole frame in what has arrived: count the compressed ones (RSV1, which
        // the harness's frame parser refuses, so it reads the header without it).
        while let Some(&b0) = rest.first() {
            let mut head = [0u8; 10];
            let n = rest.len().min(head.len());
            head[..n].copy_from_slice(&rest[..n]);
            head[0] &= !0x40;
            let Some(h) = parse_frame_header(&head[..n])? else {
                break;
            };
            if rest.len() < h.frame_len() {
                break;
            }
            counts.messages.fetch_add(1, Relaxed);
            if b0 & 0x40 != 0 {
                counts.compressed_frames.fetch_add(1, Relaxed);
            }
            rest.drain(..h.frame_len());
        }
        match tokio::time::timeout_at(until, stream.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => rest.extend_from_slice(&buf[..n]),
            _ => break,
        }
    }
    let mut close = Vec::new();
    encode_client_frame(0x8, &1000u16.to_be_bytes(), rng_mask(), &mut close);
    let _ = stream.write_all(&close).await;
    Ok(None)
}

fn rng_mask() -> [u8; 4] {
    rand::random()
}

/// Reads for its lifetime, then drops the TCP connection without a close frame.
pub(super) async fn drop_session(
    plan: &ChurnPlan,
    symbol: &str,
    lifetime: Duration,
) -> Result<Option<Position>> {
    let mut ws = connect(plan, &format!("?symbols={symbol}")).await?;
    let until = tokio::time::Instant::now() + lifetime;
    while let Ok(Some(msg)) = tokio::time::timeout_at(until, ws.next()).await {
        msg?;
    }
    drop(ws);
    Ok(None)
}
