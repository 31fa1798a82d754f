//! [`Client`]: the application's handle, and the connection task behind it.
//!
//! The task owns the socket. It connects, reads frames, decodes them, passes ticks through
//! the [`Sequencer`] and pushes what comes out into the [`Queue`] the application reads.
//! When the connection is lost (an error, a close, or silence past the liveness timeout) it
//! waits a jittered backoff and reconnects with `resume=` for every symbol it has a seq for,
//! so the sequence goes on where it stopped. The task stops when the [`Client`] is dropped.

use std::collections::{BTreeMap, BTreeSet, HashSet};
use std::pin::Pin;
use std::sync::{Arc, Mutex, MutexGuard};
use std::task::{Context, Poll};

use futures_util::{SinkExt, Stream, StreamExt};
use tokio::net::TcpStream;
use tokio::sync::{Notify, mpsc};
use tokio::time::{Instant, sleep_until};
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::decode::{Decoder, Message};
use crate::error::{ConnectError, Error};
use crate::item::{Connected, Disconnected, GapReason, Item, Key, ServerError};
use crate::options::Options;
use crate::queue::{Pushed, Queue};
use crate::sequence::Sequencer;
use crate::tls;

mod connect;

use connect::{AUTH_CODES, Open, auth_refusal, closed};

/// A tickrelay client: a stream of [`Item`]s that survives disconnects and relay restarts.
///
/// Read it with [`Client::next`] (or as a [`futures_util::Stream`]). Dropping it closes the
/// connection and stops its task.
#[derive(Debug)]
pub struct Client {
    shared: Arc<Shared>,
    commands: mpsc::UnboundedSender<Command>,
    task: tokio::task::JoinHandle<()>,
}

#[derive(Debug)]
struct Shared {
    queue: Mutex<Queue>,
    /// Signalled on every pop: the task may be waiting for space.
    space: Notify,
}

#[derive(Debug)]
enum Command {
    Subscribe(Vec<String>),
    Unsubscribe(Vec<String>),
}

impl Client {
    /// Connects to `url` (e.g. `ws://127.0.0.1:8080/ws`, or `wss://` for a relay with TLS)
    /// and returns once the relay has welcomed the first connection. Later connections are
    /// retried automatically.
    pub async fn connect(url: &str, options: Options) -> Result<Self, ConnectError> {
        let tls = if url.starts_with("wss://") {
            Some(tls::connector(&options.ca_files)?)
        } else if url.starts_with("ws://") {
            None
        } else {
            return Err(ConnectError::InvalidRequest(format!(
                "`{url}` is not a ws:// or wss:// URL"
            )));
        };
        let shared = Arc::new(Shared {
            queue: Mutex::new(Queue::new(options.buffer, options.slow_consumer)),
            space: Notify::new(),
        });
        let (commands, receiver) = mpsc::unbounded_channel();
        let mut worker = Worker {
            base: url.to_owned(),
            sequencer: Sequencer::new(options.resume_from.iter().cloned()),
            symbols: options.symbols.iter().cloned().collect(),
            options,
            shared: shared.clone(),
            commands: receiver,
            ping_id: 0,
            resume_in_url: true,
            tls,
            auth_error: None,
        };
        let connection = worker.open().await.map_err(|e| match e {
            Open::Refused { status, body } => match auth_refusal(status, &body) {
                Some((code, message)) => ConnectError::Unauthorized {
                    status,
                    code,
                    message,
                },
                None => ConnectError::Refused { status, body },
            },
            Open::Invalid(e) => ConnectError::InvalidRequest(e),
            Open::Tls(e) => ConnectError::Tls(e),
            Open::Io(e) => ConnectError::Io(e),
            Open::NoWelcome(d) => ConnectError::NoWelcome(d),
        })?;
        let task = tokio::spawn(worker.run(connection));
        Ok(Self {
            shared,
            commands,
            task,
        })
    }

    /// The next item; `None` once the stream has ended (after an [`Error`]).
    pub async fn next(&mut self) -> Option<Result<Item, Error>> {
        std::future::poll_fn(|cx| self.poll_item(cx)).await
    }

