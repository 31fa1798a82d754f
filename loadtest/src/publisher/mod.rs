//! The paced publisher: ticks into the server's ingest at a fixed rate.
//!
//! Ticks go round-robin over the symbols, so each gets `rate / symbols` per second, in small
//! batches about every millisecond (not one burst per second). Each batch is stamped with the
//! wall clock (`ts_ns`) just before it is written. The count written per symbol is kept: the
//! coordinator derives expected deliveries from it. `wire` encodes the ticks (NDJSON, protobuf,
//! or NATS PUBs); `replies` reads what the server writes back (error lines counted, NATS PINGs
//! answered) on a thread of its own.

use std::io::Write;
use std::net::{Shutdown, SocketAddr, TcpStream};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};

use crate::latency::now_ns;
use crate::symbols::symbol_name;

mod book;
mod replies;
mod resend;
mod wire;

pub use book::{DELTA_LEVELS, MAX_LEVELS};
pub use replies::{Acks, IngestErrors};
use resend::Unacked;
use wire::Tick;
pub use wire::{IngestFormat, Wire};

/// One publishing window's result.
#[derive(Clone, Copy, Debug)]
pub struct PublishOutcome {
    /// Ticks written in this window.
    pub sent: u64,
    pub elapsed: Duration,
}

/// A connection to the ingest port and the per-symbol counts written through it.
#[derive(Debug)]
pub struct Publisher {
    /// Shared with the reply reader, which answers a NATS PING between two batches.
    stream: Arc<Mutex<TcpStream>>,
    wire: Wire,
    names: Vec<String>,
    published: Vec<u64>,
    next_symbol: usize,
    total: u64,
    batch: Vec<u8>,
    /// Error lines (and, acking, acks) from the server.
    pub errors: Arc<IngestErrors>,
    /// The reply readers, one per connection (the last one live).
    readers: Vec<JoinHandle<()>>,
    /// Said hello: every tick written is acknowledged by the relay, and what is not yet is
    /// kept to send again after a reconnect.
    acking: Option<Unacked>,
    /// Where the ingest is (to reconnect to, acking).
    addr: SocketAddr,
    /// Connections made after the first (acking).
    pub reconnects: u64,
}

impl Publisher {
    /// Connects to the ingest at `addr`, publishing to `symbol_count` symbols in `wire`.
    pub fn connect(addr: SocketAddr, wire: Wire, symbol_count: u32) -> Result<Self> {
        let errors = Arc::new(IngestErrors::default());
        let dialed = dial(addr, wire.greeting())?;
        let stream = Arc::new(Mutex::new(dialed.try_clone()?));
        let reader = spawn_reader(wire, &dialed, &stream, &errors)?;
        Ok(Self {
            stream,
            wire,
            names: (0..symbol_count)
                .map(|i| symbol_name(i, symbol_count))
                .collect(),
            published: vec![0; symbol_count as usize],
            next_symbol: 0,
            total: 0,
            batch: Vec::with_capacity(64 * 1024),
            errors,
            readers: vec![reader],
            acking: None,
            addr,
            reconnects: 0,
        })
    }

    /// After a lost connection, acking: connects again (for up to [`RECONNECT_PATIENCE`])
    /// and sends the hello with the first unacknowledged pseq and every unacknowledged
    /// batch.
    fn reconnect(&mut self) -> Result<()> {
        let unacked = self
            .acking
            .as_mut()
            .expect("only an acking publisher reconnects");
        unacked.trim(self.errors.acks.acked.load(Ordering::Relaxed));
        let replay = unacked.replay(self.total + 1);
        let deadline = Instant::now() + RECONNECT_PATIENCE;
        loop {
            match dial(self.addr, &replay) {
                Ok(fresh) => {
                    let reader = spawn_reader(self.wire, &fresh, &self.stream, &self.errors)?;
                    let mut old = self.stream.lock().unwrap_or_else(|p| p.into_inner());
                    let _ = old.shutdown(Shutdown::Both);
                    *old = fresh;
                    drop(old);
                    self.readers.push(reader);
                    self.reconnects += 1;
                    return Ok(());
                }
                Err(e) if Instant::now() >= deadline => {
                    return Err(e.context("the ingest stayed away: reconnecting gave up"));
                }
                Err(_) => std::thread::sleep(Duration::from_millis(100)),
            }
        }
    }

