//! Limits that protect the relay from one client: [`TokenBucket`] for the control-message
//! rate, [`PerIpLimit`] for connections per source address, [`DeflateSlots`] for clients
//! compressing with permessage-deflate, and [`LogGate`] so a storm of connects, closes or
//! refusals cannot flood the log.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

/// A token bucket: `rate` tokens per second, holding at most `rate` (a one-second burst).
#[derive(Debug, Clone)]
pub struct TokenBucket {
    rate: f64,
    tokens: f64,
    refilled: Instant,
}

impl TokenBucket {
    /// A full bucket refilling at `rate` per second.
    pub fn new(rate: u32, now: Instant) -> Self {
        Self {
            rate: f64::from(rate),
            tokens: f64::from(rate),
            refilled: now,
        }
    }

    /// Tokens per second.
    pub fn rate(&self) -> u32 {
        self.rate as u32
    }

    /// Takes a token if one is available at `now`.
    pub fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * self.rate).min(self.rate);
        self.refilled = now;
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Lets through at most [`LOG_LINES_PER_SECOND`] log lines of one kind (a burst of as
/// many), and counts the rest: the next line let through carries `suppressed = N`, the
/// similar lines dropped since the previous one. Touched once per session event, never per
/// tick, so the lock is uncontended in practice.
#[derive(Debug)]
pub struct LogGate {
    state: Mutex<(TokenBucket, u64)>,
}

impl LogGate {
    /// A gate with a full bucket at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            state: Mutex::new((TokenBucket::new(LOG_LINES_PER_SECOND, now), 0)),
        }
    }

    /// `Some(suppressed)` if a line may be logged at `now` (`suppressed` lines were dropped
    /// since the last one), `None` if this one is dropped and counted.
    pub fn admit(&self, now: Instant) -> Option<u64> {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        let (bucket, suppressed) = &mut *state;
        if bucket.take(now) {
            Some(std::mem::take(suppressed))
        } else {
            *suppressed += 1;
            None
        }
    }
}

impl LogGate {
    /// The lines dropped since the last admitted line or the last call, and resets the
    /// count (for the periodic "N similar lines suppressed" line).
    pub fn take_suppressed(&self) -> u64 {
        let mut state = self
            .state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner());
        std::mem::take(&mut state.1)
    }
}

/// The session lifecycle's log gates, one per kind of line, so a storm of one kind does
/// not hide the others.
#[derive(Debug)]
pub struct LifecycleLog {
    /// `session connected`.
    pub connect: LogGate,
    /// `session closing` (the relay queued a close frame with a code and reason).
    pub close: LogGate,
    /// `slow consumer closed`.
    pub slow: LogGate,
    /// `session ended`.
    pub end: LogGate,
    /// `connection refused` (connection limits, draining).
    pub refuse: LogGate,
}

impl LifecycleLog {
    /// Every gate full at `now`.
    pub fn new(now: Instant) -> Self {
        Self {
            connect: LogGate::new(now),
            close: LogGate::new(now),
            slow: LogGate::new(now),
            end: LogGate::new(now),
            refuse: LogGate::new(now),
        }
    }

    /// Every gate with the message of the lines it guards.
    pub fn gates(&self) -> [(&'static str, &LogGate); 5] {
        [
            ("session connected", &self.connect),
            ("session closing", &self.close),
            ("slow consumer closed", &self.slow),
            ("session ended", &self.end),
            ("connection refused", &self.refuse),
        ]
    }
}

/// How often the lines a gate dropped are reported, when it dropped any.
pub const LOG_SUPPRESSED_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

/// Lifecycle log lines per second per kind: a few screens a minute in a storm, every line
/// in normal operation.
pub const LOG_LINES_PER_SECOND: u32 = 20;

/// Publisher ids a sequencer remembers the highest stored pseq of (acknowledged ingest,
/// docs/PROTOCOL.md): each costs its id and a number; a tagged item of one id more is
/// refused (`publisher_limit`) rather than let a flood of ids grow the table without end.
pub const MAX_PUBLISHERS: usize = 10_000;

/// Connections per key (a source IP, a token's user), shared by whoever admits a connection
/// (acquire) and whoever ends it (release, when its [`Slot`] drops). Touched once per
/// connect and disconnect, never per tick.
#[derive(Debug)]
pub struct PerKeyLimit<K: Eq + Hash + Clone> {
    max: usize,
    held: Mutex<HashMap<K, usize>>,
}

/// One connection's place in its key's count; released on drop.
#[derive(Debug)]
pub struct Slot<K: Eq + Hash + Clone> {
    limit: Arc<PerKeyLimit<K>>,
    key: K,
}

/// Connections per source IP (`--max-connections-per-ip`): the accept loop acquires, the
/// shards release.
pub type PerIpLimit = PerKeyLimit<IpAddr>;

/// One connection's place in its IP's count.
pub type IpSlot = Slot<IpAddr>;

impl<K: Eq + Hash + Clone> PerKeyLimit<K> {
    /// At most `max` connections per key (0: unlimited).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// The limit per key (0: unlimited).
    pub fn max(&self) -> usize {
        self.max
    }

