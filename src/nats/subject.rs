//! [`Subjects`]: where each key lives in the stream, and back.
//!
//! `<stream>.tick.<symbol>` for a symbol's ticks, `<stream>.event.<channel>` for a channel's
//! events, `<stream>.book.<symbol>` for a book's updates (full depth; every depth's view is
//! derived from them), `<stream>.bookcp.<symbol>` for its periodic checkpoints (the whole
//! book), `<stream>.epoch` for the history's identity. A key becomes one subject token
//! reversibly: bytes outside `[A-Za-z0-9_:/-]` (the `.` of `BRK.B`, the only one the key
//! alphabet allows) are written `%XX`, so no key can add a token or a wildcard.
//!
//! Derived channels have subjects of their own kind, which say what the message is:
//! `<stream>.ticker.<channel>`, and a bars channel's messages on two subjects,
//! `<stream>.bar.<channel>.open` (updates of the open bar) and `….closed` (each bar's final
//! message). Split so that the stream's per-subject limit keeps as many closed bars as it
//! keeps ticks (a restarted sequencer rebuilds 24 hours of 1-minute bars from them) however
//! many updates came between; an edge reads both with one filter (`….bar.<channel>.*`),
//! in stream order, which is seq order.

use crate::book::{BookChannel, BookKind, channel::symbol_of};
use crate::event::derived::{self, DerivedName};
use crate::event::{Channel, Item, Key};
use crate::tick::Symbol;

/// The subject names of one stream.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Subjects {
    prefix: String,
}

/// What a subject of this stream carries.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Carries {
    /// A symbol's ticks.
    Ticks,
    /// A channel's events.
    Events,
    /// A book's updates (its full-depth channel's messages).
    BookUpdates,
    /// A book's checkpoints.
    BookCheckpoints,
    /// A bars channel's messages: of its open bar, or each bar's final one.
    Bars {
        /// Whether the subject is that of the closed bars.
        closed: bool,
    },
    /// A ticker channel's messages.
    Tickers,
}

/// Why a subject is not one of a key of this stream.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SubjectError {
    /// Not `<stream>.tick.<token>`, `<stream>.event.<token>`, `<stream>.ticker.<token>`,
    /// `<stream>.bar.<token>.open|closed`, `<stream>.book.<token>` or
    /// `<stream>.bookcp.<token>`.
    #[error("subject `{0}` is not a tick, event, bar, ticker or book subject of this stream")]
    Foreign(String),
    /// The token has a bad `%` escape, or names no valid symbol or channel.
    #[error("subject token `{0}` is not an escaped symbol or channel")]
    BadToken(String),
}

impl Subjects {
    /// The subjects of the stream named `stream` (a validated `--nats-stream`).
    pub fn new(stream: &str) -> Self {
        Self {
            prefix: stream.to_owned(),
        }
    }

    /// The subjects the stream stores: everything under the prefix.
    pub fn all(&self) -> String {
        format!("{}.>", self.prefix)
    }

    /// The wildcard of every symbol's ticks (what `*` clients follow).
    pub fn all_ticks(&self) -> String {
        format!("{}.{TICK}.*", self.prefix)
    }

    /// The one-message subject holding the history's epoch.
    pub fn epoch(&self) -> String {
        format!("{}.epoch", self.prefix)
    }

    /// What a follower of `key` reads: its subject, both subjects of a bars channel, a book
    /// channel of any depth: its book's updates (a tier's: its base's, which it throttles).
    pub fn of(&self, key: &Key) -> String {
        let key = key.base();
        let mut subject = self.base(key);
        if matches!(key, Key::Channel(c) if c.as_str().starts_with(derived::BARS)) {
            subject.push_str(".*");
        }
        subject
    }

    /// The subject `item` is published on.
    pub fn of_item(&self, item: &Item) -> String {
        match item {
            Item::Bar(bar) => {
                let mut subject = self.base(&item.key());
                subject.push_str(if bar.bar.closed { ".closed" } else { ".open" });
                subject
            }
            Item::Book(book) if book.kind == BookKind::Checkpoint => {
                self.checkpoints(book.channel.symbol())
            }
            _ => self.base(&item.key()),
        }
    }

    /// The subject of `symbol`'s book checkpoints.
    pub fn checkpoints(&self, symbol: &Symbol) -> String {
        self.subject(CHECKPOINT, symbol.as_str())
    }

    /// The wildcard of every book's updates (where a restarted sequencer finds its books).
    pub fn all_books(&self) -> String {
        format!("{}.{BOOK}.*", self.prefix)
    }

    /// The key whose subject is `subject` (a book's: its full-depth channel).
    pub fn key(&self, subject: &str) -> Result<Key, SubjectError> {
        self.parse(subject).map(|(_, key)| key)
    }

