//! [`ConfigError`]: why a setting that parsed is refused.

/// A flag value that parsed but makes no sense.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// `flag` has `value`, which is wrong for `reason`.
    #[error("{flag} {value}: {reason}")]
    Invalid {
        /// The flag, as typed on the command line.
        flag: &'static str,
        /// The value given.
        value: String,
        /// What is wrong with it.
        reason: &'static str,
    },
}
