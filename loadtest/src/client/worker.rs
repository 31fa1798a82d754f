//! One worker thread: a current-thread runtime, its command protocol with the coordinator,
//! and the tasks that pace the connects and run each client from TCP connect to the end.

use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use anyhow::{Context, Result};
use tokio::sync::{mpsc, oneshot};

use super::conn::Conn;
use super::handshake::{HandshakeError, open};
use super::tally::Tally;
use super::thread_state::{ThreadState, WorkerProgress, WorkerSnapshot};
use super::{ClientPlan, ClientProfile, ClientState, ClientStatus, Protocol, Target};

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
                let threads = Rc::new(ThreadState::new(shared, target, profile));
                local.block_on(&rt, control(rx, threads));
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

async fn control(mut rx: mpsc::UnboundedReceiver<Command>, threads: Rc<ThreadState>) {
    while let Some(cmd) = rx.recv().await {
        match cmd {
            Command::Connect { plans, per_sec } => {
                let first = {
                    let mut st = threads.figures.borrow_mut();
                    let first = st.clients.len();
                    st.clients.extend(plans.iter().map(|p| ClientStatus {
                        id: p.id,
                        ..ClientStatus::default()
                    }));
                    first
                };
                tokio::task::spawn_local(connector(Rc::clone(&threads), plans, first, per_sec));
            }
            Command::Collect {
                reset_latency,
                reply,
            } => {
                let _ = reply.send(threads.snapshot(reset_latency));
            }
            Command::WakeSlow => {
                threads.slow_awake.set(true);
                threads.wake.notify_waiters();
            }
            Command::Shutdown => break,
        }
    }
}

/// Starts one session task per plan, paced to `per_sec`.
async fn connector(threads: Rc<ThreadState>, plans: Vec<ClientPlan>, first: usize, per_sec: f64) {
    let start = tokio::time::Instant::now();
    for (i, plan) in plans.into_iter().enumerate() {
        if per_sec > 0.0 {
            let due = start + Duration::from_secs_f64(i as f64 / per_sec);
            if due > tokio::time::Instant::now() {
                tokio::time::sleep_until(due).await;
            }
        }
        tokio::task::spawn_local(session(Rc::clone(&threads), first + i, plan));
    }
}

/// One client from TCP connect to the end of the run.
async fn session(threads: Rc<ThreadState>, local: usize, plan: ClientPlan) {
    let started = Instant::now();
    let opened = tokio::time::timeout(
        threads.target.handshake_timeout,
        open(&threads.target, &plan),
    )
    .await
    .unwrap_or_else(|_| Err(HandshakeError::Timeout));
    let (mut stream, leftover) = match opened {
        Ok(ok) => ok,
        Err(e) => {
            threads.record_error(e.to_string());
            threads.set_state(local, ClientState::Failed);
            return;
        }
    };
    threads.set_state(local, ClientState::Open);
    let protocol = threads.target.protocol;
    let batch = protocol == (Protocol::Relay { batch: true });
    let tally = Tally::new(local, &plan, started, threads.profile, batch);
    let mut conn = Conn::new(tally, protocol);
    let end = conn.run(&mut stream, &threads, &leftover).await;
    threads.record_error(end.to_string());
    threads.set_state(local, ClientState::Closed);
}
