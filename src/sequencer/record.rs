//! `--record FILE`: every sequenced tick, written as the JSON line a json client receives
//! (`{"type":"tick","symbol":..,"seq":..,"kind":..,"ts_ns":..,"recv_ns":..,...}`), one per
//! line, in seq order per symbol. `--replay FILE` (`ingest::playback`) reads it back.
//!
//! The recorder is one more consumer of the sequencer's batches, on its own thread with its
//! own bounded queue: blocking file writes never touch a shard, and a disk slower than the
//! feed slows the sequencer (backpressure) rather than losing a line. A write error is
//! logged once; the recorder then drains its queue without writing, so the relay goes on.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::thread::JoinHandle;

use tracing::{info, warn};

use super::queue::{TickQueue, TickSender, tick_queue};

/// Starts the recorder thread writing to `file` (opened by the caller, so a bad path fails
/// at start-up); returns the sender to hand the sequencer and the thread to join.
pub fn spawn(path: PathBuf, file: File) -> std::io::Result<(TickSender, JoinHandle<()>)> {
    let (sender, queue) = tick_queue(RECORD_BATCHES);
    let thread = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || run(&path, queue, BufWriter::with_capacity(BUFFER_BYTES, file)))?;
    Ok((sender, thread))
}

fn run(path: &std::path::Path, queue: TickQueue, mut out: BufWriter<File>) {
    let mut written: u64 = 0;
    let mut failed = false;
    // Ends when the sequencer stops and drops its sender.
    while let Ok(batch) = queue.take_blocking() {
        if failed {
            continue;
        }
        let mut result = Ok(());
        // Ticks and events only: a replay recomputes bars and tickers from the trades.
        for frames in batch.iter().filter(|f| !f.item().is_derived()) {
            result = out
                .write_all(frames.json_payload())
                .and_then(|()| out.write_all(b"\n"));
            if result.is_err() {
                break;
            }
            written += 1;
        }
        // Flush when caught up, so the file is complete up to the last tick while idle.
        if result.is_ok() && queue.is_empty() {
            result = out.flush();
        }
        if let Err(e) = result {
            warn!(path = %path.display(), error = %e, "--record: write failed; recording stopped");
            failed = true;
        }
    }
    if !failed && let Err(e) = out.flush() {
        warn!(path = %path.display(), error = %e, "--record: final flush failed");
    }
    info!(path = %path.display(), ticks = written, "--record: recording closed");
}

/// Batches queued for the recorder before the sequencer waits (as for a shard).
const RECORD_BATCHES: usize = 1024;
/// Write buffer: one write call per ~1,500 ticks at full rate.
const BUFFER_BYTES: usize = 256 * 1024;
