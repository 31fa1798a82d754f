//! [`Subscriptions`]: which of a shard's sessions want each key (symbol or channel).
//!
//! Per key an insertion-ordered set of session keys: iteration is a walk over a dense
//! array (the fan-out hot loop), insert and remove are O(1). Sessions subscribed to `*`
//! are kept apart and receive every symbol (never a channel: those are named).

use std::collections::HashMap;

use indexmap::IndexSet;

use crate::event::Key;

/// A shard-local session key (its slot in the shard's session slab).
pub type SessionKey = usize;

/// Key → subscribed sessions, plus the `*` subscribers.
#[derive(Debug, Default)]
pub struct Subscriptions {
    by_symbol: HashMap<Key, IndexSet<SessionKey>>,
    all: IndexSet<SessionKey>,
}

impl Subscriptions {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// Subscribes `session` to `symbol` (`None`: to every symbol); false if it already was.
    pub fn insert(&mut self, symbol: Option<&Key>, session: SessionKey) -> bool {
        match symbol {
            None => self.all.insert(session),
            Some(symbol) => match self.by_symbol.get_mut(symbol) {
                Some(set) => set.insert(session),
                None => self
                    .by_symbol
                    .entry(symbol.clone())
                    .or_default()
                    .insert(session),
            },
        }
    }

    /// Unsubscribes `session` from `symbol` (`None`: from `*`); false if it was not.
    pub fn remove(&mut self, symbol: Option<&Key>, session: SessionKey) -> bool {
        match symbol {
            None => self.all.swap_remove(&session),
            Some(symbol) => {
                let Some(set) = self.by_symbol.get_mut(symbol) else {
                    return false;
                };
                let removed = set.swap_remove(&session);
                if set.is_empty() {
                    self.by_symbol.remove(symbol);
                }
                removed
            }
        }
    }

    /// Every session that wants an item of `symbol`: its subscribers, then (a symbol only)
    /// the `*` ones.
    pub fn of<'a>(&'a self, symbol: &Key) -> impl Iterator<Item = SessionKey> + 'a {
        let wildcard = symbol.in_wildcard().then_some(&self.all);
        self.by_symbol
            .get(symbol)
            .into_iter()
            .chain(wildcard)
            .flatten()
            .copied()
    }

    /// How many sessions subscribe to `symbol` itself (not counting `*`).
    pub fn count(&self, symbol: &Key) -> usize {
        self.by_symbol.get(symbol).map_or(0, IndexSet::len)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Channel;
    use crate::tick::Symbol;

    fn sym(s: &str) -> Key {
        Key::Symbol(Symbol::parse(s).unwrap())
    }

    #[test]
    fn wildcards_never_reach_channels() {
        let mut subs = Subscriptions::new();
        let news = Key::Channel(Channel::parse("news").unwrap());
        subs.insert(None, 1);
        subs.insert(Some(&news), 2);
        assert_eq!(subs.of(&news).collect::<Vec<_>>(), vec![2]);
        assert_eq!(subs.of(&sym("news")).collect::<Vec<_>>(), vec![1]);
    }

    #[test]
    fn lookups_include_wildcards_once() {
        let mut subs = Subscriptions::new();
        assert!(subs.insert(Some(&sym("A")), 1));
        assert!(!subs.insert(Some(&sym("A")), 1));
        subs.insert(Some(&sym("B")), 2);
        subs.insert(None, 3);
        assert_eq!(subs.of(&sym("A")).collect::<Vec<_>>(), vec![1, 3]);
        assert_eq!(subs.of(&sym("C")).collect::<Vec<_>>(), vec![3]);
        assert!(subs.remove(Some(&sym("A")), 1));
        assert!(!subs.remove(Some(&sym("A")), 1));
        assert_eq!(subs.count(&sym("A")), 0);
        assert!(subs.remove(None, 3));
        assert_eq!(subs.of(&sym("B")).collect::<Vec<_>>(), vec![2]);
    }

    #[test]
    fn count_is_the_named_subscribers_only() {
        let mut subs = Subscriptions::new();
        subs.insert(Some(&sym("A")), 1);
        subs.insert(Some(&sym("A")), 2);
        subs.insert(None, 3);
        assert_eq!(
            (subs.count(&sym("A")), subs.count(&sym("B"))),
            (2, 0),
            "`*` is not counted"
        );
    }
}