    /// What `subject` carries, and its key.
    pub fn parse(&self, subject: &str) -> Result<(Carries, Key), SubjectError> {
        let foreign = || SubjectError::Foreign(subject.to_owned());
        let rest = subject
            .strip_prefix(self.prefix.as_str())
            .and_then(|r| r.strip_prefix('.'))
            .ok_or_else(foreign)?;
        let (kind, token) = rest.split_once('.').ok_or_else(foreign)?;
        let (token, closed) = match kind {
            BAR => match token.rsplit_once('.') {
                Some((token, "open")) => (token, Some(false)),
                Some((token, "closed")) => (token, Some(true)),
                _ => return Err(foreign()),
            },
            _ => (token, None),
        };
        let bad = || SubjectError::BadToken(token.to_owned());
        let name = unescape(token).ok_or_else(bad)?;
        let channel = || Channel::parse(&name).map_err(|_| bad());
        let book = |carries| {
            let symbol = Symbol::parse(&name).map_err(|_| bad())?;
            let channel = Channel::of_book(&BookChannel::full(symbol));
            Ok((carries, Key::Channel(channel)))
        };
        match (kind, DerivedName::parse(&name)) {
            (TICK, _) => Symbol::parse(&name)
                .map(|s| (Carries::Ticks, Key::Symbol(s)))
                .map_err(|_| bad()),
            (EVENT, None) => Ok((Carries::Events, Key::Channel(channel()?))),
            (BAR, Some(DerivedName::Bars { .. })) => Ok((
                Carries::Bars {
                    closed: closed == Some(true),
                },
                Key::Channel(channel()?),
            )),
            (TICKER, Some(DerivedName::Ticker { .. })) => {
                Ok((Carries::Tickers, Key::Channel(channel()?)))
            }
            // A reserved name on another kind's subject: not something the relay wrote.
            (EVENT | BAR | TICKER, _) => Err(bad()),
            (BOOK, _) => book(Carries::BookUpdates),
            (CHECKPOINT, _) => book(Carries::BookCheckpoints),
            _ => Err(foreign()),
        }
    }

    /// `<stream>.<kind>.<escaped name>` of `key` (a book channel of any depth: its book's).
    fn base(&self, key: &Key) -> String {
        let (kind, name) = match key {
            Key::Symbol(s) => (TICK, s.as_str()),
            Key::Channel(c) => match (symbol_of(c.as_str()), DerivedName::parse(c.as_str())) {
                (Some(symbol), _) => (BOOK, symbol),
                (None, Some(DerivedName::Bars { .. })) => (BAR, c.as_str()),
                (None, Some(DerivedName::Ticker { .. })) => (TICKER, c.as_str()),
                (None, Some(DerivedName::Book) | None) => (EVENT, c.as_str()),
            },
            Key::Tiered(t) => return self.base(&t.base),
        };
        self.subject(kind, name)
    }

    fn subject(&self, kind: &str, name: &str) -> String {
        let mut subject = String::with_capacity(self.prefix.len() + kind.len() + name.len() + 10);
        subject.push_str(&self.prefix);
        subject.push('.');
        subject.push_str(kind);
        subject.push('.');
        escape(name, &mut subject);
        subject
    }
}