    /// Subscribes to more symbols. A symbol this client has seen before resumes from its
    /// last seq, so unsubscribing and subscribing again loses nothing silently.
    pub fn subscribe<S: Into<String>>(
        &self,
        symbols: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let symbols = symbols.into_iter().map(Into::into).collect();
        self.commands
            .send(Command::Subscribe(symbols))
            .map_err(|_| Error::ClientClosed)
    }

    /// Unsubscribes from symbols. Ticks already on their way are still delivered.
    pub fn unsubscribe<S: Into<String>>(
        &self,
        symbols: impl IntoIterator<Item = S>,
    ) -> Result<(), Error> {
        let symbols = symbols.into_iter().map(Into::into).collect();
        self.commands
            .send(Command::Unsubscribe(symbols))
            .map_err(|_| Error::ClientClosed)
    }

    /// The last seq the application has read, per symbol: pass it to
    /// [`Options::resume_from`] to continue in a new client.
    pub fn positions(&self) -> BTreeMap<String, u64> {
        self.queue()
            .popped()
            .iter()
            .filter_map(|(key, seq)| match key {
                Key::Symbol(s) => Some((s.clone(), *seq)),
                Key::Channel(_) => None,
            })
            .collect()
    }

    /// How far behind the application is: the items (and a pending error) that
    /// [`Client::next`] would return without waiting.
    pub fn backlog(&self) -> usize {
        self.queue().backlog()
    }

    /// Closes the connection and stops the task.
    pub fn close(self) {
        drop(self);
    }

    fn poll_item(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Item, Error>>> {
        let mut queue = self.queue();
        if let Some(item) = queue.pop() {
            drop(queue);
            self.shared.space.notify_one();
            return Poll::Ready(Some(item));
        }
        if queue.finished() || self.task.is_finished() {
            return Poll::Ready(None);
        }
        queue.waker = Some(cx.waker().clone());
        Poll::Pending
    }

    fn queue(&self) -> MutexGuard<'_, Queue> {
        lock(&self.shared)
    }
}

impl Stream for Client {
    type Item = Result<Item, Error>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        self.get_mut().poll_item(cx)
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        self.task.abort();
    }
}

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An open connection whose welcome has been read.
struct Connection {
    ws: Ws,
    decoder: Decoder,
    session: u64,
    epoch: Option<String>,
    /// Symbols this connection resumed; a gap for one of them is a replay gap.
    resuming: HashSet<String>,
}

/// How a connection ended.
enum End {
    /// Reconnect.
    Lost(Disconnected),
    /// Stop, ending the stream with this error.
    Fatal(Error),
    /// The application is gone, or its stream already failed.
    Stop,
}

struct Worker {
    base: String,
    options: Options,
    shared: Arc<Shared>,
    commands: mpsc::UnboundedReceiver<Command>,
    sequencer: Sequencer,
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

impl Worker {
    async fn run(mut self, mut connection: Connection) {
        loop {
            let lost = match self.session(connection).await {
                End::Lost(lost) => lost,
                End::Fatal(error) => {
                    lock(&self.shared).fail(error);
                    break;
                }
                End::Stop => break,
            };
            if !self.deliver(Item::Disconnected(lost)).await {
                break;
            }
            let mut attempt = 0;
            connection = loop {
                let wake = Instant::now() + self.options.backoff.delay(attempt);
                attempt = attempt.saturating_add(1);
                if !self.idle_until(wake).await {
                    return self.close();
                }
                match self.open().await {
                    Ok(connection) => break connection,
                    // Under `*`, more positions than the relay lets one client name (its
                    // --max-symbols-per-client): connect without them. Snapshots then stand in
                    // for the replays, and the sequencer names what they skip as gaps.
                    Err(Open::Refused { status: 400, body })
                        if self.resume_in_url && body.contains("too_many_symbols") =>
                    {
                        self.resume_in_url = false;
                        attempt = 0;
                    }
                    // 503: draining or full; try again. Any other refusal will not change.
                    Err(Open::Refused { status, body }) if status != 503 => {
                        let error = match auth_refusal(status, &body) {
                            Some((code, message)) => Error::Unauthorized { code, message },
                            None => Error::Refused { status, body },
                        };
                        lock(&self.shared).fail(error);
                        return self.close();
                    }
                    Err(_) => {}
                }
            };
        }
        self.close();
    }

