//! What a restarted sequencer reads back to continue the bars and tickers (docs/SCALING.md,
//! "Bars and tickers"): each bars channel's newest message and its closed bars, each
//! ticker's newest message, and the ticks the stream retains, of which those a bar message
//! did not account for (`Tickrelay-Tick-Seq`) are applied again. With bars on, the stream
//! keeps [`per_subject`](super::per_subject) messages per subject, so the closed 1-minute
//! bars of the last 24 hours are all there.
//!
//! Read once, at start, before the sequencer takes its first batch; every message is
//! validated by [`wire::decode`] like an edge's, and a bad one is counted and skipped.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::consumer::{DeliverPolicy, pull};
use futures_util::StreamExt;
use tracing::{info, warn};

use super::subject::Carries;
use super::{History, NatsError, jetstream_error, wire};
use crate::error::ErrorCode;
use crate::event::derived::{Bar, BarValues};
use crate::event::{Item, Key};
use crate::metrics::Metrics;
use crate::sequencer::derived::Restored;

impl History {
    /// The derived state this history holds (empty for a new one).
    pub async fn derived_state(&self, metrics: &Metrics) -> Result<Restored, NatsError> {
        let mut restored = Restored::default();
        let mut newest: HashMap<Key, Bar> = HashMap::new();
        for subject in self.subjects_listed().await? {
            let Ok((carries, key)) = self.subjects.parse(&subject) else {
                continue;
            };
            let items = match carries {
                Carries::Ticks | Carries::Bars { closed: true } => {
                    self.retained(&subject, metrics).await?
                }
                Carries::Bars { closed: false } | Carries::Tickers => {
                    self.newest(&subject, metrics).await?.into_iter().collect()
                }
                // Events: nothing derived from them; books restore on their own.
                Carries::Events | Carries::BookUpdates | Carries::BookCheckpoints => continue,
            };
            let mut closed_bars: Vec<BarValues> = Vec::new();
            for item in items {
                match item {
                    Item::Tick(tick) => restored.ticks.push(tick),
                    Item::Ticker(ticker) => restored.tickers.push(*ticker),
                    Item::Bar(bar) => {
                        if bar.bar.closed {
                            closed_bars.push(bar.bar);
                        }
                        let held = newest.entry(key.clone()).or_insert_with(|| (*bar).clone());
                        if bar.seq > held.seq {
                            *held = *bar;
                        }
                    }
                    // The stream holds no tier frames (a shard makes them).
                    Item::Event(_) | Item::Book(_) | Item::Tier(_) => {}
                }
            }
            if let (Key::Channel(channel), false) = (&key, closed_bars.is_empty()) {
                restored.closed.insert(channel.clone(), closed_bars);
            }
        }
        restored.bars = newest.into_values().collect();
        info!(
            bars = restored.bars.len(),
            tickers = restored.tickers.len(),
            ticks = restored.ticks.len(),
            "bars and tickers continue from the stream"
        );
        Ok(restored)
    }

