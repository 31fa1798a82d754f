//! The edge side: the subjects local clients want, read from the stream into the edge's
//! sequencer (in follow mode), which feeds the shards as on one box.
//!
//! A key is followed from its first want to [`--nats-linger`](crate::config::scale::Scale)
//! after its last local subscriber left. A want arrives two ways: a session asks before it
//! subscribes or resumes ([`Follow::warm`], answered once the key's retained history (the
//! newest `--replay-depth` items) has been read, so the session can wait for its shard to
//! hold it and serve the snapshot or the replay from its own ring), or the interest counts
//! show a subscriber nobody warmed for. A key is read by an ordered consumer from the start of
//! what the stream holds for it; `*` by one consumer of every tick subject from each one's
//! last value. Ordered consumers re-create themselves after a lost message or connection,
//! from the next stream sequence, so a reconnect is back-filled from the stream; the
//! follow-mode sequencer drops the seqs it already has (two consumers overlap) and counts the
//! seqs the stream no longer holds.
//!
//! A new history (the stream was deleted and a sequencer started another, with a new
//! epoch; `consume::successor` sees it within [`EPOCH_CHECK`]) is switched to without a
//! restart: every consumer of the old history is stopped, the sequencer is told through the inbox
//! where the new history begins (it forgets its seqs, books and bars, and puts the switch in
//! every shard's queue, where the shards reset their clients and drop what they held), and
//! every followed key is read again, from the start of the new stream.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_nats::jetstream::consumer::DeliverPolicy;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, warn};

use super::History;
use super::consume::{consume, successor};
use crate::book::{BOOK_PREFIX, BookChannel};
use crate::event::{Channel, Key};
use crate::ingest::{Inbox, InboxClosed};
use crate::metrics::Metrics;
use crate::sequencer::Interest;
use crate::shutdown::Shutdown;
use crate::tick::{Seq, Symbol};

/// How sessions ask the edge to follow keys (cloned into every shard's [`Shared`]).
///
/// [`Shared`]: crate::shared::Shared
#[derive(Clone, Debug)]
pub struct Follow {
    wants: mpsc::UnboundedSender<Want>,
}

/// The follower's end of [`Follow`].
#[derive(Debug)]
pub struct Wants(mpsc::UnboundedReceiver<Want>);

#[derive(Debug)]
struct Want {
    all: bool,
    keys: Vec<Key>,
    reply: oneshot::Sender<Vec<(Key, Seq)>>,
}

/// What the follower needs besides the stream.
#[derive(Debug)]
pub struct Wiring {
    /// The edge sequencer's inbox (follow mode).
    pub inbox: Inbox,
    /// The local subscriber counts.
    pub interest: Arc<Interest>,
    /// Counters.
    pub metrics: Arc<Metrics>,
    /// `--nats-linger`.
    pub linger: Duration,
    /// The stop signal.
    pub shutdown: Shutdown,
}

/// A [`Follow`] handle and the receiving end for [`run`].
pub fn channel() -> (Follow, Wants) {
    let (wants, rx) = mpsc::unbounded_channel();
    (Follow { wants }, Wants(rx))
}

impl Follow {
    /// Follows `keys` (and every symbol, with `all`) and answers, once their retained
    /// history has been read, the newest seq of each that the stream holds: the session
    /// then waits for its shard to have it. Bounded by [`WARM_TIMEOUT`]: a slow or absent
    /// NATS delays a subscribe, it never holds it.
    pub async fn warm(&self, all: bool, keys: Vec<Key>) -> Vec<(Key, Seq)> {
        let (reply, answer) = oneshot::channel();
        if self.wants.send(Want { all, keys, reply }).is_err() {
            return Vec::new();
        }
        tokio::time::timeout(WARM_TIMEOUT, answer)
            .await
            .ok()
            .and_then(Result::ok)
            .unwrap_or_default()
    }
}

/// One followed key (or `*`): its consumer's task and since when nobody wants it.
#[derive(Debug)]
struct Followed {
    task: tokio::task::JoinHandle<()>,
    idle_since: Option<Instant>,
}

