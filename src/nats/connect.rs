//! [`connect`]: one connection to the NATS deployment of `--nats`, as operators run it:
//! several servers (the client moves to another when one fails, and learns the cluster's
//! others from the server), `nats://` or `tls://` with `--nats-ca` and an optional client
//! certificate, and one way to authenticate (a credentials file, an nkey seed, a user and
//! password, or a token), each secret read from its file here and never logged.

use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use tokio::sync::watch;
use tracing::{info, warn};

use super::{Connection, NatsError};
use crate::config::Scale;
use crate::config::scale::{nats_urls, redacted};
use crate::error::ErrorCode;
use crate::metrics::{self, Metrics};

/// Connects to `--nats`, counting connection losses and returns in `metrics`. `name`
/// (e.g. `tickrelay edge`) is how the servers list the connection.
pub async fn connect(
    scale: &Scale,
    name: &str,
    metrics: Arc<Metrics>,
) -> Result<Connection, NatsError> {
    let urls = scale.nats.as_deref().unwrap_or_default();
    let shown = nats_urls(urls).map(redacted).collect::<Vec<_>>().join(",");
    let failed = |reason: String| NatsError::Connect {
        url: shown.clone(),
        reason,
    };
    let returns = Arc::new(watch::channel(0u64).0);
    let disturbed = returns.clone();
    let events = metrics.clone();
    let lost = Arc::new(AtomicBool::new(false));
    let options = access(scale)
        .await
        .map_err(failed)?
        .name(name)
        .connection_timeout(CONNECT_TIMEOUT)
        // Retries forever with backoff (the client's default); an edge keeps its clients.
        .event_callback(move |event| {
            let (metrics, lost, returns) = (events.clone(), lost.clone(), returns.clone());
            async move {
                match event {
                    async_nats::Event::Connected => {
                        metrics.nats.connected.store(1, Relaxed);
                        // The first connect fires this event too: only a return after a
                        // loss is a re-establishment (consumers re-create themselves on it).
                        if lost.swap(false, Relaxed) {
                            metrics::add(&metrics.nats.reconnects, 1);
                            returns.send_modify(|n| *n += 1);
                            info!("NATS connection re-established");
                        } else {
                            info!("NATS connected");
                        }
                    }
                    async_nats::Event::Disconnected => {
                        lost.store(true, Relaxed);
                        metrics.nats.connected.store(0, Relaxed);
                        metrics.count_error(ErrorCode::NatsUnavailable);
                        warn!("NATS connection lost; reconnecting");
                    }
                    other => info!(event = %other, "NATS"),
                }
            }
        });
    let client = options
        .connect(nats_urls(urls).collect::<Vec<_>>())
        .await
        .map_err(|e| failed(e.to_string()))?;
    metrics.nats.connected.store(1, Relaxed);
    Ok(Connection { client, disturbed })
}

/// The options naming who the relay is and what it trusts: the CA and client certificate,
/// and the one way to authenticate. Errors name the flag whose file could not be read.
async fn access(scale: &Scale) -> Result<async_nats::ConnectOptions, String> {
    let mut options = async_nats::ConnectOptions::new();
    if let Some(path) = &scale.nats_creds {
        options = options
            .credentials_file(path)
            .await
            .map_err(|e| format!("--nats-creds {}: {e}", path.display()))?;
    }
    if let Some(path) = &scale.nats_nkey {
        options = options.nkey(secret("--nats-nkey", path)?);
    }
    if let (Some(user), Some(path)) = (&scale.nats_user, &scale.nats_password_file) {
        options = options.user_and_password(user.clone(), secret("--nats-password-file", path)?);
    }
    if let Some(path) = &scale.nats_token_file {
        options = options.token(secret("--nats-token-file", path)?);
    }
    if let Some(path) = &scale.nats_ca {
        options = options.add_root_certificates(path.clone());
    }
    if let (Some(cert), Some(key)) = (&scale.nats_tls_cert, &scale.nats_tls_key) {
        options = options.add_client_certificate(cert.clone(), key.clone());
    }
    Ok(options)
}

