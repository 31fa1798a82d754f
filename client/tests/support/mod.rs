//! Real parts for the client tests: a relay in-process on fixed loopback ports (so it can be
//! stopped and started again where the client expects it), an NDJSON publisher, a TCP proxy
//! that can cut or freeze connections, and a checker of exactly-once-or-gap delivery; and,
//! for bytes no relay sends, a server of scripted frames ([`script`]).
#![allow(dead_code, unreachable_pub)]

pub mod script;

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tickrelay::{Config, Relay};
use tickrelay_client::{Backoff, Client, Gap, Item, Key, Reset, Undecodable};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

/// How long any single expectation may take before the test fails.
pub const WAIT: Duration = Duration::from_secs(20);

/// Fast reconnects for tests: 20 ms doubling to 200 ms.
pub fn fast_backoff() -> Backoff {
    Backoff {
        initial: Duration::from_millis(20),
        max: Duration::from_millis(200),
    }
}

/// A relay in this process that can be restarted on the same ports.
pub struct TestRelay {
    pub config: Config,
    handle: Option<Relay>,
}

impl TestRelay {
    pub async fn start(config: Config) -> Self {
        let handle = Relay::start(config.clone()).expect("relay starts");
        let config = Config {
            listen: handle.http_addr,
            ingest_tcp: handle.ingest_addr,
            ingest_tcp_protobuf: handle.ingest_protobuf_addr,
            ..config
        };
        let relay = Self {
            config,
            handle: Some(handle),
        };
        relay.wait_ready().await;
        relay
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.config.listen)
    }

    /// The epoch of the history the relay serves now (what `welcome` names).
    pub fn epoch(&self) -> u64 {
        self.handle.as_ref().expect("relay running").shared.epoch
    }

    /// Stops the relay: every client gets close 1001; returns once its threads are gone.
    pub async fn stop(&mut self) {
        if let Some(handle) = self.handle.take() {
            handle.shutdown();
            tokio::task::spawn_blocking(move || handle.join())
                .await
                .expect("relay threads join");
        }
    }

    /// Starts a fresh relay (a new history: seqs from 1) on the same ports.
    pub async fn restart(&mut self) {
        self.stop().await;
        self.handle = Some(Relay::start(self.config.clone()).expect("relay restarts on its ports"));
        self.wait_ready().await;
    }

    /// How many clients the relay has closed with 4008 (slow consumer).
    pub fn slow_disconnects(&self) -> u64 {
        let handle = self.handle.as_ref().expect("relay running");
        handle
            .shared
            .metrics
            .shards()
            .map(|s| {
                s.slow_disconnects
                    .load(std::sync::atomic::Ordering::Relaxed)
            })
            .sum()
    }

    async fn wait_ready(&self) {
        let addr = self.config.listen;
        wait_for("the relay to answer /ready with 200", || async move {
            http_status(addr, "/ready").await == Some(200)
        })
        .await;
    }

    /// Publishes ticks `seqs` of `symbol` (the relay numbers them; `tag` marks the history in
    /// `ts_ns` so tests can tell histories apart), in batches of `batch` with a pause of
    /// `pause` between batches (a live feed rather than one burst).
    pub async fn publish(&self, symbol: &str, count: u64, tag: u64, batch: u64, pause: Duration) {
        let mut ingest = TcpStream::connect(self.config.ingest_tcp)
            .await
            .expect("ingest connects");
        let mut i = 0;
        while i < count {
            let mut text = String::new();
            for _ in 0..batch.min(count - i) {
                i += 1;
                let ts_ns = tag * 1_000_000_000 + i;
                text.push_str(&format!(
                    "{{\"symbol\":\"{symbol}\",\"price\":{},\"size\":1.0,\"ts_ns\":{ts_ns}}}\n",
                    100.0 + i as f64 / 100.0
                ));
            }
            ingest
                .write_all(text.as_bytes())
                .await
                .expect("ingest write");
            if !pause.is_zero() {
                tokio::time::sleep(pause).await;
            }
        }
        ingest.flush().await.expect("ingest flush");
    }

    /// Waits until the relay's last seq of `symbol` is `seq` (everything published is in).
    pub async fn wait_seq(&self, symbol: &str, seq: u64) {
        let addr = self.config.listen;
        let path = format!("/price/{symbol}");
        wait_for(&format!("the relay to reach {symbol} seq {seq}"), || {
            let path = path.clone();
            async move {
                http_body(addr, &path)
                    .await
                    .contains(&format!("\"seq\":{seq},"))
            }
        })
        .await;
    }
}

impl Drop for TestRelay {
    fn drop(&mut self) {
        if let Some(handle) = &self.handle {
            handle.shutdown();
        }
    }
}