/// Serves wants and follows interest until shutdown; then stops every consumer. Switches
/// to a new history when the stream holds one.
pub async fn run(mut history: History, mut wants: Wants, wiring: Wiring) {
    let mut keys: HashMap<Key, Followed> = HashMap::new();
    let mut wildcard: Option<Followed> = None;
    let (successors, mut new_histories) = mpsc::channel(1);
    let epoch_watch = tokio::spawn(watch_epoch(history.clone(), successors));
    let mut scan = tokio::time::interval(SCAN_EVERY);
    scan.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tokio::select! {
            // Shutdown first: the shards are draining, nothing read now would be delivered.
            biased;
            () = wiring.shutdown.wait() => break,
            Some(new) = new_histories.recv() => {
                warn!(epoch = new.epoch, old = history.epoch,
                    "the stream holds a new history: clients are reset and served it");
                history = new;
                if switch(&history, &wiring, &mut keys, &mut wildcard).await.is_err() {
                    break;
                }
            }
            want = wants.0.recv() => {
                let Some(want) = want else { break };
                let mut waiting = Vec::new();
                if want.all && wildcard.is_none() {
                    let (tx, rx) = oneshot::channel();
                    let policy = DeliverPolicy::LastPerSubject;
                    wildcard = Some(start(&history, &wiring, None, Some(tx), policy));
                    waiting.push(rx);
                }
                for key in want.keys {
                    let key = followed(key);
                    let covered = key.in_wildcard() && wildcard.is_some();
                    if covered || keys.contains_key(&key) {
                        continue;
                    }
                    let (tx, rx) = oneshot::channel();
                    let policy = DeliverPolicy::All;
                    let followed = start(&history, &wiring, Some(key.clone()), Some(tx), policy);
                    keys.insert(key, followed);
                    waiting.push(rx);
                }
                tokio::spawn(async move {
                    let mut newest = Vec::new();
                    for rx in waiting {
                        newest.extend(rx.await.unwrap_or_default());
                    }
                    // Err: the session gave up waiting; nothing to answer.
                    let _ = want.reply.send(newest);
                });
            }
            _ = scan.tick() => {
                let now = Instant::now();
                let (wanted, all) = wiring.interest.totals();
                // Every depth of a book is one followed key: its full-depth updates.
                let wanted: std::collections::HashSet<Key> =
                    wanted.into_iter().map(|(key, _)| followed(key)).collect();
                for key in &wanted {
                    let covered = key.in_wildcard() && wildcard.is_some();
                    if !covered && !keys.contains_key(key) {
                        let policy = DeliverPolicy::All;
                        let followed = start(&history, &wiring, Some(key.clone()), None, policy);
                        keys.insert(key.clone(), followed);
                    }
                }
                let linger = wiring.linger;
                keys.retain(|key, state| keep(state, wanted.contains(key), now, linger));
                if let Some(followed) = &mut wildcard
                    && !keep(followed, all > 0, now, linger)
                {
                    wildcard = None;
                }
                let following = keys.len() + usize::from(wildcard.is_some());
                wiring.metrics.nats.following.store(following as u64, std::sync::atomic::Ordering::Relaxed);
            }
        }
    }
    epoch_watch.abort();
    for (_, followed) in keys.drain() {
        followed.task.abort();
    }
    if let Some(followed) = wildcard {
        followed.task.abort();
    }
}

/// Whether a followed key stays: wanted, or not wanted for less than `linger`. A key let
/// go has its consumer stopped.
fn keep(followed: &mut Followed, wanted: bool, now: Instant, linger: Duration) -> bool {
    if wanted {
        followed.idle_since = None;
        return true;
    }
    let since = *followed.idle_since.get_or_insert(now);
    if now.duration_since(since) < linger {
        return true;
    }
    followed.task.abort();
    false
}

/// The key an edge follows for `key`: a book channel of any depth follows its book (the
/// full-depth updates every view is derived from), anything else itself.
fn followed(key: Key) -> Key {
    if let Key::Channel(channel) = &key
        && let Some(Ok(symbol)) =
            crate::book::channel::symbol_of(channel.as_str()).map(Symbol::parse)
    {
        return Key::Channel(Channel::of_book(&BookChannel::full(symbol)));
    }
    key
}

