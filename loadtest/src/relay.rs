//! Launching the server under test (`--spawn`) and talking HTTP to it.
//!
//! The server (the relay, a reference server, or nats-server, as a [`Launch`] describes it) is
//! started on free loopback ports with its output sent to a log file, waited on until its
//! health probe answers 200, and stopped with SIGTERM (SIGKILL after a grace period). Dropping
//! a [`RelayProcess`] that was not stopped kills it: a harness that fails halfway never leaves
//! a server behind.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use rustix::process::{Pid, Signal, kill_process};

/// How to start a server, and where it will listen once started.
#[derive(Debug)]
pub struct Launch {
    pub binary: PathBuf,
    /// Every argument.
    pub args: Vec<String>,
    /// WebSocket (and, for the relay, HTTP) address.
    pub listen: SocketAddr,
    /// Where the publisher writes JSON ticks (nats-server: its NATS port).
    pub ingest_json: SocketAddr,
    /// Where the publisher writes protobuf ticks.
    pub ingest_protobuf: SocketAddr,
    /// `GET` here answers 200 once the server is up.
    pub health: (SocketAddr, String),
    /// `GET` here answers its JSON stats (the relay's `/stats`).
    pub stats: (SocketAddr, String),
    /// Files the server reads while it runs (nats-server's configuration): removed with it.
    pub scratch: Option<tempfile::TempDir>,
}

impl Launch {
    /// `binary` with the relay's address flags on free ports (`--listen`, `--ingest-tcp`,
    /// `--ingest-tcp-protobuf`), after `leading` (a subcommand) and before `extra`: the relay,
    /// and this harness as a floor or naive server.
    pub fn with_relay_flags(binary: &Path, leading: &[String], extra: &[String]) -> Result<Self> {
        let listen = free_addr()?;
        let ingest_json = free_addr()?;
        let ingest_protobuf = free_addr()?;
        let mut args = leading.to_vec();
        args.extend([
            "--listen".to_owned(),
            listen.to_string(),
            "--ingest-tcp".to_owned(),
            ingest_json.to_string(),
            "--ingest-tcp-protobuf".to_owned(),
            ingest_protobuf.to_string(),
        ]);
        args.extend(extra.iter().cloned());
        Ok(Self {
            binary: binary.to_owned(),
            args,
            listen,
            ingest_json,
            ingest_protobuf,
            health: (listen, "/health".into()),
            stats: (listen, "/stats".into()),
            scratch: None,
        })
    }
}

/// A server this harness started.
#[derive(Debug)]
pub struct RelayProcess {
    child: Option<Child>,
    /// Process id, for /proc.
    pub pid: u32,
    /// The command line it runs with.
    pub command: Vec<String>,
    /// WebSocket + HTTP address.
    pub listen: SocketAddr,
    /// JSON-lines ingest.
    pub ingest_json: SocketAddr,
    /// Protobuf ingest.
    pub ingest_protobuf: SocketAddr,
    /// Where its JSON stats are (`GET`).
    pub stats: (SocketAddr, String),
    /// Where its stdout and stderr go.
    pub log: PathBuf,
    health: (SocketAddr, String),
    /// Kept until the process is gone.
    _scratch: Option<tempfile::TempDir>,
}

impl RelayProcess {
    /// Starts the server `launch` describes, its output into `log`, and waits until it is
    /// healthy.
    pub fn spawn(launch: Launch, log: &Path, ready_within: Duration) -> Result<Self> {
        let out = File::create(log).with_context(|| format!("creating {}", log.display()))?;
        let child = Command::new(&launch.binary)
            .args(&launch.args)
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .spawn()
            .with_context(|| format!("starting {}", launch.binary.display()))?;
        let mut command = vec![launch.binary.display().to_string()];
        command.extend(launch.args);
        let mut relay = Self {
            pid: child.id(),
            child: Some(child),
            command,
            listen: launch.listen,
            ingest_json: launch.ingest_json,
            ingest_protobuf: launch.ingest_protobuf,
            stats: launch.stats,
            log: log.to_owned(),
            health: launch.health,
            _scratch: launch.scratch,
        };
        relay.wait_healthy(ready_within)?;
        Ok(relay)
    }

