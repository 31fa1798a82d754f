//! The progress line: a spinner, and the worker counters summed for it.

use std::sync::atomic::Ordering;
use std::time::Duration;

use std::io::IsTerminal as _;
use std::sync::Mutex;
use std::time::Instant;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle, TermLike};

use crate::client::{WorkerHandle, WorkerProgress};

/// The spinner on a terminal; elsewhere (a pipe, a CI log, `report.sh`'s files) a plain
/// line every [`PLAIN_EVERY`], so a long run is never silent.
pub(super) fn progress_bar(enabled: bool) -> ProgressBar {
    if !enabled {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::new_spinner();
    if !std::io::stderr().is_terminal() {
        bar.set_draw_target(ProgressDrawTarget::term_like_with_hz(
            Box::new(PlainLines::default()),
            1,
        ));
    }
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

/// A "terminal" that writes each drawn progress line as a plain stderr line, at most one
/// per [`PLAIN_EVERY`], with no cursor movement or escape codes.
#[derive(Debug, Default)]
struct PlainLines {
    last: Mutex<Option<Instant>>,
}

impl TermLike for PlainLines {
    fn width(&self) -> u16 {
        160
    }

    fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
        Ok(())
    }

    fn write_line(&self, line: &str) -> std::io::Result<()> {
        self.write_str(line)
    }

    fn write_str(&self, text: &str) -> std::io::Result<()> {
        // Drop the spinner glyph: "⠁ [00:00:05] publishing ..." → "[00:00:05] publishing ...".
        let text = text.trim();
        let text = text.find('[').map_or(text, |at| &text[at..]);
        if text.is_empty() {
            return Ok(());
        }
        let mut last = self.last.lock().unwrap_or_else(|p| p.into_inner());
        if last.is_none_or(|at| at.elapsed() >= PLAIN_EVERY) {
            *last = Some(Instant::now());
            eprintln!("loadtest: {text}");
        }
        Ok(())
    }

    fn clear_line(&self) -> std::io::Result<()> {
        Ok(())
    }

    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// How often the progress line is written when stderr is not a terminal.
const PLAIN_EVERY: Duration = Duration::from_secs(5);