/// The first line of a secret file, without surrounding whitespace. The error names the
/// flag and the path, never the content.
fn secret(flag: &str, path: &std::path::Path) -> Result<String, String> {
    let text =
        std::fs::read_to_string(path).map_err(|e| format!("{flag} {}: {e}", path.display()))?;
    let line = text.lines().map(str::trim).find(|l| !l.is_empty());
    line.map(str::to_owned)
        .ok_or_else(|| format!("{flag} {}: the file is empty", path.display()))
}

/// How long a connect at start-up may take before the relay gives up, naming `--nats`.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::Config;

    /// The secrets come from files, first non-blank line, trimmed; a server that wants them
    /// lets the relay in with them and not without.
    #[tokio::test]
    async fn a_token_or_a_user_and_password_read_from_files_lets_the_relay_in() {
        use super::super::nats_server::{NatsServer, free_port, scratch_dir};
        let args = |list: &[&str]| list.iter().map(|a| (*a).to_owned()).collect();
        let Some(by_token) =
            NatsServer::start_with("token", free_port(), args(&["--auth", "t0ken"]))
        else {
            return;
        };
        let Some(by_user) = NatsServer::start_with(
            "userpass",
            free_port(),
            args(&["--user", "relay", "--pass", "pa55"]),
        ) else {
            return;
        };
        let dir = scratch_dir("secrets");
        std::fs::create_dir_all(&dir).expect("a directory");
        let file = |name: &str, text: &str| {
            let path = dir.join(name);
            std::fs::write(&path, text).expect("write");
            path
        };
        let metrics = Arc::new(Metrics::new(1));
        let attempt = async |scale: &Scale| connect(scale, "unit test", metrics.clone()).await;

        let mut config = Config::for_tests();
        config.scale.nats = Some(by_token.url());
        config.scale.nats_token_file = Some(file("token", "\n  t0ken  \nignored\n"));
        let connection = attempt(&config.scale).await.expect("the token lets it in");
        assert!(connection.client.flush().await.is_ok());
        config.scale.nats_token_file = Some(file("wrong", "other\n"));
        assert!(
            attempt(&config.scale).await.is_err(),
            "another token is refused"
        );
        config.scale.nats_token_file = Some(file("blank", " \n\n"));
        let Err(NatsError::Connect { reason, .. }) = attempt(&config.scale).await else {
            panic!("an empty secret file is an error")
        };
        assert!(
            reason.contains("--nats-token-file") && reason.contains("the file is empty"),
            "{reason}"
        );

        let mut config = Config::for_tests();
        config.scale.nats = Some(by_user.url());
        config.scale.nats_user = Some("relay".to_owned());
        config.scale.nats_password_file = Some(file("password", "pa55\n"));
        let connection = attempt(&config.scale)
            .await
            .expect("user and password let it in");
        assert!(connection.client.flush().await.is_ok());
        config.scale.nats_password_file = Some(file("wrong-password", "pass\n"));
        assert!(
            attempt(&config.scale).await.is_err(),
            "a wrong password is refused"
        );
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[tokio::test]
    async fn a_lost_connection_that_returns_is_counted_and_told_once() {
        let Some(mut server) = super::super::nats_server::NatsServer::start("returns") else {
            return;
        };
        let mut config = Config::for_tests();
        config.scale.nats = Some(server.url());
        let metrics = Arc::new(Metrics::new(1));
        let connection = connect(&config.scale, "unit test", metrics.clone())
            .await
            .expect("connect");
        let mut returns = connection.disturbed.subscribe();
        let nats = &metrics.nats;
        assert_eq!(nats.connected.load(Relaxed), 1);
        server.kill();
        let lost = async {
            while nats.connected.load(Relaxed) == 1 {
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(20), lost)
            .await
            .expect("the loss seen");
        server.resume();
        tokio::time::timeout(Duration::from_secs(30), returns.changed())
            .await
            .expect("the return told")
            .expect("the sender lives");
        assert_eq!(*returns.borrow_and_update(), 1, "one return");
        assert_eq!(
            (nats.connected.load(Relaxed), nats.reconnects.load(Relaxed)),
            (1, 1)
        );
    }
}