    /// A slot for a new connection of `key`, or [`AtLimit`] if the key holds `max` already.
    /// Unlimited configurations hand out no slots at all.
    pub fn acquire(self: &Arc<Self>, key: &K) -> Result<Option<Slot<K>>, AtLimit> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(key.clone()).or_insert(0);
        if *count >= self.max {
            return Err(AtLimit);
        }
        *count += 1;
        Ok(Some(Slot {
            limit: self.clone(),
            key: key.clone(),
        }))
    }
}

impl<K: Eq + Hash + Clone> Drop for Slot<K> {
    fn drop(&mut self) {
        let mut held = self
            .limit
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.key) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.key);
            }
        }
    }
}

/// The count of clients compressing with permessage-deflate, under
/// `--ws-deflate-max-clients`: taken at the upgrade (over the cap, nothing is negotiated),
/// released when a [`DeflateSlot`] drops with its session. Never touched per tick.
#[derive(Debug)]
pub struct DeflateSlots {
    max: usize,
    held: Arc<AtomicUsize>,
}

/// One compressing client's place in [`DeflateSlots`]; released on drop.
#[derive(Debug)]
pub struct DeflateSlot {
    held: Arc<AtomicUsize>,
}

impl DeflateSlots {
    /// At most `max` compressing clients at once.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            held: Arc::new(AtomicUsize::new(0)),
        }
    }

    /// A place for one more compressing client, or `None` at the cap.
    pub fn acquire(&self) -> Option<DeflateSlot> {
        self.held
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.max).then_some(n + 1)
            })
            .ok()?;
        Some(DeflateSlot {
            held: self.held.clone(),
        })
    }

    /// Compressing clients now.
    pub fn held(&self) -> usize {
        self.held.load(Ordering::Relaxed)
    }
}

impl Drop for DeflateSlot {
    fn drop(&mut self) {
        self.held.fetch_sub(1, Ordering::AcqRel);
    }
}

/// The key already holds its limit of connections (`--max-connections-per-ip`,
/// `--max-connections-per-user`).
#[derive(Debug, thiserror::Error)]
#[error("too many connections from this address")]
pub struct AtLimit;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_log_storm_is_cut_to_the_rate_and_the_next_line_counts_what_was_dropped() {
        let start = Instant::now();
        let gate = LogGate::new(start);
        let admitted = (0..1000).filter(|_| gate.admit(start).is_some()).count();
        assert_eq!(admitted, LOG_LINES_PER_SECOND as usize);
        let later = start + std::time::Duration::from_secs(1);
        assert_eq!(
            gate.admit(later),
            Some(1000 - u64::from(LOG_LINES_PER_SECOND))
        );
        assert_eq!(gate.admit(later), Some(0));
        assert!(gate.admit(later).is_some());
        let dropped = (0..100).filter(|_| gate.admit(later).is_none()).count() as u64;
        assert_eq!(gate.take_suppressed(), dropped);
        assert_eq!(gate.take_suppressed(), 0);
    }
    use std::time::Duration;

    #[test]
    fn bucket_allows_a_burst_then_the_rate() {
        let start = Instant::now();
        let mut bucket = TokenBucket::new(5, start);
        assert_eq!((0..10).filter(|_| bucket.take(start)).count(), 5);
        assert!(!bucket.take(start + Duration::from_millis(100)));
        assert!(bucket.take(start + Duration::from_millis(250)));
    }

    #[test]
    fn ip_slots_count_and_release() {
        let limit = PerIpLimit::new(2);
        let ip: IpAddr = [127, 0, 0, 1].into();
        let a = limit.acquire(&ip).unwrap();
        let _b = limit.acquire(&ip).unwrap();
        assert!(limit.acquire(&ip).is_err());
        assert!(limit.acquire(&[127, 0, 0, 2].into()).is_ok());
        drop(a);
        assert!(limit.acquire(&ip).is_ok());
        assert!(PerIpLimit::new(0).acquire(&ip).unwrap().is_none());
    }
}
