//! The order-book settings (`--book-*`), flattened into [`Config`](super::Config).

use std::time::Duration;

use clap::Args;

use super::defaults;
use super::error::ConfigError;
use super::values::parse_duration;

/// The order-book knobs.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct BookConfig {
    /// Depths (levels a side) a client may subscribe to as `book:SYMBOL:DEPTH`, comma-separated;
    /// `book:SYMBOL` is always the full book. Each depth's update is encoded once per
    /// encoding, so every depth costs a little per book update: 10, 25 and 100 are the
    /// depths trading screens and bots ask for (a ladder, a wider ladder, an analytics view).
    #[arg(long, value_delimiter = ',', default_value = defaults::BOOK_DEPTHS)]
    pub book_depths: Vec<u32>,

    /// Most price levels a side of one book may hold; an update that would go past it is
    /// refused (`book_too_deep`). It bounds a book's memory (~150 bytes a level, the
    /// sequencer's and each shard's copy) and the full-book checksum every update of
    /// `book:SYMBOL` carries; 1,000 is the deepest book venues publish.
    #[arg(long, default_value_t = defaults::BOOK_MAX_LEVELS)]
    pub book_max_levels: usize,

    /// With `--nats`: a book's whole state goes into the stream (a checkpoint) after this
    /// many updates, so a late edge or a restarted sequencer starts from it and replays
    /// fewer updates than that. At most `--replay-depth` (the stream keeps that many
    /// updates a book, and must still hold every one after the newest checkpoint): a smaller
    /// `--replay-depth` checkpoints every `--replay-depth` updates instead. 256 is a quarter
    /// of the default depth, a checkpoint costing about a hundred updates of a 100-level book.
    #[arg(long, default_value_t = defaults::BOOK_CHECKPOINT_UPDATES)]
    pub book_checkpoint_updates: u32,

    /// With `--nats`: a book that changed since its last checkpoint gets one after this
    /// long even when fewer than `--book-checkpoint-updates` came, so what a restart or a
    /// late edge replays is also bounded in time. 30 s is far below any retention.
    #[arg(long, default_value = defaults::BOOK_CHECKPOINT_INTERVAL, value_parser = parse_duration)]
    pub book_checkpoint_interval: Duration,
}

impl Default for BookConfig {
    /// The command line's defaults (what clap applies).
    fn default() -> Self {
        Self {
            book_depths: defaults::BOOK_DEPTHS
                .split(',')
                .map(|d| d.parse().expect("the default depths are numbers"))
                .collect(),
            book_max_levels: defaults::BOOK_MAX_LEVELS,
            book_checkpoint_updates: defaults::BOOK_CHECKPOINT_UPDATES,
            book_checkpoint_interval: parse_duration(defaults::BOOK_CHECKPOINT_INTERVAL)
                .expect("the default interval parses"),
        }
    }
}

impl BookConfig {
    /// Updates between two checkpoints of a book: `--book-checkpoint-updates`, or fewer when
    /// the stream keeps fewer updates a book (`replay_depth`), so it always holds every
    /// update after the newest checkpoint.
    pub fn checkpoint_updates(&self, replay_depth: usize) -> u32 {
        let kept = u32::try_from(replay_depth).unwrap_or(u32::MAX).max(1);
        self.book_checkpoint_updates.min(kept)
    }

    /// Checks what clap cannot: depths of 1 to `--book-max-levels` levels, given once; a
    /// checkpoint cadence above zero.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let listed = || {
            let names: Vec<String> = self.book_depths.iter().map(u32::to_string).collect();
            names.join(",")
        };
        let mut sorted = self.book_depths.clone();
        sorted.sort_unstable();
        sorted.dedup();
        if sorted.is_empty() || sorted.len() != self.book_depths.len() || sorted[0] == 0 {
            return Err(ConfigError::Invalid {
                flag: "--book-depths",
                value: listed(),
                reason: "must be one or more different depths of at least 1 level",
            });
        }
        if self.book_max_levels == 0 || sorted.iter().any(|d| *d as usize > self.book_max_levels) {
            return Err(ConfigError::Invalid {
                flag: "--book-max-levels",
                value: self.book_max_levels.to_string(),
                reason: "must be at least 1 and at least every --book-depths depth",
            });
        }
        if self.book_checkpoint_updates == 0 {
            return Err(ConfigError::Invalid {
                flag: "--book-checkpoint-updates",
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if self.book_checkpoint_interval.is_zero() {
            return Err(ConfigError::Invalid {
                flag: "--book-checkpoint-interval",
                value: "0s".into(),
                reason: "must be above zero",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::config::Config;

    #[test]
    fn book_settings_that_make_no_sense_are_refused_naming_the_flag() {
        let book = Config::for_tests().book;
        assert_eq!(
            book,
            super::BookConfig::default(),
            "Default is clap's defaults"
        );
        assert_eq!(book.book_depths, [10, 25, 100]);
        assert!(book.validate().is_ok());
        let refused = |b: super::BookConfig| b.validate().unwrap_err().to_string();
        let with = |depths: &[u32]| super::BookConfig {
            book_depths: depths.to_vec(),
            ..book.clone()
        };
        assert!(refused(with(&[10, 10])).starts_with("--book-depths 10,10"));
        assert!(refused(with(&[0])).starts_with("--book-depths"));
        assert!(refused(with(&[2000])).starts_with("--book-max-levels"));
        let rare = super::BookConfig {
            book_checkpoint_updates: 2000,
            ..book.clone()
        };
        assert_eq!(
            rare.checkpoint_updates(1024),
            1024,
            "no rarer than the stream keeps"
        );
        assert_eq!(rare.checkpoint_updates(5), 5);
        assert_eq!(book.checkpoint_updates(1024), 256);
        let never = super::BookConfig {
            book_checkpoint_updates: 0,
            ..book.clone()
        };
        assert!(refused(never).starts_with("--book-checkpoint-updates 0"));
    }
}