    /// Says hello as `id` (docs/PROTOCOL.md, "Acknowledged ingest"; JSON ingest only,
    /// before any tick): pseq n is the n-th tick written, and the relay acknowledges them.
    pub fn acknowledged(&mut self, id: &str) -> Result<()> {
        anyhow::ensure!(
            self.total == 0 && self.wire == Wire::Json,
            "acks need JSON ingest and a hello before the first tick"
        );
        let unacked = Unacked::new(id);
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        stream
            .write_all(unacked.hello(1).as_bytes())
            .context("saying hello to the ingest")?;
        drop(stream);
        self.acking = Some(unacked);
        Ok(())
    }

    /// With acks: the ticks written not yet acknowledged, and each batch's write-to-ack
    /// times since the last call; `None` without a hello.
    pub fn acks(&self) -> Option<(u64, crate::latency::LatencyHist)> {
        let acks = &self.errors.acks;
        self.acking.as_ref().map(|_| {
            let acked = acks.acked.load(Ordering::Relaxed);
            (self.total.saturating_sub(acked), acks.take_latency())
        })
    }

    /// Ticks written so far, per symbol index.
    pub fn published(&self) -> &[u64] {
        &self.published
    }

    /// Writes a snapshot of every symbol's book, `levels` deep a side (before publishing
    /// deltas with [`Wire::BookJson`]); not counted in [`Self::published`].
    pub fn load_books(&mut self, levels: u32) -> Result<()> {
        self.batch.clear();
        let ts_ns = now_ns();
        for name in &self.names {
            book::snapshot_line(name, levels, ts_ns, &mut self.batch);
        }
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        stream
            .write_all(&self.batch)
            .context("writing book snapshots to the ingest")
    }

    /// Publishes `rate` ticks/s for `duration` (or until `stop`), adding each batch to `sent`.
    pub fn run(
        &mut self,
        rate: f64,
        duration: Duration,
        sent: &AtomicU64,
        stop: &AtomicBool,
    ) -> Result<PublishOutcome> {
        let start = Instant::now();
        let target_total = (rate * duration.as_secs_f64()).round() as u64;
        let mut done = 0u64;
        loop {
            let elapsed = start.elapsed();
            let finished = elapsed >= duration || stop.load(Ordering::Relaxed);
            let due = if finished {
                if stop.load(Ordering::Relaxed) {
                    done
                } else {
                    target_total
                }
            } else {
                ((rate * elapsed.as_secs_f64()) as u64).min(target_total)
            };
            let n = (due - done).min(MAX_BATCH);
            if n > 0 {
                self.write_batch(n)?;
                done += n;
                sent.fetch_add(n, Ordering::Relaxed);
                if done < due {
                    continue; // behind: catch up without sleeping
                }
            }
            if finished && done >= due {
                break;
            }
            std::thread::sleep(PACE);
        }
        Ok(PublishOutcome {
            sent: done,
            elapsed: start.elapsed(),
        })
    }

    fn write_batch(&mut self, n: u64) -> Result<()> {
        self.batch.clear();
        let ts_ns = now_ns();
        for _ in 0..n {
            let sym = self.next_symbol;
            self.next_symbol = (sym + 1) % self.names.len();
            self.published[sym] += 1;
            self.total += 1;
            let tick = Tick {
                symbol: &self.names[sym],
                seq: self.published[sym],
                // A price that moves, so the relay cannot conflate identical ticks.
                price: 100.0 + (self.total % 4000) as f64 * 0.25,
                size: 0.25,
                ts_ns,
            };
            self.wire.encode(&tick, &mut self.batch);
        }
        if let Some(unacked) = &mut self.acking {
            unacked.trim(self.errors.acks.acked.load(Ordering::Relaxed));
            unacked.push(self.total - n + 1, self.total, &self.batch);
        }
        // A reader thread that panicked holding the lock left the stream as it was.
        let mut stream = self.stream.lock().unwrap_or_else(|p| p.into_inner());
        let written = stream.write_all(&self.batch);
        drop(stream);
        match written {
            Ok(()) => {}
            // Acking, the batch is kept: it goes again on the next connection.
            Err(_) if self.acking.is_some() => self.reconnect()?,
            Err(e) => return Err(e).context("writing ticks to the ingest"),
        }
        if self.acking.is_some() {
            self.errors.acks.written(self.total);
        }
        Ok(())
    }
}

