//! The client side: many WebSocket sessions per worker thread, a few hundred ns per delivery.
//!
//! A [`WorkerHandle`] owns one OS thread running a current-thread tokio runtime. Each session
//! is a local task holding its socket, its unparsed tail and its per-symbol seq state; the
//! 64 KiB read buffer, the inflate buffer, the histograms and the per-client counters are shared
//! by all sessions of the worker (one `RefCell` borrow per read, never across an `.await`).
//! A read takes whatever the kernel has, every complete frame in it is decoded
//! ([`crate::decode`]) and checked ([`crate::seq`]), and the receive time is taken once per read.
//!
//! The coordinator talks to a worker through commands: connect these clients at this rate,
//! collect (and reset) the figures, shut down. Progress counters are atomics it can poll.
//!
//! The WebSocket client is the minimum RFC 6455 asks of one: the upgrade request with a random
//! key and a checked `Sec-WebSocket-Accept`, server frames parsed unmasked, and the only frames
//! we send (pong, close) masked.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::hash::{BuildHasher, RandomState};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use sha1::{Digest, Sha1};
use socket2::{Domain, Protocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt, Interest};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{Notify, mpsc, oneshot};

use crate::decode::{self, DecodeError, GzipStream, Message};
use crate::latency::{LatencyHist, now_ns};
use crate::procfs;
use crate::seq::{SeqCounts, SeqTrack};

/// How a session asks the relay to encode its messages (`?encoding=`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Encoding {
    Json,
    Protobuf,
    Gzip,
}

impl Encoding {
    /// Every encoding, in report order.
    pub const ALL: [Self; 3] = [Self::Json, Self::Protobuf, Self::Gzip];

    /// The query-string value.
    pub fn name(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
            Self::Gzip => "gzip",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        Self::ALL
            .into_iter()
            .find(|e| e.name() == s)
            .ok_or_else(|| format!("unknown encoding `{s}` (json, protobuf, gzip)"))
    }
}

/// One client to open: what it subscribes to and how it behaves.
#[derive(Clone, Debug)]
pub struct ClientPlan {
    /// Global client index.
    pub id: usize,
    /// Symbol indexes (`SYM` + index), distinct.
    pub symbols: Vec<u32>,
    pub encoding: Encoding,
    /// Local address to bind before connecting (spreads ephemeral ports over 127.0.0.x).
    pub source: Option<Ipv4Addr>,
    /// Stops reading once welcomed (the `slow` mode's stuck consumers).
    pub slow: bool,
    /// SO_RCVBUF to ask for before connecting (slow clients: a small one, so the kernel does
    /// not absorb megabytes on the relay's behalf).
    pub recv_buffer: Option<usize>,
}

/// Where the relay's WebSocket endpoint is.
#[derive(Clone, Debug)]
pub struct Target {
    pub addr: SocketAddr,
    /// Symbols in the run, for naming them (`SYM000`.. or wider).
    pub symbol_count: u32,
    /// How long TCP connect + upgrade may take.
    pub handshake_timeout: Duration,
}

/// Where a client is in its life.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ClientState {
    #[default]
    Connecting,
    /// TCP connect or upgrade failed.
    Failed,
    /// Upgraded (welcomed once `counts.welcomed`).
    Open,
    /// The connection ended before shutdown.
    Closed,
}

/// What one client saw.
#[derive(Clone, Debug, Default)]
pub struct ClientCounts {
    pub welcomed: bool,
    pub ticks: u64,
    pub snapshots: u64,
    pub seq: SeqCounts,
    /// `gap` messages from the relay and the ticks they cover.
    pub relay_gaps: u64,
    pub relay_gap_ticks: u64,
    pub error_msgs: u64,
    pub other_msgs: u64,
    pub decode_errors: u64,
    /// Ticks of a symbol this client did not subscribe to.
    pub unexpected_symbol: u64,
    pub frames: u64,
    pub bytes: u64,
    /// Read syscalls that returned data.
    pub reads: u64,
}

/// One client's state and counts, as the coordinator receives them.
#[derive(Clone, Debug, Default)]
pub struct ClientStatus {
    pub id: usize,
    pub state: ClientState,
    pub counts: ClientCounts,
}

