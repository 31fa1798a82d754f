//! What the server writes back on the ingest connection, read on a thread of its own: the
//! relay's (and the reference servers') error lines, counted and sampled; nats-server's
//! protocol, its `-ERR`s counted like error lines and its `PING`s answered between two
//! batches (a publisher that never answered would be cut off after two minutes).

use std::io::{BufRead, BufReader, Write};
use std::net::TcpStream;
use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};

use super::Wire;

/// What the server wrote back on the ingest connection.
#[derive(Debug, Default)]
pub struct IngestErrors {
    /// Lines received that report an error.
    pub lines: AtomicU64,
    /// The first few, verbatim.
    pub samples: Mutex<Vec<String>>,
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
            Wire::Json | Wire::Protobuf | Wire::BookJson { .. } => true,
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
