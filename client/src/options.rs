//! [`Options`]: what to subscribe to, in which encoding, and how to behave when things go wrong.

use std::path::PathBuf;
use std::time::Duration;

use crate::item::{Key, Stream};

/// How the client connects and recovers. Build with [`Options::new`] and the setters.
#[derive(Clone, Debug)]
pub struct Options {
    pub(crate) symbols: Vec<String>,
    pub(crate) channels: Vec<String>,
    pub(crate) encoding: Encoding,
    pub(crate) token: Option<String>,
    pub(crate) heartbeat: Option<Duration>,
    pub(crate) liveness_timeout: Duration,
    pub(crate) backoff: Backoff,
    pub(crate) buffer: usize,
    pub(crate) slow_consumer: SlowConsumer,
    pub(crate) resume_from: Vec<(Stream, u64)>,
    pub(crate) resume_epoch: Option<String>,
    pub(crate) ca_files: Vec<PathBuf>,
    pub(crate) batch: bool,
}

/// The longest wait before reconnecting to a relay that is going away (see
/// [`Backoff::going_away_jitter`]): short against any reconnect (a handshake and a resume).
const GOING_AWAY_JITTER: Duration = Duration::from_millis(50);

/// Whether a client asks the relay for several messages per frame unless told otherwise.
// On: the relay frames what is pending at each write as one batch (docs/PROTOCOL.md, "Batches").
pub(crate) const BATCH_BY_DEFAULT: bool = true;

/// The wire encoding (docs/ENCODINGS.md in the relay).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum Encoding {
    /// Text frames, one JSON object each.
    #[default]
    Json,
    /// Binary `tickrelay.v1.ServerMessage` frames.
    Protobuf,
    /// JSON in one gzip stream per connection, a sync flush per message.
    Gzip,
}

/// What happens when the application reads the stream more slowly than ticks arrive.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum SlowConsumer {
    /// Stop reading the socket until the application catches up. The relay then applies its
    /// own policy (it closes with 4008), the client reconnects and resumes: lossless while
    /// the relay's replay ring covers the lag, a [`Gap`](crate::Gap) beyond it.
    #[default]
    Wait,
    /// Keep reading; while the buffer is full keep only the newest tick of each symbol, and
    /// deliver a [`Gap`](crate::Gap) (`client_conflated`) for the seqs skipped. Also asks the
    /// relay for `slow=conflate`.
    Conflate,
    /// End the stream with [`Error::ConsumerTooSlow`](crate::Error::ConsumerTooSlow).
    Error,
}

/// Reconnect delays: exponential from `initial` to `max`, each multiplied by a random factor
/// in 0.5..1.0 so that many clients of a restarted relay do not return in one burst.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Backoff {
    /// The delay before the first retry.
    pub initial: Duration,
    /// The longest delay.
    pub max: Duration,
}

impl Default for Backoff {
    /// 100 ms doubling to 5 s: a relay restart (about a second) is bridged within a few
    /// tries, and a relay that stays down costs one attempt every few seconds.
    fn default() -> Self {
        Self {
            initial: Duration::from_millis(100),
            max: Duration::from_secs(5),
        }
    }
}

impl Backoff {
    /// The wait before reconnecting when the relay closed with going away (1001) or service
    /// restart (1012): up to [`GOING_AWAY_JITTER`], so that the clients of a stopping relay
    /// do not all arrive at the next one in the same instant, and no backoff.
    pub(crate) fn going_away_jitter() -> Duration {
        GOING_AWAY_JITTER.mul_f64(rand::random_range(0.0..1.0))
    }

    /// The delay before retry number `attempt` (0 for the first), jittered.
    pub fn delay(&self, attempt: u32) -> Duration {
        let base = self
            .initial
            .saturating_mul(2u32.saturating_pow(attempt.min(20)))
            .min(self.max);
        base.mul_f64(rand::random_range(0.5..1.0))
    }
}

impl Default for Options {
    fn default() -> Self {
        Self::new()
    }
}

impl Options {
    /// JSON, no subscriptions yet, default liveness (10 s), backoff and buffer (4,096).
    pub fn new() -> Self {
        Self {
            symbols: Vec::new(),
            channels: Vec::new(),
            encoding: Encoding::Json,
            token: None,
            heartbeat: None,
            liveness_timeout: Duration::from_secs(10),
            backoff: Backoff::default(),
            buffer: 4096,
            slow_consumer: SlowConsumer::Wait,
            resume_from: Vec::new(),
            resume_epoch: None,
            ca_files: Vec::new(),
            batch: BATCH_BY_DEFAULT,
        }
    }

    /// Symbols to subscribe to (`*` for every symbol; `SYMBOL@TIER`, e.g. `BTC-USD@1s`, for a
    /// rate tier of the relay's `--rate-tiers`, beside or instead of the raw stream).
    pub fn symbols<S: Into<String>>(mut self, symbols: impl IntoIterator<Item = S>) -> Self {
        self.symbols.extend(symbols.into_iter().map(Into::into));
        self
    }