/// Everything a worker measured, taken by [`WorkerHandle::collect`].
#[derive(Clone, Debug)]
pub struct WorkerSnapshot {
    /// Latency of ticks to non-slow clients since the last reset.
    pub latency: LatencyHist,
    /// TCP connect start → welcome received, µs.
    pub handshake: LatencyHist,
    pub clients: Vec<ClientStatus>,
    /// CPU time of the worker thread since it started (ns resolution).
    pub cpu: Duration,
    /// The same split into user and kernel time (clock-tick resolution).
    pub cpu_split: procfs::CpuTimes,
    /// Distinct connection errors with their counts.
    pub errors: Vec<(String, u64)>,
}

/// Counters the coordinator polls for progress while the worker runs.
#[derive(Debug, Default)]
pub struct WorkerProgress {
    pub welcomed: AtomicU64,
    pub failed: AtomicU64,
    pub closed: AtomicU64,
    /// Ticks delivered to any client.
    pub ticks: AtomicU64,
    /// Ticks delivered to non-slow clients.
    pub ticks_fast: AtomicU64,
}

/// One worker thread and the way to command it.
#[derive(Debug)]
pub struct WorkerHandle {
    commands: mpsc::UnboundedSender<Command>,
    /// Live counters.
    pub progress: Arc<WorkerProgress>,
    thread: Option<JoinHandle<()>>,
}

