//! Who published an item, and where it stands in that publisher's own sequence
//! (acknowledged, exactly-once ingest: docs/PROTOCOL.md, "Acknowledged ingest").

use std::sync::Arc;

/// A publisher's id and its sequence number (`pseq`) for one item. The relay stores an item
/// of a publisher only if its pseq is above the highest it stored of that publisher: a
/// resend is acknowledged again and never stored twice.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tag {
    /// The publisher's id ([`publisher_id`]).
    pub publisher: Arc<str>,
    /// Its sequence number, from 1.
    pub pseq: u64,
}

/// Longest publisher id, in bytes.
pub const MAX_PUBLISHER_ID: usize = 64;

/// A valid publisher id: 1 to [`MAX_PUBLISHER_ID`] ASCII letters, digits, `.`, `_`, `-`
/// or `:` (it travels in a NATS header and in log lines as it is).
pub fn publisher_id(id: &str) -> Result<Arc<str>, &'static str> {
    if id.is_empty() || id.len() > MAX_PUBLISHER_ID {
        return Err("a publisher id has 1 to 64 characters");
    }
    let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-' | b':');
    if !id.bytes().all(allowed) {
        return Err("a publisher id has only ASCII letters, digits, `.`, `_`, `-` and `:`");
    }
    Ok(Arc::from(id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_short_and_plain() {
        assert!(publisher_id("feed-1:eu.a_b").is_ok());
        assert!(publisher_id("").is_err());
        assert!(publisher_id(&"x".repeat(65)).is_err());
        assert!(publisher_id(&"x".repeat(64)).is_ok());
        for bad in ["a b", "a\nb", "é", "a/b", "a\"b"] {
            assert!(publisher_id(bad).is_err(), "{bad:?}");
        }
    }
}