async fn http_status(addr: SocketAddr, path: &str) -> Option<u16> {
    let text = http_text(addr, path).await?;
    text.split(' ').nth(1)?.parse().ok()
}

async fn http_body(addr: SocketAddr, path: &str) -> String {
    http_text(addr, path)
        .await
        .and_then(|t| t.split_once("\r\n\r\n").map(|(_, b)| b.to_owned()))
        .unwrap_or_default()
}

async fn http_text(addr: SocketAddr, path: &str) -> Option<String> {
    use tokio::io::AsyncReadExt;
    let mut stream = TcpStream::connect(addr).await.ok()?;
    let request = format!("GET {path} HTTP/1.1\r\nhost: t\r\nconnection: close\r\n\r\n");
    stream.write_all(request.as_bytes()).await.ok()?;
    let mut out = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), stream.read_to_end(&mut out))
        .await
        .ok()?
        .ok()?;
    Some(String::from_utf8_lossy(&out).into_owned())
}

/// Polls `cond` every 10 ms until it holds; fails naming `what` after [`WAIT`].
pub async fn wait_for<F, Fut>(what: &str, mut cond: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = tokio::time::Instant::now() + WAIT;
    while !cond().await {
        assert!(
            tokio::time::Instant::now() < deadline,
            "timed out waiting for {what}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// What the proxy does with a connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mode {
    Open,
    /// Forward nothing, keep both sockets open: a silent connection.
    Frozen,
    Cut,
}

/// A TCP proxy in front of the relay that can cut or freeze the connections it carries, or
/// refuse new ones (accept and close at once).
pub struct Proxy {
    pub addr: SocketAddr,
    /// Where new connections go.
    target: Arc<Mutex<SocketAddr>>,
    connections: Arc<Mutex<Vec<watch::Sender<Mode>>>>,
    down: Arc<std::sync::atomic::AtomicBool>,
    task: tokio::task::JoinHandle<()>,
}

impl Proxy {
    pub async fn start(target: SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("proxy binds");
        let addr = listener.local_addr().expect("proxy address");
        let connections: Arc<Mutex<Vec<watch::Sender<Mode>>>> = Arc::default();
        let down = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let target = Arc::new(Mutex::new(target));
        let (conns, is_down, to) = (connections.clone(), down.clone(), target.clone());
        let task = tokio::spawn(async move {
            loop {
                let Ok((mut client, _)) = listener.accept().await else {
                    return;
                };
                if is_down.load(std::sync::atomic::Ordering::SeqCst) {
                    drop(client);
                    continue;
                }
                let (mode, mut changes) = watch::channel(Mode::Open);
                conns.lock().unwrap().push(mode);
                let target = *to.lock().unwrap();
                tokio::spawn(async move {
                    let Ok(mut server) = TcpStream::connect(target).await else {
                        return;
                    };
                    let mut current = Mode::Open;
                    loop {
                        tokio::select! {
                            _ = tokio::io::copy_bidirectional(&mut client, &mut server),
                                if current == Mode::Open => return,
                            changed = changes.changed() => {
                                if changed.is_err() { return; }
                                current = *changes.borrow();
                                if current == Mode::Cut { return; }
                            }
                        }
                    }
                });
            }
        });
        Self {
            addr,
            target,
            connections,
            down,
            task,
        }
    }

    /// Sends new connections to `target` (a load balancer moving clients to another relay);
    /// the connections it carries stay where they are.
    pub fn retarget(&self, target: SocketAddr) {
        *self.target.lock().unwrap() = target;
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// Closes every connection it carries now (both sides see the TCP connection end).
    pub fn cut(&self) {
        for c in self.connections.lock().unwrap().drain(..) {
            let _ = c.send(Mode::Cut);
        }
    }

    /// Stops forwarding on every connection it carries now, keeping them open.
    pub fn freeze(&self) {
        for c in self.connections.lock().unwrap().iter() {
            let _ = c.send(Mode::Frozen);
        }
    }

    /// Refuses (accepts and closes) new connections while `down`.
    pub fn set_down(&self, down: bool) {
        self.down.store(down, std::sync::atomic::Ordering::SeqCst);
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.task.abort();
        self.cut();
    }
}

/// Checks exactly-once-or-gap as items arrive: per symbol stream (`A`, or a rate tier
/// `A@100ms` with seqs of its own), each tick or snapshot is the next seq (on a tier: its
/// `from_seq` is the last seq + 1), a gap names exactly the seqs between the last one and the
/// next, or a reset comes first and names the seq that follows it.
#[derive(Default, Debug)]
pub struct Tracker {
    last: HashMap<String, u64>,
    /// Each stream's delivered (seq, ts_ns) since its last reset.
    pub seqs: HashMap<String, Vec<(u64, u64)>>,
    /// Each tier stream's delivered frames: (from_seq, seq, trades).
    pub frames: HashMap<String, Vec<(u64, u64, u64)>>,
    pending_reset: HashMap<String, Reset>,
    pub gaps: Vec<Gap>,
    pub resets: Vec<Reset>,
    pub undecodable: Vec<Undecodable>,
    pub connects: usize,
    pub disconnects: Vec<String>,
    pub errors: Vec<String>,
    pub items: usize,
}

impl Tracker {
    pub fn feed(&mut self, item: &Item) {
        self.items += 1;
        match item {
            Item::Tick(t) | Item::Snapshot(t) => {
                let s = &stream(&t.symbol, item.tier());
                // A tier frame stands for from_seq..=seq: that range continues the stream.
                let first = t.tier.as_ref().map_or(t.seq, |tier| tier.from_seq);
                if let Some(reset) = self.pending_reset.remove(s) {
                    assert_eq!(reset.seq, t.seq, "a reset names the seq that follows it");
                    self.seqs.insert(s.clone(), Vec::new());
                } else if let Some(&last) = self.last.get(s) {
                    assert!(
                        first == last + 1 && t.seq >= first,
                        "{s}: seqs {first}..={} after {last}: a silent hole or a duplicate",
                        t.seq
                    );
                }
                if let Some(tier) = &t.tier {
                    let frame = (tier.from_seq, t.seq, tier.trades);
                    self.frames.entry(s.clone()).or_default().push(frame);
                }
                self.last.insert(s.clone(), t.seq);
                self.seqs
                    .entry(s.clone())
                    .or_default()
                    .push((t.seq, t.ts_ns));
            }
            Item::Gap(g) => {
                let s = stream(g.key.name(), item.tier());
                assert!(g.from <= g.to, "a gap is not empty: {g:?}");
                if let Some(&last) = self.last.get(&s) {
                    assert_eq!(g.from, last + 1, "a gap starts after the last seq: {g:?}");
                }
                self.last.insert(s, g.to);
                self.gaps.push(g.clone());
            }
            Item::Reset(r) => {
                self.pending_reset
                    .insert(stream(r.key.name(), item.tier()), r.clone());
                self.resets.push(r.clone());
            }
            Item::Undecodable(u) => {
                // Counted at its seq: the next item of its key follows it without a gap.
                if let (Some(Key::Symbol(s)), Some(seq)) = (&u.key, u.seq) {
                    let s = stream(s, item.tier());
                    if let Some(&last) = self.last.get(&s) {
                        assert_eq!(seq, last + 1, "{s}: undecodable seq {seq} after {last}");
                    }
                    self.last.insert(s, seq);
                }
                self.undecodable.push(u.clone());
            }
            Item::Connected(_) => self.connects += 1,
            Item::Disconnected(d) => self.disconnects.push(d.reason.clone()),
            Item::Error(e) => self.errors.push(e.code.clone()),
            Item::Event(_)
            | Item::Bar(_)
            | Item::BarSnapshot(_)
            | Item::Ticker(_)
            | Item::Book(_)
            | Item::BookResync(_) => {}
        }
    }

    /// The last seq delivered (or skipped by a gap) of `symbol` (`A`, or a tier `A@100ms`).
    pub fn last(&self, symbol: &str) -> Option<u64> {
        self.last.get(symbol).copied()
    }
}

/// The name a stream is subscribed under: `NAME` or `NAME@TIER`.
fn stream(name: &str, tier: Option<&str>) -> String {
    match tier {
        Some(tier) => format!("{name}@{tier}"),
        None => name.to_owned(),
    }
}

/// Reads items into `tracker` until `done` holds, calling `on_item` after each; fails naming
/// `what` after [`WAIT`].
pub async fn read_until(
    client: &mut Client,
    tracker: &mut Tracker,
    what: &str,
    mut done: impl FnMut(&Tracker) -> bool,
    mut on_item: impl FnMut(&Tracker, &Item),
) {
    let deadline = tokio::time::Instant::now() + WAIT;
    while !done(tracker) {
        let item = tokio::time::timeout_at(deadline, client.next())
            .await
            .unwrap_or_else(|_| panic!("timed out waiting for {what}; saw {tracker:?}"))
            .unwrap_or_else(|| panic!("the stream ended while waiting for {what}"))
            .unwrap_or_else(|e| panic!("the stream failed while waiting for {what}: {e}"));
        tracker.feed(&item);
        on_item(tracker, &item);
    }
}