impl WorkerHandle {
    /// Starts worker `index`, which will connect its clients to `target`.
    pub fn spawn(index: usize, target: Target) -> Result<Self> {
        let (commands, rx) = mpsc::unbounded_channel();
        let progress = Arc::new(WorkerProgress::default());
        let shared = Arc::clone(&progress);
        let thread = std::thread::Builder::new()
            .name(format!("lt-worker-{index}"))
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds unless the OS is out of fds");
                let local = tokio::task::LocalSet::new();
                let worker = Rc::new(Worker::new(shared, target));
                local.block_on(&rt, control(rx, worker));
                // Dropping the LocalSet drops every session task, closing its socket.
            })
            .context("spawning a worker thread")?;
        Ok(Self {
            commands,
            progress,
            thread: Some(thread),
        })
    }

    /// Opens `plans` at `per_sec` connections per second (0 = as fast as possible).
    pub fn connect(&self, plans: Vec<ClientPlan>, per_sec: f64) -> Result<()> {
        self.commands
            .send(Command::Connect { plans, per_sec })
            .map_err(|_| anyhow::anyhow!("worker thread is gone"))
    }

    /// Takes the worker's figures; `reset_latency` starts a new latency window.
    pub fn collect(&self, reset_latency: bool) -> Result<WorkerSnapshot> {
        let (reply, rx) = oneshot::channel();
        self.commands
            .send(Command::Collect {
                reset_latency,
                reply,
            })
            .map_err(|_| anyhow::anyhow!("worker thread is gone"))?;
        rx.blocking_recv().context("worker thread died")
    }

    /// Slow clients start reading again (to count what reached them and how they ended).
    pub fn wake_slow(&self) -> Result<()> {
        self.commands
            .send(Command::WakeSlow)
            .map_err(|_| anyhow::anyhow!("worker thread is gone"))
    }

    /// Stops the worker, closing all its connections, and waits for its thread.
    pub fn shutdown(mut self) {
        let _ = self.commands.send(Command::Shutdown);
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

impl Drop for WorkerHandle {
    fn drop(&mut self) {
        let _ = self.commands.send(Command::Shutdown);
    }
}

enum Command {
    Connect {
        plans: Vec<ClientPlan>,
        per_sec: f64,
    },
    Collect {
        reset_latency: bool,
        reply: oneshot::Sender<WorkerSnapshot>,
    },
    WakeSlow,
    Shutdown,
}

/// State shared by every session of one worker thread.
struct Worker {
    progress: Arc<WorkerProgress>,
    target: Target,
    state: RefCell<WorkerState>,
    read_buf: RefCell<Box<[u8]>>,
    inflate_buf: RefCell<Vec<u8>>,
    cpu_at_start: Duration,
    cpu_split_at_start: procfs::CpuTimes,
    /// Slow clients read again once this is set (and `wake` notified).
    slow_awake: Cell<bool>,
    wake: Notify,
}

struct WorkerState {
    latency: LatencyHist,
    handshake: LatencyHist,
    clients: Vec<ClientStatus>,
    errors: HashMap<String, u64>,
}

impl Worker {
    fn new(progress: Arc<WorkerProgress>, target: Target) -> Self {
        Self {
            progress,
            target,
            state: RefCell::new(WorkerState {
                latency: LatencyHist::new(),
                handshake: LatencyHist::new(),
                clients: Vec::new(),
                errors: HashMap::new(),
            }),
            read_buf: RefCell::new(vec![0; READ_BUF].into_boxed_slice()),
            inflate_buf: RefCell::new(Vec::with_capacity(16 * 1024)),
            cpu_at_start: procfs::thread_cpu().unwrap_or_default(),
            cpu_split_at_start: procfs::thread_cpu_split().unwrap_or_default(),
            slow_awake: Cell::new(false),
            wake: Notify::new(),
        }
    }

    fn snapshot(&self, reset_latency: bool) -> WorkerSnapshot {
        let mut st = self.state.borrow_mut();
        let snap = WorkerSnapshot {
            latency: st.latency.clone(),
            handshake: st.handshake.clone(),
            clients: st.clients.clone(),
            cpu: procfs::thread_cpu()
                .unwrap_or_default()
                .saturating_sub(self.cpu_at_start),
            cpu_split: procfs::thread_cpu_split()
                .unwrap_or_default()
                .since(&self.cpu_split_at_start),
            errors: st.errors.iter().map(|(k, v)| (k.clone(), *v)).collect(),
        };
        if reset_latency {
            st.latency.reset();
        }
        snap
    }

    fn record_error(&self, what: String) {
        let mut st = self.state.borrow_mut();
        if st.errors.len() < MAX_ERROR_KINDS || st.errors.contains_key(&what) {
            *st.errors.entry(what).or_default() += 1;
        }
    }

    fn set_state(&self, local: usize, state: ClientState) {
        self.state.borrow_mut().clients[local].state = state;
        let counter = match state {
            ClientState::Failed => &self.progress.failed,
            ClientState::Closed => &self.progress.closed,
            _ => return,
        };
        counter.fetch_add(1, Ordering::Relaxed);
    }
}

async fn control(mut rx: mpsc::UnboundedReceiver<Command>, worker: Rc<Worker>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Connect { plans, per_sec } => {
                let first = {
                    let mut st = worker.state.borrow_mut();
                    let first = st.clients.len();
                    st.clients.extend(plans.iter().map(|p| ClientStatus {
                        id: p.id,
                        ..ClientStatus::default()
                    }));
                    first
                };
                tokio::task::spawn_local(connector(Rc::clone(&worker), plans, first, per_sec));
            }
            Command::Collect {
                reset_latency,
                reply,
            } => {
                let _ = reply.send(worker.snapshot(reset_latency));
            }
            Command::WakeSlow => {
                worker.slow_awake.set(true);
                worker.wake.notify_waiters();
            }
            Command::Shutdown => break,
        }
    }
}

/// Starts one session task per plan, paced to `per_sec`.
async fn connector(worker: Rc<Worker>, plans: Vec<ClientPlan>, first: usize, per_sec: f64) {
    let start = tokio::time::Instant::now();
    for (i, plan) in plans.into_iter().enumerate() {
        if per_sec > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / per_sec);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        tokio::task::spawn_local(session(Rc::clone(&worker), first + i, plan));
    }
}

/// One client from TCP connect to the end of the run.
async fn session(worker: Rc<Worker>, local: usize, plan: ClientPlan) {
    let started = Instant::now();
    let opened = tokio::time::timeout(worker.target.handshake_timeout, open(&worker.target, &plan))
        .await
        .unwrap_or_else(|_| Err(HandshakeError::Timeout));
    let (mut stream, leftover) = match opened {
        Ok(ok) => ok,
        Err(e) => {
            worker.record_error(e.to_string());
            worker.set_state(local, ClientState::Failed);
            return;
        }
    };
    worker.set_state(local, ClientState::Open);
    let mut conn = Conn::new(local, &plan, started);
    let end = conn.run(&mut stream, &worker, &leftover).await;
    worker.record_error(end.to_string());
    worker.set_state(local, ClientState::Closed);
}

