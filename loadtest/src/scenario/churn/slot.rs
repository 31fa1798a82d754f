//! The churn's thread: the event publisher and the slots, each taking the ways a session
//! lives in turn, counting how each ended.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::thread::JoinHandle;
use std::time::Duration;

use anyhow::{Context, Result};
use rand::rngs::SmallRng;
use rand::{Rng, SeedableRng};
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

use super::counts::{ChurnCounts, ChurnPlan, EVENT_CHANNEL};
use super::sessions::{
    Position, control_session, deflate_session, drop_session, refresh_session, ws_session,
};
use crate::report::ChurnTotals;
use crate::symbols::symbol_name;

/// The churn's thread; stopped (and joined) by [`Churn::stop`].
#[derive(Debug)]
pub(crate) struct Churn {
    pub(crate) counts: Arc<ChurnCounts>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Churn {
    /// Starts `plan.slots` churning clients and the event publisher on a thread of its own.
    pub(crate) fn start(plan: ChurnPlan) -> Result<Self> {
        let counts = Arc::new(ChurnCounts::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (c, s) = (counts.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("lt-churn".into())
            .spawn(move || {
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("a current-thread runtime builds unless the OS is out of fds");
                rt.block_on(async move {
                    let mut tasks = Vec::new();
                    tasks.push(tokio::spawn(events(plan.ingest, c.clone(), s.clone())));
                    for slot in 0..plan.slots {
                        tasks.push(tokio::spawn(churn_slot(
                            plan.clone(),
                            slot,
                            c.clone(),
                            s.clone(),
                        )));
                    }
                    for t in tasks {
                        let _ = t.await;
                    }
                });
            })
            .context("spawning the churn thread")?;
        Ok(Self {
            counts,
            stop,
            thread: Some(thread),
        })
    }

    /// Ends every churning client (each within a few seconds) and joins the thread.
    pub(crate) fn stop(mut self) -> ChurnTotals {
        self.stop.store(true, Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
        self.counts.totals()
    }
}

impl Drop for Churn {
    fn drop(&mut self) {
        self.stop.store(true, Relaxed);
    }
}

/// Events on [`EVENT_CHANNEL`], 20 a second, over the NDJSON ingest.
async fn events(ingest: SocketAddr, counts: Arc<ChurnCounts>, stop: Arc<AtomicBool>) {
    let mut n = 0u64;
    while !stop.load(Relaxed) {
        let Ok(mut socket) = TcpStream::connect(ingest).await else {
            tokio::time::sleep(Duration::from_millis(200)).await;
            continue;
        };
        while !stop.load(Relaxed) {
            n += 1;
            let line = format!("{{\"channel\":\"{EVENT_CHANNEL}\",\"data\":{{\"n\":{n}}}}}\n");
            if socket.write_all(line.as_bytes()).await.is_err() {
                break;
            }
            counts.events_published.fetch_add(1, Relaxed);
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }
}

/// The ways a churn session lives, taken in turn by each slot (offset by its index).
#[derive(Clone, Copy, Debug)]
enum Life {
    Plain(&'static str),
    Resume,
    Control,
    Deflate,
    Stall,
    Drop,
    Refresh,
}

const LIVES: [Life; 9] = [
    Life::Plain("json"),
    Life::Resume,
    Life::Plain("protobuf"),
    Life::Control,
    Life::Plain("gzip"),
    Life::Deflate,
    Life::Stall,
    Life::Drop,
    Life::Refresh,
];

/// How long a resuming client stays away: a few ticks of its symbol at the soak's rates.
const RESUME_AWAY: Duration = Duration::from_millis(500);

async fn churn_slot(plan: ChurnPlan, slot: usize, counts: Arc<ChurnCounts>, stop: Arc<AtomicBool>) {
    let mut rng = SmallRng::seed_from_u64(plan.seed ^ (slot as u64).wrapping_mul(0x9E37_79B9));
    // The last (symbol, seq) a session read, for the next resume.
    let mut position: Option<Position> = None;
    let mut turn = slot;
    // Slots start spread over the first second, not in one burst.
    tokio::time::sleep(Duration::from_millis(rng.random_range(0..1000))).await;
    while !stop.load(Relaxed) {
        let life = LIVES[turn % LIVES.len()];
        turn += 1;
        let symbol = symbol_name(rng.random_range(0..plan.symbols), plan.symbols);
        let lifetime = Duration::from_millis(rng.random_range(300..2500));
        let result = match life {
            Life::Plain(encoding) => {
                let query =
                    format!("?symbols={symbol}&channels={EVENT_CHANNEL}&encoding={encoding}");
                ws_session(&plan, &query, lifetime, &counts, None).await
            }
            Life::Resume => match position.take() {
                Some(at) => {
                    counts.resumes.fetch_add(1, Relaxed);
                    // Away long enough to miss ticks, so the replay is what it reads first.
                    tokio::time::sleep(RESUME_AWAY).await;
                    let query = at.resume_query();
                    ws_session(&plan, &query, lifetime, &counts, Some(at.seq)).await
                }
                None => {
                    ws_session(
                        &plan,
                        &format!("?symbols={symbol}"),
                        lifetime,
                        &counts,
                        None,
                    )
                    .await
                }
            },
            Life::Control => control_session(&plan, &symbol, lifetime, &counts).await,
            Life::Deflate => deflate_session(&plan, &symbol, lifetime, &counts, false).await,
            Life::Stall => {
                counts.stalled.fetch_add(1, Relaxed);
                deflate_session(&plan, &symbol, lifetime, &counts, true).await
            }
            Life::Drop => {
                counts.dropped.fetch_add(1, Relaxed);
                drop_session(&plan, &symbol, lifetime).await
            }
            Life::Refresh if plan.token.is_some() => {
                refresh_session(&plan, &symbol, lifetime, &counts).await
            }
            Life::Refresh => continue,
        };
        match result {
            Ok(Some(p)) => {
                counts.sessions.fetch_add(1, Relaxed);
                position = Some(p);
            }
            Ok(None) => {
                counts.sessions.fetch_add(1, Relaxed);
            }
            Err(_) => {
                counts.failed.fetch_add(1, Relaxed);
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}
