//! The sequencer side: every sequenced item into the stream, once, in order, acknowledged.
//!
//! [`run`] consumes the sequencer's batches through a [`TickQueue`] (as a shard does) and
//! keeps up to [`WINDOW`] publishes in flight. A publish that fails or is not acknowledged
//! is sent again, in its original order, after a backoff, for as long as it takes: its
//! `Nats-Msg-Id` makes the stream store it once however often it is sent. Each publish is
//! chained to this sequencer's previous one ([`Chain`]), so none is stored out of order
//! and none of a sequencer that lost its lease is stored at all. While it waits,
//! nothing more is taken from the queue, so the queue fills, the sequencer blocks on it,
//! the inbox fills and ingest stops reading: the publishers feel it as TCP backpressure,
//! and no accepted tick is dropped.

use std::collections::VecDeque;
use std::future::IntoFuture;
use std::sync::Arc;
use std::time::Duration;

use async_nats::jetstream::context::{PublishAckFuture, PublishErrorKind};
use async_nats::jetstream::publish::PublishAck;
use futures_util::future::join_all;
use tracing::{debug, warn};

use super::History;
use super::lease::Lease;
use super::stored::Stored;
use super::wire::{self, Outgoing};
use crate::error::ErrorCode;
use crate::metrics::{self, Metrics};
use crate::sequencer::TickQueue;
use crate::shutdown::Shutdown;

/// Why a sequencer stopped publishing before its queue closed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum Deposed {
    /// The stream holds a message this sequencer did not write where it expected its own
    /// last one: another sequencer has taken over the stream.
    #[error(
        "the stream refused a publish after this sequencer's last one ({after}) and the \
         lease is another sequencer's: this one stops"
    )]
    AnotherWriter {
        /// What this sequencer expected to be the stream's last message.
        after: String,
    },
}

/// Where this sequencer's writes stand in the stream. Every publish names what it must
/// follow: the id of this sequencer's message before it (`Nats-Expected-Last-Msg-Id`), or,
/// for the first one after start (or after the stream moved on under it), the stream's last
/// sequence as read then (`Nats-Expected-Last-Sequence`). So the stream stores a publish
/// only right after this sequencer's previous one: a publish after a lost one is refused
/// instead of stored out of order, and a sequencer that another one has replaced is refused
/// instead of interleaving with it (the message ids carry the lease's tenure: no other
/// sequencer's message ever has one of its ids).
#[derive(Debug, Clone, PartialEq, Eq)]
enum After {
    /// The stream's last sequence.
    Seq(u64),
    /// The stream's last message id.
    Id(String),
}

#[derive(Debug)]
struct Chain {
    /// The stream's last sequence when this chain (re)started.
    anchor: u64,
    /// The id of this sequencer's last acknowledged publish (in order) since then.
    acked: Option<String>,
    /// The id of its last publish sent.
    sent: Option<String>,
}

impl Chain {
    fn new(anchor: u64) -> Self {
        Self {
            anchor,
            acked: None,
            sent: None,
        }
    }

    /// What the next publish sent must follow (the caller then sets `sent` to its id).
    fn take_next(&mut self) -> After {
        match self.sent.take() {
            Some(id) => After::Id(id),
            None => self.base(),
        }
    }

    /// What a publish following this sequencer's last acknowledged one follows.
    fn base(&self) -> After {
        match &self.acked {
            Some(id) => After::Id(id.clone()),
            None => After::Seq(self.anchor),
        }
    }

    /// `ack` is that of the publish with message id `id`, the next in order.
    fn acked(&mut self, id: &str, ack: &PublishAck) {
        if ack.duplicate {
            // Stored before (a retry of a publish whose ack was lost): a duplicate does not
            // become the stream's last message id, so the next follows its sequence.
            self.anchor = ack.sequence;
            self.acked = None;
        } else {
            self.acked = Some(id.to_owned());
        }
    }

    /// Everything in flight failed: the next publish follows the last acknowledged one.
    fn rewind(&mut self) {
        self.sent = self.acked.clone();
    }
}

