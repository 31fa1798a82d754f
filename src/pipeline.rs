//! The head of the data path: the ingest listeners, the demo feed and the sequencer, started
//! as tasks on shard 0's thread.
//!
//! Every thread a tick must wake on its way is a wait for a free core when the box is busy
//! (on a 2-CPU box that also runs its clients, each wake-up waits behind a client's time
//! slice). With the sources and the sequencer on a thread of their own, a tick woke two:
//! the sequencer's, then the shard's. Here the TCP ingest and the demo feed hand their
//! batches to the sequencer on the same runtime, and the sequencer queues them for every
//! shard: shard 0 takes them without any thread hop, the others with one. Sources on other
//! threads (`POST /api/publish` on any shard, the NATS follower, a replay file) reach the
//! sequencer through the same [`Inbox`](crate::ingest::Inbox) as before.
//!
//! Their cost on shard 0 is per tick (a parse and one encode per wanted encoding), not per
//! delivery: small beside the fan-out it shares the thread with.

use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;

use crate::ingest::{self, InboxReceiver};
use crate::sequencer::Sequencer;
use crate::shared::Shared;

/// What shard 0's thread starts beside its own tasks.
#[derive(Debug)]
pub struct Head {
    shared: Arc<Shared>,
    /// NDJSON and protobuf ingest listeners (none on an edge).
    ingest: Option<(StdTcpListener, StdTcpListener)>,
    sequencer: Sequencer,
    inbox: InboxReceiver,
}

impl Head {
    /// The sources and the sequencer, ready to be started on a shard's thread.
    pub fn new(
        shared: Arc<Shared>,
        ingest: Option<(StdTcpListener, StdTcpListener)>,
        sequencer: Sequencer,
        inbox: InboxReceiver,
    ) -> Self {
        Self {
            shared,
            ingest,
            sequencer,
            inbox,
        }
    }

    /// Spawns the sequencer, the ingest listeners and the demo feed on the current
    /// `LocalSet`. Each ends on shutdown; the sequencer drains its inbox first and then
    /// closes the shard queues, which ends the fan-out loops.
    pub fn start(self) {
        let Self {
            shared,
            ingest,
            sequencer,
            inbox,
        } = self;
        let sequencer = sequencer.evicting_after(shared.config.evict_idle);
        tokio::task::spawn_local(sequencer.run(inbox, shared.shutdown.clone()));
        let config = &shared.config;
        let ingest = ingest.map(|(json, proto)| {
            [
                (registered(json), ingest::tcp::Format::Ndjson),
                (registered(proto), ingest::tcp::Format::Protobuf),
            ]
        });
        for (listener, format) in ingest.into_iter().flatten() {
            tokio::task::spawn_local(ingest::tcp::serve(
                listener,
                format,
                shared.inbox.clone(),
                shared.metrics.clone(),
                config.max_ingest_line,
                config.max_event_bytes,
                shared.shutdown.clone(),
            ));
        }
        if config.demo {
            tokio::task::spawn_local(ingest::demo::run(
                shared.inbox.clone(),
                config.demo_symbols,
                config.demo_rate,
                shared.shutdown.clone(),
            ));
        }
    }
}

/// A listener bound (non-blocking) by [`crate::relay::Relay::start`], registered with the
/// runtime of the thread that serves it (here and on the control thread).
pub fn registered(listener: StdTcpListener) -> tokio::net::TcpListener {
    tokio::net::TcpListener::from_std(listener).expect("listener was bound and set non-blocking")
}