/// Why a session ended before shutdown.
#[derive(Debug, thiserror::Error)]
enum SessionEnd {
    #[error("relay closed the connection (EOF)")]
    Eof,
    #[error("relay sent close {0}")]
    CloseFrame(String),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from relay: {0}")]
    Frame(#[from] FrameError),
}

/// Why a client could not open its session.
#[derive(Debug, thiserror::Error)]
enum HandshakeError {
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect + upgrade timed out")]
    Timeout,
    #[error("relay closed during the upgrade")]
    Eof,
    #[error("upgrade answered `{0}`, not 101")]
    Status(String),
    #[error("upgrade response has a wrong or missing Sec-WebSocket-Accept")]
    Accept,
    #[error("upgrade response headers exceed {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
}

/// A malformed frame from the relay.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum FrameError {
    #[error("server frame is masked (RFC 6455 §5.1 forbids it)")]
    Masked,
    #[error("RSV bits set without a negotiated extension")]
    Reserved,
    #[error("unknown opcode {0:#x}")]
    Opcode(u8),
    #[error("control frame longer than 125 bytes or fragmented")]
    BadControl,
    #[error("frame of {0} bytes exceeds the limit")]
    TooLong(u64),
    #[error("continuation frame without a started message, or a new message inside one")]
    Fragmentation,
}

/// The parsed header of one WebSocket frame.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct FrameHeader {
    pub fin: bool,
    pub opcode: u8,
    pub header_len: usize,
    pub payload_len: usize,
}

impl FrameHeader {
    /// Header plus payload.
    pub fn frame_len(&self) -> usize {
        self.header_len + self.payload_len
    }
}

/// Parses a server frame header at the start of `buf`; `None` until the header is complete.
pub fn parse_frame_header(buf: &[u8]) -> Result<Option<FrameHeader>, FrameError> {
    let (b0, b1) = match buf {
        [b0, b1, ..] => (*b0, *b1),
        _ => return Ok(None),
    };
    if b0 & 0x70 != 0 {
        return Err(FrameError::Reserved);
    }
    // RFC 6455 §5.1: server frames are never masked.
    if b1 & 0x80 != 0 {
        return Err(FrameError::Masked);
    }
    let fin = b0 & 0x80 != 0;
    let opcode = b0 & 0x0f;
    let (header_len, len) = match b1 & 0x7f {
        126 => match buf.get(2..4) {
            Some(b) => (4, u64::from(u16::from_be_bytes([b[0], b[1]]))),
            None => return Ok(None),
        },
        127 => match buf.get(2..10) {
            Some(b) => (
                10,
                u64::from_be_bytes(b.try_into().expect("a 2..10 slice is 8 bytes")),
            ),
            None => return Ok(None),
        },
        n => (2, u64::from(n)),
    };
    match opcode {
        OP_CONT | OP_TEXT | OP_BINARY => {}
        OP_CLOSE | OP_PING | OP_PONG if fin && len <= 125 => {}
        OP_CLOSE | OP_PING | OP_PONG => return Err(FrameError::BadControl),
        other => return Err(FrameError::Opcode(other)),
    }
    if len > MAX_MESSAGE as u64 {
        return Err(FrameError::TooLong(len));
    }
    Ok(Some(FrameHeader {
        fin,
        opcode,
        header_len,
        payload_len: len as usize,
    }))
}

