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

#[cfg(test)]
mod tests {
    use super::super::nats_server::NatsServer;
    use super::*;
    use crate::config::Config;
    use crate::event::derived::{Recent, Ticker, TickerValues};
    use crate::event::{Channel, Event, Tag};
    use crate::tick::{Seq, Tick, sequenced};

    const EPOCH: u64 = 9;

    /// A server and a history of epoch [`EPOCH`] in stream `name` on it.
    async fn setup(name: &str) -> Option<(NatsServer, History)> {
        setup_keeping(name, Config::for_tests().replay_depth).await
    }

    /// [`setup`], its stream keeping `depth` messages a subject.
    async fn setup_keeping(name: &str, depth: usize) -> Option<(NatsServer, History)> {
        super::super::tests::history(name, EPOCH, depth).await
    }

    /// Stores `item` as a sequencer of history `epoch` would, tagged with `tag` if any.
    async fn store(history: &History, item: &Item, epoch: u64, tag: Option<(&str, u64)>) {
        let mut out = wire::encode(&history.subjects, item, epoch, 1);
        if let Some((publisher, pseq)) = tag {
            let tag = Tag {
                publisher: publisher.into(),
                pseq,
            };
            wire::tag(&mut out, &tag);
        }
        super::super::tests::store_out(history, out).await;
    }

    async fn store_raw(history: &History, subject: String, payload: &'static str) {
        history
            .js
            .publish(subject, payload.into())
            .await
            .expect("publish")
            .await
            .expect("stored");
    }

    fn bar(seq: u64, minute: u64, closed: bool) -> Item {
        Item::Bar(Box::new(Bar {
            channel: Channel::parse("bars:1m:AAA").expect("a bars channel"),
            seq: Seq(seq),
            bar: BarValues {
                start_ns: minute * 60_000_000_000,
                open: 1.0,
                high: 2.0,
                low: 0.5,
                close: 1.5,
                volume: 3.0 + seq as f64,
                trades: 2,
                closed,
            },
            recent: Recent::none(),
            tick_seq: Seq(seq * 10),
            recv_ns: 5,
        }))
    }

    fn ticker(seq: u64, last: f64) -> Ticker {
        Ticker {
            channel: Channel::parse("ticker:AAA").expect("a ticker channel"),
            seq: Seq(seq),
            stats: TickerValues {
                last,
                open: 1.0,
                high: 3.0,
                low: 1.0,
                volume: 10.0,
                change: last - 1.0,
                change_percent: (last - 1.0) * 100.0,
            },
            ts_ns: 60_000_000_000,
            recv_ns: 6,
        }
    }

    fn values(item: &Item) -> BarValues {
        match item {
            Item::Bar(bar) => bar.bar,
            other => panic!("not a bar: {other:?}"),
        }
    }

    #[tokio::test]
    async fn derived_state_is_the_newest_bar_and_ticker_the_closed_bars_and_every_tick() {
        let Some((_server, history)) = setup("derived").await else {
            return;
        };
        let metrics = Metrics::new(1);
        for seq in 1..=3 {
            store(&history, &Item::Tick(sequenced("AAA", seq)), EPOCH, None).await;
        }
        // Another history's tick, and a message that is no tick.
        store(&history, &Item::Tick(sequenced("AAA", 4)), EPOCH + 1, None).await;
        store_raw(
            &history,
            history.subjects.of_item(&Item::Tick(sequenced("AAA", 5))),
            "x",
        )
        .await;
        // Closed bars 1, 2 and 4; the open bar's newest update, 3, came before 4 closed it.
        let (one, two, four) = (bar(1, 0, true), bar(2, 1, true), bar(4, 2, true));
        for closed in [&one, &two] {
            store(&history, closed, EPOCH, None).await;
        }
        store(&history, &bar(3, 2, false), EPOCH, None).await;
        store(&history, &four, EPOCH, None).await;
        store(
            &history,
            &Item::Ticker(Box::new(ticker(1, 2.0))),
            EPOCH,
            None,
        )
        .await;
        store(
            &history,
            &Item::Ticker(Box::new(ticker(2, 2.5))),
            EPOCH,
            None,
        )
        .await;
        let event = Event {
            channel: Channel::parse("news").expect("a channel"),
            data: bytes::Bytes::from_static(b"{}"),
            ts_ns: 1,
            seq: Seq(1),
            recv_ns: 2,
        };
        store(&history, &Item::Event(event), EPOCH, None).await;

        let restored = history.derived_state(&metrics).await.expect("restored");

        let ticks: Vec<Tick> = (1..=3).map(|seq| sequenced("AAA", seq)).collect();
        assert_eq!(restored.ticks, ticks, "this history's ticks, in order");
        assert_eq!(restored.tickers, vec![ticker(2, 2.5)], "the newest ticker");
        let newest: Vec<_> = restored
            .bars
            .iter()
            .map(|b| (b.channel.as_str(), b.seq, b.bar, b.tick_seq))
            .collect();
        assert_eq!(
            newest,
            vec![("bars:1m:AAA", Seq(4), values(&four), Seq(40))],
            "the newest of both subjects"
        );
        let channel = Channel::parse("bars:1m:AAA").expect("a bars channel");
        assert_eq!(restored.closed.len(), 1);
        assert_eq!(
            restored.closed.get(&channel),
            Some(&vec![values(&one), values(&two), values(&four)]),
            "every closed bar, oldest first"
        );
        let errors: Vec<_> = metrics.errors().collect();
        assert_eq!(errors, vec![(ErrorCode::BadNatsMessage, 1)], "the non-tick");
    }