/// Publishes every batch from `queue` until the sequencer closes it; on shutdown, keeps
/// trying what is still unacknowledged for `drain` more. Returns [`Deposed`] (and stops at
/// once) when the stream shows another writer.
pub async fn run(
    history: History,
    lease: Lease,
    queue: TickQueue,
    metrics: Arc<Metrics>,
    shutdown: Shutdown,
    drain: Duration,
    mut stored: Stored,
) -> Result<(), Deposed> {
    let Some(last) = stream_last(&history, &shutdown).await else {
        return Ok(());
    };
    let mut chain = Chain::new(last);
    let mut in_flight: VecDeque<InFlight> = VecDeque::new();
    let mut retry: Vec<Outgoing> = Vec::new();
    let mut closed = false;
    let mut backoff = BACKOFF_MIN;
    let mut deadline = None;
    loop {
        if shutdown.is_triggered() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + drain);
        }
        if deadline.is_some_and(|d| tokio::time::Instant::now() >= d) {
            let lost = in_flight.len() + retry.len();
            if lost > 0 {
                warn!(
                    lost,
                    "shutdown: items still not acknowledged by NATS are not published"
                );
            }
            return Ok(());
        }
        // A failed publish goes again before anything newer, one at a time, each after
        // the ack of the one before: per-key order is the stream's.
        if !retry.is_empty() {
            tokio::time::sleep(backoff).await;
            backoff = longer(backoff);
            metrics::add(&metrics.nats.retried, retry.len() as u64);
            let again: Vec<Outgoing> = std::mem::take(&mut retry);
            for (i, out) in again.iter().enumerate() {
                let sent = send(&history, out, &chain.base(), &metrics).await;
                let acked = match sent {
                    Some(ack) => ack.await,
                    None => {
                        retry.extend(again[i..].iter().cloned());
                        break;
                    }
                };
                match acked {
                    Ok(ack) => {
                        metrics::add(&metrics.nats.acked, 1);
                        chain.acked(&out.id, &ack);
                        stored.acked();
                    }
                    Err(e) if refusal(&e) => {
                        refused(&history, &lease, &mut chain, &metrics).await?;
                        retry.extend(again[i..].iter().cloned());
                        break;
                    }
                    Err(e) => {
                        metrics.count_error(ErrorCode::NatsUnavailable);
                        debug!(error = %e, subject = out.subject, "retry not acknowledged; will retry");
                        retry.extend(again[i..].iter().cloned());
                        break;
                    }
                }
            }
            chain.rewind();
            if retry.is_empty() {
                backoff = BACKOFF_MIN;
            }
            continue;
        }
        match queue.try_take() {
            Ok(batch) => {
                stored.batch(batch.iter().filter(|f| wire::published(f.item())).count());
                for frames in batch.iter().filter(|f| wire::published(f.item())) {
                    let mut out = wire::encode(
                        &history.subjects,
                        frames.item(),
                        history.epoch,
                        lease.writer(),
                    );
                    if let Some(tag) = frames.tag() {
                        wire::tag(&mut out, tag);
                    }
                    if !retry.is_empty() {
                        // Everything after a failure waits behind it, in order.
                        retry.push(out);
                        continue;
                    }
                    let after = chain.take_next();
                    match send(&history, &out, &after, &metrics).await {
                        Some(ack) => {
                            chain.sent = Some(out.id.clone());
                            in_flight.push_back(InFlight { after, out, ack });
                        }
                        None => {
                            // What is in flight went before it: settled (or moved to the
                            // retries) first, so the retries keep the feed's order.
                            if settle(
                                &mut in_flight,
                                &mut retry,
                                &mut chain,
                                &mut stored,
                                &metrics,
                                0,
                            )
                            .await
                            {
                                refused(&history, &lease, &mut chain, &metrics).await?;
                            }
                            chain.rewind();
                            retry.push(out);
                        }
                    }
                    if settle(
                        &mut in_flight,
                        &mut retry,
                        &mut chain,
                        &mut stored,
                        &metrics,
                        WINDOW,
                    )
                    .await
                    {
                        refused(&history, &lease, &mut chain, &metrics).await?;
                    }
                }
            }
            Err(e) => {
                // Closed stays closed (and empty): what is in flight still settles below,
                // then the publisher ends.
                closed |= e == crossbeam_channel::TryRecvError::Disconnected;
                if in_flight.is_empty() {
                    if closed {
                        debug!("publisher stopped: every item acknowledged");
                        return Ok(());
                    }
                    tokio::select! {
                        () = queue.wake.notified() => {}
                        () = tokio::time::sleep(IDLE_CHECK) => {}
                    }
                } else {
                    if settle(
                        &mut in_flight,
                        &mut retry,
                        &mut chain,
                        &mut stored,
                        &metrics,
                        0,
                    )
                    .await
                    {
                        refused(&history, &lease, &mut chain, &metrics).await?;
                    }
                }
            }
        }
    }
}

