//! Spawning the real `tickrelay` binary for the operability tests (config, signals,
//! start-up errors, record/replay): free loopback ports, its stdout and stderr read line by
//! line on threads, bounded waits that say what they waited for.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError, channel};
use std::time::{Duration, Instant};

/// How long any one wait may take before the test fails naming it.
pub const WAIT: Duration = Duration::from_secs(20);

/// A relay process; killed and reaped on drop.
#[derive(Debug)]
pub struct Spawned {
    pub child: Child,
    pub stdout: Receiver<String>,
    pub stderr: Receiver<String>,
    pub http: SocketAddr,
    pub ingest: SocketAddr,
}

/// The binary with a clean environment plus `env`.
pub fn command(args: &[&str], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_tickrelay"));
    command
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    command
}

/// Runs the binary to its end: (exit code, stdout, stderr).
pub fn run(args: &[&str], env: &[(&str, &str)]) -> (Option<i32>, String, String) {
    let output = command(args, env).output().expect("run tickrelay");
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Starts a relay on free ports (plus `args`) and waits for its banner.
pub fn spawn(args: &[&str], env: &[(&str, &str)]) -> Spawned {
    let mut spawned = launch(args, env);
    spawned.banner();
    spawned
}

/// Starts a relay on free ports (plus `args`; a `--listen` among them is kept) without
/// waiting for it: [`Spawned::banner`]
/// waits, and fills in its addresses.
pub fn launch(args: &[&str], env: &[(&str, &str)]) -> Spawned {
    // A caller that names its own `--listen` (a relay restarted at the same address) keeps it.
    let listen = if args.contains(&"--listen") {
        vec![]
    } else {
        vec!["--listen", "127.0.0.1:0"]
    };
    let mut all = listen;
    // Likewise its own `--ingest-tcp` (a standby's, known before it listens).
    if !args.contains(&"--ingest-tcp") {
        all.extend_from_slice(&["--ingest-tcp", "127.0.0.1:0"]);
    }
    all.extend_from_slice(&["--ingest-tcp-protobuf", "127.0.0.1:0", "--shards", "1"]);
    all.extend_from_slice(args);
    let mut child = command(&all, env).spawn().expect("spawn tickrelay");
    let stdout = lines(child.stdout.take().expect("piped stdout"));
    let stderr = lines(child.stderr.take().expect("piped stderr"));
    Spawned {
        child,
        stdout,
        stderr,
        http: SocketAddr::from(([127, 0, 0, 1], 0)),
        ingest: SocketAddr::from(([127, 0, 0, 1], 0)),
    }
}

impl Spawned {
    /// Waits for the start-up banner and reads the bound addresses from it.
    pub fn banner(&mut self) {
        let ws = self.stdout_line(|l| l.contains("WebSocket: ws://"), "the WebSocket banner");
        self.http = between(&ws, "ws://", "/ws")
            .parse()
            .expect("banner address");
        let ingest = self.stdout_line(|l| l.contains("ingest:"), "the ingest banner");
        // An edge takes no ingest: its banner says so and names no address.
        if ingest.contains("NDJSON tcp://") {
            self.ingest = between(&ingest, "NDJSON tcp://", " ")
                .parse()
                .expect("ingest address");
        }
    }

    /// The next stdout line matching `want`, skipping others.
    pub fn stdout_line(&self, want: impl Fn(&str) -> bool, what: &str) -> String {
        next_matching(&self.stdout, want, what)
    }

    /// The next stderr (log) line matching `want`, skipping others.
    pub fn stderr_line(&self, want: impl Fn(&str) -> bool, what: &str) -> String {
        next_matching(&self.stderr, want, what)
    }

    /// Sends `signal` (e.g. `HUP`) to the process.
    pub fn signal(&self, signal: &str) {
        let status = Command::new("kill")
            .arg(format!("-{signal}"))
            .arg(self.child.id().to_string())
            .status()
            .expect("run kill");
        assert!(status.success(), "kill -{signal} failed");
    }

    /// SIGTERM, then the exit code.
    pub fn stop(mut self) -> Option<i32> {
        self.signal("TERM");
        let deadline = Instant::now() + WAIT;
        loop {
            if let Some(status) = self.child.try_wait().expect("wait for tickrelay") {
                return status.code();
            }
            assert!(
                Instant::now() < deadline,
                "tickrelay did not exit after SIGTERM"
            );
            let _ = self.stderr.recv_timeout(Duration::from_millis(50));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn next_matching(rx: &Receiver<String>, want: impl Fn(&str) -> bool, what: &str) -> String {
    let deadline = Instant::now() + WAIT;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(line) if want(&line) => return line,
            Ok(line) => seen.push(line),
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line with {what} within {WAIT:?}; saw {seen:#?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("the relay closed its output before {what}; saw {seen:#?}")
            }
        }
    }
}

fn lines(stream: impl std::io::Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        for line in BufReader::new(stream).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

fn between<'a>(text: &'a str, start: &str, end: &str) -> &'a str {
    let from = text
        .find(start)
        .map(|i| i + start.len())
        .expect("start marker");
    let rest = &text[from..];
    rest.find(end).map_or(rest, |i| &rest[..i]).trim()
}

/// A fresh temporary file path for this test (the directory is the target's tmp).
pub fn temp_path(name: &str) -> std::path::PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"));
    dir.join(format!("{}-{name}", std::process::id()))
}

/// `GET path` over a plain TCP socket: (status, body).
pub fn http_get(addr: SocketAddr, method: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}

/// `POST path` with `body`: (status, body).
pub fn http_post(addr: SocketAddr, path: &str, body: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream.set_read_timeout(Some(WAIT)).expect("timeout");
    write!(
        stream,
        "POST {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .expect("write");
    let mut text = String::new();
    stream.read_to_string(&mut text).expect("read");
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .expect("status code");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or_default().to_owned();
    (status, body)
}