/// Appends one masked client frame (RFC 6455 §5.3: client frames are always masked).
pub fn encode_client_frame(opcode: u8, payload: &[u8], mask: [u8; 4], out: &mut Vec<u8>) {
    out.push(0x80 | opcode);
    match payload.len() {
        n @ 0..=125 => out.push(0x80 | n as u8),
        n @ 126..=0xffff => {
            out.push(0x80 | 126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
}

/// The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64(&sha.finalize())
}

/// The upgrade request for `plan`.
fn upgrade_request(target: &Target, plan: &ClientPlan, key: &str) -> String {
    let symbols: Vec<String> = plan
        .symbols
        .iter()
        .map(|&s| decode::symbol_name(s, target.symbol_count))
        .collect();
    format!(
        "GET /ws?symbols={}&encoding={} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        symbols.join(","),
        plan.encoding.name(),
        target.addr,
    )
}

/// Checks a complete response head: status 101 and the right accept key.
fn check_upgrade_response(head: &str, key: &str) -> Result<(), HandshakeError> {
    let status = head.lines().next().unwrap_or_default();
    if status.split_ascii_whitespace().nth(1) != Some("101") {
        return Err(HandshakeError::Status(status.to_owned()));
    }
    let expected = accept_key(key);
    let accepted = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if accepted {
        Ok(())
    } else {
        Err(HandshakeError::Accept)
    }
}

/// TCP connect (from `plan.source` if set) and the upgrade; returns bytes read past the head.
async fn open(target: &Target, plan: &ClientPlan) -> Result<(TcpStream, Vec<u8>), HandshakeError> {
    let socket = Socket::new(
        Domain::for_address(target.addr),
        Type::STREAM,
        Some(Protocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(bytes) = plan.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let (Some(ip), IpAddr::V4(_)) = (plan.source, target.addr.ip()) {
        // Reuse ports left in TIME_WAIT by an earlier run from this address.
        socket.set_reuse_address(true)?;
        socket.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    let mut stream = socket.connect(target.addr).await?;
    stream.set_nodelay(true)?;

    let key = base64(&random_u128().to_le_bytes());
    stream
        .write_all(upgrade_request(target, plan, &key).as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeError::Eof);
        }
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(HandshakeError::TooLong);
        }
    };
    check_upgrade_response(&String::from_utf8_lossy(&buf[..head_end]), &key)?;
    Ok((stream, buf.split_off(head_end)))
}

/// One open session: its unparsed bytes, fragment buffer, seq state and inflater.
struct Conn {
    local: usize,
    slow: bool,
    encoding: Encoding,
    started: Instant,
    welcomed: bool,
    /// (symbol index, its seq state), sorted by index.
    tracks: Vec<(u32, SeqTrack)>,
    /// Bytes of a frame not yet complete.
    pending: Vec<u8>,
    /// Payload of a fragmented message being assembled, and its opcode.
    fragments: Vec<u8>,
    fragment_opcode: Option<u8>,
    gzip: Option<GzipStream>,
    /// Frames to send (pong, close), written after the read is processed.
    replies: Vec<u8>,
    close: Option<String>,
}

impl Conn {
    fn new(local: usize, plan: &ClientPlan, started: Instant) -> Self {
        let mut tracks: Vec<(u32, SeqTrack)> = plan
            .symbols
            .iter()
            .map(|&s| (s, SeqTrack::default()))
            .collect();
        tracks.sort_unstable_by_key(|t| t.0);
        Self {
            local,
            slow: plan.slow,
            encoding: plan.encoding,
            started,
            welcomed: false,
            tracks,
            pending: Vec::new(),
            fragments: Vec::new(),
            fragment_opcode: None,
            gzip: (plan.encoding == Encoding::Gzip).then(GzipStream::new),
            replies: Vec::new(),
            close: None,
        }
    }

    async fn run(
        &mut self,
        stream: &mut TcpStream,
        worker: &Worker,
        leftover: &[u8],
    ) -> SessionEnd {
        if !leftover.is_empty()
            && let Err(e) = self.process(leftover, worker)
        {
            return e;
        }
        loop {
            if let Some(code) = self.close.take() {
                let _ = stream.write_all(&self.replies).await;
                return SessionEnd::CloseFrame(code);
            }
            if !self.replies.is_empty() {
                if let Err(e) = stream.write_all(&self.replies).await {
                    return e.into();
                }
                self.replies.clear();
            }
            if self.slow && self.welcomed && !worker.slow_awake.get() {
                // A stuck consumer: hold the socket unread until woken (or shut down). On this
                // single thread nothing runs between the check and the wait, so no wake is lost.
                worker.wake.notified().await;
                continue;
            }
            if let Err(e) = stream.readable().await {
                return e.into();
            }
            let mut buf = worker.read_buf.borrow_mut();
            match read_drained(stream, &mut buf) {
                Ok(0) => return SessionEnd::Eof,
                Ok(n) => {
                    if let Err(e) = self.process(&buf[..n], worker) {
                        return e;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return e.into(),
            }
        }
    }

    /// Parses and checks every complete frame of `pending + data`; keeps the incomplete tail.
    fn process(&mut self, data: &[u8], worker: &Worker) -> Result<(), SessionEnd> {
        let now = now_ns();
        let mut st = worker.state.borrow_mut();
        let st = &mut *st;
        let mut pending = std::mem::take(&mut self.pending);
        let from_pending = !pending.is_empty();
        if from_pending {
            pending.extend_from_slice(data);
        }
        let src: &[u8] = if from_pending { &pending } else { data };
        st.clients[self.local].counts.reads += 1;
        let ticks_before = st.clients[self.local].counts.ticks;
        let mut off = 0;
        let mut result = Ok(());
        while let Some(header) = match parse_frame_header(&src[off..]) {
            Ok(h) => h,
            Err(e) => {
                result = Err(e.into());
                None
            }
        } {
            if src.len() - off < header.frame_len() {
                break;
            }
            let payload = &src[off + header.header_len..off + header.frame_len()];
            off += header.frame_len();
            let counts = &mut st.clients[self.local].counts;
            counts.frames += 1;
            counts.bytes += header.frame_len() as u64;
            if let Err(e) = self.frame(header, payload, now, st, worker) {
                result = Err(e);
                break;
            }
            if self.close.is_some() {
                break;
            }
        }
        if from_pending {
            pending.drain(..off);
        } else {
            pending.extend_from_slice(&data[off..]);
        }
        self.pending = pending;
        let delivered = st.clients[self.local].counts.ticks - ticks_before;
        if delivered > 0 {
            worker
                .progress
                .ticks
                .fetch_add(delivered, Ordering::Relaxed);
            if !self.slow {
                worker
                    .progress
                    .ticks_fast
                    .fetch_add(delivered, Ordering::Relaxed);
            }
        }
        result
    }

    fn frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        now: u64,
        st: &mut WorkerState,
        worker: &Worker,
    ) -> Result<(), SessionEnd> {
        match header.opcode {
            OP_TEXT | OP_BINARY if self.fragment_opcode.is_some() => {
                Err(FrameError::Fragmentation.into())
            }
            OP_TEXT | OP_BINARY if header.fin => {
                self.message(payload, now, st, worker);
                Ok(())
            }
            OP_TEXT | OP_BINARY => {
                self.fragment_opcode = Some(header.opcode);
                self.fragments.clear();
                self.fragments.extend_from_slice(payload);
                Ok(())
            }
            OP_CONT => {
                if self.fragment_opcode.is_none() {
                    return Err(FrameError::Fragmentation.into());
                }
                self.fragments.extend_from_slice(payload);
                if header.fin {
                    self.fragment_opcode = None;
                    let whole = std::mem::take(&mut self.fragments);
                    self.message(&whole, now, st, worker);
                    self.fragments = whole;
                }
                Ok(())
            }
            OP_PING => {
                encode_client_frame(OP_PONG, payload, random_mask(), &mut self.replies);
                Ok(())
            }
            OP_CLOSE => {
                let code = match payload {
                    [a, b, reason @ ..] => format!(
                        "{} {}",
                        u16::from_be_bytes([*a, *b]),
                        String::from_utf8_lossy(reason)
                    ),
                    _ => "(no code)".to_owned(),
                };
                encode_client_frame(
                    OP_CLOSE,
                    payload.get(..2).unwrap_or(&[]),
                    random_mask(),
                    &mut self.replies,
                );
                self.close = Some(code);
                Ok(())
            }
            _ => Ok(()), // pong
        }
    }

    /// Decodes one whole message and applies it to the counters.
    fn message(&mut self, payload: &[u8], now: u64, st: &mut WorkerState, worker: &Worker) {
        let decoded = match self.encoding {
            Encoding::Json => decode::scan_json(payload),
            Encoding::Protobuf => decode::scan_protobuf(payload),
            Encoding::Gzip => {
                let mut out = worker.inflate_buf.borrow_mut();
                let gzip = self.gzip.as_mut().expect("gzip sessions own an inflater");
                match gzip.inflate_frame(payload, &mut out) {
                    Ok(()) => {
                        let decoded = decode::scan_json(&out);
                        self.apply(decoded, now, st, &worker.progress);
                        return;
                    }
                    Err(e) => Err(e),
                }
            }
        };
        self.apply(decoded, now, st, &worker.progress);
    }

    fn apply(
        &mut self,
        decoded: Result<Message<'_>, DecodeError>,
        now: u64,
        st: &mut WorkerState,
        progress: &WorkerProgress,
    ) {
        let counts = &mut st.clients[self.local].counts;
        let Ok(msg) = decoded else {
            counts.decode_errors += 1;
            return;
        };
        match msg {
            Message::Tick { symbol, seq, ts_ns } => match track(&mut self.tracks, symbol) {
                Some(t) => {
                    t.on_tick(seq, &mut counts.seq);
                    counts.ticks += 1;
                    if !self.slow {
                        st.latency.record_since(now, ts_ns);
                    }
                }
                None => counts.unexpected_symbol += 1,
            },
            Message::Snapshot { symbol, seq } => {
                counts.snapshots += 1;
                if let Some(t) = track(&mut self.tracks, symbol) {
                    t.on_snapshot(seq);
                }
            }
            Message::Gap { symbol, from, to } => {
                counts.relay_gaps += 1;
                counts.relay_gap_ticks += (to + 1).saturating_sub(from);
                if let Some(t) = track(&mut self.tracks, symbol) {
                    t.on_gap_notice(to);
                }
            }
            Message::Welcome => {
                counts.other_msgs += 1;
                if !self.welcomed {
                    self.welcomed = true;
                    counts.welcomed = true;
                    let us = self.started.elapsed().as_micros();
                    st.handshake
                        .record_us(u64::try_from(us).unwrap_or(u64::MAX));
                    // Progress is read by the coordinator only; Relaxed is enough for a count.
                    progress.welcomed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Error => counts.error_msgs += 1,
            Message::Other => counts.other_msgs += 1,
        }
    }
}

/// One read syscall per wakeup: a read shorter than the buffer emptied the socket, so
/// readiness is cleared right away instead of by a second read that would return WouldBlock.
/// No wakeup is lost: data arriving later is a new epoll edge, and tokio ignores a clear made
/// with an older readiness tick.
fn read_drained(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read(buf)?;
        if n > 0 && n < buf.len() {
            got = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match got {
        Some(n) => Ok(n),
        None => result,
    }
}

fn track<'t>(tracks: &'t mut [(u32, SeqTrack)], symbol: &[u8]) -> Option<&'t mut SeqTrack> {
    let id = decode::symbol_id(symbol)?;
    let i = tracks.binary_search_by_key(&id, |t| t.0).ok()?;
    Some(&mut tracks[i].1)
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = match chunk {
            [a, b, c] => u32::from_be_bytes([0, *a, *b, *c]),
            [a, b] => u32::from_be_bytes([0, *a, *b, 0]),
            [a] => u32::from_be_bytes([0, *a, 0, 0]),
            _ => unreachable!("chunks(3) yields 1..=3 bytes"),
        };
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// Unpredictable bits for keys and masks, from the std hasher's per-process random seed.
fn random_u128() -> u128 {
    let a = RandomState::new().hash_one(Instant::now());
    let b = RandomState::new().hash_one(a);
    (u128::from(a) << 64) | u128::from(b)
}

fn random_mask() -> [u8; 4] {
    (random_u128() as u32).to_ne_bytes()
}

const OP_CONT: u8 = 0x0;
const OP_TEXT: u8 = 0x1;
const OP_BINARY: u8 = 0x2;
const OP_CLOSE: u8 = 0x8;
const OP_PING: u8 = 0x9;
const OP_PONG: u8 = 0xa;
/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
/// One read takes up to this much: many frames per syscall under load.
const READ_BUF: usize = 64 * 1024;
/// Largest message accepted; the relay's biggest is a welcome or snapshot burst.
const MAX_MESSAGE: usize = 16 * 1024 * 1024;
const MAX_RESPONSE_HEAD: usize = 16 * 1024;
/// Distinct error strings kept per worker (they carry no per-client detail).
const MAX_ERROR_KINDS: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;

    fn server_frame(opcode: u8, fin: bool, payload: &[u8]) -> Vec<u8> {
        let mut f = vec![if fin { 0x80 } else { 0 } | opcode];
        match payload.len() {
            n @ 0..=125 => f.push(n as u8),
            n @ 126..=0xffff => {
                f.push(126);
                f.extend_from_slice(&(n as u16).to_be_bytes());
            }
            n => {
                f.push(127);
                f.extend_from_slice(&(n as u64).to_be_bytes());
            }
        }
        f.extend_from_slice(payload);
        f
    }

    #[test]
    fn frame_lengths_7_16_and_64_bit() {
        for len in [0usize, 5, 125, 126, 200, 65535, 65536, 70_000] {
            let payload = vec![b'x'; len];
            let frame = server_frame(OP_BINARY, true, &payload);
            let h = parse_frame_header(&frame).unwrap().unwrap();
            assert_eq!(h.payload_len, len);
            assert_eq!(h.frame_len(), frame.len());
            assert!(h.fin);
            assert_eq!(h.opcode, OP_BINARY);
        }
    }

    #[test]
    fn incomplete_headers_wait_for_more() {
        let frame = server_frame(OP_TEXT, true, &[b'y'; 70_000]);
        for cut in 0..10 {
            assert_eq!(parse_frame_header(&frame[..cut]), Ok(None), "cut at {cut}");
        }
        assert!(parse_frame_header(&frame[..10]).unwrap().is_some());
    }

    #[test]
    fn protocol_violations_are_errors() {
        assert_eq!(parse_frame_header(&[0x81, 0x85]), Err(FrameError::Masked));
        assert_eq!(parse_frame_header(&[0xc1, 0x05]), Err(FrameError::Reserved));
        assert_eq!(
            parse_frame_header(&[0x83, 0x00]),
            Err(FrameError::Opcode(3))
        );
        assert_eq!(
            parse_frame_header(&[0x09, 0x00]),
            Err(FrameError::BadControl)
        );
        assert_eq!(
            parse_frame_header(&[0x89, 126, 0, 200]),
            Err(FrameError::BadControl)
        );
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            parse_frame_header(&huge),
            Err(FrameError::TooLong(_))
        ));
    }

    #[test]
    fn client_frames_are_masked() {
        let mask = [1, 2, 3, 4];
        let mut out = Vec::new();
        encode_client_frame(OP_PONG, b"abcde", mask, &mut out);
        assert_eq!(&out[..2], &[0x8a, 0x85]);
        assert_eq!(&out[2..6], &mask);
        let unmasked: Vec<u8> = out[6..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        assert_eq!(unmasked, b"abcde");
        let mut long = Vec::new();
        encode_client_frame(OP_BINARY, &[0; 300], mask, &mut long);
        assert_eq!(&long[..4], &[0x82, 0x80 | 126, 1, 44]);
    }

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn upgrade_response_is_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_upgrade_response(ok, key).is_ok());
        let wrong = ok.replace("s3pP", "AAAA");
        assert!(matches!(
            check_upgrade_response(&wrong, key),
            Err(HandshakeError::Accept)
        ));
        assert!(matches!(
            check_upgrade_response("HTTP/1.1 400 Bad Request\r\n\r\n", key),
            Err(HandshakeError::Status(_))
        ));
    }

    #[test]
    fn upgrade_request_names_symbols_and_encoding() {
        let target = Target {
            addr: "127.0.0.1:8080".parse().unwrap(),
            symbol_count: 100,
            handshake_timeout: Duration::from_secs(1),
        };
        let plan = ClientPlan {
            id: 0,
            symbols: vec![1, 42],
            encoding: Encoding::Gzip,
            source: None,
            slow: false,
            recv_buffer: None,
        };
        let req = upgrade_request(&target, &plan, "k");
        assert!(req.starts_with("GET /ws?symbols=SYM001,SYM042&encoding=gzip HTTP/1.1\r\n"));
        assert!(req.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
    }
}
