//! [`Reloadable`]: the settings SIGHUP applies to a running relay, as one typed list. The
//! reload in `main.rs` copies exactly these and warns about every other changed setting;
//! [`LiveLimits`](crate::shared::LiveLimits) and the log filter read them.

use super::Config;

/// A setting SIGHUP changes live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Reloadable {
    /// `--log`: the log filter.
    Log,
    /// `--max-connections`, checked at each accept.
    MaxConnections,
    /// `--max-control-rate`, for sessions opened from now on.
    MaxControlRate,
}

impl Reloadable {
    /// Every reloadable setting.
    pub const ALL: [Self; 3] = [Self::Log, Self::MaxConnections, Self::MaxControlRate];

    /// Its long flag (without `--`), the key settings are compared by.
    pub fn key(self) -> &'static str {
        match self {
            Self::Log => "log",
            Self::MaxConnections => "max-connections",
            Self::MaxControlRate => "max-control-rate",
        }
    }

    /// Whether the setting named `key` is reloadable.
    pub fn is(key: &str) -> bool {
        Self::ALL.iter().any(|r| r.key() == key)
    }

    /// Copies this setting's value from `from` into `to`.
    pub fn copy(self, from: &Config, to: &mut Config) {
        match self {
            Self::Log => to.log.clone_from(&from.log),
            Self::MaxConnections => to.max_connections = from.max_connections,
            Self::MaxControlRate => to.max_control_rate = from.max_control_rate,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn every_key_is_a_flag_of_the_relay() {
        let command = Config::command();
        for setting in Reloadable::ALL {
            assert!(
                command
                    .get_arguments()
                    .any(|a| a.get_long() == Some(setting.key())),
                "--{}",
                setting.key()
            );
        }
    }

    #[test]
    fn copy_moves_exactly_the_setting() {
        let from = Config {
            max_connections: 7,
            max_control_rate: 9,
            log: "debug".into(),
            ..Config::for_tests()
        };
        let mut to = Config::for_tests();
        Reloadable::MaxConnections.copy(&from, &mut to);
        assert_eq!(
            (to.max_connections, to.max_control_rate),
            (7, Config::for_tests().max_control_rate)
        );
        Reloadable::Log.copy(&from, &mut to);
        assert_eq!(to.log, "debug");
        assert!(Reloadable::is("log") && !Reloadable::is("listen"));
    }
}