fn escape(name: &str, out: &mut String) {
    for byte in name.bytes() {
        if plain(byte) {
            out.push(char::from(byte));
        } else {
            out.push('%');
            out.push(char::from(HEX[usize::from(byte >> 4)]));
            out.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
    }
}

fn unescape(token: &str) -> Option<String> {
    let mut bytes = token.bytes();
    let mut out = Vec::with_capacity(token.len());
    while let Some(byte) = bytes.next() {
        if byte == b'%' {
            let hi = hex(bytes.next()?)?;
            let lo = hex(bytes.next()?)?;
            let decoded = hi << 4 | lo;
            // One spelling per key: an escape of a plain byte is not ours.
            if plain(decoded) {
                return None;
            }
            out.push(decoded);
        } else if plain(byte) {
            out.push(byte);
        } else {
            return None;
        }
    }
    String::from_utf8(out).ok()
}

fn plain(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || matches!(byte, b'_' | b':' | b'/' | b'-')
}

fn hex(digit: u8) -> Option<u8> {
    match digit {
        b'0'..=b'9' => Some(digit - b'0'),
        b'A'..=b'F' => Some(digit - b'A' + 10),
        _ => None,
    }
}

const HEX: &[u8; 16] = b"0123456789ABCDEF";
const TICK: &str = "tick";
const EVENT: &str = "event";
const BAR: &str = "bar";
const TICKER: &str = "ticker";
const BOOK: &str = "book";
const CHECKPOINT: &str = "bookcp";

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn symbol(name: &str) -> Key {
        Key::Symbol(Symbol::parse(name).unwrap())
    }

    #[test]
    fn a_dot_in_a_symbol_is_escaped_so_it_stays_one_token() {
        let subjects = Subjects::new("tickrelay");
        let key = symbol("BRK.B");
        assert_eq!(subjects.of(&key), "tickrelay.tick.BRK%2EB");
        assert_eq!(subjects.key("tickrelay.tick.BRK%2EB"), Ok(key));
        let news = Key::Channel(Channel::parse("status.model").unwrap());
        assert_eq!(subjects.of(&news), "tickrelay.event.status%2Emodel");
        assert_eq!(subjects.key(&subjects.of(&news)), Ok(news));
    }

    #[test]
    fn a_book_of_any_depth_reads_its_updates_and_checkpoints_have_their_own_subject() {
        let subjects = Subjects::new("tickrelay");
        let depth = Key::Channel(Channel::parse("book:BRK.B:10").unwrap());
        assert_eq!(subjects.of(&depth), "tickrelay.book.BRK%2EB");
        let symbol = Symbol::parse("BRK.B").unwrap();
        assert_eq!(subjects.checkpoints(&symbol), "tickrelay.bookcp.BRK%2EB");
        let full = Key::Channel(Channel::parse("book:BRK.B").unwrap());
        for subject in ["tickrelay.book.BRK%2EB", "tickrelay.bookcp.BRK%2EB"] {
            assert_eq!(subjects.key(subject), Ok(full.clone()));
        }
        assert_eq!(
            subjects.parse("tickrelay.bookcp.BRK%2EB").unwrap().0,
            Carries::BookCheckpoints
        );
    }

    #[test]
    fn subjects_that_are_not_ours_are_refused_by_name() {
        let subjects = Subjects::new("tickrelay");
        for foreign in [
            "other.tick.A",
            "tickrelay.tock.A",
            "tickrelay.tick",
            "tickrelay",
        ] {
            assert!(
                matches!(subjects.key(foreign), Err(SubjectError::Foreign(_))),
                "{foreign}"
            );
        }
        for bad in [
            "tickrelay.tick.A%2",
            "tickrelay.tick.A%41",
            "tickrelay.tick.A%zz",
            "tickrelay.tick.A.B",
            "tickrelay.tick.",
            "tickrelay.tick.%20",
        ] {
            assert!(
                matches!(subjects.key(bad), Err(SubjectError::BadToken(_))),
                "{bad}"
            );
        }
    }

    #[test]
    fn derived_channels_have_subjects_of_their_own_kind() {
        let subjects = Subjects::new("tickrelay");
        let bars = Key::Channel(Channel::parse("bars:1m:BRK.B").unwrap());
        assert_eq!(subjects.of(&bars), "tickrelay.bar.bars:1m:BRK%2EB.*");
        for (part, closed) in [("open", false), ("closed", true)] {
            let subject = format!("tickrelay.bar.bars:1m:BRK%2EB.{part}");
            assert_eq!(
                subjects.parse(&subject),
                Ok((Carries::Bars { closed }, bars.clone()))
            );
        }
        let ticker = Key::Channel(Channel::parse("ticker:X").unwrap());
        assert_eq!(subjects.of(&ticker), "tickrelay.ticker.ticker:X");
        assert_eq!(
            subjects.parse("tickrelay.ticker.ticker:X"),
            Ok((Carries::Tickers, ticker))
        );
        for bad in [
            "tickrelay.event.bars:1m:X",
            "tickrelay.event.ticker:X",
            "tickrelay.bar.ticker:X.open",
            "tickrelay.ticker.bars:1m:X",
            "tickrelay.ticker.news",
        ] {
            assert!(
                matches!(subjects.parse(bad), Err(SubjectError::BadToken(_))),
                "{bad}"
            );
        }
        for foreign in ["tickrelay.bar.bars:1m:X", "tickrelay.bar.bars:1m:X.half"] {
            assert!(
                matches!(subjects.parse(foreign), Err(SubjectError::Foreign(_))),
                "{foreign}"
            );
        }
    }

    proptest! {
        #[test]
        fn every_symbol_maps_to_one_token_and_back(name in "[A-Za-z0-9._:/-]{1,64}") {
            let subjects = Subjects::new("s");
            let key = symbol(&name);
            let subject = subjects.of(&key);
            prop_assert_eq!(subject.matches('.').count(), 2);
            prop_assert!(!subject.contains('*') && !subject.contains('>'));
            prop_assert_eq!(subjects.key(&subject), Ok(key));
        }
    }
}
