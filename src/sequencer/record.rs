//! `--record FILE`: every sequenced tick and event (not book messages), written as the JSON line a json client receives
//! (`{"type":"tick","symbol":..,"seq":..,"kind":..,"ts_ns":..,"recv_ns":..,...}`), one per
//! line, in seq order per symbol. `--replay FILE` (`ingest::playback`) reads it back.
//!
//! The recorder is one more consumer of the sequencer's batches, on its own thread with its
//! own bounded queue: blocking file writes never touch a shard, and a disk slower than the
//! feed slows the sequencer (backpressure) rather than losing a line. A write error (a full
//! disk) is logged once and counted (`record.write_errors`); the recorder then drains its
//! queue without writing, counting each tick the file may lack (`record.not_recorded`), so
//! the relay goes on serving clients and the operator can see the recording is gone.

use std::fs::File;
use std::io::{BufWriter, Write as _};
use std::path::PathBuf;
use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{info, warn};

use super::queue::{TickQueue, TickSender, tick_queue};
use crate::metrics::{Metrics, RecordMetrics, add};

/// Starts the recorder thread writing to `file` (opened by the caller, so a bad path fails
/// at start-up); returns the sender to hand the sequencer and the thread to join.
pub fn spawn(
    path: PathBuf,
    file: File,
    metrics: Arc<Metrics>,
) -> std::io::Result<(TickSender, JoinHandle<()>)> {
    let (sender, queue) = tick_queue(RECORD_BATCHES);
    let thread = std::thread::Builder::new()
        .name("recorder".into())
        .spawn(move || {
            let out = BufWriter::with_capacity(BUFFER_BYTES, file);
            run(&path, queue, out, &metrics.record);
        })?;
    Ok((sender, thread))
}

fn run(path: &std::path::Path, queue: TickQueue, mut out: BufWriter<File>, m: &RecordMetrics) {
    let mut failed = false;
    // Ticks handed to the writer since its last successful flush: until then they may not
    // be in the file, so a failure counts them as not recorded.
    let mut unflushed: u64 = 0;
    // Ends when the sequencer stops and drops its sender.
    while let Ok(batch) = queue.take_blocking() {
        // Ticks and events only: a replay recomputes bars and tickers from the trades, and
        // books are not recorded (their views and checkpoints are derived, and a replay of
        // ticks cannot rebuild them). Only those are counted, written or not.
        let recorded = || batch.iter().filter(|f| recordable(f.item()));
        if failed {
            add(&m.not_recorded, recorded().count() as u64);
            continue;
        }
        let mut result = Ok(());
        for frames in recorded() {
            result = out
                .write_all(frames.json_payload())
                .and_then(|()| out.write_all(b"\n"));
            if result.is_err() {
                break;
            }
        }
        unflushed += recorded().count() as u64;
        // Flush when caught up, so the file is complete up to the last tick while idle.
        let caught_up = queue.is_empty();
        if result.is_ok() && caught_up {
            result = out.flush();
        }
        match result {
            Ok(()) if caught_up => add(&m.written, std::mem::take(&mut unflushed)),
            Ok(()) => {}
            Err(e) => {
                warn!(path = %path.display(), error = %e, "--record: write failed; recording stopped");
                add(&m.write_errors, 1);
                add(&m.not_recorded, std::mem::take(&mut unflushed));
                failed = true;
            }
        }
    }
    if !failed {
        match out.flush() {
            Ok(()) => add(&m.written, unflushed),
            Err(e) => {
                warn!(path = %path.display(), error = %e, "--record: final flush failed");
                add(&m.write_errors, 1);
                add(&m.not_recorded, unflushed);
            }
        }
    }
    let written = m.written.load(std::sync::atomic::Ordering::Relaxed);
    info!(path = %path.display(), ticks = written, "--record: recording closed");
}

/// Whether `item` goes into a recording: a tick or an event, not what the relay derives.
fn recordable(item: &crate::event::Item) -> bool {
    !item.is_derived() && !matches!(item, crate::event::Item::Book(_))
}

/// Batches queued for the recorder before the sequencer waits (as for a shard).
const RECORD_BATCHES: usize = 1024;
/// Write buffer: one write call per ~1,500 ticks at full rate.
const BUFFER_BYTES: usize = 256 * 1024;

#[cfg(test)]
mod tests {
    use std::sync::atomic::Ordering::Relaxed;

    use super::*;
    use crate::encode::Frames;
    use crate::tick::sequenced;

    fn batch(seqs: std::ops::RangeInclusive<u64>) -> crate::sequencer::Batch {
        seqs.map(|seq| Arc::new(Frames::new(sequenced("BTC", seq))))
            .collect()
    }