    #[tokio::test]
    async fn a_new_history_restores_nothing() {
        let Some((_server, history)) = setup("fresh").await else {
            return;
        };
        let metrics = Metrics::new(1);
        let restored = history.derived_state(&metrics).await.expect("restored");
        assert!(restored.bars.is_empty() && restored.tickers.is_empty());
        assert!(restored.closed.is_empty() && restored.ticks.is_empty());
        assert_eq!(history.publishers(&metrics).await.expect("read"), vec![]);
        assert_eq!(metrics.errors().count(), 0);
    }

    #[tokio::test]
    async fn each_acking_publishers_highest_pseq_is_read_back() {
        let Some((_server, history)) = setup("publishers").await else {
            return;
        };
        let metrics = Metrics::new(1);
        let tick = |symbol, seq| Item::Tick(sequenced(symbol, seq));
        store(&history, &tick("A", 1), EPOCH, Some(("p1", 5))).await;
        store(&history, &tick("A", 2), EPOCH, Some(("p1", 7))).await;
        store(&history, &tick("B", 1), EPOCH, Some(("p2", 3))).await;
        store(&history, &tick("A", 3), EPOCH, Some(("p1", 6))).await;
        store(&history, &tick("A", 4), EPOCH, None).await;
        // A publisher header without a valid pseq.
        let mut out = wire::encode(&history.subjects, &tick("A", 5), EPOCH, 1);
        out.headers.insert(wire::PUBLISHER, "p3");
        out.headers.insert(wire::PSEQ, "many");
        super::super::tests::store_out(&history, out).await;
        store(&history, &tick("B", 2), EPOCH, Some(("p2", 4))).await;

        let mut highs = history.publishers(&metrics).await.expect("read");
        highs.sort();
        assert_eq!(highs, vec![(Arc::from("p1"), 7), (Arc::from("p2"), 4)]);
        let errors: Vec<_> = metrics.errors().collect();
        assert_eq!(errors, vec![(ErrorCode::BadNatsMessage, 1)], "the bad tag");
    }

    #[tokio::test]
    async fn publishers_are_read_from_the_streams_last_messages_only() {
        let scan = usize::try_from(PUBLISHERS_SCAN).expect("small");
        let Some((_server, history)) = setup_keeping("scan", scan + 8).await else {
            return;
        };
        let client = history.js.client();
        let subject = history.subjects.of_item(&Item::Tick(sequenced("A", 1)));
        let tagged = |publisher: &str| {
            let mut headers = async_nats::HeaderMap::new();
            headers.insert(wire::PUBLISHER, publisher);
            headers.insert(wire::PSEQ, "1");
            headers
        };
        // The epoch is message 1; 2 is just before the scan, 3 its first, the last its last.
        for publisher in ["before", "first"] {
            client
                .publish_with_headers(subject.clone(), tagged(publisher), "".into())
                .await
                .expect("publish");
        }
        for _ in 0..PUBLISHERS_SCAN - 2 {
            client
                .publish(subject.clone(), "".into())
                .await
                .expect("publish");
        }
        client
            .publish_with_headers(subject.clone(), tagged("last"), "".into())
            .await
            .expect("publish");
        client.flush().await.expect("flushed");
        let mut stream = history.stream.clone();
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while stream.info().await.expect("info").state.last_sequence < PUBLISHERS_SCAN + 2 {
            assert!(std::time::Instant::now() < deadline, "all stored");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        assert_eq!(
            stream.info().await.expect("info").state.messages,
            PUBLISHERS_SCAN + 2
        );

        let metrics = Metrics::new(1);
        let mut highs = history.publishers(&metrics).await.expect("read");
        highs.sort();
        assert_eq!(highs, vec![(Arc::from("first"), 1), (Arc::from("last"), 1)]);
    }
}
