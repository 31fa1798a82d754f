//! Shard threads: one OS thread per shard, pinned to a core with `--pin-shards`,
//! running a current-thread runtime. The only place that knows about cores.
//!
//! A shard thread owns one [`ShardCore`]: it serves the sockets the acceptor hands it
//! ([`ShardHandle`]) over HTTP, runs the fan-out loop until the sequencer closes the tick
//! queue, then closes every client with 1001 and waits (bounded by `--drain-timeout`) for
//! their session tasks to end.

use std::cell::RefCell;
use std::net::TcpStream as StdTcpStream;
use std::rc::Rc;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Instant;

use tokio::net::TcpStream;
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::error::CloseCode;
use crate::http;
use crate::limits::IpSlot;
use crate::metrics::CountedConnection;
use crate::pipeline::Head;
use crate::sequencer::{TickQueue, TickSender, tick_queue};
use crate::shard::{self, ShardCore, ShardId};
use crate::shared::{ShardRequest, Shared};

/// The acceptor's end of a shard: hands it accepted sockets.
#[derive(Clone, Debug)]
pub struct ShardHandle {
    /// Which shard.
    pub id: ShardId,
    sockets: mpsc::UnboundedSender<Admitted>,
}

impl ShardHandle {
    /// Gives an accepted connection to the shard; false if the shard has stopped.
    pub fn admit(&self, connection: Admitted) -> bool {
        self.sockets.send(connection).is_ok()
    }
}

/// An accepted client connection on its way to a shard.
#[derive(Debug)]
pub struct Admitted {
    /// The socket (non-blocking).
    pub stream: StdTcpStream,
    /// Accepted on `--admin-listen` (it serves the admin routes, not the client ones).
    pub admin_port: bool,
    /// Its place in the per-IP connection count, held for the connection's life.
    pub ip_slot: Option<IpSlot>,
    /// Its place in the shard's connection count, taken at accept.
    pub counted: CountedConnection,
}

/// What a shard thread receives: ticks and sockets.
#[derive(Debug)]
pub struct ShardInputs {
    /// Batches from the sequencer, and their wake-up.
    pub ticks: TickQueue,
    /// Accepted sockets.
    pub sockets: mpsc::UnboundedReceiver<Admitted>,
    /// Questions from the admin API.
    pub requests: mpsc::UnboundedReceiver<ShardRequest>,
}

/// Creates the queues of shard `id`: the sequencer's sender, the acceptor's handle, the
/// admin API's queue, and the shard thread's inputs.
pub fn channels(
    id: ShardId,
) -> (
    TickSender,
    ShardHandle,
    mpsc::UnboundedSender<ShardRequest>,
    ShardInputs,
) {
    let (sender, ticks) = tick_queue(QUEUE_BATCHES);
    let (sockets_tx, sockets) = mpsc::unbounded_channel();
    let (requests_tx, requests) = mpsc::unbounded_channel();
    (
        sender,
        ShardHandle {
            id,
            sockets: sockets_tx,
        },
        requests_tx,
        ShardInputs {
            ticks,
            sockets,
            requests,
        },
    )
}

/// Starts shard `id` on its own thread, pinned to `core` if one is given; `head` (shard 0's)
/// starts the sources and the sequencer on the same thread.
pub fn spawn(
    id: ShardId,
    core: Option<core_affinity::CoreId>,
    shared: Arc<Shared>,
    inputs: ShardInputs,
    head: Option<Head>,
) -> std::io::Result<JoinHandle<()>> {
    std::thread::Builder::new()
        .name(format!("shard-{id}"))
        .spawn(move || {
            if let Some(core) = core {
                if core_affinity::set_for_current(core) {
                    debug!(shard = id, core = core.id, "shard pinned");
                } else {
                    warn!(
                        shard = id,
                        core = core.id,
                        "could not pin shard to its core; running unpinned"
                    );
                }
            }
            let runtime = match tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
            {
                Ok(runtime) => runtime,
                Err(e) => {
                    warn!(shard = id, error = %e, "shard runtime failed to start");
                    shared.shutdown.trigger();
                    return;
                }
            };
            let local = tokio::task::LocalSet::new();
            local.block_on(&runtime, run(id, shared, inputs, head));
        })
}

/// The body of a shard thread: admit sockets, fan out ticks until the sequencer stops, then
/// close every client with 1001 and wait (bounded) for them to go.
async fn run(id: ShardId, shared: Arc<Shared>, inputs: ShardInputs, head: Option<Head>) {
    let ShardInputs {
        ticks,
        sockets,
        requests,
    } = inputs;
    let core = Rc::new(RefCell::new(ShardCore::new(id, shared.clone())));
    let admitting = tokio::task::spawn_local(admit(core.clone(), sockets));
    let answering = tokio::task::spawn_local(answer(core.clone(), requests));
    if let Some(head) = head {
        head.start();
    }
    shard::run(&core, &ticks).await;
    admitting.abort();
    answering.abort();

    let deadline = Instant::now() + shared.config.drain_timeout;
    core.borrow_mut().close_all(
        CloseCode::GOING_AWAY,
        CloseCode::GOING_AWAY.reason(),
        deadline,
    );
    loop {
        let (running, left) = core.borrow().tasks();
        if running == 0 {
            break;
        }
        tokio::select! {
            () = left.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => {
                debug!(shard = id, running, "drain deadline reached; dropping remaining clients");
                break;
            }
        }
    }
}

/// Answers the admin API's questions about this shard's sessions.
async fn answer(core: Rc<RefCell<ShardCore>>, mut requests: mpsc::UnboundedReceiver<ShardRequest>) {
    while let Some(request) = requests.recv().await {
        // Err from a send: the HTTP request that asked has gone; nothing to answer.
        match request {
            ShardRequest::Sessions(reply) => {
                let _ = reply.send(core.borrow().sessions());
            }
            ShardRequest::Close { id, reason, done } => {
                let _ = done.send(core.borrow_mut().close_session(id, &reason));
            }
        }
    }
}

/// Starts serving each socket the acceptor hands over.
async fn admit(core: Rc<RefCell<ShardCore>>, mut sockets: mpsc::UnboundedReceiver<Admitted>) {
    while let Some(admitted) = sockets.recv().await {
        match TcpStream::from_std(admitted.stream) {
            Ok(stream) => {
                let serve = http::serve(
                    core.clone(),
                    stream,
                    admitted.ip_slot,
                    admitted.counted,
                    admitted.admin_port,
                );
                tokio::task::spawn_local(serve);
            }
            Err(e) => warn!(error = %e, "could not register an accepted socket"),
        }
    }
}

/// Batches a shard queue holds before the sequencer waits (~4 s of 1,000 batches/s).
const QUEUE_BATCHES: usize = 4096;
