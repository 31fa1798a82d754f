//! The shard's OS thread: pinned to a core, running a current-thread runtime. The only
//! place that knows about cores.

use std::sync::Arc;
use std::thread::JoinHandle;

use tracing::{debug, warn};

use super::{ShardId, ShardInputs};
use crate::relay::Shared;

/// Starts shard `id` on its own thread, pinned to `core` when the machine allows.
pub fn spawn(
    id: ShardId,
    core: Option<core_affinity::CoreId>,
    shared: Arc<Shared>,
    inputs: ShardInputs,
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
            local.block_on(&runtime, super::fanout::run_shard(id, shared, inputs));
        })
}