    fn close(&self) {
        let mut queue = lock(&self.shared);
        queue.closed = true;
        if let Some(waker) = queue.waker.take() {
            waker.wake();
        }
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

    async fn session(&mut self, mut c: Connection) -> End {
        // Positions go in the URL again next time (the symbol count may have dropped).
        self.resume_in_url = true;
        self.sequencer.welcome(c.epoch.as_deref());
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
        let limit = self.options.liveness_timeout;
        let mut last_heard = Instant::now();
        let mut probed = false;
        let mut out = Vec::new();
        loop {
            tokio::select! {
                // Frames first: one that has arrived proves life even if a timer fired too.
                biased;
                frame = c.ws.next() => {
                    let message = match frame {
                        Some(Ok(Frame::Text(text))) => c.decoder.text(&text),
                        Some(Ok(Frame::Binary(bytes))) => c.decoder.binary(&bytes),
                        Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => Ok(Message::Other),
                        Some(Ok(Frame::Close(close))) => return closed(close, self.auth_error.take()),
                        Some(Err(e)) => return lost(None, format!("connection failed: {e}")),
                        None => return lost(None, "connection ended".into()),
                    };
                    match message {
                        Ok(message) => self.accept(message, &mut c.resuming, &mut out),
                        // The stream's state is unknown (gzip cannot resynchronise): start over.
                        Err(e) => return lost(None, format!("undecodable frame: {e}")),
                    }
                    for item in out.drain(..) {
                        if !self.deliver(item).await {
                            return End::Stop;
                        }
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

    /// Passes one decoded message through the sequencer.
    fn accept(&mut self, message: Message, resuming: &mut HashSet<String>, out: &mut Vec<Item>) {
        match message {
            Message::Welcome { epoch, .. } => self.sequencer.welcome(epoch.as_deref()),
            Message::Tick(t) => {
                resuming.remove(&t.symbol);
                self.sequencer.item(Item::Tick(t), out);
            }
            Message::Snapshot(t) => {
                resuming.remove(&t.symbol);
                self.sequencer.item(Item::Snapshot(t), out);
            }
            Message::Event(e) => self.sequencer.item(Item::Event(e), out),
            Message::Derived(d) => self.sequencer.item(d.into(), out),
            Message::Gap {
                symbol,
                channel,
                from,
                to,
            } => {
                let (key, reason) = match (symbol, channel) {
                    (Some(s), _) if resuming.remove(&s) => {
                        (Key::Symbol(s), GapReason::NotReplayable)
                    }
                    (Some(s), _) => (Key::Symbol(s), GapReason::RelayConflated),
                    (None, Some(c)) => (Key::Channel(c), GapReason::RelayConflated),
                    (None, None) => return,
                };
                self.sequencer.gap(key, from, to, reason, out);
            }
            Message::Error(e) => {
                // `forbidden` refuses one subscription and the session goes on; the others
                // come before a 4001 or 4002 close.
                if e.code != "forbidden" && AUTH_CODES.contains(&e.code.as_str()) {
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
                    // `resume` of a symbol covered by `*` is refused (already_subscribed).
                    match self.sequencer.resume_position(&symbol) {
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
                    ops.push(serde_json::json!({"op": "resume", "from": from}));
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

    /// Hands an item to the application, waiting for space under [`SlowConsumer::Wait`];
    /// false when the stream has failed and the task should stop.
    async fn deliver(&self, item: Item) -> bool {
        let mut item = item;
        loop {
            let pushed = lock(&self.shared).push(item);
            match pushed {
                Pushed::Done => return true,
                Pushed::Failed => return false,
                Pushed::Full(back) => item = *back,
            }
            self.shared.space.notified().await;
        }
    }
}

fn lock(shared: &Shared) -> MutexGuard<'_, Queue> {
    // A panic while holding the lock leaves the queue consistent (every method completes its
    // change before it can panic), so a poisoned lock is still usable.
    shared
        .queue
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner)
}

/// Sends a control message; a failure shows up as a read error right after.
async fn send(ws: &mut Ws, text: String) {
    let _ = ws.send(Frame::text(text)).await;
}

fn lost(code: Option<u16>, reason: String) -> End {
    End::Lost(Disconnected { code, reason })
}
