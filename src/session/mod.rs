//! Sessions: one WebSocket client, owned by its shard.
//!
//! [`Session`] is the shard-side state the fan-out loop touches (encoder, outbox,
//! subscriptions, phase). [`run`] is the session's task on the shard: it reads and answers
//! control frames, waits for writability when the socket is full, and on leaving removes
//! the session from its shard. Every frame to the client, replies included, goes through
//! the outbox, so bytes on the socket are never interleaved.

pub mod control;
pub mod handshake;
pub mod wire;

use std::cell::RefCell;
use std::collections::BTreeSet;
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tracing::debug;

use crate::config::{Config, SlowPolicy};
use crate::encode::ws_frame::{self, OpCode};
use crate::encode::{Encoder, Encoding, Frames, Message};
use crate::metrics::{self, ShardMetrics};
use crate::shard::{SessionKey, ShardCore};
use crate::tick::Symbol;
use control::{Control, ControlError, ControlParser, Selection};
use handshake::SessionParams;
use wire::{FrameReader, Incoming, WireError};

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Receiving ticks.
    Live,
    /// A close frame is queued: no more ticks; the socket closes once it is written or at
    /// the deadline.
    Closing { deadline: Instant },
    /// The socket failed; the task will remove the session.
    Dead,
}

/// One client's state on its shard.
#[derive(Debug)]
pub struct Session {
    /// Relay-wide session id (shown in `welcome`).
    pub id: u64,
    stream: Rc<TcpStream>,
    encoder: Encoder,
    outbox: super::shard::outbox::Outbox,
    /// Symbols subscribed to by name (empty while `all`).
    symbols: BTreeSet<Symbol>,
    /// Subscribed to `*`.
    all: bool,
    slow: SlowPolicy,
    phase: Phase,
    /// Listed in the shard's dirty list.
    pub(crate) dirty: bool,
    /// The last write would have blocked; the task waits for writability.
    blocked: bool,
    /// Wakes the session's task (blocked, closing, dead).
    signal: Rc<Notify>,
}

impl Session {
    /// Queues a tick's frame; false if the session takes no more ticks.
    pub fn push_tick(&mut self, frames: &Frames, now: Instant) -> bool {
        if self.phase != Phase::Live {
            return false;
        }
        let frame = self.encoder.tick(frames);
        self.outbox.push(frame, now);
        true
    }

    /// Queues a server message in the session's encoding.
    pub fn send(&mut self, message: &Message<'_>, now: Instant) {
        if self.phase == Phase::Live {
            let frame = self.encoder.message(message);
            self.outbox.push(frame, now);
        }
    }

    /// Queues a close frame and stops ticks. `discard_backlog` drops frames not yet started
    /// (a slow consumer will not read them; on shutdown they are flushed first).
    pub fn close(&mut self, code: u16, reason: &str, deadline: Instant, discard_backlog: bool) {
        if self.phase != Phase::Live {
            return;
        }
        if discard_backlog {
            self.outbox.drop_unstarted();
        }
        self.outbox
            .push(ws_frame::close_frame(code, reason), Instant::now());
        self.phase = Phase::Closing { deadline };
        self.signal.notify_one();
    }

    /// Writes as much of the outbox as the socket takes now, without waiting.
    pub fn flush(&mut self, metrics: &ShardMetrics) {
        if self.blocked || self.phase == Phase::Dead {
            return;
        }
        while !self.outbox.is_empty() {
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let count = self.outbox.slices(&mut slices);
            let offered: usize = slices[..count].iter().map(|s| s.len()).sum();
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(written) => {
                    self.outbox.advance(written);
                    metrics::add(&metrics.bytes_out, written as u64);
                    if written < offered {
                        // The socket buffer is full: wait for writability.
                        self.block();
                        return;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    self.block();
                    return;
                }
                Err(e) => {
                    debug!(session = self.id, error = %e, "write failed; dropping session");
                    self.phase = Phase::Dead;
                    self.signal.notify_one();
                    return;
                }
            }
        }
        if matches!(self.phase, Phase::Closing { .. }) {
            // The close frame is out: let the task finish the close.
            self.signal.notify_one();
        }
    }

    /// Applies the slow-consumer policy if the outbox is over its budget.
    pub fn enforce_budget(&mut self, config: &Config, metrics: &ShardMetrics, now: Instant) {
        if self.phase != Phase::Live
            || !self
                .outbox
                .over_budget(config.outbox_bytes, config.outbox_max_age, now)
        {
            return;
        }
        match self.slow {
            // Conflation keeps the latest tick per symbol: until it lands, a conflating
            // client is treated like a disconnecting one.
            SlowPolicy::Disconnect | SlowPolicy::Conflate => {
                metrics::add(&metrics.slow_disconnects, 1);
                debug!(
                    session = self.id,
                    pending = self.outbox.bytes(),
                    "slow consumer disconnected"
                );
                self.close(CLOSE_SLOW, "slow consumer", now + SLOW_CLOSE_GRACE, true);
            }
        }
    }

