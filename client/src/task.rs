//! [`Task`]: the connection task behind a [`Client`](crate::Client).
//!
//! The task owns the socket. It connects, reads frames, decodes them, passes what they carry
//! through the [`SeqCheck`] and pushes what comes out into the [`SharedQueue`] the
//! application reads. When the connection is lost (an error, a close, or silence past the
//! liveness timeout) it waits a jittered backoff and reconnects with `resume=` for every
//! symbol it has a seq for, so the sequence goes on where it stopped. The task stops when
//! the [`Client`](crate::Client) is dropped.

use std::collections::{BTreeSet, HashSet};
use std::sync::Arc;

use futures_util::{SinkExt, StreamExt};
use tokio::sync::mpsc;
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::Connector;
use tokio_tungstenite::tungstenite::Message as Frame;

use crate::book::{Books, is_book};
use crate::end::{End, closed, lost};
use crate::error::Error;
use crate::item::{Connected, GapReason, Item, Key, ServerError, Stream};
use crate::message::Message;
use crate::open::{Connection, OpenError, Refusal, Ws, open};
use crate::options::{Backoff, Options};
use crate::queue::{Pushed, SharedQueue};
use crate::seq_check::SeqCheck;
use crate::url::Wanted;
use crate::wire::{self, Then};

/// A subscription change from the application.
#[derive(Debug)]
pub(crate) enum Command {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

/// The connection task (see the module doc).
pub(crate) struct Task {
    base: String,
    options: Options,
    queue: Arc<SharedQueue>,
    commands: mpsc::UnboundedReceiver<Command>,
    seq_check: SeqCheck,
    /// The local books of `book:` channels.
    books: Books,
    /// What the application wants now; `*` for every symbol.
    symbols: BTreeSet<String>,
    ping_id: u64,
    /// False after the relay refused the resume list as too long (see `run`).
    resume_in_url: bool,
    /// For `wss://`: the TLS configuration, built once.
    tls: Option<Connector>,
    /// The last auth error the relay answered (its code and message), which names the
    /// reason of a 4001 close that follows it.
    auth_error: Option<ServerError>,
}

impl Task {
    /// A task for `base` that has not connected yet.
    pub(crate) fn new(
        base: &str,
        options: Options,
        queue: Arc<SharedQueue>,
        commands: mpsc::UnboundedReceiver<Command>,
        tls: Option<Connector>,
    ) -> Self {
        Self {
            base: base.to_owned(),
            seq_check: SeqCheck::new(
                options.resume_from.iter().cloned(),
                options.resume_epoch.clone(),
            ),
            books: Books::default(),
            symbols: options.symbols.iter().cloned().collect(),
            options,
            queue,
            commands,
            ping_id: 0,
            resume_in_url: true,
            tls,
            auth_error: None,
        }
    }

    /// Opens the next connection, resuming every key with a known seq.
    pub(crate) async fn open(&mut self) -> Result<Connection, OpenError> {
        let wanted = Wanted {
            base: &self.base,
            options: &self.options,
            symbols: &self.symbols,
            seq_check: &self.seq_check,
            resume_in_url: self.resume_in_url,
        };
        let (url, resuming) = wanted.url();
        open(url, resuming, &self.options, self.tls.clone()).await
    }

    /// Serves `connection`, then reconnects until the application is gone or the stream
    /// fails.
    pub(crate) async fn run(mut self, mut connection: Connection) {
        loop {
            let (lost, at_once) = match self.serve(connection).await {
                End::Lost(lost) => (lost, false),
                End::GoingAway(lost) => (lost, true),
                End::Fatal(error) => {
                    self.queue.lock().fail(error);
                    break;
                }
                End::Stop => break,
            };
            if !self.deliver(Item::Disconnected(lost)).await {
                break;
            }
            // Going away: the URL leads to another relay (or this one back) now, so only a
            // small jitter; a failed first try falls back to the backoff.
            let mut wait = at_once.then(Backoff::going_away_jitter);
            let mut attempt = 0;
            connection = loop {
                let delay = match wait.take() {
                    Some(jitter) => jitter,
                    None => {
                        attempt = u32::saturating_add(attempt, 1);
                        self.options.backoff.delay(attempt - 1)
                    }
                };
                let wake = Instant::now() + delay;
                if !self.idle_until(wake).await {
                    return self.stop();
                }
                match self.open().await {
                    Ok(connection) => break connection,
                    Err(OpenError::Refused { status, body }) => {
                        match Refusal::read(status, &body) {
                            // Under `*`, more positions than the relay lets one client name (its
                            // --max-symbols-per-client): connect without them. Snapshots then
                            // stand in for the replays, and the seq check names what they skip
                            // as gaps.
                            (Then::ReconnectWithoutResume, _) if self.resume_in_url => {
                                self.resume_in_url = false;
                                attempt = 0;
                            }
                            (Then::Reconnect | Then::ReconnectNow, _) => {}
                            // Any other refusal will not change.
                            (then, refusal) => {
                                let error = match refusal {
                                    Some(r) if then == Then::Unauthorized => Error::Unauthorized {
                                        code: r.code,
                                        message: r.message,
                                    },
                                    _ => Error::Refused { status, body },
                                };
                                self.queue.lock().fail(error);
                                return self.stop();
                            }
                        }
                    }
                    Err(_) => {}
                }
            };
        }
        self.stop();
    }

