//! [`Shutdown`]: the one handle that tells every part of the relay to stop, and [`Phase`].

use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use tokio::sync::watch;

/// Where the relay is in its life; `/ready` answers 200 only in [`Phase::Ready`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    /// Binding and spawning.
    Starting = 0,
    /// Serving.
    Ready = 1,
    /// Shutdown requested: no new clients, flushing the rest.
    Draining = 2,
}

impl Phase {
    /// The name shown by `/health`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Starting => "starting",
            Self::Ready => "ready",
            Self::Draining => "draining",
        }
    }
}

/// A cloneable stop signal: [`Shutdown::trigger`] once, [`Shutdown::wait`] anywhere.
#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    rx: watch::Receiver<bool>,
    phase: Arc<AtomicU8>,
}

impl Shutdown {
    /// A signal not yet triggered, in [`Phase::Starting`].
    pub fn new() -> Self {
        let (tx, rx) = watch::channel(false);
        Self {
            tx: Arc::new(tx),
            rx,
            phase: Arc::new(AtomicU8::new(Phase::Starting as u8)),
        }
    }

    /// Asks everything to stop (idempotent) and enters [`Phase::Draining`].
    pub fn trigger(&self) {
        self.set_phase(Phase::Draining);
        self.tx.send_replace(true);
    }

    /// Whether [`Shutdown::trigger`] has been called.
    pub fn is_triggered(&self) -> bool {
        *self.rx.borrow()
    }

    /// Resolves once the signal is triggered.
    pub async fn wait(&self) {
        let mut rx = self.rx.clone();
        // An Err means every sender is gone, which also means stop.
        let _ = rx.wait_for(|stop| *stop).await;
    }

    /// The current phase.
    pub fn phase(&self) -> Phase {
        match self.phase.load(Ordering::Acquire) {
            0 => Phase::Starting,
            1 => Phase::Ready,
            _ => Phase::Draining,
        }
    }

    /// Moves to `phase` (never back from draining).
    pub fn set_phase(&self, phase: Phase) {
        self.phase.fetch_max(phase as u8, Ordering::AcqRel);
    }
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}
