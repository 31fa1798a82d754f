//! One worker thread: a current-thread runtime, its command protocol with the coordinator,
//! the state its sessions share, and the task that paces their connects.

use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{Notify, mpsc, oneshot};

use super::conn::Conn;
use super::handshake::{HandshakeError, open};
use super::{ClientPlan, ClientProfile, ClientState, ClientStatus, Target};
use crate::latency::LatencyHist;
use crate::procfs;

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
    /// Starts worker `index`, which will connect its clients to `target` and read them as
    /// `profile` says.
    pub fn spawn(index: usize, target: Target, profile: ClientProfile) -> Result<Self> {
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
                let worker = Rc::new(Worker::new(shared, target, profile));
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
pub(super) struct Worker {
    pub(super) progress: Arc<WorkerProgress>,
    pub(super) target: Target,
    pub(super) profile: ClientProfile,
    pub(super) state: RefCell<WorkerState>,
    pub(super) read_buf: RefCell<Box<[u8]>>,
    pub(super) inflate_buf: RefCell<Vec<u8>>,
    pub(super) cpu_at_start: Duration,
    pub(super) cpu_split_at_start: procfs::CpuTimes,
    /// Slow clients read again once this is set (and `wake` notified).
    pub(super) slow_awake: Cell<bool>,
    pub(super) wake: Notify,
}

pub(super) struct WorkerState {
    pub(super) latency: LatencyHist,
    pub(super) handshake: LatencyHist,
    pub(super) clients: Vec<ClientStatus>,
    pub(super) errors: HashMap<String, u64>,
}

impl Worker {
    fn new(progress: Arc<WorkerProgress>, target: Target, profile: ClientProfile) -> Self {
        Self {
            progress,
            target,
            profile,
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
    let mut conn = Conn::new(local, &plan, started, worker.profile);
    let end = conn.run(&mut stream, &worker, &leftover).await;
    worker.record_error(end.to_string());
    worker.set_state(local, ClientState::Closed);
}

/// One read takes up to this much: many frames per syscall under load.
const READ_BUF: usize = 64 * 1024;
/// Distinct error strings kept per worker (they carry no per-client detail).
const MAX_ERROR_KINDS: usize = 32;