    /// Event channels to subscribe to, sent as `?channels=` (e.g. `news`, or `user:<id>` for
    /// the private channel of the token's user; `CHANNEL@TIER` for a rate tier). Their events arrive as
    /// [`Item::Event`](crate::Item::Event); on a reconnect they resume like symbols.
    pub fn channels<S: Into<String>>(mut self, channels: impl IntoIterator<Item = S>) -> Self {
        self.channels.extend(channels.into_iter().map(Into::into));
        self
    }

    /// The wire encoding.
    pub fn encoding(mut self, encoding: Encoding) -> Self {
        self.encoding = encoding;
        self
    }

    /// A JWT, sent as `Authorization: Bearer <token>` on every connection. A token the relay
    /// refuses ends the stream with a clear error instead of reconnecting:
    /// [`ConnectError::Unauthorized`](crate::ConnectError::Unauthorized) from
    /// [`Client::connect`](crate::Client::connect), later
    /// [`Error::Unauthorized`](crate::Error::Unauthorized).
    pub fn token(mut self, token: impl Into<String>) -> Self {
        self.token = Some(token.into());
        self
    }

    /// Ask the relay for an application heartbeat every `interval` (at least 100 ms). Not
    /// needed for liveness, which the client checks with pings of its own.
    pub fn heartbeat(mut self, interval: Duration) -> Self {
        self.heartbeat = Some(interval);
        self
    }

    /// How long a connection may stay silent before the client gives it up and reconnects.
    /// After half of it the client sends a ping (`{"op":"ping"}`), which the relay answers,
    /// so a healthy but quiet connection is never mistaken for a dead one.
    pub fn liveness_timeout(mut self, timeout: Duration) -> Self {
        self.liveness_timeout = timeout;
        self
    }

    /// Trust the CA certificates in `path` (PEM) for `wss://`, besides Mozilla's roots: for a
    /// relay with a self-signed or private-CA certificate. Read once, at
    /// [`Client::connect`](crate::Client::connect); may be given more than once.
    pub fn ca_file(mut self, path: impl Into<PathBuf>) -> Self {
        self.ca_files.push(path.into());
        self
    }

    /// Ask the relay for several messages per frame (`?batch=on`): whatever is pending for
    /// this client when the relay writes goes out as one frame, so a busy stream costs fewer
    /// frames to read; a quiet one is sent as before, never held back to fill a frame. Every
    /// message is delivered exactly as without batches.
    pub fn batch(mut self, on: bool) -> Self {
        self.batch = on;
        self
    }

    /// Reconnect delays.
    pub fn backoff(mut self, backoff: Backoff) -> Self {
        self.backoff = backoff;
        self
    }

    /// Items buffered for the application before [`SlowConsumer`] applies (at least 1).
    pub fn buffer(mut self, items: usize) -> Self {
        self.buffer = items;
        self
    }

    /// What to do when the application falls behind.
    pub fn slow_consumer(mut self, policy: SlowConsumer) -> Self {
        self.slow_consumer = policy;
        self
    }

    /// Start from known positions (the last seq the application has per symbol, or per tier
    /// as `SYMBOL@TIER`, e.g. from
    /// [`Client::positions`](crate::Client::positions) of an earlier client): the first
    /// connection resumes them instead of starting from snapshots. Give their epoch with
    /// [`Options::resume_epoch`]: the relay trusts no position without one (it answers a
    /// [`Reset`](crate::Reset) and the newest value).
    pub fn resume_from<S: Into<String>>(
        mut self,
        positions: impl IntoIterator<Item = (S, u64)>,
    ) -> Self {
        self.resume_from.extend(
            positions
                .into_iter()
                .map(|(s, seq)| (Stream::parse(&s.into(), Key::Symbol), seq)),
        );
        self
    }

    /// The epoch of the [`Options::resume_from`] positions: the one the earlier client was
    /// told ([`Connected::epoch`](crate::Connected)).
    pub fn resume_epoch(mut self, epoch: impl Into<String>) -> Self {
        self.resume_epoch = Some(epoch.into());
        self
    }
}

impl Encoding {
    /// The name in `?encoding=`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Json => "json",
            Self::Protobuf => "protobuf",
            Self::Gzip => "gzip",
        }
    }
}

impl std::str::FromStr for Encoding {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "json" => Ok(Self::Json),
            "protobuf" => Ok(Self::Protobuf),
            "gzip" => Ok(Self::Gzip),
            other => Err(format!(
                "unknown encoding `{other}`; expected json, protobuf or gzip"
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_grows_to_its_cap_with_jitter() {
        let b = Backoff::default();
        for attempt in 0..30 {
            let d = b.delay(attempt);
            let base = (b.initial * 2u32.pow(attempt.min(20))).min(b.max);
            assert!(
                d >= base / 2 && d <= base,
                "attempt {attempt}: {d:?} vs {base:?}"
            );
        }
    }
}