    fn wait_healthy(&mut self, within: Duration) -> Result<()> {
        let deadline = Instant::now() + within;
        let (addr, path) = self.health.clone();
        loop {
            self.check_alive()?;
            if let Ok((200, _)) = http_get(addr, &path, Duration::from_millis(500)) {
                return Ok(());
            }
            if Instant::now() > deadline {
                bail!(
                    "{} did not answer 200 on {path} within {within:?}; see {}",
                    self.command[0],
                    self.log.display()
                );
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// Fails if the relay has exited.
    pub fn check_alive(&mut self) -> Result<()> {
        let child = self.child.as_mut().context("relay already stopped")?;
        if let Some(status) = child.try_wait()? {
            bail!(
                "relay exited early ({status}); last log lines:\n{}",
                tail(&self.log, 20)
            );
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after `grace`; says how it ended.
    pub fn stop(mut self, grace: Duration) -> String {
        let Some(mut child) = self.child.take() else {
            return "already stopped".into();
        };
        if let Ok(Some(status)) = child.try_wait() {
            return format!("had exited before the end: {status}");
        }
        let _ = kill_process(Pid::from_child(&child), Signal::TERM);
        let deadline = Instant::now() + grace;
        while Instant::now() < deadline {
            if let Ok(Some(status)) = child.try_wait() {
                return format!("stopped on SIGTERM: {status}");
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let status = child.wait().map(|s| s.to_string()).unwrap_or_default();
        format!("did not stop within {grace:?} of SIGTERM; killed: {status}")
    }
}

impl Drop for RelayProcess {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// `GET path` over HTTP/1.1; returns the status and the body.
pub fn http_get(addr: SocketAddr, path: &str, timeout: Duration) -> Result<(u16, String)> {
    let mut stream = TcpStream::connect_timeout(&addr, timeout)?;
    stream.set_read_timeout(Some(timeout))?;
    stream.set_write_timeout(Some(timeout))?;
    // One write: `write!` on a socket sends each formatted piece as its own segment.
    let request = format!(
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nAccept: application/json\r\n\r\n"
    );
    stream.write_all(request.as_bytes())?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    parse_http_response(&raw)
}

fn parse_http_response(raw: &[u8]) -> Result<(u16, String)> {
    let head_end = memchr::memmem::find(raw, b"\r\n\r\n").context("no end of HTTP head")?;
    let head = String::from_utf8_lossy(&raw[..head_end]);
    let status = head
        .lines()
        .next()
        .and_then(|l| l.split_ascii_whitespace().nth(1))
        .and_then(|s| s.parse::<u16>().ok())
        .context("no HTTP status")?;
    let chunked = head.lines().any(|l| {
        l.split_once(':').is_some_and(|(k, v)| {
            k.trim().eq_ignore_ascii_case("transfer-encoding")
                && v.to_ascii_lowercase().contains("chunked")
        })
    });
    let body = &raw[head_end + 4..];
    let body = if chunked {
        dechunk(body)?
    } else {
        body.to_vec()
    };
    Ok((status, String::from_utf8_lossy(&body).into_owned()))
}

fn dechunk(mut body: &[u8]) -> Result<Vec<u8>> {
    let mut out = Vec::new();
    loop {
        let line_end = memchr::memmem::find(body, b"\r\n").context("truncated chunk size")?;
        let size_text = String::from_utf8_lossy(&body[..line_end]);
        let size_text = size_text.split(';').next().unwrap_or_default().trim();
        let size = usize::from_str_radix(size_text, 16).context("bad chunk size")?;
        body = &body[line_end + 2..];
        if size == 0 {
            return Ok(out);
        }
        out.extend_from_slice(body.get(..size).context("truncated chunk")?);
        body = body.get(size + 2..).context("truncated chunk end")?;
    }
}

/// A loopback address with a port free right now.
pub fn free_addr() -> Result<SocketAddr> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?)
}

/// The last `n` lines of a log file, for error messages.
pub fn tail(path: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_and_chunked_responses() {
        let plain = b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok";
        assert_eq!(parse_http_response(plain).unwrap(), (200, "ok".into()));
        let chunked =
            b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n4\r\n{\"a\"\r\n3\r\n:1}\r\n0\r\n\r\n";
        assert_eq!(
            parse_http_response(chunked).unwrap(),
            (200, "{\"a\":1}".into())
        );
        assert!(parse_http_response(b"garbage").is_err());
    }

    #[test]
    fn http_get_against_a_tiny_server() {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let server = std::thread::spawn(move || {
            let (mut s, _) = listener.accept().unwrap();
            // Read the whole request head, however the client's bytes were segmented.
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.ends_with(b"\r\n\r\n") {
                let n = s.read(&mut buf).unwrap();
                assert!(n > 0, "client closed before the end of its request head");
                head.extend_from_slice(&buf[..n]);
            }
            assert!(head.starts_with(b"GET /health HTTP/1.1\r\n"));
            s.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                .unwrap();
        });
        let got = http_get(addr, "/health", Duration::from_secs(2)).unwrap();
        assert_eq!(got, (200, "ok".into()));
        server.join().unwrap();
    }
}
