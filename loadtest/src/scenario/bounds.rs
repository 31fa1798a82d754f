//! What keeps a run inside the machine: the open-file limit, and the `--max-time` watchdog.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, ensure};

/// Raises the open-file soft limit to the hard limit and checks `clients` fit under it.
pub(super) fn raise_nofile(clients: usize) -> Result<u64> {
    let limit = rlimit::increase_nofile_limit(u64::MAX).context("raising RLIMIT_NOFILE")?;
    let needed = clients as u64 + 64;
    ensure!(
        needed <= limit,
        "{clients} clients need about {needed} open files, the limit is {limit} \
         (the relay needs as many: stay under it on both sides)"
    );
    Ok(limit)
}

/// Bounds the whole run: past the deadline it kills the relay it spawned and exits 3.
pub(super) struct Watchdog {
    disarmed: Arc<AtomicBool>,
}

impl Watchdog {
    pub(super) fn arm(after: Duration, relay_pid: Option<u32>) -> Self {
        let disarmed = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&disarmed);
        let spawned = std::thread::Builder::new()
            .name("lt-watchdog".into())
            .spawn(move || {
                let deadline = Instant::now() + after;
                while Instant::now() < deadline {
                    if flag.load(Ordering::Relaxed) {
                        return;
                    }
                    std::thread::sleep(Duration::from_millis(200));
                }
                if flag.load(Ordering::Relaxed) {
                    return;
                }
                eprintln!("loadtest: run exceeded --max-time {after:?}; aborting");
                if let Some(pid) = relay_pid.and_then(|p| rustix::process::Pid::from_raw(p as i32))
                {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
                // The run is stuck somewhere we cannot unwind from; the relay is gone already.
                #[allow(clippy::exit)]
                std::process::exit(3);
            });
        if let Err(e) = spawned {
            eprintln!("loadtest: no watchdog thread ({e}); the run is not time-bounded");
        }
        Self { disarmed }
    }

    pub(super) fn disarm(&self) {
        self.disarmed.store(true, Ordering::Relaxed);
    }
}
