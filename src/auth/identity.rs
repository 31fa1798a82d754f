//! What a verified token gives: the [`Identity`] (subject, allow-list, expiry) and the
//! read checks every subscribe goes through.

use std::sync::Arc;
use std::time::Duration;

use serde::Deserialize;

use super::AuthError;
use crate::error::clip;
use crate::event::{Key, derived};

/// The claims a token must carry (`iat` and `nbf` are optional; checked when present).
#[derive(Deserialize)]
pub(super) struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    allow: Option<Vec<String>>,
}

/// What a connection may read, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The token's subject; `None` for an anonymous client.
    pub user: Option<Arc<str>>,
    /// The token's `allow` patterns; `None`: every public symbol and channel.
    allow: Option<Vec<Pattern>>,
    /// When the token runs out (its `exp` plus the leeway), seconds since the Unix epoch.
    pub expires_s: Option<u64>,
}

/// A symbol or channel pattern of an allow-list: a name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq)]
struct Pattern(String);

impl Identity {
    /// A client without a token: every public symbol and channel, no private one.
    pub fn anonymous() -> Self {
        Self {
            user: None,
            allow: None,
            expires_s: None,
        }
    }

    /// Whether this identity may read `key`: a `user:<id>` channel only if the subject is
    /// `<id>`; a bars, ticker or book channel exactly when its symbol is (`BTC-*` allows
    /// `book:BTC-USD:10`); anything else if the allow-list (when there is one) matches its
    /// name.
    pub fn may_read(&self, key: &Key) -> bool {
        // A rate tier is readable exactly when its symbol or channel is.
        let key = key.base();
        let mut name = key.as_str();
        if let Key::Channel(channel) = key {
            if let Some(owner) = channel.owner() {
                return self.user.as_deref() == Some(owner);
            }
            if let Some(symbol) = derived::symbol_of(channel.as_str()) {
                name = symbol;
            }
        }
        match &self.allow {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(name)),
        }
    }

    /// Whether this identity may subscribe to `*` (every symbol): only without an
    /// allow-list, or with `*` in it (the fan-out does not filter per tick).
    pub fn may_read_all(&self) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| p.0 == "*"))
    }
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, AuthError> {
        let name = text.strip_suffix('*').unwrap_or(text);
        let valid = text.len() <= MAX_PATTERN_BYTES
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
            && !text.is_empty();
        if !valid {
            return Err(AuthError::Invalid(format!(
                "allow pattern `{}` is not a symbol or channel name, or a prefix ending in *",
                clip(text)
            )));
        }
        Ok(Self(text.to_owned()))
    }

    fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
    }
}

/// The identity of verified `claims` at `now_s` (seconds since the Unix epoch): refused if
/// the token says it was issued later than `now_s` plus the leeway.
pub(super) fn identity(
    claims: Claims,
    leeway: Duration,
    now_s: u64,
) -> Result<Identity, AuthError> {
    if claims
        .iat
        .is_some_and(|iat| iat > now_s.saturating_add(leeway.as_secs()))
    {
        return Err(AuthError::Invalid("issued in the future (iat)".into()));
    }
    if claims.sub.is_empty() || claims.sub.len() > MAX_PATTERN_BYTES {
        return Err(AuthError::Invalid(format!(
            "sub must be 1 to {MAX_PATTERN_BYTES} bytes"
        )));
    }
    let allow = match claims.allow {
        None => None,
        Some(patterns) if patterns.len() > MAX_PATTERNS => {
            return Err(AuthError::Invalid(format!(
                "allow has {} patterns, the limit is {MAX_PATTERNS}",
                patterns.len()
            )));
        }
        Some(patterns) => Some(
            patterns
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Identity {
        user: Some(Arc::from(claims.sub)),
        allow,
        expires_s: Some(claims.exp.saturating_add(leeway.as_secs())),
    })
}

/// Longest `sub` or allow pattern, in bytes.
const MAX_PATTERN_BYTES: usize = 128;
/// Most allow patterns in one token.
const MAX_PATTERNS: usize = 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Channel;
    use crate::tick::Symbol;

    fn identity_with(user: &str, allow: Option<&[&str]>) -> Identity {
        Identity {
            user: Some(Arc::from(user)),
            allow: allow.map(|a| a.iter().map(|p| Pattern::parse(p).unwrap()).collect()),
            expires_s: None,
        }
    }

    #[test]
    fn private_channels_belong_to_their_user_only() {
        let a = identity_with("a", None);
        let user_a = Key::Channel(Channel::parse("user:a").unwrap());
        let user_b = Key::Channel(Channel::parse("user:b").unwrap());
        assert!(a.may_read(&user_a));
        assert!(!a.may_read(&user_b));
        assert!(!Identity::anonymous().may_read(&user_a));
        let everything = identity_with("a", Some(&["*"]));
        assert!(
            !everything.may_read(&user_b),
            "no pattern opens another user's channel"
        );
    }

    #[test]
    fn allow_lists_match_names_and_prefixes() {
        let id = identity_with("a", Some(&["BTC-*", "news"]));
        let sym = |s| Key::Symbol(Symbol::parse(s).unwrap());
        let chan = |s| Key::Channel(Channel::parse(s).unwrap());
        assert!(id.may_read(&sym("BTC-USD")));
        assert!(!id.may_read(&sym("ETH-USD")));
        assert!(id.may_read(&chan("news")));
        assert!(!id.may_read(&chan("alerts")));
        assert!(!id.may_read_all());
        assert!(id.may_read(&chan("bars:1m:BTC-USD")), "its symbol's bars");
        assert!(id.may_read(&chan("ticker:BTC-EUR")));
        assert!(!id.may_read(&chan("bars:1m:ETH-USD")));
        assert!(!id.may_read(&chan("ticker:ETH-USD")));
        let by_name = identity_with("a", Some(&["bars:*", "ticker:*"]));
        assert!(
            !by_name.may_read(&chan("bars:1m:ETH-USD")),
            "a derived channel is read through its symbol, not its name"
        );
        assert!(Identity::anonymous().may_read_all());
        assert!(Pattern::parse("a b").is_err());
        assert!(
            id.may_read(&chan("book:BTC-USD:10")),
            "a book as its symbol"
        );
        assert!(id.may_read(&chan("book:BTC-USD")));
        assert!(!id.may_read(&chan("book:ETH-USD:10")));
        assert!(Pattern::parse("").is_err());
    }
}