/// Starts reading `key` (`None`: every symbol's ticks, for `*`) from `policy` on.
fn start(
    history: &History,
    wiring: &Wiring,
    key: Option<Key>,
    caught_up: Option<oneshot::Sender<Vec<(Key, Seq)>>>,
    policy: DeliverPolicy,
) -> Followed {
    let filter = match &key {
        Some(key) => history.subjects.of(key),
        None => history.subjects.all_ticks(),
    };
    debug!(filter, "following");
    if let Some(key) =
        key.filter(|k| matches!(k, Key::Channel(c) if c.as_str().starts_with(BOOK_PREFIX)))
    {
        let task = tokio::spawn(super::books::follow(
            history.clone(),
            key,
            wiring.inbox.clone(),
            wiring.metrics.clone(),
            caught_up,
        ));
        return Followed {
            task,
            idle_since: None,
        };
    }
    let task = tokio::spawn(consume(
        history.clone(),
        filter,
        policy,
        wiring.inbox.clone(),
        wiring.metrics.clone(),
        caught_up,
    ));
    Followed {
        task,
        idle_since: None,
    }
}

/// Moves every followed key to `history` (the stream's new one): stops each consumer of the
/// old history (so nothing of it reaches the inbox after this), tells the sequencer that the
/// new history begins here, then reads every key again from the start of the new stream (`*`
/// too: nothing of the new history is skipped). `Err`: the sequencer has stopped.
async fn switch(
    history: &History,
    wiring: &Wiring,
    keys: &mut HashMap<Key, Followed>,
    wildcard: &mut Option<Followed>,
) -> Result<(), InboxClosed> {
    for followed in keys.values_mut().chain(wildcard.iter_mut()) {
        followed.task.abort();
        // Cancelled: whatever it was handing on is in the inbox already, or dropped.
        let _ = (&mut followed.task).await;
    }
    wiring.inbox.new_history(history.epoch).await?;
    for (key, followed) in keys.iter_mut() {
        followed.task = start(history, wiring, Some(key.clone()), None, DeliverPolicy::All).task;
    }
    if let Some(followed) = wildcard {
        followed.task = start(history, wiring, None, None, DeliverPolicy::All).task;
    }
    Ok(())
}

/// Reads the stream's epoch every [`EPOCH_CHECK`] (on its own, so a slow answer never holds
/// the follower's wants) and sends each new history the stream holds to the follower. A
/// deleted stream may show no message of the new history to a consumer that follows from the
/// old one's sequence numbers: the epoch subject is what tells.
///
/// It also reads the stream's cluster view (its leader, and its replicas that are current):
/// when that changes, a node may have died with consumers on it while this edge's
/// connection, to another node, stayed up; the consumers are told to re-create themselves
/// ([`History::disturbed`]).
async fn watch_epoch(mut history: History, successors: mpsc::Sender<History>) {
    let mut every = tokio::time::interval(EPOCH_CHECK);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut cluster = None;
    loop {
        every.tick().await;
        if let Some(now) = cluster_view(&history).await {
            if cluster.as_ref().is_some_and(|before| *before != now) {
                info!(view = ?now, "the stream's cluster changed: re-creating the consumers");
                history.disturbed.send_modify(|n| *n += 1);
            }
            cluster = Some(now);
        }
        if let Some(new) = successor(&history).await {
            history = new.clone();
            if successors.send(new).await.is_err() {
                return;
            }
        }
    }
}

/// The stream's leader and its replicas that are current, as the stream reports them now;
/// `None` when the stream does not answer (a cluster electing a leader).
async fn cluster_view(history: &History) -> Option<(Option<String>, Vec<String>)> {
    let mut stream = history.stream.clone();
    let info = stream.info().await.ok()?;
    let cluster = info.cluster.clone().unwrap_or_default();
    let mut current: Vec<String> = cluster
        .replicas
        .iter()
        .filter(|peer| peer.current && !peer.offline)
        .map(|peer| peer.name.clone())
        .collect();
    current.sort();
    Some((cluster.leader, current))
}

