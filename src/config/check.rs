//! What clap cannot check: [`Config::validate`] (a value that parses but makes no sense is
//! refused, naming its flag) and [`Config::warnings`] (valid but probably a mistake), and the
//! shard count the relay runs.

use super::Config;
use super::error::ConfigError;

impl Config {
    /// The number of shards to run: `--shards`, or when it is 0 one per usable CPU less
    /// one (at least one).
    pub fn shard_count(&self) -> usize {
        if self.shards > 0 {
            self.shards
        } else {
            // available_parallelism reads the affinity mask and the cgroup CPU quota.
            let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
            cpus.saturating_sub(1).max(1)
        }
    }

    /// Checks values clap cannot: returns the offending flag and why.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let positive = [
            ("--outbox-bytes", self.outbox_bytes),
            ("--max-symbols-per-client", self.max_symbols_per_client),
            ("--max-message-bytes", self.max_message_bytes),
            ("--batch-max-bytes", self.batch_max_bytes),
            ("--max-ingest-line", self.max_ingest_line),
            ("--max-event-bytes", self.max_event_bytes),
            ("--max-connections", self.max_connections),
            ("--replay-depth", self.replay_depth),
            ("--replay-budget", self.replay_budget),
            ("--max-symbols", self.max_symbols),
            ("--max-control-rate", self.max_control_rate as usize),
        ];
        if let Some((flag, _)) = positive.iter().find(|(_, v)| *v == 0) {
            return Err(ConfigError::Invalid {
                flag,
                value: "0".into(),
                reason: "must be at least 1",
            });
        }
        if !(self.replay_speed.is_finite() && self.replay_speed >= 0.0) {
            return Err(ConfigError::Invalid {
                flag: "--replay-speed",
                value: self.replay_speed.to_string(),
                reason: "must be a finite number, 0 or more (0: as fast as possible)",
            });
        }
        if self.demo_symbols < MIN_DEMO_SYMBOLS {
            return Err(ConfigError::Invalid {
                flag: "--demo-symbols",
                value: self.demo_symbols.to_string(),
                reason: "must be at least 50 (so fan-out is realistic)",
            });
        }
        if self.ping_interval.is_zero() {
            return Err(ConfigError::Invalid {
                flag: "--ping-interval",
                value: humantime::format_duration(self.ping_interval).to_string(),
                reason: "must be above zero",
            });
        }
        if self.idle_timeout < self.ping_interval {
            return Err(ConfigError::Invalid {
                flag: "--idle-timeout",
                value: humantime::format_duration(self.idle_timeout).to_string(),
                reason: "must be at least --ping-interval",
            });
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return Err(ConfigError::Invalid {
                flag: "--tls-cert",
                value: format!("{:?}", self.tls_cert),
                reason: "--tls-cert and --tls-key go together",
            });
        }
        self.scale.validate()?;
        self.derived.validate()?;
        self.book.validate()?;
        if self.shards > 256 {
            return Err(ConfigError::Invalid {
                flag: "--shards",
                value: self.shards.to_string(),
                reason: "at most 256",
            });
        }
        Ok(())
    }

    /// Settings that are valid but probably a mistake, each as a sentence naming its flag
    /// (`main` logs them at start-up).
    pub fn warnings(&self) -> Vec<String> {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let mut warnings = self.unauthenticated_surfaces();
        if self.shards > cpus {
            warnings.push(format!(
                "--shards {} on {cpus} usable CPUs: shard threads will take turns on the \
                 cores and add latency; 0 picks one per CPU less one",
                self.shards
            ));
        }
        warnings
    }
}

/// Fewest `--demo-symbols`: `--help` promises a realistic fan-out.
const MIN_DEMO_SYMBOLS: usize = 50;
