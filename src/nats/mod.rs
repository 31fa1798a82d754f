//! The NATS hop between the sequencer and the shards, for `--role sequencer` and
//! `--role edge` (docs/SCALING.md).
//!
//! One JetStream stream (`--nats-stream`) holds one history: every sequenced tick and event
//! once, on its key's subject ([`subject`]), `max_msgs_per_subject` = `--replay-depth`, and
//! the history's epoch on a one-message subject. The sequencer side ([`publish`]) consumes
//! the sequencer's batches like a shard does and publishes each item with an ack, retrying
//! (a message id makes a retry a duplicate the stream drops) and never skipping one; while
//! it waits, its queue fills and the sequencer, the inbox and ingest wait with it. The edge
//! side ([`follow`]) reads the subjects its clients want through ordered consumers (which
//! re-create themselves past a lost message or connection) and hands the items, seqs as
//! published, to the edge's sequencer in follow mode, which feeds the shards exactly as it
//! does on one box.
//!
//! What stays true: a restarted sequencer continues every key's seq from the stream under
//! the same epoch; a message that is not exactly a tick or event of this stream is counted
//! (`bad_nats_message`) and skipped.

pub mod books;
mod connect;
mod consume;
pub mod follow;
pub mod lease;
pub mod publish;
mod restore;
pub mod stored;
pub mod subject;
pub mod wire;

/// A real `nats-server` for the unit tests below and in this module's files: the same one
/// the integration tests start.
#[cfg(test)]
#[path = "../../tests/nats_common/mod.rs"]
mod nats_server;

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::{self, stream};
use futures_util::TryStreamExt;
use tokio::sync::watch;
use tracing::warn;

use crate::config::Config;
use crate::error::ErrorCode;
use crate::event::Key;
use crate::metrics::Metrics;
use crate::tick::Seq;
pub use connect::connect;
pub use follow::Follow;
use subject::Subjects;

/// A connection to the stream of this deployment's history.
#[derive(Debug, Clone)]
pub struct History {
    /// JetStream requests.
    pub js: jetstream::Context,
    /// The stream.
    pub stream: stream::Stream,
    /// Its subject names.
    pub subjects: Subjects,
    /// The history's identity (every seq in the stream belongs to it).
    pub epoch: u64,
    /// Counts what may have cost the consumers their server-side state: the connection's
    /// returns after a loss (a server restart loses them) and, on an edge, changes of the
    /// stream's cluster (a node that held a consumer died while the connection to another
    /// stayed up). Consumers re-create themselves from their next stream sequence on each.
    pub disturbed: Arc<watch::Sender<u64>>,
}

/// A connection, and its count of returns after a loss.
#[derive(Debug)]
pub struct Connection {
    /// The client.
    pub client: async_nats::Client,
    /// See [`History::disturbed`].
    pub disturbed: Arc<watch::Sender<u64>>,
}

/// Why the NATS side could not start or answer.
#[derive(Debug, thiserror::Error)]
pub enum NatsError {
    /// The server could not be reached.
    #[error("--nats {url}: {reason}")]
    Connect {
        /// The URLs, without any password.
        url: String,
        /// What went wrong.
        reason: String,
    },
    /// A JetStream request failed (no JetStream, a refused stream config, a timeout).
    #[error("JetStream {what}: {reason}")]
    JetStream {
        /// Which request.
        what: &'static str,
        /// What went wrong.
        reason: String,
    },
    /// An edge found no history: no sequencer has created the stream and its epoch yet.
    #[error("stream `{0}` has no epoch yet: start the sequencer first")]
    NoHistory(String),
}

impl NatsError {
    /// The stable code it is counted under.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Connect { .. } | Self::JetStream { .. } | Self::NoHistory(_) => {
                ErrorCode::NatsUnavailable
            }
        }
    }
}