    /// Each acking publisher's highest pseq among the stream's last [`PUBLISHERS_SCAN`]
    /// messages (their headers only): a sequencer taking over knows what its predecessor
    /// stored, so a publisher's resend of it is a duplicate. What a publisher had not seen
    /// acknowledged when its sequencer died was at most that sequencer's last
    /// [`WINDOW`](super::publish::WINDOW) publishes, far inside the scan.
    pub async fn publishers(&self, metrics: &Metrics) -> Result<Vec<(Arc<str>, u64)>, NatsError> {
        let mut stream = self.stream.clone();
        let info = stream
            .info()
            .await
            .map_err(jetstream_error("stream info"))?;
        let (first, last) = (info.state.first_sequence, info.state.last_sequence);
        if info.state.messages == 0 {
            return Ok(Vec::new());
        }
        let start = last.saturating_sub(PUBLISHERS_SCAN - 1).max(first).max(1);
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: self.subjects.all(),
                deliver_policy: DeliverPolicy::ByStartSequence {
                    start_sequence: start,
                },
                headers_only: true,
                ..Default::default()
            })
            .await
            .map_err(jetstream_error("read back"))?;
        let mut highs: HashMap<Arc<str>, u64> = HashMap::new();
        let mut messages = consumer
            .messages()
            .await
            .map_err(jetstream_error("read back"))?;
        let mut read = 0u64;
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| NatsError::JetStream {
                    what: "read back",
                    reason: format!(
                        "no message after {read} of the stream's tail within {READ_TIMEOUT:?}"
                    ),
                })?;
            let Some(message) = next else { break };
            let message = message.map_err(jetstream_error("read back"))?;
            read += 1;
            let info = message.info().ok().map(|i| (i.stream_sequence, i.pending));
            if let Some(tag) = message.headers.as_ref().and_then(wire::tag_of) {
                let high = highs.entry(tag.publisher).or_default();
                *high = (*high).max(tag.pseq);
            } else if message
                .headers
                .as_ref()
                .is_some_and(|h| h.get(wire::PUBLISHER).is_some())
            {
                metrics.count_error(ErrorCode::BadNatsMessage);
            }
            match info {
                Some((seq, pending)) if pending == 0 || seq >= last => break,
                _ => {}
            }
        }
        info!(
            publishers = highs.len(),
            read, "acking publishers continue from the stream"
        );
        Ok(highs.into_iter().collect())
    }

    /// Every subject the stream holds messages on.
    async fn subjects_listed(&self) -> Result<Vec<String>, NatsError> {
        let mut listing = self
            .stream
            .info_with_subjects(self.subjects.all())
            .await
            .map_err(jetstream_error("stream info"))?;
        let mut names = Vec::new();
        while let Some((subject, _count)) = futures_util::TryStreamExt::try_next(&mut listing)
            .await
            .map_err(jetstream_error("stream subjects"))?
        {
            names.push(subject);
        }
        Ok(names)
    }

    /// The newest message on `subject`, decoded.
    async fn newest(&self, subject: &str, metrics: &Metrics) -> Result<Option<Item>, NatsError> {
        let message = self
            .stream
            .get_last_raw_message_by_subject(subject)
            .await
            .map_err(jetstream_error("last message"))?;
        Ok(self.decoded(subject, Some(&message.headers), &message.payload, metrics))
    }

    /// Every message the stream retains on `subject`, oldest first, decoded.
    async fn retained(&self, subject: &str, metrics: &Metrics) -> Result<Vec<Item>, NatsError> {
        let consumer = self
            .stream
            .create_consumer(pull::OrderedConfig {
                filter_subject: subject.to_owned(),
                deliver_policy: DeliverPolicy::All,
                ..Default::default()
            })
            .await
            .map_err(jetstream_error("read back"))?;
        let mut items = Vec::new();
        if consumer.cached_info().num_pending == 0 {
            return Ok(items);
        }
        let mut messages = consumer
            .messages()
            .await
            .map_err(jetstream_error("read back"))?;
        loop {
            let next = tokio::time::timeout(READ_TIMEOUT, messages.next())
                .await
                .map_err(|_| NatsError::JetStream {
                    what: "read back",
                    reason: format!("no message on {subject} within {READ_TIMEOUT:?}"),
                })?;
            let Some(message) = next else { break };
            let message = message.map_err(jetstream_error("read back"))?;
            let pending = message.info().map_or(0, |i| i.pending);
            items.extend(self.decoded(
                subject,
                message.headers.as_ref(),
                &message.payload,
                metrics,
            ));
            if pending == 0 {
                break;
            }
        }
        Ok(items)
    }

    fn decoded(
        &self,
        subject: &str,
        headers: Option<&async_nats::HeaderMap>,
        payload: &[u8],
        metrics: &Metrics,
    ) -> Option<Item> {
        match wire::decode(&self.subjects, subject, headers, payload) {
            Ok(incoming) if incoming.epoch == self.epoch => Some(incoming.item),
            Ok(_) => None,
            Err(e) => {
                metrics.count_error(ErrorCode::BadNatsMessage);
                warn!(subject, error = %e, "malformed message read back; skipped");
                None
            }
        }
    }
}

/// How many of the stream's last messages a sequencer reads for acking publishers' pseqs.
const PUBLISHERS_SCAN: u64 = 16_384;

/// Longest wait for the next retained message while reading back.
const READ_TIMEOUT: Duration = Duration::from_secs(5);
