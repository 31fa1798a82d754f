//! [`Channel`]: an event channel's name, and which channels are private to one user.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use super::error::EventError;
use crate::tick::Symbol;

/// An event channel such as `news` or `user:42`: 1 to
/// [`MAX_SYMBOL_LEN`](crate::tick::MAX_SYMBOL_LEN) bytes of
/// `[A-Za-z0-9._:/-]` (the symbol alphabet: nothing to escape in JSON). `user:<id>` is
/// private to the connections whose token subject is `<id>`.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

impl Channel {
    /// Validates `name` and wraps it; `user:` needs an id after it.
    pub fn parse(name: &str) -> Result<Self, EventError> {
        // Same alphabet and length as symbols; reuse the one check.
        Symbol::parse(name).map_err(EventError::Channel)?;
        if name == USER_PREFIX.trim_end_matches(':') || name == USER_PREFIX {
            return Err(EventError::NoUserId);
        }
        Ok(Self(Arc::from(name)))
    }

    /// The channel's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The user a private `user:<id>` channel belongs to; `None` for a public channel.
    pub fn owner(&self) -> Option<&str> {
        self.0.strip_prefix(USER_PREFIX)
    }
}

impl Borrow<str> for Channel {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "#{}", &*self.0)
    }
}

impl fmt::Display for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The prefix of private per-user channels.
pub const USER_PREFIX: &str = "user:";