impl History {
    /// The sequencer's view: creates the stream if it is missing and reads its epoch, or
    /// starts a new history (a new random `fresh_epoch`) in an empty stream.
    pub async fn open_or_create(
        connection: Connection,
        config: &Config,
        fresh_epoch: u64,
    ) -> Result<Self, NatsError> {
        let js = context(connection.client);
        let subjects = Subjects::new(&config.scale.nats_stream);
        let depth = i64::try_from(per_subject(config)).unwrap_or(i64::MAX);
        let mut stream = js
            .get_or_create_stream(stream::Config {
                name: config.scale.nats_stream.clone(),
                subjects: vec![subjects.all()],
                max_messages_per_subject: depth,
                storage: stream::StorageType::File,
                discard: stream::DiscardPolicy::Old,
                allow_direct: true,
                duplicate_window: DUPLICATE_WINDOW,
                num_replicas: config.scale.nats_replicas,
                ..Default::default()
            })
            .await
            .map_err(jetstream_error("create stream"))?;
        if stream.cached_info().config.max_messages_per_subject < depth {
            // A stream made before bars were on (or with a smaller depth) keeps too few
            // closed bars for a restart to rebuild 24 hours: raise its limit, nothing else.
            let mut wider = stream.cached_info().config.clone();
            wider.max_messages_per_subject = depth;
            js.update_stream(wider)
                .await
                .map_err(jetstream_error("update stream"))?;
            stream = js
                .get_stream(&config.scale.nats_stream)
                .await
                .map_err(jetstream_error("update stream"))?;
        }
        let epoch = match read_epoch(&stream, &subjects).await? {
            Some(epoch) => epoch,
            None => {
                let mut headers = async_nats::HeaderMap::new();
                // Only the first sequencer of a history writes its epoch.
                headers.insert("Nats-Expected-Last-Subject-Sequence", "0");
                let written = js
                    .publish_with_headers(subjects.epoch(), headers, fresh_epoch.to_string().into())
                    .await
                    .map_err(jetstream_error("publish epoch"))?
                    .await;
                match written {
                    Ok(_) => fresh_epoch,
                    Err(_) => read_epoch(&stream, &subjects)
                        .await?
                        .ok_or_else(|| NatsError::NoHistory(config.scale.nats_stream.clone()))?,
                }
            }
        };
        Ok(Self {
            js,
            stream,
            subjects,
            epoch,
            disturbed: connection.disturbed,
        })
    }

    /// An edge's view: the stream and epoch a sequencer made.
    pub async fn open(connection: Connection, config: &Config) -> Result<Self, NatsError> {
        let js = context(connection.client);
        let name = config.scale.nats_stream.clone();
        let subjects = Subjects::new(&name);
        let stream = js
            .get_stream(&name)
            .await
            .map_err(|_| NatsError::NoHistory(name.clone()))?;
        let epoch = read_epoch(&stream, &subjects)
            .await?
            .ok_or(NatsError::NoHistory(name))?;
        Ok(Self {
            js,
            stream,
            subjects,
            epoch,
            disturbed: connection.disturbed,
        })
    }

