//! A relay proves who it is to a NATS server that demands it and trusts the server it is
//! told to: real `nats-server` processes requiring a token, a user and password, or TLS
//! with a certificate minted here. The relay given the right secret file (or CA) starts and
//! serves; without it, it is refused and says why, never showing the secret.

mod nats_common;
mod ops_common;
mod support;

use std::path::{Path, PathBuf};

use nats_common::{NatsServer, free_port, scratch_dir};
use ops_common::{Spawned, launch, spawn};

/// A scratch directory removed when the test ends, passed or failed.
struct Scratch(PathBuf);

impl Scratch {
    fn new(name: &str) -> Self {
        Self(scratch_dir(name))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// `text` in the file `name` of `dir`.
fn write(dir: &Path, name: &str, text: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, text).expect("write a test file");
    path
}

/// A sequencer on `url` with `extra` flags, started: its banner came, so it reached NATS
/// and opened the stream.
fn sequencer(url: &str, extra: &[&str]) -> Spawned {
    let mut args = vec!["--role", "sequencer", "--nats", url];
    args.extend_from_slice(extra);
    spawn(&args, &[])
}

/// A sequencer on `url` that cannot connect: the log line saying why, once it tried.
fn refused(url: &str, extra: &[&str], why: &str) -> String {
    let mut args = vec!["--role", "sequencer", "--nats", url];
    args.extend_from_slice(extra);
    let relay = launch(&args, &[]);
    relay.stderr_line(
        |l| l.contains("NATS not reachable yet") && l.to_lowercase().contains(why),
        why,
    )
}

#[test]
fn a_token_from_its_file_is_accepted_and_never_logged() {
    const TOKEN: &str = "t0ken-8c1d4f";
    let port = free_port();
    let Some(nats) = NatsServer::start_with("token", port, vec!["--auth".into(), TOKEN.into()])
    else {
        return;
    };
    let scratch = Scratch::new("token-files");
    let dir = scratch.0.as_path();
    let file = write(dir, "token", &format!("{TOKEN}\n"));
    let line = refused(&nats.url(), &[], "authorization");
    assert!(line.contains("--nats"), "{line}");
    let relay = sequencer(&nats.url(), &["--nats-token-file", file.to_str().unwrap()]);
    let (status, body) = ops_common::http_get(relay.http, "GET", "/ready");
    assert_eq!((status, body.as_str()), (200, r#"{"status":"ready"}"#));
    while let Ok(line) = relay.stderr.try_recv() {
        assert!(!line.contains(TOKEN), "the token was logged: {line}");
    }
}

#[test]
fn a_user_and_password_file_are_accepted() {
    let port = free_port();
    let flags = ["--user", "feed", "--pass", "pa55-word"].map(String::from);
    let Some(nats) = NatsServer::start_with("user", port, flags.to_vec()) else {
        return;
    };
    let scratch = Scratch::new("user-files");
    let dir = scratch.0.as_path();
    let wrong = write(dir, "wrong", "not-it\n");
    let right = write(dir, "right", "pa55-word\n");
    let with = |file: &Path| {
        vec![
            "--nats-user".to_owned(),
            "feed".to_owned(),
            "--nats-password-file".to_owned(),
            file.display().to_string(),
        ]
    };
    let args = with(&wrong);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    refused(&nats.url(), &args, "authorization");
    let args = with(&right);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let relay = sequencer(&nats.url(), &args);
    assert_eq!(ops_common::http_get(relay.http, "GET", "/ready").0, 200);
}

#[test]
fn tls_to_a_server_signed_by_the_given_ca_and_refused_without_it() {
    let certified =
        rcgen::generate_simple_self_signed(vec!["127.0.0.1".into(), "localhost".into()])
            .expect("a self-signed certificate");
    let scratch = Scratch::new("tls-files");
    let dir = scratch.0.as_path();
    let cert = write(dir, "cert.pem", &certified.cert.pem());
    let key = write(dir, "key.pem", &certified.signing_key.serialize_pem());
    let port = free_port();
    let flags = vec![
        "--tls".to_owned(),
        "--tlscert".to_owned(),
        cert.display().to_string(),
        "--tlskey".to_owned(),
        key.display().to_string(),
    ];
    let Some(_nats) = NatsServer::start_with("tls", port, flags) else {
        return;
    };
    let url = format!("tls://127.0.0.1:{port}");
    refused(&url, &[], "certificate");
    let relay = sequencer(&url, &["--nats-ca", cert.to_str().unwrap()]);
    assert_eq!(ops_common::http_get(relay.http, "GET", "/ready").0, 200);
}