/// How often an edge checks that the stream still holds its history.
const EPOCH_CHECK: Duration = Duration::from_secs(1);
/// Longest a session waits for a key's history before it is served what the shard has.
pub const WARM_TIMEOUT: Duration = Duration::from_secs(3);
/// How often interest is checked for keys to follow or let go.
const SCAN_EVERY: Duration = Duration::from_millis(200);

#[cfg(test)]
mod tests {
    use super::*;

    fn idle() -> Followed {
        Followed {
            task: tokio::spawn(std::future::pending()),
            idle_since: None,
        }
    }

    #[tokio::test]
    async fn a_key_nobody_wants_lingers_then_its_consumer_stops() {
        let linger = Duration::from_secs(10);
        let start = Instant::now();
        let mut followed = idle();
        assert!(keep(&mut followed, false, start, linger), "just let go");
        assert!(
            keep(&mut followed, false, start + linger / 2, linger),
            "lingering"
        );
        assert!(
            keep(&mut followed, true, start + linger, linger),
            "wanted again"
        );
        assert!(followed.idle_since.is_none(), "the clock starts over");
        let later = start + linger * 2;
        assert!(keep(&mut followed, false, later, linger));
        assert!(
            !keep(&mut followed, false, later + linger, linger),
            "let go for good"
        );
        tokio::task::yield_now().await;
        assert!(followed.task.is_finished(), "its consumer stopped");
    }

    #[test]
    fn a_book_of_any_depth_follows_its_full_book_and_anything_else_itself() {
        let channel = |name: &str| Key::Channel(Channel::parse(name).expect("a channel"));
        let full = followed(channel("book:BTC-USD:10"));
        assert_eq!(full.as_str(), followed(channel("book:BTC-USD:1")).as_str());
        assert_eq!(followed(full.clone()).as_str(), full.as_str());
        assert_ne!(full.as_str(), "book:BTC-USD:10");
        assert_eq!(followed(channel("news")).as_str(), "news");
        let symbol = Key::Symbol(Symbol::parse("BTC-USD").expect("a symbol"));
        assert_eq!(followed(symbol).as_str(), "BTC-USD");
    }

    #[tokio::test]
    async fn a_new_history_on_the_stream_is_announced_then_followed_from_its_start() {
        use crate::event::Item;
        use crate::nats::tests::{reconnect, setup, store};
        let Some((_server, config, connection, metrics)) = setup("switch").await else {
            return;
        };
        let old = History::open_or_create(connection, &config, 3)
            .await
            .expect("create");
        let tick = |seq| Item::Tick(crate::tick::sequenced("AAA", seq));
        store(&old, &tick(1), 3).await;
        let (inbox, mut received) = Inbox::bounded(16);
        let shutdown = Shutdown::new();
        let wiring = Wiring {
            inbox,
            interest: Arc::new(Interest::default()),
            metrics,
            linger: Duration::from_secs(60),
            shutdown: shutdown.clone(),
        };
        let (follow, wants) = channel();
        let follower = tokio::spawn(run(old.clone(), wants, wiring));
        let aaa = Key::Symbol(Symbol::parse("AAA").expect("a symbol"));
        let newest = follow.warm(false, vec![aaa]).await;
        assert_eq!(newest.len(), 1, "AAA followed: {newest:?}");
        // What the follower hands on, as (history marker, or key and seq), until `n` came.
        let mut next = async |n: usize| {
            let mut out = Vec::new();
            while out.len() < n {
                let published = tokio::time::timeout(Duration::from_secs(10), received.recv())
                    .await
                    .unwrap_or_else(|_| panic!("only {out:?} of {n} came"))
                    .expect("the follower runs");
                if let Some(epoch) = published.history {
                    out.push(format!("history {epoch}"));
                }
                for item in &published.items {
                    out.push(format!("{} {}", item.key().as_str(), item.seq().0));
                }
            }
            out
        };
        assert_eq!(next(1).await, ["AAA 1"]);

        // The stream is made again with another epoch, and its first tick stored.
        old.js.delete_stream("switch").await.expect("delete");
        let new = History::open_or_create(reconnect(&config).await, &config, 8)
            .await
            .expect("a new history");
        store(&new, &tick(1), 8).await;
        assert_eq!(
            next(2).await,
            ["history 8", "AAA 1"],
            "the switch first, then the new history's ticks from its start"
        );
        shutdown.trigger();
        follower.await.expect("the follower ends at shutdown");
    }