    fn record(file: File, path: PathBuf, batches: usize) -> Arc<Metrics> {
        let metrics = Arc::new(Metrics::new(1));
        let (sender, thread) = spawn(path, file, metrics.clone()).expect("the thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            for b in 0..batches as u64 {
                sender.deliver(batch(b * 10 + 1..=b * 10 + 10)).await;
            }
        });
        drop(sender);
        thread.join().expect("the recorder ends with its queue");
        metrics
    }

    /// A current-thread runtime with a clock, for a test that waits on the recorder.
    fn timed_runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .enable_time()
            .build()
            .expect("a runtime")
    }

    /// Waits (10 s at most, then fails naming `what`) until `done`.
    async fn until(what: &str, done: impl Fn() -> bool) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !done() {
            assert!(
                std::time::Instant::now() < deadline,
                "waited 10 s for {what}"
            );
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
        }
    }

    /// A ticker (derived: never recorded), sequenced.
    fn ticker() -> Arc<Frames> {
        use crate::event::derived::{Ticker, TickerValues};
        let stats = TickerValues::flat(1.0);
        Arc::new(Frames::of(crate::event::Item::Ticker(Box::new(Ticker {
            channel: crate::event::Channel::parse("ticker:BTC").expect("a channel"),
            seq: crate::tick::Seq(1),
            stats,
            ts_ns: 0,
            recv_ns: 0,
        }))))
    }

    #[test]
    fn derived_items_are_neither_written_nor_counted() {
        let path =
            std::env::temp_dir().join(format!("record-derived-{}.ndjson", std::process::id()));
        let metrics = Arc::new(Metrics::new(1));
        let file = File::create(&path).expect("a file");
        let (sender, thread) = spawn(path.clone(), file, metrics.clone()).expect("the thread");
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            let mixed: crate::sequencer::Batch =
                batch(1..=2).iter().cloned().chain([ticker()]).collect();
            sender.deliver(mixed).await;
        });
        drop(sender);
        thread.join().expect("the recorder ends");
        let lines = std::fs::read_to_string(&path)
            .expect("read back")
            .lines()
            .count();
        let _ = std::fs::remove_file(&path);
        assert_eq!(lines, 2, "the ticks only");
        assert_eq!(metrics.record.written.load(Relaxed), 2, "and counted so");
    }

    #[test]
    fn every_tick_is_written_as_its_json_line_in_order() {
        let path = std::env::temp_dir().join(format!("record-{}.ndjson", std::process::id()));
        let file = File::create(&path).expect("a file");
        let metrics = record(file, path.clone(), 3);
        let text = std::fs::read_to_string(&path).expect("read back");
        let _ = std::fs::remove_file(&path);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 30);
        for (i, line) in lines.iter().enumerate() {
            let want = Frames::new(sequenced("BTC", i as u64 + 1));
            assert_eq!(line.as_bytes(), want.json_payload(), "line {}", i + 1);
        }
        let m = &metrics.record;
        assert_eq!(m.written.load(Relaxed), 30);
        assert_eq!(
            (m.write_errors.load(Relaxed), m.not_recorded.load(Relaxed)),
            (0, 0)
        );
    }

    #[test]
    fn a_full_disk_is_counted_once_and_every_tick_after_it_as_not_recorded() {
        // /dev/full: every write that reaches it fails with ENOSPC.
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("SKIPPED: no /dev/full");
            return;
        };
        let metrics = Arc::new(Metrics::new(1));
        let (sender, thread) =
            spawn(PathBuf::from("/dev/full"), file, metrics.clone()).expect("the thread");
        let m = &metrics.record;
        timed_runtime().block_on(async {
            sender.deliver(batch(1..=10)).await;
            // Caught up, the recorder flushes, and the flush fails.
            until("the write to fail", || m.write_errors.load(Relaxed) > 0).await;
            for b in 1..5 {
                sender.deliver(batch(b * 10 + 1..=b * 10 + 10)).await;
            }
        });
        drop(sender);
        thread.join().expect("the recorder ends with its queue");
        assert_eq!(m.write_errors.load(Relaxed), 1, "logged and counted once");
        assert_eq!(m.written.load(Relaxed), 0);
        assert_eq!(m.not_recorded.load(Relaxed), 50, "every tick it may lack");
    }

    #[test]
    fn ticks_only_buffered_when_the_disk_fills_are_not_recorded_not_written() {
        let Ok(file) = std::fs::OpenOptions::new().write(true).open("/dev/full") else {
            eprintln!("SKIPPED: no /dev/full");
            return;
        };
        // Three batches waiting before the recorder looks: the first two go into the buffer
        // while more wait (no flush), the third is the last, and its flush fails.
        let (sender, queue) = tick_queue(8);
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("a runtime");
        runtime.block_on(async {
            for b in 0..3 {
                sender.deliver(batch(b * 10 + 1..=b * 10 + 10)).await;
            }
        });
        drop(sender);
        let metrics = Metrics::new(1);
        let out = BufWriter::with_capacity(BUFFER_BYTES, file);
        run(
            std::path::Path::new("/dev/full"),
            queue,
            out,
            &metrics.record,
        );
        let m = &metrics.record;
        assert_eq!(
            (
                m.written.load(Relaxed),
                m.not_recorded.load(Relaxed),
                m.write_errors.load(Relaxed)
            ),
            (0, 30, 1),
            "none of the 30 reached the disk"
        );
    }

    #[test]
    fn an_idle_recorder_has_flushed_and_counted_all_it_was_given() {
        let path = std::env::temp_dir().join(format!("record-idle-{}.ndjson", std::process::id()));
        let file = File::create(&path).expect("a file");
        let metrics = Arc::new(Metrics::new(1));
        let (sender, thread) = spawn(path.clone(), file, metrics.clone()).expect("the thread");
        timed_runtime().block_on(async {
            sender.deliver(batch(1..=10)).await;
            // Caught up, and the sequencer still running: in the file, and counted, now.
            until("the count while idle", || {
                metrics.record.written.load(Relaxed) == 10
            })
            .await;
        });
        let lines = std::fs::read_to_string(&path)
            .expect("read")
            .lines()
            .count();
        drop(sender);
        thread.join().expect("the recorder ends");
        let _ = std::fs::remove_file(&path);
        assert_eq!(lines, 10, "flushed while idle");
    }
}
