//! The scale-out settings: which [`Role`] this process plays and the NATS server that joins
//! the roles (docs/SCALING.md). Flattened into [`Config`](super::Config), so each one is a
//! flag, a `TICKRELAY_*` variable and a `--config` key like every other setting.

use std::time::Duration;

use clap::Args;

use super::defaults;
use super::error::ConfigError;
use super::values::{Role, parse_duration};

/// Role and NATS settings.
#[derive(Clone, Debug, PartialEq, Eq, Args)]
pub struct Scale {
    /// `all` (one box, the default), `sequencer` (ingest + seq, publishes to NATS) or
    /// `edge` (serves clients from NATS, no ingest). `sequencer` and `edge` need `--nats`.
    #[arg(long, value_enum, default_value_t = defaults::ROLE)]
    pub role: Role,

    /// NATS server URL (`nats://127.0.0.1:4222`; several separated by commas) with
    /// JetStream enabled. Off by default: `--role all` needs no NATS.
    #[arg(long, value_name = "URL")]
    pub nats: Option<String>,

    /// JetStream stream name, also the first token of every subject
    /// (`<stream>.tick.<symbol>`, `<stream>.event.<channel>`, `<stream>.epoch`). One
    /// stream is one history: every relay of a deployment names the same one.
    #[arg(long, default_value = defaults::NATS_STREAM)]
    pub nats_stream: String,

    /// How long an edge keeps following a symbol after its last local client left: a
    /// client that reconnects within it (a page reload, a load balancer move) finds the
    /// symbol warm. 5 s covers a reload without holding idle subscriptions for long.
    #[arg(long, default_value = defaults::NATS_LINGER, value_parser = parse_duration)]
    pub nats_linger: Duration,
}

impl Scale {
    /// Checks what clap cannot: a sequencer or an edge needs NATS; the stream name must be
    /// one subject token.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.role != Role::All && self.nats.is_none() {
            return Err(ConfigError::Invalid {
                flag: "--role",
                value: self.role.as_str().into(),
                reason: "a sequencer or an edge needs --nats URL (the NATS server joining them)",
            });
        }
        let token_ok = |c: char| c.is_ascii_alphanumeric() || c == '_' || c == '-';
        if self.nats_stream.is_empty() || !self.nats_stream.chars().all(token_ok) {
            return Err(ConfigError::Invalid {
                flag: "--nats-stream",
                value: self.nats_stream.clone(),
                reason: "must be 1 or more of [A-Za-z0-9_-] (a stream name and subject token)",
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_sequencer_or_edge_without_nats_is_refused_naming_the_flag() {
        for role in [Role::Sequencer, Role::Edge] {
            let scale = Scale {
                role,
                ..crate::config::Config::for_tests().scale
            };
            let error = scale.validate().unwrap_err().to_string();
            assert!(error.starts_with("--role "), "{error}");
            assert!(error.contains("--nats"), "{error}");
        }
        assert!(
            crate::config::Config::for_tests().scale.validate().is_ok(),
            "all needs no NATS"
        );
        let bad = Scale {
            nats_stream: "a.b".into(),
            ..crate::config::Config::for_tests().scale
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--nats-stream")
        );
    }
}