/// One publish awaiting its ack.
struct InFlight {
    out: Outgoing,
    /// What it was sent to follow.
    after: After,
    ack: PublishAckFuture,
}

/// The stream's last sequence now, asked until NATS answers; `None` on shutdown.
async fn stream_last(history: &History, shutdown: &Shutdown) -> Option<u64> {
    let mut stream = history.stream.clone();
    let mut backoff = BACKOFF_MIN;
    loop {
        match stream.info().await {
            Ok(info) => return Some(info.state.last_sequence),
            Err(e) => {
                warn!(error = %e, "could not read the stream's last sequence; retrying");
                tokio::select! {
                    () = shutdown.wait() => return None,
                    () = tokio::time::sleep(backoff) => {}
                }
                backoff = longer(backoff);
            }
        }
    }
}

/// Sends one publish that the stream stores only right `after` what it names; `None` if it
/// could not even be queued on the connection.
async fn send(
    history: &History,
    out: &Outgoing,
    after: &After,
    metrics: &Metrics,
) -> Option<PublishAckFuture> {
    metrics::add(&metrics.nats.published, 1);
    let mut headers = out.headers.clone();
    match after {
        After::Seq(seq) => headers.insert(wire::EXPECTED_LAST_SEQUENCE, seq.to_string().as_str()),
        After::Id(id) => headers.insert(wire::EXPECTED_LAST_MSG_ID, id.as_str()),
    }
    match history
        .js
        .publish_with_headers(out.subject.clone(), headers, out.payload.clone())
        .await
    {
        Ok(ack) => Some(ack),
        Err(e) => {
            metrics.count_error(ErrorCode::NatsUnavailable);
            debug!(error = %e, subject = out.subject, "publish not sent; will retry");
            None
        }
    }
}

/// Waits for acks until at most `keep` are in flight; a failed one (and every one after
/// it still in flight) moves to `retry`, in order. A refusal of a publish sent right after
/// this sequencer's last acknowledged one (another writer, or a restarted server that forgot
/// the last message id) returns `true`: for [`refused`] to decide.
async fn settle(
    in_flight: &mut VecDeque<InFlight>,
    retry: &mut Vec<Outgoing>,
    chain: &mut Chain,
    stored: &mut Stored,
    metrics: &Metrics,
    keep: usize,
) -> bool {
    while in_flight.len() > keep {
        let InFlight { out, after, ack } = in_flight.pop_front().expect("len > keep >= 0");
        match ack.await {
            Ok(ack) => {
                metrics::add(&metrics.nats.acked, 1);
                chain.acked(&out.id, &ack);
                stored.acked();
            }
            Err(e) => {
                let foreign = refusal(&e) && after == chain.base();
                if !foreign {
                    metrics.count_error(ErrorCode::NatsUnavailable);
                    debug!(error = %e, subject = out.subject, "publish not acknowledged; will retry");
                }
                retry.push(out);
                // Later ones were refused (they expected this one before them) or, if this
                // one was stored after all, landed behind it (their retry is then a stored
                // duplicate): either way they go again, in order, after this one.
                // Their acks are awaited together: after a lost connection each would time
                // out, and one after the other they held the publisher for a timeout each.
                let (outs, acks): (Vec<Outgoing>, Vec<_>) = in_flight
                    .drain(..)
                    .map(|f| (f.out, f.ack.into_future()))
                    .unzip();
                for (out, acked) in outs.into_iter().zip(join_all(acks).await) {
                    if acked.is_ok() {
                        metrics::add(&metrics.nats.acked, 1);
                    }
                    retry.push(out);
                }
                chain.rewind();
                if foreign {
                    debug!("publish refused: the stream moved on");
                    return true;
                }
            }
        }
    }
    false
}

/// Whether the stream refused a publish for what it named to follow.
fn refusal(e: &async_nats::jetstream::context::PublishError) -> bool {
    matches!(
        e.kind(),
        PublishErrorKind::WrongLastSequence | PublishErrorKind::WrongLastMessageId
    )
}