    fn stop(&self) {
        self.queue.lock().task_stopped();
    }

    /// Waits until `wake`, applying subscription changes meanwhile; false when the
    /// application is gone.
    async fn idle_until(&mut self, wake: Instant) -> bool {
        loop {
            tokio::select! {
                () = sleep_until(wake) => return true,
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command, None).await,
                    None => return false,
                },
            }
        }
    }

    /// Reads one connection until it ends.
    async fn serve(&mut self, mut c: Connection) -> End {
        // Positions go in the URL again next time (the symbol count may have dropped).
        self.resume_in_url = true;
        self.seq_check.welcome(c.epoch.as_deref());
        self.books.reconnected();
        let connected = Item::Connected(Connected {
            session: c.session,
            epoch: c.epoch.clone(),
            resumed: c.resuming.len(),
        });
        if !self.deliver(connected).await {
            return End::Stop;
        }
        if self.symbols.contains("*") && !c.resuming.is_empty() {
            send(&mut c.ws, r#"{"op":"subscribe","symbols":["*"]}"#.into()).await;
        }
        if let Some(interval) = self.options.heartbeat {
            let op = format!(
                r#"{{"op":"heartbeat","interval_ms":{}}}"#,
                interval.as_millis()
            );
            send(&mut c.ws, op).await;
        }
        let mut messages = std::mem::take(&mut c.pending);
        if !self.take(&mut messages, &mut c.resuming).await {
            return End::Stop;
        }
        let limit = self.options.liveness_timeout;
        let mut last_heard = Instant::now();
        let mut probed = false;
        loop {
            tokio::select! {
                // Frames first: one that has arrived proves life even if a timer fired too.
                biased;
                frame = c.ws.next() => {
                    match frame {
                        Some(Ok(Frame::Text(text))) => c.decoder.text(&text, &mut messages),
                        Some(Ok(Frame::Binary(bytes))) => {
                            if let Err(e) = c.decoder.binary(bytes, &mut messages) {
                                // Nothing after it can be inflated: start over.
                                return lost(None, format!("undecodable frame: {e}"));
                            }
                        }
                        Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => {}
                        Some(Ok(Frame::Close(close))) => return closed(close, self.auth_error.take()),
                        Some(Err(e)) => return lost(None, format!("connection failed: {e}")),
                        None => return lost(None, "connection ended".into()),
                    }
                    if !self.take(&mut messages, &mut c.resuming).await {
                        return End::Stop;
                    }
                    // A book that lost its way asks for a fresh snapshot.
                    for request in self.books.take_requests() {
                        send(&mut c.ws, request).await;
                    }
                    // Waiting for the application is not silence of the relay.
                    last_heard = Instant::now();
                    probed = false;
                }
                command = self.commands.recv() => match command {
                    Some(command) => self.apply(command, Some(&mut c.ws)).await,
                    None => return End::Stop,
                },
                () = sleep_until(last_heard + limit / 2), if !probed => {
                    self.ping_id += 1;
                    send(&mut c.ws, format!(r#"{{"op":"ping","id":{}}}"#, self.ping_id)).await;
                    probed = true;
                }
                () = sleep_until(last_heard + limit) => {
                    return lost(None, format!("no data and no pong for {limit:?}"));
                }
            }
        }
    }

    /// Passes `messages` through the seq check and delivers what comes out; false when the
    /// task should stop.
    async fn take(&mut self, messages: &mut Vec<Message>, resuming: &mut HashSet<String>) -> bool {
        let mut out = Vec::new();
        for message in messages.drain(..) {
            self.accept(message, resuming, &mut out);
        }
        for item in out {
            if !self.deliver(item).await {
                return false;
            }
        }
        true
    }

    /// Passes one decoded message through the seq check.
    fn accept(&mut self, message: Message, resuming: &mut HashSet<String>, out: &mut Vec<Item>) {
        match message {
            Message::Welcome { epoch, .. } => self.seq_check.welcome(epoch.as_deref()),
            Message::Tick(t) => {
                resuming.remove(&stream_name(&t.symbol, t.tier.as_ref().map(|t| &t.name)));
                self.seq_check.item(Item::Tick(t), out);
            }
            Message::Snapshot(t) => {
                resuming.remove(&stream_name(&t.symbol, t.tier.as_ref().map(|t| &t.name)));
                self.seq_check.item(Item::Snapshot(t), out);
            }
            Message::Event(e) => self.seq_check.item(Item::Event(e), out),
            Message::Derived(d) => self.seq_check.item(d.into(), out),
            Message::Book(b) => self.books.accept(b, out),
            Message::Gap {
                channel: Some(channel),
                from,
                to,
                ..
            } if is_book(&channel) => self.books.gap(channel, from, to, out),
            // Counted at its seq like the tick or event it was, so the stream goes on with
            // the next one: no gap for it, and no reconnect that would bring it back.
            Message::Undecodable(u) => {
                if let Some(Key::Symbol(s)) = &u.key {
                    resuming.remove(&stream_name(s, u.tier.as_ref()));
                }
                self.seq_check.item(Item::Undecodable(u), out);
            }
            Message::Gap {
                symbol,
                channel,
                tier,
                from,
                to,
            } => {
                let (key, reason) = match (symbol, channel) {
                    (Some(s), _) if resuming.remove(&stream_name(&s, tier.as_ref())) => {
                        (Key::Symbol(s), GapReason::NotReplayable)
                    }
                    (Some(s), _) => (Key::Symbol(s), GapReason::RelayConflated),
                    (None, Some(c)) => (Key::Channel(c), GapReason::RelayConflated),
                    (None, None) => return,
                };
                // A gap naming a tier is in that tier's seqs, not the raw stream's.
                let stream = Stream { key, tier };
                self.seq_check.gap(stream, from, to, reason, out);
            }
            Message::Error(e) => {
                // `forbidden` refuses one subscription and the session goes on; the others
                // come before a 4001 or 4002 close.
                if wire::ends_session_for_token(&e.code) {
                    self.auth_error = Some(e.clone());
                }
                out.push(Item::Error(e));
            }
            Message::Other => {}
        }
    }

    /// Applies a subscription change; sends it if connected.
    async fn apply(&mut self, command: Command, ws: Option<&mut Ws>) {
        let mut ops = Vec::new();
        match command {
            Command::Subscribe(symbols) => {
                let all = self.symbols.contains("*");
                let mut plain = Vec::new();
                let mut resume = Vec::new();
                for symbol in symbols {
                    if !self.symbols.insert(symbol.clone()) {
                        continue;
                    }
                    // The relay follows a symbol at one tier at a time: a new tier replaces
                    // the one held (the raw stream is a subscription of its own).
                    if let Some((name, _)) = symbol.split_once('@') {
                        self.symbols.retain(|s| {
                            *s == symbol || s.split_once('@').is_none_or(|(n, _)| n != name)
                        });
                    }
                    // `resume` of a symbol covered by `*` is refused (already_subscribed).
                    match self.seq_check.resume_point(&symbol) {
                        Some(seq) if !all && symbol != "*" => resume.push((symbol, seq)),
                        _ => plain.push(symbol),
                    }
                }
                if !plain.is_empty() {
                    ops.push(serde_json::json!({"op": "subscribe", "symbols": plain}));
                }
                if !resume.is_empty() {
                    let from: serde_json::Map<String, serde_json::Value> =
                        resume.into_iter().map(|(s, seq)| (s, seq.into())).collect();
                    let mut op = serde_json::json!({"op": "resume", "from": from});
                    // The relay trusts no position without the epoch it belongs to.
                    if let Some(epoch) = self.seq_check.epoch().and_then(|e| e.parse::<u64>().ok())
                    {
                        op["epoch"] = epoch.into();
                    }
                    ops.push(op);
                }
            }
            Command::Unsubscribe(symbols) => {
                let gone: Vec<String> = symbols
                    .into_iter()
                    .filter(|s| self.symbols.remove(s))
                    .collect();
                if !gone.is_empty() {
                    ops.push(serde_json::json!({"op": "unsubscribe", "symbols": gone}));
                }
            }
        }
        if let Some(ws) = ws {
            for op in ops {
                send(ws, op.to_string()).await;
            }
        }
    }

    /// Hands an item to the application, waiting for space under
    /// [`SlowConsumer::Wait`](crate::SlowConsumer::Wait); false when the stream has failed
    /// and the task should stop.
    async fn deliver(&self, item: Item) -> bool {
        let mut item = item;
        loop {
            let pushed = self.queue.lock().push(item);
            match pushed {
                Pushed::Done => return true,
                Pushed::Failed => return false,
                Pushed::Full(back) => item = *back,
            }
            self.queue.space.notified().await;
        }
    }
}

/// The name a stream is subscribed and resumed under: `NAME` or `NAME@TIER`.
fn stream_name(name: &str, tier: Option<&String>) -> String {
    match tier {
        Some(tier) => format!("{name}@{tier}"),
        None => name.to_owned(),
    }
}

/// Sends a control message; a failure shows up as a read error right after.
async fn send(ws: &mut Ws, text: String) {
    let _ = ws.send(Frame::text(text)).await;
}
