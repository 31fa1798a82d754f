//! The progress line: a spinner, and the worker counters summed for it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use indicatif::{ProgressBar, ProgressStyle};

use crate::client::{WorkerHandle, WorkerProgress};

pub(super) fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    bar.set_style(
        ProgressStyle::with_template("{spinner} [{elapsed_precise}] {wide_msg}")
            .expect("the template is valid"),
    );
    bar.enable_steady_tick(Duration::from_millis(200));
    bar
}

#[derive(Clone, Copy, Debug, Default)]
pub(super) struct ProgressTotals {
    pub(super) welcomed: u64,
    pub(super) failed: u64,
    pub(super) closed: u64,
    pub(super) ticks: u64,
    pub(super) ticks_fast: u64,
}

impl ProgressTotals {
    pub(super) fn add(&mut self, p: &WorkerProgress) {
        self.welcomed += p.welcomed.load(Ordering::Relaxed);
        self.failed += p.failed.load(Ordering::Relaxed);
        self.closed += p.closed.load(Ordering::Relaxed);
        self.ticks += p.ticks.load(Ordering::Relaxed);
        self.ticks_fast += p.ticks_fast.load(Ordering::Relaxed);
    }

    pub(super) fn sum(workers: &[WorkerHandle]) -> Self {
        let mut t = Self::default();
        for w in workers {
            t.add(&w.progress);
        }
        t
    }
}
