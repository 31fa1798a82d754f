//! The scale-out settings: which [`Role`] this process plays and the NATS deployment that
//! joins the roles (docs/SCALING.md): its servers, how the relay proves who it is to them
//! and the stream's replicas. Flattened into
//! [`Config`](super::Config), so each one is a flag, a `TICKRELAY_*` variable and a
//! `--config` key like every other setting. Secrets are read from files (never a flag's
//! value, which `ps` and shell histories show) and never logged.

use std::path::PathBuf;
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

    /// NATS server URLs with JetStream enabled, separated by commas
    /// (`nats://10.0.0.1:4222,nats://10.0.0.2:4222`; `tls://` for TLS): the relay connects
    /// to one and moves to another when it fails. Off by default: `--role all` needs no
    /// NATS.
    #[arg(long, value_name = "URLS")]
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

    /// Copies of the stream a JetStream cluster keeps when the sequencer creates it (1 to
    /// 5; 3 on a 3-node cluster survives the loss of any node). An existing stream keeps
    /// its own.
    #[arg(long, default_value_t = defaults::NATS_REPLICAS)]
    pub nats_replicas: usize,

    /// NATS credentials file (a user JWT and its nkey seed, as `nsc` writes it).
    #[arg(long, value_name = "FILE")]
    pub nats_creds: Option<PathBuf>,

    /// File holding an nkey seed (`SU...`) to sign the server's challenge with.
    #[arg(long, value_name = "FILE")]
    pub nats_nkey: Option<PathBuf>,

    /// NATS user name (with `--nats-password-file`).
    #[arg(long, requires = "nats_password_file")]
    pub nats_user: Option<String>,

    /// File holding the password of `--nats-user`.
    #[arg(long, value_name = "FILE", requires = "nats_user")]
    pub nats_password_file: Option<PathBuf>,

    /// File holding a NATS authentication token.
    #[arg(long, value_name = "FILE")]
    pub nats_token_file: Option<PathBuf>,

    /// PEM file of the certificate authority that signed the NATS servers' certificates
    /// (for `tls://` URLs, or servers that require TLS). Without it, the system's roots.
    #[arg(long, value_name = "FILE")]
    pub nats_ca: Option<PathBuf>,

    /// PEM client certificate, for NATS servers that verify clients (with
    /// `--nats-tls-key`).
    #[arg(long, value_name = "FILE", requires = "nats_tls_key")]
    pub nats_tls_cert: Option<PathBuf>,

    /// PEM private key of `--nats-tls-cert`.
    #[arg(long, value_name = "FILE", requires = "nats_tls_cert")]
    pub nats_tls_key: Option<PathBuf>,
}

impl Scale {
    /// Checks what clap cannot: a sequencer or an edge needs NATS; every URL is a NATS
    /// one; at most one way to authenticate; every file named is there; the stream name is
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
        if !(1..=5).contains(&self.nats_replicas) {
            return Err(ConfigError::Invalid {
                flag: "--nats-replicas",
                value: self.nats_replicas.to_string(),
                reason: "JetStream keeps 1 to 5 replicas of a stream",
            });
        }
        match &self.nats {
            Some(urls) => {
                for url in nats_urls(urls) {
                    check_url(url)?;
                }
                if nats_urls(urls).next().is_none() {
                    return Err(invalid("--nats", urls, "names no server"));
                }
            }
            None => {
                if let Some(flag) = self.access_flags().into_iter().next() {
                    return Err(ConfigError::Invalid {
                        flag,
                        value: "set".into(),
                        reason: "only means something with --nats",
                    });
                }
            }
        }
        let ways = [
            ("--nats-creds", self.nats_creds.is_some()),
            ("--nats-nkey", self.nats_nkey.is_some()),
            ("--nats-user", self.nats_user.is_some()),
            ("--nats-token-file", self.nats_token_file.is_some()),
        ];
        let mut chosen = ways.iter().filter(|(_, on)| *on).map(|(flag, _)| *flag);
        if let (Some(first), Some(second)) = (chosen.next(), chosen.next()) {
            return Err(ConfigError::Invalid {
                flag: first,
                value: second.into(),
                reason: "one way to authenticate to NATS at a time",
            });
        }
        for (flag, path) in self.files() {
            if !path.is_file() {
                return Err(invalid(
                    flag,
                    &path.display().to_string(),
                    "no such file (or not readable)",
                ));
            }
        }
        Ok(())
    }

    /// The NATS flags other than `--nats` that are set.
    fn access_flags(&self) -> Vec<&'static str> {
        let mut set: Vec<&'static str> = self.files().into_iter().map(|(f, _)| f).collect();
        if self.nats_user.is_some() {
            set.push("--nats-user");
        }
        set
    }

    /// Every file flag that is set, and its path.
    fn files(&self) -> Vec<(&'static str, &PathBuf)> {
        [
            ("--nats-creds", &self.nats_creds),
            ("--nats-nkey", &self.nats_nkey),
            ("--nats-password-file", &self.nats_password_file),
            ("--nats-token-file", &self.nats_token_file),
            ("--nats-ca", &self.nats_ca),
            ("--nats-tls-cert", &self.nats_tls_cert),
            ("--nats-tls-key", &self.nats_tls_key),
        ]
        .into_iter()
        .filter_map(|(flag, path)| path.as_ref().map(|p| (flag, p)))
        .collect()
    }
}

