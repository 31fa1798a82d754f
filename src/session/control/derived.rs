//! Which derived channels this relay serves: a client naming one it does not compute is
//! told what it does.

use super::ControlError;
use crate::book::BookChannel;
use crate::config::Config;
use crate::error::clip;
use crate::event::Key;

/// Refuses a derived channel among `keys` that this relay does not serve, with
/// `invalid_channel` and a message listing what it accepts: a `book:` channel with a bad
/// symbol or a depth not in `--book-depths`, a `bars:` channel of an interval not in
/// `--bar-intervals`, a bars or ticker channel when bars are off. (A rate tier on a bars
/// or ticker channel is refused when the name is parsed: [`KeyRules::channel`]; a book's
/// is checked here like the book channel it is a tier of.)
pub fn check_derived_channels<'a>(
    keys: impl IntoIterator<Item = &'a Key>,
    config: &Config,
) -> Result<(), ControlError> {
    for key in keys {
        let Key::Channel(channel) = key.base() else {
            continue;
        };
        if let Some(Err(reason)) = BookChannel::parse(channel.as_str(), &config.book.book_depths) {
            return Err(ControlError::BookChannel {
                channel: clip(channel.as_str()),
                reason,
            });
        }
        if let Err(e) = config.derived.check(channel) {
            return Err(ControlError::InvalidChannel {
                channel: clip(key.as_str()),
                reason: e.to_string(),
            });
        }
    }
    Ok(())
}
