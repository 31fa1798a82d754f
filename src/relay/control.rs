//! The control thread: the client accept loops, JWKS reloads and TLS certificate reloads,
//! and the periodic report of log lines a storm suppressed.

use std::net::TcpListener as StdTcpListener;
use std::sync::Arc;

use tracing::{info, warn};

use crate::auth::{self, jwks};
use crate::listener;
use crate::pipeline;
use crate::shard_thread::ShardHandle;
use crate::shared::Shared;
use crate::shutdown::Phase;

/// The bound listeners the control thread serves.
pub(super) struct Listeners {
    pub(super) http: StdTcpListener,
    pub(super) admin: Option<StdTcpListener>,
}

/// The control thread: client accept loops, JWKS reloads, TLS certificate reloads.
pub(super) fn control(
    shared: Arc<Shared>,
    listeners: Listeners,
    handles: Vec<ShardHandle>,
    jwks_source: Option<jwks::Source>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            warn!(error = %e, "control runtime failed to start; stopping");
            shared.shutdown.trigger();
            return;
        }
    };
    let local = tokio::task::LocalSet::new();
    local.block_on(&runtime, async move {
        let Listeners { http, admin } = listeners;
        let http = pipeline::registered(http);
        let mut tasks = tokio::task::JoinSet::new();
        if let (Some(source), Some(verifier)) = (jwks_source, &shared.auth.verifier) {
            tasks.spawn_local(auth::jwks::refresh(
                verifier.clone(),
                source,
                shared.config.jwks_refresh,
                shared.shutdown.clone(),
            ));
        }
        if let Some(tls) = &shared.tls {
            tasks.spawn_local(tls.clone().watch(shared.shutdown.clone()));
        }
        if let Some(admin) = admin {
            let admin = pipeline::registered(admin);
            tasks.spawn_local(listener::accept(
                admin,
                handles.clone(),
                shared.clone(),
                true,
            ));
        }
        tasks.spawn_local(listener::accept(http, handles, shared.clone(), false));
        tasks.spawn_local(report_suppressed_logs(shared.clone()));
        shared.shutdown.set_phase(Phase::Ready);
        while tasks.join_next().await.is_some() {}
    });
}

/// Every few seconds, one line per lifecycle log gate that dropped lines in a storm, so
/// the count is not left waiting for the next line let through.
async fn report_suppressed_logs(shared: Arc<Shared>) {
    let mut every = tokio::time::interval(crate::limits::LOG_SUPPRESSED_EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown first: nothing here is worth finishing.
            biased;
            () = shared.shutdown.wait() => return,
            _ = every.tick() => {}
        }
        for (message, gate) in shared.lifecycle_log.gates() {
            let suppressed = gate.take_suppressed();
            if suppressed > 0 {
                info!(
                    lines = message,
                    suppressed, "{suppressed} similar log lines suppressed"
                );
            }
        }
    }
}