    /// The edge's notice that a node may have died with its consumers: on a real 3-node
    /// cluster, the stream's leader moved to another node (a stepdown, as after a crash).
    #[tokio::test]
    async fn a_new_stream_leader_tells_the_consumers_to_re_create_themselves_once() {
        use crate::nats::nats_server::{cluster, urls};
        let Some(nodes) = cluster("watch") else {
            return;
        };
        let mut config = crate::config::Config::for_tests();
        config.scale.nats = Some(urls(&nodes));
        config.scale.nats_stream = "watch".to_owned();
        config.scale.nats_replicas = 3;
        let metrics = Arc::new(Metrics::new(1));
        let connection = crate::nats::connect(&config.scale, "unit test", metrics)
            .await
            .expect("connect");
        // The cluster elects its meta leader a moment after its nodes start: until then
        // JetStream refuses to make a stream.
        let deadline = Instant::now() + Duration::from_secs(30);
        let history = loop {
            let again = crate::nats::Connection {
                client: connection.client.clone(),
                disturbed: connection.disturbed.clone(),
            };
            match History::open_or_create(again, &config, 3).await {
                Ok(history) => break history,
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(error = %e, "the cluster is not ready yet");
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Err(e) => panic!("no stream on the cluster within 30 s: {e}"),
            }
        };
        let mut disturbed = history.disturbed.subscribe();
        // A view with all three replicas current first, so the change below is the leader's
        // (a watcher started before it would see the replicas catch up, a change too).
        let steady = Instant::now() + Duration::from_secs(15);
        loop {
            let view = cluster_view(&history).await;
            if view
                .as_ref()
                .is_some_and(|(leader, current)| leader.is_some() && current.len() == 2)
            {
                break;
            }
            assert!(
                Instant::now() < steady,
                "the stream's replicas never caught up: {view:?}"
            );
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        let (successors, _new_histories) = mpsc::channel(1);
        let watcher = tokio::spawn(watch_epoch(history.clone(), successors));
        tokio::time::sleep(EPOCH_CHECK * 3 / 2).await;
        assert_eq!(
            *disturbed.borrow_and_update(),
            0,
            "a steady view: no notice"
        );

        let before = cluster_view(&history).await.and_then(|(leader, _)| leader);
        let answer = history
            .js
            .client()
            .request("$JS.API.STREAM.LEADER.STEPDOWN.watch", "".into())
            .await
            .expect("the stepdown is answered");
        assert!(
            String::from_utf8_lossy(&answer.payload).contains("\"success\":true"),
            "stepdown refused: {:?}",
            answer.payload
        );
        tokio::time::timeout(Duration::from_secs(20), disturbed.changed())
            .await
            .expect("told within 20 s of the stepdown")
            .expect("the watcher runs");
        let after = cluster_view(&history).await.and_then(|(leader, _)| leader);
        assert_ne!(before, after, "another leader");
        assert_eq!(*disturbed.borrow(), 1, "one change, one notice");
        assert!(!watcher.is_finished(), "the watcher carries on");
        watcher.abort();
    }

    #[tokio::test]
    async fn a_steady_cluster_view_re_creates_no_consumer() {
        let Some((_server, history)) = crate::nats::tests::history("steady", 3, 16).await else {
            return;
        };
        let (successors, _new_histories) = mpsc::channel(1);
        let watcher = tokio::spawn(watch_epoch(history.clone(), successors));
        // Three looks at the stream (now, after one and after two checks): the same view.
        tokio::time::sleep(EPOCH_CHECK * 5 / 2).await;
        assert_eq!(
            *history.disturbed.borrow(),
            0,
            "nothing changed, nothing re-created"
        );
        watcher.abort();
    }
}