impl Drop for Publisher {
    fn drop(&mut self) {
        if let Ok(stream) = self.stream.lock() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        for reader in self.readers.drain(..) {
            let _ = reader.join();
        }
    }
}

/// A connection to the ingest at `addr`, `greeting` written.
fn dial(addr: SocketAddr, greeting: &[u8]) -> Result<TcpStream> {
    let mut stream = TcpStream::connect_timeout(&addr, Duration::from_secs(5))
        .with_context(|| format!("connecting to the ingest at {addr}"))?;
    stream.set_nodelay(true)?;
    stream.write_all(greeting).context("greeting the ingest")?;
    Ok(stream)
}

/// Reads `stream`'s replies on a thread of its own; `writer` (the publishing side) answers
/// NATS PINGs.
fn spawn_reader(
    wire: Wire,
    stream: &TcpStream,
    writer: &Arc<Mutex<TcpStream>>,
    errors: &Arc<IngestErrors>,
) -> Result<JoinHandle<()>> {
    let reading = stream.try_clone()?;
    let (errors, writer) = (Arc::clone(errors), Arc::clone(writer));
    Ok(std::thread::Builder::new()
        .name("lt-ingest-replies".into())
        .spawn(move || replies::read(wire, reading, &writer, &errors))?)
}

/// How long an acking publisher tries to reconnect to a lost ingest.
const RECONNECT_PATIENCE: Duration = Duration::from_secs(10);
/// About one batch per millisecond (the sleep itself overshoots by ~50–100 µs).
const PACE: Duration = Duration::from_millis(1);
/// Behind schedule, catch up in pieces of at most this many ticks.
const MAX_BATCH: u64 = 20_000;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message as _;
    use std::io::Read;
    use std::net::TcpListener;

    /// Reads lines from `s` until `done(lines)` or EOF.
    fn lines_until(s: &mut TcpStream, done: impl Fn(&[String]) -> bool) -> Vec<String> {
        use std::io::BufRead;
        let mut reader = std::io::BufReader::new(s.try_clone().unwrap());
        let mut lines = Vec::new();
        let mut line = String::new();
        while !done(&lines) {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                break;
            }
            lines.push(line.trim_end().to_owned());
        }
        lines
    }

    #[test]
    fn an_acking_publisher_resends_what_was_not_acknowledged_after_a_reconnect() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let relay = std::thread::spawn(move || {
            // The first connection: a hello and 20 lines, an ack of 3, then it is gone.
            let (mut first, _) = listener.accept().unwrap();
            let seen = lines_until(&mut first, |l| l.len() >= 21);
            first
                .write_all(b"{\"type\":\"ack\",\"pseq\":3,\"duplicates\":0}\n")
                .unwrap();
            std::thread::sleep(Duration::from_millis(50));
            drop(first);
            let (mut second, _) = listener.accept().unwrap();
            let again = lines_until(&mut second, |_| false);
            (seen, again)
        });
        let mut p = Publisher::connect(addr, Wire::Json, 2).unwrap();
        p.acknowledged("lt-test").unwrap();
        let sent = AtomicU64::new(0);
        p.run(
            2000.0,
            Duration::from_millis(400),
            &sent,
            &AtomicBool::new(false),
        )
        .unwrap();
        let total = p.total;
        assert_eq!(p.reconnects, 1);
        drop(p);
        let (seen, again) = relay.join().unwrap();
        assert!(seen[0].contains("\"pseq\":1"), "{}", seen[0]);
        let hello: serde_json::Value = serde_json::from_str(&again[0]).unwrap();
        assert_eq!(hello["type"], "hello");
        let from = hello["pseq"].as_u64().unwrap();
        assert!(
            (2..=4).contains(&from),
            "resends start at or before pseq 4: {from}"
        );
        // pseq n is line n of the first connection (after its hello), and the second
        // connection's lines are pseqs from..: the same text where both have one.
        for (k, line) in again[1..].iter().enumerate() {
            let pseq = from + k as u64;
            if let Some(original) = seen.get(pseq as usize) {
                assert_eq!(line, original, "pseq {pseq}");
            }
        }
        assert_eq!(
            from - 1 + (again.len() as u64 - 1),
            total,
            "every pseq to the last"
        );
    }

    fn publish(wire: Wire, rate: f64, ms: u64) -> (Vec<u8>, Vec<u64>) {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"{\"error\":\"bad\"}\n").unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let mut p = Publisher::connect(addr, wire, 4).unwrap();
        let sent = AtomicU64::new(0);
        let out = p
            .run(
                rate,
                Duration::from_millis(ms),
                &sent,
                &AtomicBool::new(false),
            )
            .unwrap();
        let published = p.published().to_vec();
        // The server wrote one error line: the reader thread must count and keep it.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.errors.lines.load(Ordering::Relaxed) == 0 {
            assert!(
                std::time::Instant::now() < deadline,
                "timed out waiting for the error line to be counted"
            );
            std::thread::sleep(Duration::from_millis(5));
        }
        let errors = Arc::clone(&p.errors);
        drop(p);
        assert_eq!(out.sent, sent.load(Ordering::Relaxed));
        assert_eq!(errors.lines.load(Ordering::Relaxed), 1, "one error line");
        assert_eq!(
            *errors.samples.lock().unwrap(),
            vec![r#"{"error":"bad"}"#.to_owned()],
            "the line is kept verbatim"
        );
        (server.join().unwrap(), published)
    }

    #[test]
    fn json_lines_spread_evenly_and_total_is_exact() {
        let (bytes, published) = publish(Wire::Json, 2000.0, 200);
        assert_eq!(published, vec![100, 100, 100, 100]);
        let text = String::from_utf8(bytes).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 400);
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["symbol"], "SYM000");
        assert!(first["ts_ns"].as_u64().unwrap() > 1_700_000_000_000_000_000);
        assert!(first["price"].as_f64().is_some());
    }

    #[test]
    fn protobuf_is_length_delimited_ticks() {
        let (bytes, published) = publish(Wire::Protobuf, 1000.0, 20);
        assert_eq!(published.iter().sum::<u64>(), 20);
        let mut buf = &bytes[..];
        let mut n = 0;
        while !buf.is_empty() {
            let tick = proto::Tick::decode_length_delimited(&mut buf).unwrap();
            assert_eq!(tick.symbol, format!("SYM{:03}", n % 4));
            n += 1;
        }
        assert_eq!(n, 20);
    }

    #[test]
    fn nats_pubs_number_each_symbol_and_pings_are_answered() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            s.write_all(b"INFO {\"server_id\":\"x\"}\r\nPING\r\n-ERR 'Unknown Protocol'\r\n")
                .unwrap();
            let mut all = Vec::new();
            s.read_to_end(&mut all).unwrap();
            all
        });
        let mut p = Publisher::connect(addr, Wire::NatsPub, 2).unwrap();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while p.errors.lines.load(Ordering::Relaxed) == 0 {
            assert!(std::time::Instant::now() < deadline, "-ERR not counted");
            std::thread::sleep(Duration::from_millis(5));
        }
        let (sent, stop) = (AtomicU64::new(0), AtomicBool::new(false));
        p.run(1000.0, Duration::from_millis(6), &sent, &stop)
            .unwrap();
        let errors = Arc::clone(&p.errors);
        drop(p);
        assert_eq!(errors.lines.load(Ordering::Relaxed), 1, "only the -ERR");
        let text = String::from_utf8(server.join().unwrap()).unwrap();
        assert!(text.starts_with("CONNECT {"), "{text}");
        assert!(text.contains("\r\nPONG\r\n"), "the PING answered: {text}");
        let mut seqs: Vec<(String, u64)> = Vec::new();
        let pubs = text
            .replace("PUB ", "MSG ")
            .replace("MSG ticks.SYM000 ", "MSG ticks.SYM000 1 ");
        let pubs = pubs.replace("MSG ticks.SYM001 ", "MSG ticks.SYM001 1 ");
        crate::decode::NatsStream::default().feed(pubs.as_bytes(), |op| {
            if let Ok(crate::decode::NatsOp::Msg { subject, payload }) = op {
                let v: serde_json::Value = serde_json::from_slice(payload).unwrap();
                assert_eq!(
                    format!("ticks.{}", v["symbol"].as_str().unwrap()).as_bytes(),
                    subject
                );
                seqs.push((
                    v["symbol"].as_str().unwrap().into(),
                    v["seq"].as_u64().unwrap(),
                ));
            }
        });
        let of = |sym: &str| {
            seqs.iter()
                .filter(|s| s.0 == sym)
                .map(|s| s.1)
                .collect::<Vec<_>>()
        };
        assert_eq!(of("SYM000"), [1, 2, 3]);
        assert_eq!(of("SYM001"), [1, 2, 3]);
    }
}
