//! A real `nats-server` with JetStream for the scale-out tests, started on a free loopback
//! port with its store in a fresh directory, and stopped (and its store removed) on drop.
//!
//! Where `nats-server` is not installed the tests say so and pass locally; under CI
//! (`CI=true`, where `.ci/run` installs it) its absence fails them.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `nats-server -js`.
#[derive(Debug)]
pub struct NatsServer {
    child: Option<Child>,
    /// Its client port on 127.0.0.1.
    pub port: u16,
    store: PathBuf,
    /// Flags beyond the store, address and port (TLS, auth, cluster).
    extra: Vec<String>,
}

/// Whether `nats-server` can be run; `false` (after saying why) when it is missing and this
/// is not CI, where its absence fails the test.
pub fn installed() -> bool {
    if Command::new("nats-server")
        .arg("--version")
        .output()
        .is_err()
    {
        let ci = std::env::var("CI").is_ok_and(|v| v == "true");
        assert!(
            !ci,
            "nats-server is not installed: CI must install it (apt-get install -y nats-server)"
        );
        eprintln!("SKIPPED: nats-server is not installed (apt-get install -y nats-server)");
        return false;
    }
    true
}

/// A free loopback port (bound, read, released).
pub fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

/// A fresh directory under the target's tmp, named for this process and `name`.
pub fn scratch_dir(name: &str) -> PathBuf {
    let dir = std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("nats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

impl NatsServer {
    /// Starts one on a free port; `None` (after saying why) when `nats-server` is missing
    /// and this is not CI.
    pub fn start(name: &str) -> Option<Self> {
        Self::start_with(name, free_port(), Vec::new())
    }

    /// Starts one on `port` with `extra` flags (TLS, auth, cluster routes).
    pub fn start_with(name: &str, port: u16, extra: Vec<String>) -> Option<Self> {
        if !installed() {
            return None;
        }
        let mut server = Self {
            child: None,
            port,
            store: scratch_dir(name),
            extra,
        };
        server.resume();
        Some(server)
    }

    /// `nats://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }

    /// Stops the server (SIGKILL: a crash, not a goodbye); its store stays for [`resume`].
    ///
    /// [`resume`]: NatsServer::resume
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts the server again on the same port and store, and waits until it accepts.
    pub fn resume(&mut self) {
        assert!(self.child.is_none(), "already running");
        let child = Command::new("nats-server")
            .args(["-js", "-sd"])
            .arg(&self.store)
            .args(["-a", "127.0.0.1", "-p", &self.port.to_string()])
            .args(&self.extra)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn nats-server");
        self.child = Some(child);
        let addr = SocketAddr::from(([127, 0, 0, 1], self.port));
        let deadline = Instant::now() + Duration::from_secs(20);
        while TcpStream::connect(addr).is_err() {
            assert!(
                Instant::now() < deadline,
                "nats-server did not listen on {addr}"
            );
            // The test's own thread, polling a child process: no shard to stall.
            #[allow(clippy::disallowed_methods)]
            std::thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for NatsServer {
    fn drop(&mut self) {
        self.kill();
        let _ = std::fs::remove_dir_all(&self.store);
    }
}