/// The stream refused a publish that followed this sequencer's last acknowledged one: if
/// the lease is still this sequencer's, the stream moved on without it (a message some
/// other client wrote, or a restarted server that forgot its last message id) and the chain
/// starts again from the stream's last sequence (what was refused goes again); if not,
/// this sequencer is [`Deposed`]. If NATS does not answer, the chain stays and the retry
/// asks again.
async fn refused(
    history: &History,
    lease: &Lease,
    chain: &mut Chain,
    metrics: &Metrics,
) -> Result<(), Deposed> {
    match lease.still_held().await {
        Some(false) => Err(Deposed::AnotherWriter {
            after: format!("{:?}", chain.base()),
        }),
        Some(true) => {
            let mut stream = history.stream.clone();
            if let Ok(info) = stream.info().await {
                metrics.count_error(ErrorCode::NatsUnavailable);
                warn!(
                    after = ?chain.base(),
                    last = info.state.last_sequence,
                    "the stream did not take a publish after this sequencer's last one; \
                     going on from its last sequence"
                );
                *chain = Chain::new(info.state.last_sequence);
            }
            Ok(())
        }
        None => Ok(()),
    }
}

/// The wait after `backoff`: twice as long, up to [`BACKOFF_MAX`].
fn longer(backoff: Duration) -> Duration {
    (backoff * 2).min(BACKOFF_MAX)
}

