//! `--replay FILE [--replay-speed X]`: a source that plays a recording (`--record`) back,
//! for load tests and for reproducing an incident.
//!
//! Each line is a recorded tick (the JSON a json client receives) or a plain ingest line.
//! `ts_ns` is passed through unchanged; `seq` and `recv_ns` are the new relay's own. The
//! gaps between ticks are the recorded ones, scaled: a tick recorded `d` after the first is
//! published `d / X` after the replay starts (from `recv_ns`, the time the recording relay
//! received it, or `ts_ns` for lines without one). `--replay-speed 0` plays as fast as the
//! relay takes it. A bad line is counted under its code, logged at debug and skipped.
//! Runs on its own thread, so its blocking file reads never stall the accept loop.

use std::io::BufRead;
use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;
use tokio::time::Instant;
use tracing::{debug, info};

use super::{DecodeError, Inbox};
use crate::metrics::Metrics;
use crate::shutdown::Shutdown;
use crate::tick::{RawTick, Tick, now_ns};

/// Plays `lines` into `inbox` at `speed` × the recorded pace, until the end or shutdown.
pub async fn run(
    mut lines: impl BufRead,
    inbox: Inbox,
    speed: f64,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
) {
    let start = Instant::now();
    let mut origin_ns = None;
    let mut batch = Vec::new();
    let (mut line, mut number, mut played) = (Vec::new(), 0_usize, 0_u64);
    loop {
        line.clear();
        match lines.read_until(b'\n', &mut line) {
            Ok(0) => break,
            Ok(_) => number += 1,
            Err(e) => {
                debug!(error = %e, "--replay: read failed; replay ends here");
                break;
            }
        }
        let (mut tick, at_ns) = match decode(&mut line) {
            None => continue,
            Some(Ok(decoded)) => decoded,
            Some(Err(e)) => {
                metrics.count_error(e.code());
                debug!(line = number, code = e.code().as_str(), error = %e, "--replay: bad line skipped");
                continue;
            }
        };
        let origin = *origin_ns.get_or_insert(at_ns);
        let due = start + offset(at_ns.saturating_sub(origin), speed);
        if due > Instant::now() {
            // Publish what is due before waiting for the next one.
            if publish(&inbox, &mut batch).await.is_err() {
                return;
            }
            tokio::select! {
                // Shutdown first: a paused replay must not hold the relay open.
                biased;
                () = shutdown.wait() => return,
                () = tokio::time::sleep_until(due) => {}
            }
        }
        tick.recv_ns = now_ns();
        batch.push(tick);
        played += 1;
        if batch.len() >= MAX_BATCH && publish(&inbox, &mut batch).await.is_err() {
            return;
        }
    }
    if publish(&inbox, &mut batch).await.is_ok() {
        info!(ticks = played, lines = number, "--replay: finished");
    }
}

/// One line → the tick and its recorded time (`recv_ns`, else `ts_ns`); `None` if blank.
pub fn decode(line: &mut [u8]) -> Option<Result<(Tick, u64), DecodeError>> {
    let text = line.trim_ascii();
    if text.is_empty() {
        return None;
    }
    let len = text.len();
    let start = line.len() - line.trim_ascii_start().len();
    let text = &mut line[start..start + len];
    let recorded: Recorded = match simd_json::serde::from_slice(text) {
        Ok(recorded) => recorded,
        Err(_) => {
            return Some(Err(DecodeError::Json(
                "not a recorded tick (a JSON tick object per line)".into(),
            )));
        }
    };
    let at_ns = recorded
        .recv_ns
        .filter(|ns| *ns > 0)
        .unwrap_or(recorded.ts_ns);
    let raw = RawTick {
        symbol: recorded.symbol,
        kind: recorded.kind,
        price: recorded.price,
        size: recorded.size,
        bid: recorded.bid,
        ask: recorded.ask,
        bid_size: recorded.bid_size,
        ask_size: recorded.ask_size,
        venue: recorded.venue,
        ts_ns: recorded.ts_ns,
    };
    Some(
        Tick::try_from(raw)
            .map(|tick| (tick, at_ns))
            .map_err(DecodeError::Tick),
    )
}

