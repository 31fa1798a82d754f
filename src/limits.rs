//! Limits that protect the relay from one client: [`TokenBucket`] for the control-message
//! rate, and [`PerIpLimit`] for connections per source address.

use std::collections::HashMap;
use std::net::IpAddr;
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

/// Connections per source IP, shared by the accept loop (acquire) and the shards (release,
/// when an [`IpSlot`] drops). Touched once per connect and disconnect, never per tick.
#[derive(Debug)]
pub struct PerIpLimit {
    max: usize,
    held: Mutex<HashMap<IpAddr, usize>>,
}

/// One connection's place in its IP's count; released on drop.
#[derive(Debug)]
pub struct IpSlot {
    limit: Arc<PerIpLimit>,
    ip: IpAddr,
}

impl PerIpLimit {
    /// At most `max` connections per IP (0: unlimited).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection from `ip`, or `None` if the IP is at its limit.
    /// Unlimited configurations hand out no slots at all.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<Option<IpSlot>, AtLimit> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(ip).or_insert(0);
        if *count >= self.max {
            return Err(AtLimit);
        }
        *count += 1;
        Ok(Some(IpSlot {
            limit: self.clone(),
            ip,
        }))
    }
}

impl Drop for IpSlot {
    fn drop(&mut self) {
        let mut held = self
            .limit
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.ip) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.ip);
            }
        }
    }
}

/// The source IP already holds `--max-connections-per-ip` connections.
#[derive(Debug, thiserror::Error)]
#[error("too many connections from this address")]
pub struct AtLimit;

#[cfg(test)]
mod tests {
    use super::*;
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
        let a = limit.acquire(ip).unwrap();
        let _b = limit.acquire(ip).unwrap();
        assert!(limit.acquire(ip).is_err());
        assert!(limit.acquire([127, 0, 0, 2].into()).is_ok());
        drop(a);
        assert!(limit.acquire(ip).is_ok());
        assert!(PerIpLimit::new(0).acquire(ip).unwrap().is_none());
    }
}
