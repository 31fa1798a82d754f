//! What the server writes back on the ingest connection, read on a thread of its own: the
//! relay's (and the reference servers') error lines, counted and sampled; with `--acks`, the
//! relay's acks, each batch's time from its write to the ack that covers it; nats-server's
//! protocol, its `-ERR`s counted like error lines and its `PING`s answered between two
//! batches (a publisher that never answered would be cut off after two minutes).

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use super::Wire;
use crate::latency::LatencyHist;

/// What the server wrote back on the ingest connection.
#[derive(Debug, Default)]
pub struct IngestErrors {
    /// Lines received that report an error.
    pub lines: AtomicU64,
    /// The first few, verbatim.
    pub samples: Mutex<Vec<String>>,
    /// With `--acks`: what the relay acknowledged.
    pub acks: Acks,
}

/// The relay's acks (docs/PROTOCOL.md, "Acknowledged ingest"): the highest pseq acknowledged,
/// and each batch's time from its write to the ack that covers it.
#[derive(Debug, Default)]
pub struct Acks {
    /// Highest pseq acknowledged (pseq n is the n-th tick written).
    pub acked: AtomicU64,
    /// Batches written and not yet acknowledged: (last pseq, written at).
    pending: Mutex<VecDeque<(u64, Instant)>>,
    /// Write-to-ack times, µs, since the last [`Acks::take_latency`].
    latency: Mutex<LatencyHist>,
}

impl Acks {
    /// A batch ending at `pseq` was just written.
    pub(super) fn written(&self, pseq: u64) {
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        pending.push_back((pseq, Instant::now()));
    }

    /// The relay acknowledged every tick up to `pseq`.
    fn acked(&self, pseq: u64) {
        self.acked.fetch_max(pseq, Ordering::Relaxed);
        let now = Instant::now();
        let mut pending = self.pending.lock().unwrap_or_else(|p| p.into_inner());
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        while let Some(&(last, at)) = pending.front() {
            if last > pseq {
                break;
            }
            latency.record_us(now.duration_since(at).as_micros() as u64);
            pending.pop_front();
        }
    }

    /// The write-to-ack times since the last call.
    pub fn take_latency(&self) -> LatencyHist {
        let mut latency = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        std::mem::take(&mut *latency)
    }
}

/// The pseq of `{"type":"ack","pseq":N,...}`, if `line` is an ack.
fn ack_pseq(line: &[u8]) -> Option<u64> {
    let value: serde_json::Value = serde_json::from_slice(line).ok()?;
    (value["type"] == "ack").then(|| value["pseq"].as_u64())?
}

/// Reads `stream` until it closes; `writer` is the publishing side, for PONGs.
pub(super) fn read(
    wire: Wire,
    stream: TcpStream,
    writer: &Mutex<TcpStream>,
    errors: &IngestErrors,
) {
    let mut reader = BufReader::new(stream);
    let mut line = Vec::new();
    while let Ok(n) = reader.read_until(b'\n', &mut line) {
        if n == 0 {
            break;
        }
        let text = line.trim_ascii_end();
        let is_error = match wire {
            Wire::NatsPub if text == b"PING" => {
                // Between two batches: the lock is the publisher's whole write.
                let mut w = writer.lock().unwrap_or_else(|p| p.into_inner());
                if w.write_all(b"PONG\r\n").is_err() {
                    break;
                }
                false
            }
            Wire::NatsPub => text.starts_with(b"-ERR"),
            Wire::Json | Wire::Protobuf | Wire::BookJson { .. } => match ack_pseq(text) {
                Some(pseq) => {
                    errors.acks.acked(pseq);
                    false
                }
                None => true,
            },
        };
        if is_error {
            errors.lines.fetch_add(1, Ordering::Relaxed);
            if let Ok(mut samples) = errors.samples.lock()
                && samples.len() < MAX_SAMPLES
            {
                samples.push(String::from_utf8_lossy(text).into_owned());
            }
        }
        line.clear();
    }
}

const MAX_SAMPLES: usize = 5;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ack_times_every_batch_it_covers() {
        assert_eq!(
            ack_pseq(br#"{"type":"ack","pseq":7,"duplicates":0}"#),
            Some(7)
        );
        assert_eq!(ack_pseq(br#"{"type":"error","line":3}"#), None);
        assert_eq!(ack_pseq(b"nope"), None);
        let acks = Acks::default();
        acks.written(10);
        acks.written(20);
        acks.written(30);
        acks.acked(25);
        assert_eq!(acks.acked.load(Ordering::Relaxed), 25);
        assert_eq!(
            acks.take_latency().len(),
            2,
            "the batches ending at 10 and 20"
        );
        acks.acked(30);
        assert_eq!(acks.take_latency().len(), 1);
    }
}