    /// The newest seq of every key in the stream (of this epoch): where a restarted
    /// sequencer continues. One request per subject, at start only.
    pub async fn last_seqs(&self, metrics: &Metrics) -> Result<Vec<(Key, Seq)>, NatsError> {
        let mut listing = self
            .stream
            .info_with_subjects(self.subjects.all())
            .await
            .map_err(jetstream_error("stream info"))?;
        let mut names = Vec::new();
        while let Some((subject, _count)) = listing
            .try_next()
            .await
            .map_err(jetstream_error("stream subjects"))?
        {
            // A book's seq lives in its book: restored with it (`books::restore`).
            let book = matches!(
                self.subjects.parse(&subject),
                Ok((
                    subject::Carries::BookUpdates | subject::Carries::BookCheckpoints,
                    _
                ))
            );
            if subject != self.subjects.epoch() && !book {
                names.push(subject);
            }
        }
        let mut last: HashMap<Key, Seq> = HashMap::with_capacity(names.len());
        for subject in names {
            let message = self
                .stream
                .get_last_raw_message_by_subject(&subject)
                .await
                .map_err(jetstream_error("last message"))?;
            match wire::decode(
                &self.subjects,
                &subject,
                Some(&message.headers),
                &message.payload,
            ) {
                Ok(incoming) if incoming.epoch == self.epoch => {
                    // A bars channel has two subjects: its newest seq is the larger.
                    let seq = last.entry(incoming.item.key()).or_insert(Seq(0));
                    *seq = (*seq).max(incoming.item.seq());
                }
                Ok(_) => warn!(subject, "a message of another epoch in the stream; ignored"),
                Err(e) => {
                    metrics.count_error(ErrorCode::BadNatsMessage);
                    warn!(subject, error = %e, "malformed last message; seq not continued");
                }
            }
        }
        Ok(last.into_iter().collect())
    }
}

/// A JetStream context whose requests and acks give up after [`REQUEST_TIMEOUT`]: a
/// request that went to a node that just died is asked again (of a live one) after seconds,
/// not after the client's default of 10 s per try.
pub fn context(client: async_nats::Client) -> jetstream::Context {
    jetstream::ContextBuilder::new()
        .timeout(REQUEST_TIMEOUT)
        .build(client)
}

/// How long a JetStream request or publish ack may take before it is tried again: a
/// cluster elects a new stream leader within about this long after a node dies.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(2);

/// The stream's per-subject limit: `--replay-depth`, or with bars on enough closed bars for
/// a restart to rebuild a ticker's 24 hours of 1-minute bars and a snapshot's history.
pub fn per_subject(config: &Config) -> usize {
    let derived = &config.derived;
    if derived.enabled() {
        let bars = (crate::sequencer::ticker::WINDOW_MINUTES + 1).max(derived.bar_history);
        config.replay_depth.max(bars)
    } else {
        config.replay_depth
    }
}

pub(super) async fn read_epoch(
    stream: &stream::Stream,
    subjects: &Subjects,
) -> Result<Option<u64>, NatsError> {
    match stream
        .get_last_raw_message_by_subject(&subjects.epoch())
        .await
    {
        Ok(message) => std::str::from_utf8(&message.payload)
            .ok()
            .and_then(|text| text.parse::<u64>().ok())
            .filter(|epoch| *epoch > 0)
            .map(Some)
            .ok_or_else(|| NatsError::JetStream {
                what: "read epoch",
                reason: format!("`{}` does not hold an epoch", subjects.epoch()),
            }),
        Err(e) if e.kind() == stream::LastRawMessageErrorKind::NoMessageFound => Ok(None),
        Err(e) => Err(jetstream_error("read epoch")(e)),
    }
}

pub(super) fn jetstream_error<E: std::fmt::Display>(what: &'static str) -> impl Fn(E) -> NatsError {
    move |e| NatsError::JetStream {
        what,
        reason: e.to_string(),
    }
}

/// How long the stream remembers message ids: a publish retried within it is stored once.
const DUPLICATE_WINDOW: Duration = Duration::from_secs(120);

#[cfg(test)]
mod tests {
    use super::nats_server::NatsServer;
    use super::*;
    use crate::event::Item;
    use crate::tick::sequenced;

    /// A server, a config naming it and stream `name`, and a connection (this module's
    /// files' tests start theirs here too).
    pub(super) async fn setup(
        name: &str,
    ) -> Option<(NatsServer, Config, Connection, Arc<Metrics>)> {
        let server = NatsServer::start(name)?;
        let mut config = Config::for_tests();
        config.scale.nats = Some(server.url());
        config.scale.nats_stream = name.to_owned();
        let metrics = Arc::new(Metrics::new(1));
        let connection = connect(&config.scale, "unit test", metrics.clone())
            .await
            .expect("connect");
        Some((server, config, connection, metrics))
    }