/// A recorded line: a json client's tick (`type`, `seq`, `recv_ns` included) or an
/// ingest line.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Recorded {
    #[serde(rename = "type")]
    #[allow(dead_code)]
    message_type: Option<String>,
    #[allow(dead_code)]
    seq: Option<u64>,
    recv_ns: Option<u64>,
    symbol: String,
    kind: Option<String>,
    price: Option<f64>,
    size: Option<f64>,
    bid: Option<f64>,
    ask: Option<f64>,
    bid_size: Option<f64>,
    ask_size: Option<f64>,
    venue: Option<String>,
    ts_ns: u64,
}

async fn publish(inbox: &Inbox, batch: &mut Vec<Tick>) -> Result<(), super::InboxClosed> {
    inbox.publish(std::mem::take(batch)).await
}

/// How long after the start a tick recorded `since_ns` after the first is due.
fn offset(since_ns: u64, speed: f64) -> Duration {
    if speed <= 0.0 {
        return Duration::ZERO;
    }
    Duration::try_from_secs_f64(since_ns as f64 / 1e9 / speed)
        .unwrap_or(MAX_OFFSET)
        .min(MAX_OFFSET)
}

/// Ticks handed on at once when they are due together.
const MAX_BATCH: usize = 1024;
/// A recording longer than a year at the chosen speed is played as if it ended there.
const MAX_OFFSET: Duration = Duration::from_secs(365 * 24 * 3600);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn recorded_and_plain_lines_decode_with_their_time() {
        let mut recorded = br#"{"type":"tick","symbol":"A","seq":3,"kind":"trade","ts_ns":5,"recv_ns":9,"price":1.5}"#.to_vec();
        let (tick, at) = decode(&mut recorded).unwrap().unwrap();
        assert_eq!(
            (tick.symbol.as_str(), tick.price, tick.ts_ns, at),
            ("A", Some(1.5), 5, 9)
        );
        let mut plain = br#" {"symbol":"B","bid":2,"ts_ns":7} "#.to_vec();
        let (tick, at) = decode(&mut plain).unwrap().unwrap();
        assert_eq!((tick.symbol.as_str(), at), ("B", 7));
        // A recv_ns of 0 is no time (a line written before it was known): its ts_ns is.
        let mut unknown =
            br#"{"type":"tick","symbol":"C","seq":1,"ts_ns":11,"recv_ns":0,"price":1}"#.to_vec();
        let (_, at) = decode(&mut unknown).unwrap().unwrap();
        assert_eq!(at, 11);
        assert!(decode(&mut b"  ".to_vec()).is_none());
        assert!(decode(&mut b"{nope".to_vec()).unwrap().is_err());
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_due_together_go_in_full_batches_and_what_is_due_goes_before_a_wait() {
        let mut file = String::new();
        for _ in 0..2_500 {
            file.push_str("{\"symbol\":\"A\",\"price\":1,\"ts_ns\":1000}\n");
        }
        file.push_str("{\"symbol\":\"A\",\"ts_ns\":1000}\n\n");
        file.push_str("{\"symbol\":\"B\",\"price\":2,\"ts_ns\":3600000001000}\n");
        let (inbox, mut batches) = Inbox::bounded(64);
        let metrics = Arc::new(Metrics::new(1));
        let cursor = std::io::Cursor::new(file.into_bytes());
        let replay = tokio::spawn(run(cursor, inbox, 1.0, metrics.clone(), Shutdown::new()));
        let mut sizes = Vec::new();
        while let Some(batch) = batches.recv().await {
            sizes.push(batch.items.len());
        }
        replay.await.unwrap();
        // The hour's wait (on the paused clock) comes after the 2,500 ticks due at once
        // have gone.
        assert_eq!(sizes, [MAX_BATCH, MAX_BATCH, 2_500 - 2 * MAX_BATCH, 1]);
        let refused: u64 = metrics.errors().map(|(_, n)| n).sum();
        assert_eq!(
            refused, 1,
            "the tick without a price or quote, not the blank line"
        );
    }

    #[test]
    fn offsets_scale_with_speed_and_zero_means_at_once() {
        assert_eq!(offset(2_000_000_000, 2.0), Duration::from_secs(1));
        assert_eq!(offset(2_000_000_000, 0.0), Duration::ZERO);
        assert_eq!(offset(u64::MAX, 1e-300), MAX_OFFSET);
        // Two days of recording at real speed are two days, under the year's cap.
        let two_days = Duration::from_secs(2 * 86_400);
        let recorded = u64::try_from(two_days.as_nanos()).unwrap();
        assert_eq!(offset(recorded, 1.0), two_days);
    }
}