/// Publishes awaiting their ack at once: enough to cover a LAN round trip at 100k/s.
pub const WINDOW: usize = 512;
const BACKOFF_MIN: Duration = Duration::from_millis(50);
const BACKOFF_MAX: Duration = Duration::from_secs(2);
/// How often an idle publisher looks for shutdown.
const IDLE_CHECK: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use super::*;

    fn ack(sequence: u64, duplicate: bool) -> PublishAck {
        PublishAck {
            sequence,
            duplicate,
            ..PublishAck::default()
        }
    }

    #[test]
    fn a_chain_starts_at_the_streams_last_sequence_and_then_follows_its_own_ids() {
        let mut chain = Chain::new(41);
        assert_eq!(chain.take_next(), After::Seq(41), "the first publish");
        chain.sent = Some("a".into());
        assert_eq!(
            chain.take_next(),
            After::Id("a".into()),
            "the next follows it"
        );
        chain.sent = Some("b".into());
        chain.acked("a", &ack(42, false));
        assert_eq!(chain.base(), After::Id("a".into()));
        assert_eq!(
            chain.take_next(),
            After::Id("b".into()),
            "what was sent, not acked"
        );
    }

    #[test]
    fn after_a_failure_the_chain_goes_on_from_the_last_acknowledged_publish() {
        let mut chain = Chain::new(7);
        chain.sent = Some("c".into());
        chain.rewind();
        assert_eq!(
            chain.take_next(),
            After::Seq(7),
            "nothing acked: the anchor"
        );
        chain.acked("a", &ack(8, false));
        chain.sent = Some("c".into());
        chain.rewind();
        assert_eq!(chain.take_next(), After::Id("a".into()));
    }

    #[test]
    fn a_duplicate_ack_moves_the_chain_to_its_sequence() {
        let mut chain = Chain::new(7);
        chain.acked("a", &ack(8, false));
        chain.acked("b", &ack(12, true));
        assert_eq!(
            chain.base(),
            After::Seq(12),
            "a duplicate is not the stream's last id"
        );
        assert_eq!(chain.take_next(), After::Seq(12));
    }

    /// A fresh server with stream `name` of history 5, and this sequencer holding its lease;
    /// `None` without a nats-server.
    async fn leader(
        name: &str,
    ) -> Option<(
        super::super::nats_server::NatsServer,
        History,
        Lease,
        Arc<Metrics>,
    )> {
        let (server, config, connection, metrics) = super::super::tests::setup(name).await?;
        let history = History::open_or_create(connection, &config, 5)
            .await
            .expect("create");
        let lease = Lease::acquire(&history.js, name, 1, "unit".into(), &mut || {})
            .await
            .expect("the lease");
        Some((server, history, lease, metrics))
    }

    #[tokio::test]
    async fn every_batch_is_stored_in_order_and_the_publisher_ends_with_its_queue() {
        use crate::encode::Frames;
        use crate::tick::sequenced;
        let Some((_server, history, lease, metrics)) = leader("publish").await else {
            return;
        };
        let (sender, queue) = crate::sequencer::tick_queue(16);
        let (durable, mut stored) = tokio::sync::watch::channel(0);
        let shutdown = Shutdown::new();
        // On a thread of its own, as the relay runs it: a publisher that spins instead of
        // ending fails this test rather than hanging it.
        let (ended, publishing) = tokio::sync::oneshot::channel();
        let publisher = run(
            history.clone(),
            lease,
            queue,
            metrics.clone(),
            shutdown.clone(),
            Duration::from_secs(5),
            Stored::new(durable),
        );
        let handle = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let _ = ended.send(handle.block_on(publisher));
        });
        for batch in [[("A", 1), ("B", 1)], [("A", 2), ("A", 3)]] {
            let frames: Vec<_> = batch
                .iter()
                .map(|(symbol, seq)| Arc::new(Frames::new(sequenced(symbol, *seq))))
                .collect();
            sender.deliver(frames.into()).await;
        }
        tokio::time::timeout(Duration::from_secs(10), stored.wait_for(|n| *n == 2))
            .await
            .expect("both batches stored in time")
            .expect("the publisher runs");
        // An empty queue is not a closed one: after a pause, the publisher still takes more.
        tokio::time::sleep(Duration::from_millis(200)).await;
        let frames = vec![Arc::new(Frames::new(sequenced("B", 2)))];
        sender.deliver(frames.into()).await;
        tokio::time::timeout(Duration::from_secs(10), stored.wait_for(|n| *n == 3))
            .await
            .expect("the third batch stored in time")
            .expect("the publisher runs");
        drop(sender);
        let ended = tokio::time::timeout(Duration::from_secs(10), publishing).await;
        let ended = ended.expect("the publisher ends once its queue is closed and drained");
        assert_eq!(ended.expect("no panic"), Ok(()));
        // The epoch first, then every item once, in order.
        let mut found = Vec::new();
        for sequence in 2..=6 {
            let message = history
                .stream
                .get_raw_message(sequence)
                .await
                .expect("stored");
            let incoming = wire::decode(
                &history.subjects,
                &message.subject,
                Some(&message.headers),
                &message.payload,
            )
            .expect("a valid message");
            assert_eq!(incoming.epoch, 5);
            found.push((
                incoming.item.key().as_str().to_owned(),
                incoming.item.seq().0,
            ));
        }
        let want = [("A", 1), ("B", 1), ("A", 2), ("A", 3), ("B", 2)];
        let want = want.map(|(k, s)| (k.to_owned(), s));
        assert_eq!(found, want);
        let mut stream = history.stream.clone();
        assert_eq!(
            stream.info().await.expect("info").state.messages,
            6,
            "nothing twice"
        );
        assert_eq!(metrics.errors().count(), 0);
    }

    /// Stores a tick in the stream as some other client would, without a chain.
    async fn write_from_elsewhere(history: &History) {
        let tick = crate::event::Item::Tick(crate::tick::sequenced("X", 1));
        let foreign = wire::encode(&history.subjects, &tick, 5, 1);
        history
            .js
            .publish(foreign.subject, foreign.payload)
            .await
            .expect("sent")
            .await
            .expect("stored");
    }

    /// A publisher of `history` on a task of its own, draining for `drain` once `shutdown`
    /// comes: the queue it takes batches from, what it reports stored, and its end.
    fn publishing(
        history: &History,
        lease: Lease,
        metrics: &Arc<Metrics>,
        shutdown: Shutdown,
        drain: Duration,
    ) -> (
        crate::sequencer::TickSender,
        tokio::sync::watch::Receiver<u64>,
        tokio::task::JoinHandle<Result<(), Deposed>>,
    ) {
        let (sender, queue) = crate::sequencer::tick_queue(16);
        let (durable, stored) = tokio::sync::watch::channel(0);
        let publisher = tokio::spawn(run(
            history.clone(),
            lease,
            queue,
            metrics.clone(),
            shutdown,
            drain,
            Stored::new(durable),
        ));
        (sender, stored, publisher)
    }

    /// Hands the publisher a batch of one tick.
    async fn hand_on(sender: &crate::sequencer::TickSender, symbol: &str, seq: u64) {
        use crate::encode::Frames;
        let frames = vec![Arc::new(Frames::new(crate::tick::sequenced(symbol, seq)))];
        sender.deliver(frames.into()).await;
    }

    /// Waits (10 s at most) until the publisher reports `n` batches stored.
    async fn stored_up_to(stored: &mut tokio::sync::watch::Receiver<u64>, n: u64) {
        tokio::time::timeout(Duration::from_secs(10), stored.wait_for(|s| *s == n))
            .await
            .unwrap_or_else(|_| panic!("{n} stored within 10 s"))
            .expect("the publisher runs");
    }

    /// Waits (30 s at most) for the publisher's end, which must be a clean one.
    async fn ends_cleanly(publisher: tokio::task::JoinHandle<Result<(), Deposed>>) {
        let ended = tokio::time::timeout(Duration::from_secs(30), publisher).await;
        assert!(matches!(ended, Ok(Ok(Ok(())))), "{ended:?}");
    }

    #[tokio::test]
    async fn a_publisher_chains_from_what_the_stream_already_holds() {
        use crate::event::Item;
        use crate::tick::sequenced;
        let Some((_server, history, lease, metrics)) = leader("chained").await else {
            return;
        };
        // What an earlier sequencer of this history stored: the stream's last is 2, not 1.
        super::super::tests::store(&history, &Item::Tick(sequenced("Z", 1)), 5).await;
        let five = Duration::from_secs(5);
        let (sender, mut stored, publisher) =
            publishing(&history, lease, &metrics, Shutdown::new(), five);
        hand_on(&sender, "A", 1).await;
        stored_up_to(&mut stored, 1).await;
        drop(sender);
        ends_cleanly(publisher).await;
        assert_eq!(metrics.errors().count(), 0, "taken at once, never refused");
        let mut stream = history.stream.clone();
        assert_eq!(stream.info().await.expect("info").state.messages, 3);
    }

    #[tokio::test]
    async fn a_refusal_restarts_the_chain_while_the_lease_holds_and_deposes_once_it_is_lost() {
        let Some((_server, history, lease, metrics)) = leader("refused").await else {
            return;
        };
        let mut stream = history.stream.clone();
        let last = stream.info().await.expect("info").state.last_sequence;
        let mut chain = Chain::new(last);
        // Something else wrote to the stream: it moved on without this sequencer.
        write_from_elsewhere(&history).await;
        assert_eq!(
            refused(&history, &lease, &mut chain, &metrics).await,
            Ok(())
        );
        assert_eq!(
            chain.take_next(),
            After::Seq(last + 1),
            "on from the stream's last"
        );
        let counted: u64 = metrics.errors().map(|(_, n)| n).sum();
        assert_eq!(counted, 1);
        // Another sequencer takes the lease: the next refusal deposes this one.
        let store = history
            .js
            .get_key_value(super::super::lease::bucket("refused"))
            .await
            .expect("the bucket");
        store
            .put(super::super::lease::KEY, "another".into())
            .await
            .expect("taken");
        let deposed = refused(&history, &lease, &mut chain, &metrics).await;
        assert!(
            matches!(deposed, Err(Deposed::AnotherWriter { .. })),
            "{deposed:?}"
        );
    }

    #[tokio::test]
    async fn after_shutdown_the_publisher_still_stores_what_it_is_handed_within_its_drain() {
        let Some((_server, history, lease, metrics)) = leader("draining").await else {
            return;
        };
        // The relay is shutting down: the sequencer hands on its last batch, then closes.
        let shutdown = Shutdown::new();
        shutdown.trigger();
        let thirty = Duration::from_secs(30);
        let (sender, mut stored, publisher) =
            publishing(&history, lease, &metrics, shutdown, thirty);
        hand_on(&sender, "A", 1).await;
        drop(sender);
        stored_up_to(&mut stored, 1).await;
        ends_cleanly(publisher).await;
        let mut stream = history.stream.clone();
        assert_eq!(stream.info().await.expect("info").state.messages, 2);
    }

    #[tokio::test]
    async fn with_nats_gone_at_shutdown_the_publisher_gives_up_after_its_drain() {
        let Some((mut server, history, lease, metrics)) = leader("gone").await else {
            return;
        };
        let shutdown = Shutdown::new();
        let drain = Duration::from_millis(200);
        let (sender, mut stored, publisher) =
            publishing(&history, lease, &metrics, shutdown.clone(), drain);
        hand_on(&sender, "A", 1).await;
        stored_up_to(&mut stored, 1).await;
        // NATS goes; the next batch gets no ack and waits to go again when shutdown comes.
        server.kill();
        hand_on(&sender, "A", 2).await;
        tokio::time::sleep(Duration::from_millis(300)).await;
        shutdown.trigger();
        ends_cleanly(publisher).await;
        assert_eq!(*stored.borrow(), 1, "the second batch was never stored");
    }

    /// A publisher that stored `A` 1, then handed `A` 2 after something else wrote to the
    /// stream: that publish, which follows the publisher's last one, is refused in flight.
    async fn refused_in_flight(
        name: &str,
    ) -> Option<(
        super::super::nats_server::NatsServer,
        History,
        Arc<Metrics>,
        crate::sequencer::TickSender,
        tokio::sync::watch::Receiver<u64>,
        tokio::task::JoinHandle<Result<(), Deposed>>,
    )> {
        let (server, history, lease, metrics) = leader(name).await?;
        let five = Duration::from_secs(5);
        let (sender, mut stored, publisher) =
            publishing(&history, lease, &metrics, Shutdown::new(), five);
        hand_on(&sender, "A", 1).await;
        stored_up_to(&mut stored, 1).await;
        write_from_elsewhere(&history).await;
        hand_on(&sender, "A", 2).await;
        Some((server, history, metrics, sender, stored, publisher))
    }

    #[tokio::test]
    async fn a_publish_refused_because_the_stream_moved_on_is_counted_once_and_goes_again() {
        let Some((_server, history, metrics, sender, mut stored, publisher)) =
            refused_in_flight("moved").await
        else {
            return;
        };
        // It goes again after the stream's new last.
        stored_up_to(&mut stored, 2).await;
        drop(sender);
        ends_cleanly(publisher).await;
        let counted: Vec<_> = metrics.errors().collect();
        assert_eq!(
            counted,
            [(ErrorCode::NatsUnavailable, 1)],
            "one refusal, once"
        );
        let mut stream = history.stream.clone();
        assert_eq!(stream.info().await.expect("info").state.messages, 4);
    }

    #[tokio::test]
    async fn a_retry_refused_because_the_stream_moved_on_again_goes_on_from_its_new_last() {
        let Some((_server, history, metrics, sender, mut stored, publisher)) =
            refused_in_flight("moved_again").await
        else {
            return;
        };
        // Refused once (counted): the publish waits its backoff to go again. Other writes
        // meanwhile refuse the retry too, which must go on from the stream's new last
        // message, not follow the old one for ever.
        let refused = || metrics.errors().map(|(_, n)| n).sum::<u64>();
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        while refused() == 0 {
            assert!(tokio::time::Instant::now() < deadline, "never refused");
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
        const WRITES: u64 = 30;
        for _ in 0..WRITES {
            write_from_elsewhere(&history).await;
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        stored_up_to(&mut stored, 2).await;
        drop(sender);
        ends_cleanly(publisher).await;
        let mut stream = history.stream.clone();
        let held = stream.info().await.expect("info").state.messages;
        assert_eq!(
            held,
            1 + 2 + 1 + WRITES,
            "the epoch, A 1 and 2, every foreign write"
        );
    }

    #[test]
    fn the_backoff_doubles_from_its_floor_up_to_its_ceiling() {
        let waits: Vec<u128> = std::iter::successors(Some(BACKOFF_MIN), |b| Some(longer(*b)))
            .take(8)
            .map(|b| b.as_millis())
            .collect();
        assert_eq!(waits, [50, 100, 200, 400, 800, 1600, 2000, 2000]);
    }

    #[test]
    fn only_a_wrong_last_sequence_or_id_is_a_refusal() {
        use async_nats::jetstream::context::PublishError;
        for (kind, refused) in [
            (PublishErrorKind::WrongLastSequence, true),
            (PublishErrorKind::WrongLastMessageId, true),
            (PublishErrorKind::TimedOut, false),
            (PublishErrorKind::StreamNotFound, false),
        ] {
            assert_eq!(refusal(&PublishError::new(kind)), refused, "{kind:?}");
        }
    }
}
