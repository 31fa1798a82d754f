//! What a publisher is told and what can go wrong: [`PublisherConfig`], the errors
//! ([`PublisherError`], [`IdError`]) and the publisher id's check ([`validate_id`]).

use std::net::SocketAddr;
use std::time::Duration;

/// The longest publisher id, in bytes.
pub const MAX_ID_LEN: usize = 64;

/// The highest first pseq a hello may carry (2^63): room for 2^63 lines after it.
pub const MAX_FIRST_PSEQ: u64 = 1 << 63;

/// How a [`Publisher`](super::Publisher) connects and how many lines it keeps in flight.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherConfig {
    /// The relay's NDJSON ingest addresses, tried in order (the sequencer, then standbys).
    pub addrs: Vec<SocketAddr>,
    /// The publisher id the relay dedupes by (see [`validate_id`]).
    pub id: String,
    /// The pseq of the first line sent (1 to [`MAX_FIRST_PSEQ`]; default 1). A publisher that restarts
    /// continues from the pseq after the last one it knows the relay settled.
    pub first_pseq: u64,
    /// [`Publisher::send`](super::Publisher::send) waits while this many lines are unacked
    /// (default 65 536).
    pub max_unacked: usize,
    /// The pause after a round over [`addrs`](Self::addrs) without a connection (default
    /// 50 ms).
    pub reconnect_pause: Duration,
    /// How long one connect attempt may take before the next address is tried (default
    /// 2 s), so an address that drops packets does not stall failover.
    pub connect_timeout: Duration,
}

impl Default for PublisherConfig {
    fn default() -> Self {
        Self {
            addrs: Vec::new(),
            id: String::new(),
            first_pseq: 1,
            max_unacked: 65_536,
            reconnect_pause: Duration::from_millis(50),
            connect_timeout: Duration::from_secs(2),
        }
    }
}

/// Why a publisher id is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    /// The id is empty.
    #[error("it is empty")]
    Empty,
    /// The id is longer than [`MAX_ID_LEN`] bytes.
    #[error("it is {len} bytes long, more than {MAX_ID_LEN}")]
    TooLong {
        /// The id's length in bytes.
        len: usize,
    },
    /// The id has a character other than ASCII letters, digits, `.`, `_`, `-`, `:`.
    #[error("it has {ch:?} at byte {at} (allowed: ASCII letters, digits, '.', '_', '-', ':')")]
    BadChar {
        /// The first character not allowed.
        ch: char,
        /// Its byte offset.
        at: usize,
    },
}

/// What went wrong with a [`Publisher`](super::Publisher).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PublisherError {
    /// [`PublisherConfig::id`] is not a valid publisher id.
    #[error("invalid publisher id {id:?}: {reason}")]
    InvalidId {
        /// The id given.
        id: String,
        /// What is wrong with it.
        reason: IdError,
    },
    /// [`PublisherConfig::addrs`] is empty.
    #[error("no relay address given")]
    NoAddresses,
    /// [`PublisherConfig::first_pseq`] is 0 or above [`MAX_FIRST_PSEQ`] (the relay refuses
    /// such a hello).
    #[error("first_pseq {pseq} is not from 1 to 2^63")]
    FirstPseqOutOfRange {
        /// The pseq given.
        pseq: u64,
    },
    /// [`PublisherConfig::max_unacked`] is 0 (nothing could ever be sent).
    #[error("max_unacked must be at least 1")]
    ZeroMaxUnacked,
    /// The line given to [`Publisher::send`](super::Publisher::send) contains a `\n` (one line
    /// is one item).
    #[error("a line must not contain a newline (found one at byte {at})")]
    NewlineInLine {
        /// The byte offset of the first `\n`.
        at: usize,
    },
    /// The next pseq would not fit in a `u64`.
    #[error("no pseq left: the last one was {last}")]
    PseqExhausted {
        /// The last pseq assigned.
        last: u64,
    },
    /// The relay refused the hello (an error answer on line 1); the publisher stopped.
    #[error("the relay refused the hello: {code}: {message}")]
    HelloRefused {
        /// The relay's error code (`bad_hello`).
        code: String,
        /// The relay's message.
        message: String,
    },
    /// [`Publisher::flush`](super::Publisher::flush) gave up before every line was acked.
    #[error("flush timed out after {timeout:?}: {acked} of {sent} acked")]
    FlushTimeout {
        /// The timeout given.
        timeout: Duration,
        /// [`Publisher::acked`](super::Publisher::acked) at the time.
        acked: u64,
        /// [`Publisher::sent`](super::Publisher::sent) at the time.
        sent: u64,
    },
}

/// Checks a publisher id: 1 to [`MAX_ID_LEN`] bytes of ASCII letters, digits, `.`, `_`, `-`,
/// `:`.
pub fn validate_id(id: &str) -> Result<(), IdError> {
    if id.is_empty() {
        return Err(IdError::Empty);
    }
    if let Some((at, ch)) = id
        .char_indices()
        .find(|&(_, ch)| !(ch.is_ascii_alphanumeric() || matches!(ch, '.' | '_' | '-' | ':')))
    {
        return Err(IdError::BadChar { ch, at });
    }
    if id.len() > MAX_ID_LEN {
        return Err(IdError::TooLong { len: id.len() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_validated() {
        assert_eq!(validate_id("feed-a.1_x:2"), Ok(()));
        assert_eq!(validate_id(&"a".repeat(64)), Ok(()));
        assert_eq!(validate_id(""), Err(IdError::Empty));
        assert_eq!(
            validate_id(&"a".repeat(65)),
            Err(IdError::TooLong { len: 65 })
        );
        assert_eq!(
            validate_id("feed a"),
            Err(IdError::BadChar { ch: ' ', at: 4 })
        );
        assert_eq!(
            validate_id("a\"b"),
            Err(IdError::BadChar { ch: '"', at: 1 })
        );
        assert_eq!(validate_id("fé"), Err(IdError::BadChar { ch: 'é', at: 1 }));
    }
}
