//! How long a starting relay keeps trying NATS, and how it says it gave up.

use std::time::{Duration, Instant};

use crate::nats::NatsError;

/// The start-up retries: pauses doubling from [`FIRST_PAUSE`] to [`LONGEST_PAUSE`], no
/// pause past [`START_PATIENCE`].
#[derive(Debug)]
pub(super) struct Patience {
    pub(super) since: Instant,
    next: Duration,
    pub(super) tries: u32,
}

impl Patience {
    pub(super) fn new() -> Self {
        Self {
            since: Instant::now(),
            next: FIRST_PAUSE,
            tries: 0,
        }
    }

    /// The pause before the next try, or `None` once the patience is spent.
    pub(super) fn pause(&mut self) -> Option<Duration> {
        self.tries += 1;
        let pause = self.next;
        if self.since.elapsed() + pause > START_PATIENCE {
            return None;
        }
        self.next = (self.next * 2).min(LONGEST_PAUSE);
        Some(pause)
    }

    /// `error`, saying how long the relay tried.
    pub(super) fn gave_up(&self, error: NatsError) -> NatsError {
        let tried = format!(
            "gave up after {} tries in {} s",
            self.tries,
            self.since.elapsed().as_secs()
        );
        match error {
            NatsError::Connect { url, reason } => NatsError::Connect {
                url,
                reason: format!("{reason} ({tried})"),
            },
            NatsError::JetStream { what, reason } => NatsError::JetStream {
                what,
                reason: format!("{reason} ({tried})"),
            },
            other @ NatsError::NoHistory(_) => other,
        }
    }
}

/// How long a starting relay keeps trying to reach NATS (and an edge waits for the epoch)
/// before it exits naming `--nats`: a server or sequencer started beside it is up within
/// seconds; one that is not after a minute needs a person.
pub const START_PATIENCE: Duration = Duration::from_secs(60);
/// The first pause between tries.
const FIRST_PAUSE: Duration = Duration::from_millis(250);
/// The longest pause between tries.
const LONGEST_PAUSE: Duration = Duration::from_secs(2);
