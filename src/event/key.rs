//! [`Key`]: what a subscriber follows (a symbol, a channel, or either at a rate tier), the
//! one key space of seq, last value, replay, resume, subscriptions and interest; and the rate
//! tiers ([`Tier`], [`Tiers`]).

use std::sync::Arc;

use super::channel::Channel;
use crate::tick::Symbol;

/// What a subscriber follows: a symbol's ticks, a channel's events, or either throttled to a
/// rate tier. One key space for seq, last value, replay, resume, subscriptions and interest.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Key {
    /// The ticks of a symbol.
    Symbol(Symbol),
    /// The events of a channel.
    Channel(Channel),
    /// A symbol or channel at most once per tier interval (`BTC-USD@1s`, `news@5s`): the
    /// shard's throttle, never sequenced on its own (its frames carry the base's seqs).
    Tiered(Arc<Tiered>),
}

impl Key {
    /// The name without its kind (`BTC-USD`, `news`, `BTC-USD@1s`).
    pub fn as_str(&self) -> &str {
        match self {
            Self::Symbol(s) => s.as_str(),
            Self::Channel(c) => c.as_str(),
            Self::Tiered(t) => &t.name,
        }
    }

    /// Whether `*` (every symbol) covers this key: symbols yes, channels never (a channel
    /// is subscribed by name, so a wildcard cannot reach a private one by accident), tiers
    /// never (a tier is chosen by name).
    pub fn in_wildcard(&self) -> bool {
        matches!(self, Self::Symbol(_))
    }

    /// The symbol or channel the key follows: itself, or a tier's base.
    pub fn base(&self) -> &Self {
        match self {
            Self::Tiered(t) => &t.base,
            Self::Symbol(_) | Self::Channel(_) => self,
        }
    }

    /// Whether the key is named among symbols (a symbol, or a symbol's tier) rather than
    /// among channels.
    pub fn is_symbol(&self) -> bool {
        matches!(self.base(), Self::Symbol(_))
    }

    /// The tier, for a tiered key.
    pub fn tier(&self) -> Option<&Tier> {
        match self {
            Self::Tiered(t) => Some(&t.tier),
            Self::Symbol(_) | Self::Channel(_) => None,
        }
    }
}

/// A rate tier: a name (`1s`) and the interval it stands for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tier {
    name: Arc<str>,
    period: std::time::Duration,
}

impl Tier {
    /// The tier of `period`, named as humantime writes it (`100ms`, `1s`, `5m`).
    pub fn of(period: std::time::Duration) -> Self {
        Self {
            name: Arc::from(humantime::format_duration(period).to_string()),
            period,
        }
    }

    /// Its name, as written after `@`.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Its interval.
    pub fn period(&self) -> std::time::Duration {
        self.period
    }
}

/// A symbol or channel throttled to a tier.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Tiered {
    /// What is throttled: a symbol or a channel key.
    pub base: Key,
    /// The tier.
    pub tier: Tier,
    /// `BASE@TIER`.
    name: Box<str>,
}

impl Tiered {
    /// `base` at `tier` (`base` is a symbol or channel key, never a tier).
    pub fn key(base: Key, tier: Tier) -> Key {
        debug_assert!(base.tier().is_none(), "a tier of a tier");
        let name = format!("{}@{}", base.as_str(), tier.name()).into_boxed_str();
        Key::Tiered(Arc::new(Self { base, tier, name }))
    }
}

/// The tiers a relay offers (`--rate-tiers`), for parsing `NAME@TIER`.
#[derive(Clone, Debug, Default)]
pub struct Tiers(Arc<[Tier]>);

impl Tiers {
    /// The tiers of these intervals.
    pub fn new(periods: &[std::time::Duration]) -> Self {
        Self(periods.iter().copied().map(Tier::of).collect())
    }

    /// Every tier, in the configured order.
    pub fn all(&self) -> &[Tier] {
        &self.0
    }

    /// Splits `NAME@TIER` into the name and its tier (`None`: no `@`, the raw stream); an
    /// unknown tier names the accepted ones.
    pub fn split<'a>(&self, text: &'a str) -> Result<(&'a str, Option<Tier>), TierError> {
        let Some((name, tier)) = text.rsplit_once('@') else {
            return Ok((text, None));
        };
        let found = self.0.iter().find(|t| t.name() == tier).cloned();
        let found = found.ok_or_else(|| TierError {
            given: crate::error::clip(tier),
            accepted: self.0.iter().map(|t| t.name().to_owned()).collect(),
        })?;
        Ok((name, Some(found)))
    }
}

/// A `@TIER` the relay does not offer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown rate tier `{given}`; this relay offers {}", crate::error::one_of(&accepted.iter().map(String::as_str).collect::<Vec<_>>()))]
pub struct TierError {
    /// What was written after `@`.
    pub given: String,
    /// The configured tiers' names.
    pub accepted: Vec<String>,
}

impl From<Symbol> for Key {
    fn from(symbol: Symbol) -> Self {
        Self::Symbol(symbol)
    }
}

impl From<Channel> for Key {
    fn from(channel: Channel) -> Self {
        Self::Channel(channel)
    }
}