    /// The encoding the client negotiated.
    pub fn encoding(&self) -> Encoding {
        self.encoder.encoding()
    }

    fn block(&mut self) {
        if !self.blocked {
            self.blocked = true;
            self.signal.notify_one();
        }
    }
}

/// Runs one upgraded client until it leaves: registers it on the shard, sends `welcome` and
/// the snapshots, then reads control frames and waits on its socket.
pub async fn run(
    core: Rc<RefCell<ShardCore>>,
    stream: TcpStream,
    leftover: Bytes,
    params: SessionParams,
) {
    let _ = stream.set_nodelay(true);
    let stream = Rc::new(stream);
    let signal = Rc::new(Notify::new());
    let (key, config) = {
        let mut core = core.borrow_mut();
        core.session_tasks.set(core.session_tasks.get() + 1);
        let key = open(&mut core, stream.clone(), signal.clone(), params);
        (key, core.shared.config.clone())
    };
    let mut reader = FrameReader::new(config.max_message_bytes);
    let mut parser = ControlParser::new(config.max_symbols_per_client);
    let mut input = BytesMut::from(&leftover[..]);
    let mut client_closed = !handle_input(&core, key, &mut reader, &mut parser, &mut input);
    while !client_closed {
        let (phase, blocked, flushed) = {
            let core = core.borrow();
            let session = &core.sessions[key];
            (session.phase, session.blocked, session.outbox.is_empty())
        };
        let deadline = match phase {
            Phase::Dead => break,
            Phase::Closing { .. } if flushed => break,
            Phase::Closing { deadline } => deadline,
            Phase::Live => far_future(),
        };
        if input.capacity() - input.len() < READ_CHUNK / 2 {
            input.reserve(READ_CHUNK);
        }
        tokio::select! {
            // The shard's signal first: closing and write errors change what we wait for.
            biased;
            () = signal.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => break,
            ready = stream.writable(), if blocked => {
                let mut core = core.borrow_mut();
                let (metrics, id) = (core.shared.metrics.clone(), core.id);
                let session = &mut core.sessions[key];
                session.blocked = false;
                if ready.is_ok() {
                    session.flush(metrics.shard(id));
                } else {
                    session.phase = Phase::Dead;
                }
            }
            ready = stream.readable() => {
                if ready.is_err() {
                    break;
                }
                match stream.try_read_buf(&mut input) {
                    Ok(0) => break,
                    Ok(_) => client_closed = !handle_input(&core, key, &mut reader, &mut parser, &mut input),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
        }
    }
    let flushed_close = leave(&core, key);
    if flushed_close {
        linger(&stream).await;
    }
    drop(stream);
    let core = core.borrow();
    core.session_tasks.set(core.session_tasks.get() - 1);
    core.session_left.notify_one();
}

/// Registers a new session, subscribes it and queues `welcome` and snapshots.
fn open(
    core: &mut ShardCore,
    stream: Rc<TcpStream>,
    signal: Rc<Notify>,
    params: SessionParams,
) -> SessionKey {
    let id = core.shared.next_session_id();
    let now = Instant::now();
    let key = core.sessions.insert(Session {
        id,
        stream,
        encoder: Encoder::new(params.encoding),
        outbox: super::shard::outbox::Outbox::new(),
        symbols: BTreeSet::new(),
        all: false,
        slow: params.slow,
        phase: Phase::Live,
        dirty: false,
        blocked: false,
        signal,
    });
    metrics::add(&core.shared.metrics.shard(core.id).sessions, 1);
    let shard = core.id as u32;
    core.sessions[key].send(
        &Message::Welcome {
            session: id,
            shard,
            encoding: params.encoding,
            symbols: &params.selection.symbols,
        },
        now,
    );
    // The connect-time list is validated against the limit by the handshake already.
    let added = subscribe(core, key, &params.selection);
    send_snapshots(core, key, &added, now);
    core.mark_dirty(key);
    core.flush_dirty();
    key
}

/// Handles every complete frame in `input`; false once the client has closed or broken the
/// protocol (the session is then closing).
fn handle_input(
    core: &Rc<RefCell<ShardCore>>,
    key: SessionKey,
    reader: &mut FrameReader,
    parser: &mut ControlParser,
    input: &mut BytesMut,
) -> bool {
    let mut core = core.borrow_mut();
    let core = &mut *core;
    let mut open = true;
    loop {
        let now = Instant::now();
        match reader.next(input) {
            Ok(None) => break,
            Ok(Some(message)) => {
                if !handle_message(core, key, parser, message, now) {
                    open = false;
                    break;
                }
            }
            Err(error) => {
                protocol_error(core, key, &error, now);
                open = false;
                break;
            }
        }
    }
    core.mark_dirty(key);
    core.flush_dirty();
    open
}

fn handle_message(
    core: &mut ShardCore,
    key: SessionKey,
    parser: &mut ControlParser,
    message: Incoming,
    now: Instant,
) -> bool {
    let encoding = core.sessions[key].encoding();
    let control = match message {
        Incoming::Text(text) => {
            let mut scratch = text.to_vec();
            parser.json(&mut scratch)
        }
        Incoming::Binary(bytes) if encoding == Encoding::Protobuf => parser.protobuf(&bytes),
        Incoming::Binary(_) => Err(ControlError::BinaryNotSupported),
        Incoming::Ping(payload) => {
            let session = &mut core.sessions[key];
            if session.phase == Phase::Live {
                session
                    .outbox
                    .push(ws_frame::frame(OpCode::Pong, &payload), now);
            }
            return true;
        }
        Incoming::Pong => return true,
        Incoming::Close(code) => {
            // RFC 6455 §5.5.1: answer a close with a close (echoing the code), then end.
            let deadline = now + core.shared.config.drain_timeout;
            core.sessions[key].close(code.unwrap_or(1000), "", deadline, true);
            return false;
        }
    };
    match control {
        Ok(control) => apply(core, key, control, now),
        Err(error) => {
            core.shared.metrics.count_error(error.code());
            debug!(session = core.sessions[key].id, code = error.code(), %error, "control message refused");
            core.sessions[key].send(
                &Message::Error {
                    code: error.code(),
                    message: &error.to_string(),
                },
                now,
            );
        }
    }
    true
}

fn apply(core: &mut ShardCore, key: SessionKey, control: Control, now: Instant) {
    match control {
        Control::Subscribe(selection) => {
            let limit = core.shared.config.max_symbols_per_client;
            let session = &core.sessions[key];
            let held = if session.all {
                1
            } else {
                session.symbols.len()
            };
            let new = if selection.all {
                usize::from(!session.all)
            } else if session.all {
                0
            } else {
                selection
                    .symbols
                    .iter()
                    .filter(|s| !session.symbols.contains(*s))
                    .count()
            };
            if held + new > limit {
                let error = ControlError::TooManySymbols {
                    requested: held + new,
                    limit,
                };
                core.shared.metrics.count_error(error.code());
                core.sessions[key].send(
                    &Message::Error {
                        code: error.code(),
                        message: &error.to_string(),
                    },
                    now,
                );
                return;
            }
            let added = subscribe(core, key, &selection);
            ack(core, key, "subscribed", &selection, now);
            send_snapshots(core, key, &added, now);
        }
        Control::Unsubscribe(selection) => {
            unsubscribe(core, key, &selection);
            ack(core, key, "unsubscribed", &selection, now);
        }
        Control::Snapshot(selection) => {
            let wanted = if selection.all {
                Added::All
            } else {
                Added::Symbols(selection.symbols.clone())
            };
            send_snapshots(core, key, &wanted, now);
            ack(core, key, "snapshot", &selection, now);
        }
        Control::Ping { id } => core.sessions[key].send(&Message::Pong { id }, now),
        Control::Resume(_) | Control::Heartbeat { .. } => {
            let message = "not supported by this relay version";
            core.shared.metrics.count_error("bad_message");
            core.sessions[key].send(
                &Message::Error {
                    code: "unsupported",
                    message,
                },
                now,
            );
        }
    }
}

/// What a subscribe added, for the snapshots that follow it.
enum Added {
    /// `*` was added: every symbol.
    All,
    /// These symbols were added.
    Symbols(Vec<Symbol>),
}

/// Adds `selection` to the session's subscriptions. `*` subsumes named symbols (their
/// index entries are dropped so no tick is delivered twice).
fn subscribe(core: &mut ShardCore, key: SessionKey, selection: &Selection) -> Added {
    let ShardCore {
        sessions,
        subscriptions,
        shared,
        ..
    } = core;
    let session = &mut sessions[key];
    let encoding = session.encoding();
    if session.all {
        return Added::Symbols(Vec::new());
    }
    if selection.all {
        for symbol in std::mem::take(&mut session.symbols) {
            subscriptions.remove(Some(&symbol), key);
            shared.interest.remove(Some(&symbol), encoding);
        }
        session.all = true;
        subscriptions.insert(None, key);
        shared.interest.add(None, encoding);
        return Added::All;
    }
    let mut added = Vec::new();
    for symbol in &selection.symbols {
        if session.symbols.insert(symbol.clone()) {
            subscriptions.insert(Some(symbol), key);
            shared.interest.add(Some(symbol), encoding);
            added.push(symbol.clone());
        }
    }
    Added::Symbols(added)
}

fn unsubscribe(core: &mut ShardCore, key: SessionKey, selection: &Selection) {
    let ShardCore {
        sessions,
        subscriptions,
        shared,
        ..
    } = core;
    let session = &mut sessions[key];
    let encoding = session.encoding();
    if selection.all && session.all {
        session.all = false;
        subscriptions.remove(None, key);
        shared.interest.remove(None, encoding);
    }
    for symbol in &selection.symbols {
        if session.symbols.remove(symbol) {
            subscriptions.remove(Some(symbol), key);
            shared.interest.remove(Some(symbol), encoding);
        }
    }
}

fn send_snapshots(core: &mut ShardCore, key: SessionKey, added: &Added, now: Instant) {
    let ShardCore { sessions, last, .. } = core;
    let session = &mut sessions[key];
    match added {
        Added::All => {
            let mut all: Vec<_> = last.values().collect();
            all.sort_by(|a, b| a.tick().symbol.cmp(&b.tick().symbol));
            for frames in all {
                session.send(&Message::Snapshot(frames.tick()), now);
            }
        }
        Added::Symbols(symbols) => {
            for frames in symbols.iter().filter_map(|s| last.get(s)) {
                session.send(&Message::Snapshot(frames.tick()), now);
            }
        }
    }
}

fn ack(
    core: &mut ShardCore,
    key: SessionKey,
    op: &'static str,
    selection: &Selection,
    now: Instant,
) {
    let session = &mut core.sessions[key];
    session.send(
        &Message::Ack {
            op,
            all: selection.all,
            symbols: &selection.symbols,
        },
        now,
    );
}

fn protocol_error(core: &mut ShardCore, key: SessionKey, error: &WireError, now: Instant) {
    core.shared.metrics.count_error(error.code());
    let session = &mut core.sessions[key];
    debug!(session = session.id, code = error.code(), %error, "websocket protocol error");
    let deadline = now + core.shared.config.drain_timeout;
    // An error message first (where the socket still frames), then the close code.
    session.send(
        &Message::Error {
            code: error.code(),
            message: &error.to_string(),
        },
        now,
    );
    session.close(error.close_code(), &error.to_string(), deadline, false);
}

/// Removes the session from its shard; true if its close frame was fully written (then the
/// socket should linger so the client reads it before the TCP close).
fn leave(core: &Rc<RefCell<ShardCore>>, key: SessionKey) -> bool {
    let mut core = core.borrow_mut();
    let all = Selection {
        all: true,
        symbols: Vec::new(),
    };
    let named = Selection {
        all: false,
        symbols: core.sessions[key].symbols.iter().cloned().collect(),
    };
    unsubscribe(&mut core, key, &all);
    unsubscribe(&mut core, key, &named);
    let session = core.sessions.remove(key);
    metrics::sub(&core.shared.metrics.shard(core.id).sessions, 1);
    matches!(session.phase, Phase::Closing { .. }) && session.outbox.is_empty()
}

/// Half-closes our side and reads until the client closes (bounded), so our close frame is
/// not destroyed by a TCP reset when unread client bytes are pending.
async fn linger(stream: &TcpStream) {
    let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
    let drain = async {
        let mut sink = [0u8; 4096];
        loop {
            if stream.readable().await.is_err() {
                return;
            }
            match stream.try_read(&mut sink) {
                Ok(0) => return,
                Ok(_) => {}
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(_) => return,
            }
        }
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Close code for a slow consumer (4000-4999: private use, RFC 6455 §7.4.2).
pub const CLOSE_SLOW: u16 = 4008;
/// How long a slow consumer's close frame may take before the socket is dropped.
const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a closing socket waits for the client's side of the close.
const LINGER: Duration = Duration::from_secs(2);
/// Most frames offered to one vectored write (Linux's IOV_MAX is 1024; 64 covers a turn).
const WRITE_SLICES: usize = 64;
/// Read buffer growth step.
const READ_CHUNK: usize = 8 * 1024;