    pub(super) async fn reconnect(config: &Config) -> Connection {
        let metrics = Arc::new(Metrics::new(1));
        connect(&config.scale, "unit test", metrics)
            .await
            .expect("connect")
    }

    /// A fresh server and a history of `epoch` in stream `name` on it, keeping `depth`
    /// messages a subject (this module's files' tests).
    pub(super) async fn history(
        name: &str,
        epoch: u64,
        depth: usize,
    ) -> Option<(NatsServer, History)> {
        let (server, mut config, connection, _) = setup(name).await?;
        config.replay_depth = depth;
        let history = History::open_or_create(connection, &config, epoch)
            .await
            .expect("the history");
        Some((server, history))
    }

    /// Stores `item` of history `epoch` as the sequencer would.
    pub(super) async fn store(history: &History, item: &Item, epoch: u64) {
        store_out(history, wire::encode(&history.subjects, item, epoch, 1)).await;
    }

    /// Stores an encoded message and waits for the stream's ack.
    pub(super) async fn store_out(history: &History, out: wire::Outgoing) {
        history
            .js
            .publish_with_headers(out.subject, out.headers, out.payload)
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    #[tokio::test]
    async fn the_stream_is_made_with_the_settings_the_relay_relies_on() {
        let Some((_server, config, connection, _)) = setup("settings").await else {
            return;
        };
        let history = History::open_or_create(connection, &config, 41)
            .await
            .expect("create");
        assert_eq!(history.epoch, 41, "a new history takes the fresh epoch");
        let settings = &history.stream.cached_info().config;
        assert_eq!(settings.subjects, vec![history.subjects.all()]);
        assert_eq!(
            settings.max_messages_per_subject,
            i64::try_from(per_subject(&config)).unwrap(),
            "--replay-depth (or a ticker's bars) per key"
        );
        // Each is also the server's default today; the relay relies on them all the same.
        assert_eq!(
            settings.storage,
            stream::StorageType::File,
            "survives a restart"
        );
        assert_eq!(
            settings.discard,
            stream::DiscardPolicy::Old,
            "a full key drops its oldest"
        );
        assert_eq!(
            settings.duplicate_window, DUPLICATE_WINDOW,
            "a retried publish is stored once"
        );
        assert!(settings.allow_direct, "edges read last messages directly");
        assert_eq!(settings.num_replicas, config.scale.nats_replicas);

        let again = History::open_or_create(reconnect(&config).await, &config, 42)
            .await
            .expect("open");
        assert_eq!(again.epoch, 41, "a second sequencer joins the same history");
        let edge = History::open(reconnect(&config).await, &config)
            .await
            .expect("an edge opens it");
        assert_eq!(edge.epoch, 41);
    }

    #[test]
    fn with_bars_a_key_keeps_a_days_closed_minutes_and_its_newest_message() {
        let mut config = Config::for_tests();
        config.replay_depth = 16;
        config.derived.bar_history = 10;
        assert!(config.derived.enabled(), "bars are on by default");
        assert_eq!(
            per_subject(&config),
            1_441,
            "a restart rebuilds a ticker from 1,440 closed 1-minute bars, after the newest"
        );
        config.derived.bar_history = 5_000;
        assert_eq!(per_subject(&config), 5_000, "a longer bar history");
        config.replay_depth = 9_000;
        assert_eq!(per_subject(&config), 9_000, "a deeper replay");
        config.derived.bar_intervals = Default::default();
        config.replay_depth = 16;
        assert_eq!(per_subject(&config), 16, "without bars, the replay depth");
    }

    #[tokio::test]
    async fn a_stream_keeping_too_few_per_key_is_widened_and_nothing_else_changes() {
        let Some((_server, config, connection, _)) = setup("widen").await else {
            return;
        };
        let js = context(connection.client.clone());
        let subjects = Subjects::new(&config.scale.nats_stream);
        js.create_stream(stream::Config {
            name: config.scale.nats_stream.clone(),
            subjects: vec![subjects.all()],
            max_messages_per_subject: 5,
            max_age: Duration::from_secs(3600),
            ..Default::default()
        })
        .await
        .expect("an older, narrower stream");
        let history = History::open_or_create(connection, &config, 7)
            .await
            .expect("open");
        let settings = &history.stream.cached_info().config;
        let depth = i64::try_from(per_subject(&config)).unwrap();
        assert!(depth > 5);
        assert_eq!(settings.max_messages_per_subject, depth, "widened");
        assert_eq!(settings.max_age, Duration::from_secs(3600), "the rest kept");
    }

    #[tokio::test]
    async fn an_epoch_that_cannot_be_read_is_an_error_not_an_absent_one() {
        let Some((_server, history)) = history("unreadable", 12, 16).await else {
            return;
        };
        let read = read_epoch(&history.stream, &history.subjects).await;
        assert!(matches!(read, Ok(Some(12))), "{read:?}");
        // What is not a positive whole number on the epoch subject is no epoch, and says so.
        for junk in ["0", "twelve"] {
            history
                .js
                .publish(history.subjects.epoch(), junk.into())
                .await
                .expect("publish")
                .await
                .expect("stored");
            let read = read_epoch(&history.stream, &history.subjects).await;
            let Err(NatsError::JetStream { reason, .. }) = read else {
                panic!("`{junk}` read as {read:?}")
            };
            assert!(reason.contains("does not hold an epoch"), "{reason}");
        }
        // The stream gone under it: not "no epoch yet" (which would start a new history).
        history
            .js
            .delete_stream("unreadable")
            .await
            .expect("delete");
        let read = read_epoch(&history.stream, &history.subjects).await;
        assert!(
            matches!(
                read,
                Err(NatsError::JetStream {
                    what: "read epoch",
                    ..
                })
            ),
            "{read:?}"
        );
    }

    #[tokio::test]
    async fn an_edge_without_a_history_is_told_to_start_the_sequencer() {
        let Some((_server, config, connection, _)) = setup("absent").await else {
            return;
        };
        let error = History::open(connection, &config)
            .await
            .expect_err("no stream");
        assert!(
            matches!(&error, NatsError::NoHistory(name) if name == "absent"),
            "{error}"
        );
        assert_eq!(error.code(), ErrorCode::NatsUnavailable);
    }

    #[tokio::test]
    async fn last_seqs_are_this_historys_newest_and_nothing_else() {
        let Some((_server, config, connection, metrics)) = setup("last").await else {
            return;
        };
        let history = History::open_or_create(connection, &config, 9)
            .await
            .expect("create");
        for seq in 1..=3 {
            store(&history, &Item::Tick(sequenced("AAA", seq)), 9).await;
        }
        store(&history, &Item::Tick(sequenced("BBB", 5)), 9).await;
        // Another history's message: its seq is not this history's.
        store(&history, &Item::Tick(sequenced("CCC", 8)), 10).await;
        // Not a tick at all.
        let subject = history.subjects.of(&Item::Tick(sequenced("DDD", 1)).key());
        history
            .js
            .publish(subject, "not protobuf".into())
            .await
            .expect("publish")
            .await
            .expect("stored");
        let last = history.last_seqs(&metrics).await.expect("last seqs");
        let mut last: Vec<(String, u64)> = last
            .into_iter()
            .map(|(key, seq)| (key.as_str().to_owned(), seq.0))
            .collect();
        last.sort();
        assert_eq!(last, vec![("AAA".into(), 3), ("BBB".into(), 5)]);
        let bad: Vec<_> = metrics.errors().collect();
        assert_eq!(
            bad,
            vec![(ErrorCode::BadNatsMessage, 1)],
            "the bad one is counted"
        );
    }
}
