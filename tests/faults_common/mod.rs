//! Real parts for the fault tests: a live feed that keeps publishing through relay restarts,
//! Rust clients (`tickrelay-client`) read on their own tasks into a checker of
//! exactly-once-or-told delivery, a TCP proxy that can stop forwarding without closing, and
//! the relay binary on fixed ports (so a killed relay comes back where its clients expect it).
#![allow(dead_code, unreachable_pub)]

use std::collections::{BTreeMap, HashMap};
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering::SeqCst};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tickrelay_client::{Backoff, Client, Encoding, Gap, Item, Options, Reset};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// A free loopback address (bound, read, released): for a relay that must restart on it.
pub fn free_addr() -> SocketAddr {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a free port");
    listener.local_addr().expect("its address")
}

/// Fast reconnects: 20 ms doubling to 200 ms.
pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    }
}

/// `GET path` answered with 200, `false` on any failure (the relay may be down).
pub async fn answers(addr: SocketAddr, path: &str) -> bool {
    body(addr, path)
        .await
        .is_some_and(|(status, _)| status == 200)
}

/// `GET path`: (status, body), `None` if the relay is not there.
pub async fn body(addr: SocketAddr, path: &str) -> Option<(u16, String)> {
    let exchange = async {
        let mut stream = TcpStream::connect(addr).await.ok()?;
        let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).await.ok()?;
        let mut out = Vec::new();
        stream.read_to_end(&mut out).await.ok()?;
        let text = String::from_utf8_lossy(&out).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let (_, body) = text.split_once("\r\n\r\n")?;
        Some((status, body.to_owned()))
    };
    tokio::time::timeout(Duration::from_secs(5), exchange)
        .await
        .ok()
        .flatten()
}

/// `/stats` as JSON (`Null` when the relay does not answer).
pub async fn stats(addr: SocketAddr) -> serde_json::Value {
    body(addr, "/stats")
        .await
        .and_then(|(_, b)| serde_json::from_str(&b).ok())
        .unwrap_or_default()
}

/// The relay's newest seq of `symbol` (`/price`), 0 if unknown.
pub async fn relay_seq(addr: SocketAddr, symbol: &str) -> u64 {
    body(addr, &format!("/price/{symbol}"))
        .await
        .and_then(|(_, b)| serde_json::from_str::<serde_json::Value>(&b).ok())
        .and_then(|v| v["seq"].as_u64())
        .unwrap_or(0)
}

/// The `tickrelay` binary on fixed loopback ports; SIGKILLed and reaped on drop.
pub struct Process {
    pub http: SocketAddr,
    pub ingest: SocketAddr,
    child: Option<Child>,
    args: Vec<String>,
    env: Vec<(String, String)>,
}

impl Process {
    /// Starts the binary on fresh free ports with `args` and `env` (nothing else inherited)
    /// and waits for `/ready`.
    pub async fn start(args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut process = Self {
            http: free_addr(),
            ingest: free_addr(),
            child: None,
            args: args.iter().map(|a| (*a).to_owned()).collect(),
            env: env
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        };
        process.spawn().await;
        process
    }

    async fn spawn(&mut self) {
        let child = Command::new(env!("CARGO_BIN_EXE_tickrelay"))
            .args(["--listen", &self.http.to_string()])
            .args(["--ingest-tcp", &self.ingest.to_string()])
            .args(["--ingest-tcp-protobuf", &free_addr().to_string()])
            .args(&self.args)
            .env_clear()
            .envs(self.env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn tickrelay");
        self.child = Some(child);
        let http = self.http;
        wait_for("the relay to answer /ready", || answers(http, "/ready")).await;
    }

    /// `kill -9`: no shutdown, no close frames, no flush; the process is reaped.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            child.kill().expect("SIGKILL the relay");
            child.wait().expect("reap the relay");
        }
    }

    /// Starts the binary again on the same ports (a new history: seqs from 1, a new epoch).
    pub async fn restart(&mut self) {
        self.kill();
        self.spawn().await;
    }
}

impl Drop for Process {
    fn drop(&mut self) {
        self.kill();
    }
}

/// How long any one expectation may take.
pub const WAIT: Duration = Duration::from_secs(20);

/// Polls `cond` every 20 ms until it holds; fails naming `what` after [`WAIT`].
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out after {WAIT:?} waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A live feed into a relay's NDJSON ingest: one tick of each symbol every `pace`, `ts_ns`
/// counting up across the whole feed. A lost ingest connection (the relay was killed) is
/// reconnected until the feed stops.
pub struct Feed {
    stop: Arc<AtomicBool>,
    /// Ticks written to an ingest socket that took them.
    pub written: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<u64>,
}

