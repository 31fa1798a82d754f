//! [`Channel`]: an event channel's name, and which channels are private to one user.

use std::borrow::Borrow;
use std::fmt;
use std::sync::Arc;

use super::error::EventError;
use crate::book::BookChannel;
use crate::tick::Symbol;

/// An event channel such as `news` or `user:42`: 1 to
/// [`MAX_SYMBOL_LEN`](crate::tick::MAX_SYMBOL_LEN) bytes of
/// `[A-Za-z0-9._:/-]` (the symbol alphabet: nothing to escape in JSON).
///
/// A **private** channel is `user:<id>` or `user:<id>:<name>` (an id and a name are
/// non-empty and hold no `:`): it belongs to the connections whose token subject is `<id>`,
/// so `user:bob:orders` is bob's as `user:bob` is. Any other name whose lowercase starts
/// with `user:` (`USER:bob`, `User:bob`, `user:`, `user::x`, `user:a:b:c`) is refused, so a
/// look-alike can never pass for a public channel beside a private one.
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Channel(Arc<str>);

impl Channel {
    /// Wraps a name the relay built from parts already validated (a derived channel's,
    /// from a valid symbol and a configured interval), skipping the parse.
    pub(super) fn built(name: String) -> Self {
        Self(Arc::from(name))
    }

    /// Validates `name` and wraps it; a name in the `user:` space must be a private
    /// channel's (see [`Channel`]).
    pub fn parse(name: &str) -> Result<Self, EventError> {
        // Same alphabet and length as symbols; reuse the one check.
        Symbol::parse(name).map_err(EventError::Channel)?;
        let prefix = name.get(..USER_PREFIX.len());
        if prefix.is_some_and(|p| p.eq_ignore_ascii_case(USER_PREFIX)) {
            let well_formed = prefix == Some(USER_PREFIX) && {
                let mut parts = name[USER_PREFIX.len()..].split(':');
                let id = parts.next().filter(|id| !id.is_empty());
                let sub = parts.next();
                id.is_some() && sub.is_none_or(|s| !s.is_empty()) && parts.next().is_none()
            };
            if !well_formed {
                return Err(EventError::NotPrivate(crate::error::clip(name)));
            }
        } else if name == USER_PREFIX.trim_end_matches(':') {
            return Err(EventError::NotPrivate(name.to_owned()));
        }
        Ok(Self(Arc::from(name)))
    }

    /// The channel's text.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The channel of a book view (its name was validated when the view was named).
    pub fn of_book(channel: &BookChannel) -> Self {
        Self(channel.name().clone())
    }

    /// Whether the relay reserves the name for a stream it derives itself (books, bars, the
    /// ticker): a client may subscribe to it, nobody may publish on it.
    pub fn is_reserved(&self) -> bool {
        RESERVED_PREFIXES.iter().any(|p| self.0.starts_with(p))
    }

    /// The user a private channel (`user:<id>` or `user:<id>:<name>`) belongs to; `None`
    /// for a public channel.
    pub fn owner(&self) -> Option<&str> {
        let rest = self.0.strip_prefix(USER_PREFIX)?;
        Some(rest.split_once(':').map_or(rest, |(id, _)| id))
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

/// The channel prefixes the relay reserves for the streams it derives (one row each; the
/// publish refusal and its message come from here).
pub const RESERVED_PREFIXES: [&str; 3] = [crate::book::BOOK_PREFIX, BARS, TICKER];

/// The prefix of bars channels (`bars:INTERVAL:SYMBOL`).
pub const BARS: &str = "bars:";

/// The prefix of ticker channels (`ticker:SYMBOL`).
pub const TICKER: &str = "ticker:";

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_private_channel_is_user_id_or_user_id_name_and_look_alikes_are_refused() {
        let owner = |name| Channel::parse(name).unwrap().owner().map(str::to_owned);
        assert_eq!(owner("user:bob:orders").as_deref(), Some("bob"));
        assert_eq!(owner("user:bob").as_deref(), Some("bob"));
        assert_eq!(owner("users").as_deref(), None, "a public channel");
        assert_eq!(owner("User").as_deref(), None, "no `:`: public");
        for name in [
            "USER:bob",
            "User:bob",
            "uSeR:bob",
            "user:",
            "user",
            "user::x",
            "user:bob:",
            "user:a:b:c",
            "USER:",
        ] {
            let error = Channel::parse(name).unwrap_err();
            assert_eq!(error.code(), "invalid_channel", "{name}");
            assert_eq!(error.field(), Some("channel"));
        }
    }
}