/// The server URLs of `--nats`, trimmed, empty entries skipped.
pub fn nats_urls(urls: &str) -> impl Iterator<Item = &str> {
    urls.split(',').map(str::trim).filter(|u| !u.is_empty())
}

/// `url` with any `user:password@` left out: for logs and error messages.
pub fn redacted(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://***@{}", &url[..scheme], &url[at + 1..])
        }
        _ => url.to_owned(),
    }
}

fn check_url(url: &str) -> Result<(), ConfigError> {
    let scheme = url.split_once("://").map(|(s, _)| s);
    if !matches!(scheme, Some("nats" | "tls")) {
        return Err(invalid(
            "--nats",
            &redacted(url),
            "expected nats://HOST:PORT or tls://HOST:PORT",
        ));
    }
    url.parse::<async_nats::ServerAddr>()
        .map(|_| ())
        .map_err(|_| invalid("--nats", &redacted(url), "not a server address"))
}

fn invalid(flag: &'static str, value: &str, reason: &'static str) -> ConfigError {
    ConfigError::Invalid {
        flag,
        value: value.to_owned(),
        reason,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn scale() -> Scale {
        crate::config::Config::for_tests().scale
    }

    #[test]
    fn a_sequencer_or_edge_without_nats_is_refused_naming_the_flag() {
        for role in [Role::Sequencer, Role::Edge] {
            let scale = Scale { role, ..scale() };
            let error = scale.validate().unwrap_err().to_string();
            assert!(error.starts_with("--role "), "{error}");
            assert!(error.contains("--nats"), "{error}");
        }
        assert!(scale().validate().is_ok(), "all needs no NATS");
        let bad = Scale {
            nats_stream: "a.b".into(),
            ..scale()
        };
        assert!(
            bad.validate()
                .unwrap_err()
                .to_string()
                .contains("--nats-stream")
        );
    }

    #[test]
    fn urls_are_nats_or_tls_and_their_passwords_never_shown() {
        let with = |urls: &str| Scale {
            nats: Some(urls.into()),
            ..scale()
        };
        assert!(
            with("nats://127.0.0.1:4222, tls://n2:4222")
                .validate()
                .is_ok()
        );
        let error = with("http://u:secret@h:1")
            .validate()
            .unwrap_err()
            .to_string();
        assert!(error.starts_with("--nats http://***@h:1"), "{error}");
        assert!(!error.contains("secret"), "{error}");
        assert!(with(" , ").validate().is_err());
        assert_eq!(redacted("nats://a:b@h:4222"), "nats://***@h:4222");
        assert_eq!(redacted("nats://h:4222"), "nats://h:4222");
    }

    #[test]
    fn one_way_to_authenticate_and_files_that_exist() {
        let file = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("Cargo.toml");
        let base = Scale {
            nats: Some("nats://h:4222".into()),
            ..scale()
        };
        let two = Scale {
            nats_creds: Some(file.clone()),
            nats_token_file: Some(file.clone()),
            ..base.clone()
        };
        let error = two.validate().unwrap_err().to_string();
        assert!(
            error.contains("--nats-creds") && error.contains("--nats-token-file"),
            "{error}"
        );
        let missing = Scale {
            nats_ca: Some(file.with_file_name("no-such-ca.pem")),
            ..base.clone()
        };
        assert!(
            missing
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("--nats-ca ")
        );
        let without_nats = Scale {
            nats_token_file: Some(file),
            ..scale()
        };
        assert!(
            without_nats
                .validate()
                .unwrap_err()
                .to_string()
                .starts_with("--nats-token-file ")
        );
        let replicas = Scale {
            nats_replicas: 7,
            ..base
        };
        assert!(replicas.validate().is_err());
    }
}