impl Feed {
    pub fn start(ingest: SocketAddr, symbols: &[&str], pace: Duration) -> Self {
        let stop = Arc::new(AtomicBool::new(false));
        let written = Arc::new(AtomicU64::new(0));
        let symbols: Vec<String> = symbols.iter().map(|s| (*s).to_owned()).collect();
        let (halt, count) = (stop.clone(), written.clone());
        let task = tokio::spawn(async move {
            let mut ts_ns = 0u64;
            while !halt.load(SeqCst) {
                let Ok(mut socket) = TcpStream::connect(ingest).await else {
                    tokio::time::sleep(Duration::from_millis(20)).await;
                    continue;
                };
                while !halt.load(SeqCst) {
                    let mut lines = String::new();
                    for symbol in &symbols {
                        ts_ns += 1;
                        lines.push_str(&format!(
                            "{{\"symbol\":\"{symbol}\",\"price\":{}.25,\"size\":1.0,\"ts_ns\":{ts_ns}}}\n",
                            100 + ts_ns % 50
                        ));
                    }
                    if socket.write_all(lines.as_bytes()).await.is_err() {
                        break;
                    }
                    count.fetch_add(symbols.len() as u64, SeqCst);
                    tokio::time::sleep(pace).await;
                }
            }
            ts_ns
        });
        Self {
            stop,
            written,
            task,
        }
    }

    /// Stops publishing; returns once the feed's task has ended.
    pub async fn stop(self) {
        self.stop.store(true, SeqCst);
        self.task.await.expect("the feed task ends");
    }
}

/// What one client was told, checked as each item arrives: per symbol, each tick or
/// snapshot is the next seq, a gap names exactly the seqs after the last one, or a reset
/// came first. A violation is recorded (`violations`), never silently absorbed.
#[derive(Debug, Default)]
pub struct Seen {
    pub last: HashMap<String, u64>,
    pending_reset: HashMap<String, Reset>,
    /// Each symbol's (seq, ts_ns, recv_ns) delivered since its last reset.
    pub ticks: BTreeMap<String, Vec<(u64, u64, u64)>>,
    pub gaps: Vec<Gap>,
    pub resets: Vec<Reset>,
    pub connects: usize,
    pub disconnects: Vec<String>,
    pub errors: Vec<String>,
    pub violations: Vec<String>,
    /// Set when the stream ended or failed (it never should here).
    pub ended: Option<String>,
}

impl Seen {
    fn feed(&mut self, item: &Item) {
        match item {
            Item::Tick(t) | Item::Snapshot(t) => {
                let s = &t.symbol;
                if let Some(reset) = self.pending_reset.remove(s) {
                    if reset.seq != t.seq {
                        self.violations
                            .push(format!("{s}: reset to {} then seq {}", reset.seq, t.seq));
                    }
                    self.ticks.insert(s.clone(), Vec::new());
                } else if let Some(&last) = self.last.get(s)
                    && t.seq != last + 1
                {
                    self.violations.push(format!(
                        "{s}: seq {} after {last}: a silent hole or a repeat",
                        t.seq
                    ));
                }
                self.last.insert(s.clone(), t.seq);
                let entry = self.ticks.entry(s.clone()).or_default();
                entry.push((t.seq, t.ts_ns, t.recv_ns));
            }
            Item::Gap(g) => {
                let s = g.key.name().to_owned();
                if let Some(&last) = self.last.get(&s)
                    && g.from != last + 1
                {
                    self.violations
                        .push(format!("{s}: gap {g:?} does not start after {last}"));
                }
                self.last.insert(s, g.to);
                self.gaps.push(g.clone());
            }
            Item::Reset(r) => {
                self.pending_reset
                    .insert(r.key.name().to_owned(), r.clone());
                self.resets.push(r.clone());
            }
            Item::Connected(_) => self.connects += 1,
            Item::Disconnected(d) => self.disconnects.push(d.reason.clone()),
            Item::Error(e) => self.errors.push(e.code.clone()),
            Item::Undecodable(u) => self.violations.push(format!("undecodable: {u:?}")),
            // The fault tests subscribe to symbols only.
            Item::Event(_)
            | Item::Bar(_)
            | Item::BarSnapshot(_)
            | Item::Ticker(_)
            | Item::Book(_)
            | Item::BookResync(_) => {}
        }
    }

    /// The last seq delivered (or skipped by a gap) of `symbol`.
    pub fn at(&self, symbol: &str) -> u64 {
        self.last.get(symbol).copied().unwrap_or(0)
    }

    /// Resets delivered for `symbol`.
    pub fn resets_of(&self, symbol: &str) -> usize {
        self.resets
            .iter()
            .filter(|r| r.key.name() == symbol)
            .count()
    }
}

/// A Rust client read on its own task into a shared [`Seen`].
pub struct Reader {
    pub name: String,
    pub seen: Arc<Mutex<Seen>>,
    task: tokio::task::JoinHandle<()>,
}

