//! A real `nats-server` with JetStream for the scale-out tests, started on a free loopback
//! port with its store in a fresh directory, and stopped (and its store removed) on drop.
//!
//! Where `nats-server` is not installed the tests say so and pass locally; under CI
//! (`CI=true`, where `.ci/run` installs it) its absence fails them. The unit tests of
//! `src/nats` include this same file (`#[path]`), so one server start serves both.
#![allow(dead_code, unreachable_pub)]

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Three nodes routed to each other, as one JetStream cluster named `name` (its meta leader
/// is elected a moment after they start); `None` as for [`NatsServer::start`].
pub fn cluster(name: &str) -> Option<Vec<NatsServer>> {
    let clients = [free_port(), free_port(), free_port()];
    let routes = [free_port(), free_port(), free_port()];
    let all_routes = routes
        .iter()
        .map(|p| format!("nats://127.0.0.1:{p}"))
        .collect::<Vec<_>>()
        .join(",");
    let mut nodes = Vec::new();
    for (i, (client, route)) in clients.iter().zip(routes).enumerate() {
        let extra = vec![
            "-n".to_owned(),
            format!("{name}-{i}"),
            "--cluster_name".to_owned(),
            name.to_owned(),
            "--cluster".to_owned(),
            format!("nats://127.0.0.1:{route}"),
            "--routes".to_owned(),
            all_routes.clone(),
        ];
        nodes.push(NatsServer::start_with(
            &format!("{name}-{i}"),
            *client,
            extra,
        )?);
    }
    Some(nodes)
}

/// The nodes' URLs, comma-separated, as `--nats` takes them.
pub fn urls(nodes: &[NatsServer]) -> String {
    nodes
        .iter()
        .map(NatsServer::url)
        .collect::<Vec<_>>()
        .join(",")
}

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
    // The lib's unit tests (src/nats) use this file too, and cargo gives them no
    // CARGO_TARGET_TMPDIR.
    let tmp = option_env!("CARGO_TARGET_TMPDIR").map_or_else(std::env::temp_dir, PathBuf::from);
    let dir = tmp.join(format!("nats-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch directory");
    dir
}

/// A sequencer's flags: `--role sequencer` on `url`, ticks only (bars and tickers through
/// NATS are nats_bars.rs's), then `extra`.
pub fn sequencer_args<'a>(url: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut args = vec![
        "--role",
        "sequencer",
        "--nats",
        url,
        "--bar-intervals",
        "off",
    ];
    args.extend_from_slice(extra);
    args
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

/// A loopback proxy in front of a `nats-server` that forwards everything except one
/// publish: the `nth` (from 1) `PUB`/`HPUB` on a subject starting with `prefix`, which it
/// swallows, as a connection that loses a message mid-window would. Stops on drop.
#[derive(Debug)]
pub struct PubDropper {
    /// The port clients connect to.
    pub port: u16,
    /// Publishes swallowed so far (0 or 1).
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
}

impl PubDropper {
    /// Starts one forwarding to `server` on 127.0.0.1.
    pub fn start(server: u16, prefix: &str, nth: usize) -> Self {
        use std::sync::Arc;
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind the proxy");
        let port = listener.local_addr().expect("proxy address").port();
        listener.set_nonblocking(true).expect("nonblocking accept");
        let dropped = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let seen = Arc::new(AtomicUsize::new(0));
        let (prefix, dropped2, stop2) = (prefix.to_owned(), dropped.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop2.load(std::sync::atomic::Ordering::Relaxed) {
                let Ok((client, _)) = listener.accept() else {
                    #[allow(clippy::disallowed_methods)]
                    std::thread::sleep(Duration::from_millis(5));
                    continue;
                };
                client.set_nonblocking(false).expect("blocking client");
                let Ok(upstream) = TcpStream::connect(("127.0.0.1", server)) else {
                    continue;
                };
                // Each protocol line goes on at once, as the client sent it.
                let _ = (client.set_nodelay(true), upstream.set_nodelay(true));
                let (mut down_r, mut up_w) = (
                    upstream.try_clone().expect("clone"),
                    client.try_clone().expect("clone"),
                );
                // Server to client: as is.
                std::thread::spawn(move || {
                    let _ = std::io::copy(&mut down_r, &mut up_w);
                    let _ = up_w.shutdown(std::net::Shutdown::Both);
                });
                let (prefix, seen, dropped) = (prefix.clone(), seen.clone(), dropped2.clone());
                // Client to server: one protocol line at a time, a publish with its body.
                std::thread::spawn(move || {
                    let _ = forward_dropping(client, upstream, &prefix, nth, &seen, &dropped);
                });
            }
        });
        Self {
            port,
            dropped,
            stop,
        }
    }

    /// `nats://127.0.0.1:PORT` of the proxy.
    pub fn url(&self) -> String {
        format!("nats://127.0.0.1:{}", self.port)
    }
}

impl Drop for PubDropper {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::Relaxed);
    }
}

fn forward_dropping(
    client: TcpStream,
    mut upstream: TcpStream,
    prefix: &str,
    nth: usize,
    seen: &std::sync::atomic::AtomicUsize,
    dropped: &std::sync::atomic::AtomicUsize,
) -> std::io::Result<()> {
    use std::io::{BufRead, BufReader, Read, Write};
    use std::sync::atomic::Ordering;
    let mut reader = BufReader::new(client);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line)? == 0 {
            return Ok(());
        }
        let text = String::from_utf8_lossy(&line).to_string();
        let words: Vec<&str> = text.split_whitespace().collect();
        let publish = matches!(words.first(), Some(&"PUB" | &"HPUB" | &"pub" | &"hpub"));
        if !publish {
            upstream.write_all(&line)?;
            continue;
        }
        // PUB subject [reply] size / HPUB subject [reply] header_size total_size
        let total: usize = words.last().and_then(|n| n.parse().ok()).unwrap_or(0);
        let mut body = vec![0u8; total + 2];
        reader.read_exact(&mut body)?;
        let ours = words.get(1).is_some_and(|s| s.starts_with(prefix));
        if ours && seen.fetch_add(1, Ordering::SeqCst) + 1 == nth {
            dropped.fetch_add(1, Ordering::SeqCst);
            continue;
        }
        upstream.write_all(&line)?;
        upstream.write_all(&body)?;
    }
}