impl Reader {
    /// Connects to `url` with `options` (plus fast reconnects) and reads until dropped.
    pub async fn connect(name: &str, url: &str, options: Options) -> Self {
        let mut client =
            tokio::time::timeout(WAIT, Client::connect(url, options.backoff(fast_backoff())))
                .await
                .unwrap_or_else(|_| panic!("{name}: connect within {WAIT:?}"))
                .unwrap_or_else(|e| panic!("{name}: connect: {e}"));
        let seen = Arc::new(Mutex::new(Seen::default()));
        let into = seen.clone();
        let task = tokio::spawn(async move {
            loop {
                let item = client.next().await;
                let mut seen = into.lock().expect("no reader panics holding it");
                match item {
                    Some(Ok(item)) => seen.feed(&item),
                    Some(Err(e)) => {
                        seen.ended = Some(e.to_string());
                        return;
                    }
                    None => {
                        seen.ended = Some("the stream ended".into());
                        return;
                    }
                }
            }
        });
        Self {
            name: name.to_owned(),
            seen,
            task,
        }
    }

    /// A look at what it has seen so far.
    pub fn with<T>(&self, look: impl FnOnce(&Seen) -> T) -> T {
        look(&self.seen.lock().expect("no reader panics holding it"))
    }

    /// [`Reader::with`] for a wait's condition: a client misled meanwhile fails the test at
    /// once, naming how, rather than after the wait.
    pub fn check<T>(&self, look: impl FnOnce(&Seen) -> T) -> T {
        self.with(|s| {
            assert!(s.violations.is_empty(), "{}: {:?}", self.name, s.violations);
            assert!(s.ended.is_none(), "{}: {:?}", self.name, s.ended);
            look(s)
        })
    }

    /// Fails the test on anything this client was told wrongly or not at all.
    pub fn assert_never_misled(&self) {
        self.with(|s| {
            assert!(s.violations.is_empty(), "{}: {:?}", self.name, s.violations);
            assert!(s.errors.is_empty(), "{}: errors {:?}", self.name, s.errors);
            assert!(s.ended.is_none(), "{}: {:?}", self.name, s.ended);
        });
    }
}

impl Drop for Reader {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Clients in every encoding: `n` readers of `symbols`, cycling JSON, protobuf, gzip.
pub async fn readers(url: &str, symbols: &[&str], n: usize, liveness: Duration) -> Vec<Reader> {
    let encodings = [Encoding::Json, Encoding::Protobuf, Encoding::Gzip];
    let mut all = Vec::new();
    for i in 0..n {
        let encoding = encodings[i % encodings.len()];
        let options = Options::new()
            .symbols(symbols.iter().copied())
            .encoding(encoding)
            .liveness_timeout(liveness);
        all.push(Reader::connect(&format!("client {i} ({encoding:?})"), url, options).await);
    }
    all
}

/// A TCP proxy whose connections can stop forwarding (both ways, sockets kept open: the
/// network went quiet, nobody was told) and forward again, and that can refuse new ones.
/// Bytes read before a pause are written after it: a paused stream resumes intact.
pub struct Proxy {
    pub addr: SocketAddr,
    paused: watch::Sender<bool>,
    down: Arc<AtomicBool>,
    /// Connections refused while down.
    pub refused: Arc<AtomicU64>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let (paused, _) = watch::channel(false);
        let down = Arc::new(AtomicBool::new(false));
        let refused = Arc::new(AtomicU64::new(0));
        let (pause, is_down, refusals) = (paused.clone(), down.clone(), refused.clone());
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                if is_down.load(SeqCst) {
                    refusals.fetch_add(1, SeqCst);
                    continue;
                }
                let Ok(server) = TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                tokio::spawn(pipe(client_read, server_write, pause.subscribe()));
                tokio::spawn(pipe(server_read, client_write, pause.subscribe()));
            }
        });
        Self {
            addr,
            paused,
            down,
            refused,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Stops forwarding on every connection, present and future, keeping them open.
    pub fn pause(&self) {
        self.paused.send_replace(true);
    }

    /// Forwards again, starting with what was read before the pause.
    pub fn resume(&self) {
        self.paused.send_replace(false);
    }

    /// Refuses (accepts and closes) new connections while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// One direction of a proxied connection: read, wait out any pause, write. Ends (closing
/// the write side) when the reader ends or the writer fails.
async fn pipe(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut paused: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 16 * 1024];
    loop {
        if paused.wait_for(|p| !*p).await.is_err() {
            return;
        }
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(n) => n,
        };
        if paused.wait_for(|p| !*p).await.is_err() || to.write_all(&buf[..n]).await.is_err() {
            return;
        }
    }
}
