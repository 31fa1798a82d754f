//! Sessions: one WebSocket client, owned by its shard.
//!
//! [`Session`] is the shard-side state the fan-out loop touches (encoder, outbox,
//! subscriptions, slow-consumer state). [`run`] is the session's task on the shard: it reads
//! and answers control frames, pings the client, sends heartbeats, waits for writability
//! when the socket is full, and on leaving removes the session from its shard. Every frame
//! to the client, replies included, goes through the outbox, so bytes on the socket are
//! never interleaved.

pub mod control;
pub mod feed;
pub mod handshake;
pub mod wire;

use std::cell::RefCell;
use std::collections::{BTreeMap, BTreeSet};
use std::io::{self, IoSlice};
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};
use tracing::debug;

use crate::config::{Config, SlowPolicy};
use crate::encode::ws_frame::{self, OpCode};
use crate::encode::{Encoding, Message};
use crate::limits::{IpSlot, TokenBucket};
use crate::metrics::{self, ShardMetrics};
use crate::shard::replay::Replay;
use crate::shard::{SessionKey, ShardCore};
use crate::tick::{Seq, Symbol, now_ns};
use control::{Control, ControlError, Selection};
use feed::{Feed, Phase};
use handshake::{Mode, SessionParams};
use wire::{FrameReader, Incoming, WireError};

/// One client's state on its shard.
#[derive(Debug)]
pub struct Session {
    /// Relay-wide session id (shown in `welcome`).
    pub id: u64,
    stream: Rc<TcpStream>,
    /// Encoder, outbox and slow-consumer state: what the fan-out writes into.
    pub feed: Feed,
    /// Symbols subscribed to by name (empty while `all`).
    symbols: BTreeSet<Symbol>,
    /// Subscribed to `*`.
    all: bool,
    slow: SlowPolicy,
    /// The last write would have blocked; the task waits for writability.
    blocked: bool,
    /// Wakes the session's task (blocked, closing, dead, heartbeat changed).
    signal: Rc<Notify>,
    control_rate: TokenBucket,
    /// Application heartbeat interval the client asked for.
    heartbeat: Option<Duration>,
    mode: Mode,
}

impl Session {
    /// Queues a server message in the session's encoding.
    pub fn send(&mut self, message: &Message<'_>, now: Instant) {
        self.feed.send(message, now);
    }

    /// Queues a close frame and stops ticks. `discard_backlog` drops frames not yet started
    /// (a slow consumer will not read them; on shutdown they are flushed first).
    pub fn close(&mut self, code: u16, reason: &str, deadline: Instant, discard_backlog: bool) {
        if self.feed.phase != Phase::Live {
            return;
        }
        if discard_backlog {
            self.feed.outbox.drop_unstarted();
        }
        self.feed
            .outbox
            .push(ws_frame::close_frame(code, reason), Instant::now());
        self.feed.phase = Phase::Closing { deadline };
        self.feed.lagging = None;
        self.signal.notify_one();
    }

    /// Writes as much of the outbox as the socket takes now, without waiting.
    pub fn flush(&mut self, metrics: &ShardMetrics, config: &Config) {
        if self.blocked || self.feed.phase == Phase::Dead {
            return;
        }
        loop {
            if self.feed.outbox.is_empty() {
                break;
            }
            let mut slices = [IoSlice::new(&[]); WRITE_SLICES];
            let count = self.feed.outbox.slices(&mut slices);
            let offered: usize = slices[..count].iter().map(|s| s.len()).sum();
            match self.stream.try_write_vectored(&slices[..count]) {
                Ok(written) => {
                    self.feed.outbox.advance(written);
                    metrics::add(&metrics.bytes_out, written as u64);
                    self.feed.caught_up(config);
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
                    self.feed.phase = Phase::Dead;
                    self.signal.notify_one();
                    return;
                }
            }
        }
        if matches!(self.feed.phase, Phase::Closing { .. }) {
            // The close frame is out: let the task finish the close.
            self.signal.notify_one();
        }
    }

    /// Applies the slow-consumer policy if the outbox is over its budget.
    pub fn enforce_budget(&mut self, config: &Config, metrics: &ShardMetrics, now: Instant) {
        if self.feed.phase != Phase::Live || self.feed.lagging.is_some() {
            return;
        }
        let max_bytes = config.outbox_bytes.max(self.feed.burst_allowance);
        if !self
            .feed
            .outbox
            .over_budget(max_bytes, config.outbox_max_age, now)
        {
            return;
        }
        match self.slow {
            SlowPolicy::Disconnect => {
                metrics::add(&metrics.slow_disconnects, 1);
                debug!(
                    session = self.id,
                    pending = self.feed.outbox.bytes(),
                    "slow consumer disconnected"
                );
                self.close(CLOSE_SLOW, "slow consumer", now + SLOW_CLOSE_GRACE, true);
            }
            SlowPolicy::Conflate => {
                debug!(
                    session = self.id,
                    pending = self.feed.outbox.bytes(),
                    "slow consumer conflating"
                );
                self.feed.lagging = Some(BTreeMap::new());
            }
        }
    }

    /// The encoding the client negotiated.
    pub fn encoding(&self) -> Encoding {
        self.feed.encoding()
    }

    fn block(&mut self) {
        if !self.blocked {
            self.blocked = true;
            self.signal.notify_one();
        }
    }
}

/// Runs one upgraded client until it leaves: registers it on the shard, sends `welcome`,
/// snapshots or replays, then serves its socket.
pub async fn run(
    core: Rc<RefCell<ShardCore>>,
    stream: TcpStream,
    leftover: Bytes,
    params: SessionParams,
    ip_slot: Option<IpSlot>,
) {
    let _ = stream.set_nodelay(true);
    let send_buffer = core.borrow().shared.config.send_buffer_bytes;
    if send_buffer > 0 {
        let _ = socket2::SockRef::from(&stream).set_send_buffer_size(send_buffer);
    }
    let stream = Rc::new(stream);
    let signal = Rc::new(Notify::new());
    let (key, config) = {
        let mut core = core.borrow_mut();
        core.session_tasks.set(core.session_tasks.get() + 1);
        let key = open(&mut core, stream.clone(), signal.clone(), params);
        (key, core.shared.config.clone())
    };
    let mut membership = Membership {
        core: core.clone(),
        key: Some(key),
    };
    let mut reader = FrameReader::new(config.max_message_bytes);
    let mut input = BytesMut::from(&leftover[..]);
    // `leftover` is a slice of hyper's read buffer: holding it would pin ~8 KiB per client.
    drop(leftover);
    let mut last_heard = Instant::now();
    let mut ping = every(config.ping_interval);
    let mut heartbeat: Option<(Duration, Interval)> = None;
    let mut client_closed = !handle_input(&core, key, &mut reader, &mut input);
    while !client_closed {
        let (phase, blocked, flushed, wanted_heartbeat) = {
            let core = core.borrow();
            let session = &core.sessions[key];
            (
                session.feed.phase,
                session.blocked,
                session.feed.outbox.is_empty(),
                session.heartbeat,
            )
        };
        if wanted_heartbeat != heartbeat.as_ref().map(|(d, _)| *d) {
            heartbeat = wanted_heartbeat.map(|d| (d, every(d)));
        }
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
                let (shared, id) = (core.shared.clone(), core.id);
                let session = &mut core.sessions[key];
                session.blocked = false;
                if ready.is_ok() {
                    session.flush(shared.metrics.shard(id), &shared.config);
                } else {
                    session.feed.phase = Phase::Dead;
                }
            }
            ready = stream.readable() => {
                if ready.is_err() {
                    break;
                }
                match stream.try_read_buf(&mut input) {
                    Ok(0) => break,
                    Ok(_) => {
                        last_heard = Instant::now();
                        client_closed = !handle_input(&core, key, &mut reader, &mut input);
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                    Err(_) => break,
                }
            }
            _ = ping.tick() => keep_alive(&core, key, last_heard),
            _ = tick_of(&mut heartbeat), if heartbeat.is_some() => {
                let mut core = core.borrow_mut();
                core.sessions[key].send(&Message::Heartbeat { ts_ns: now_ns() }, Instant::now());
                core.mark_dirty(key);
                core.flush_dirty();
            }
        }
    }
    let flushed_close = membership.leave();
    if flushed_close {
        linger(&stream).await;
    }
    drop((stream, ip_slot, membership));
}

/// A session's place on its shard, given up when the task ends however it ends: a panic in
/// a handler must not leak the session, its subscriptions or its socket.
struct Membership {
    core: Rc<RefCell<ShardCore>>,
    key: Option<SessionKey>,
}

impl Membership {
    /// Leaves the shard now; true if the close frame was fully written (see [`leave`]).
    fn leave(&mut self) -> bool {
        match self.key.take() {
            Some(key) => leave(&mut self.core.borrow_mut(), key),
            None => false,
        }
    }
}

impl Drop for Membership {
    fn drop(&mut self) {
        // After a panic, the handler's own borrow was released while unwinding its frame.
        let Ok(mut core) = self.core.try_borrow_mut() else {
            return;
        };
        if let Some(key) = self.key.take() {
            leave(&mut core, key);
        }
        core.session_tasks.set(core.session_tasks.get() - 1);
        core.session_left.notify_one();
    }
}

/// Registers a new session, subscribes it and queues `welcome` and snapshots or replays.
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
        feed: Feed::new(params.encoding),
        symbols: BTreeSet::new(),
        all: false,
        slow: params.slow,
        blocked: false,
        signal,
        control_rate: TokenBucket::new(core.shared.config.max_control_rate, now),
        heartbeat: None,
        mode: params.mode,
    });
    metrics::add(&core.shared.metrics.shard(core.id).sessions, 1);
    if params.mode == Mode::Echo {
        return key;
    }
    let resumed: Vec<Symbol> = params.resume.iter().map(|(s, _)| s.clone()).collect();
    let mut welcome_symbols = params.selection.symbols.clone();
    welcome_symbols.extend(
        resumed
            .iter()
            .filter(|s| !params.selection.symbols.contains(s))
            .cloned(),
    );
    let shard = core.id as u32;
    core.sessions[key].send(
        &Message::Welcome {
            session: id,
            shard,
            encoding: params.encoding,
            all: params.selection.all,
            symbols: &welcome_symbols,
        },
        now,
    );
    // The connect-time lists were validated against the limit by the handshake already.
    let live = Selection {
        all: params.selection.all,
        symbols: params
            .selection
            .symbols
            .iter()
            .filter(|s| !resumed.contains(s))
            .cloned()
            .collect(),
    };
    let added = subscribe(core, key, &live);
    send_snapshots(core, key, &added, now);
    resume(core, key, &params.resume, now);
    // The connect burst is compressed; a client that stays idle should not hold deflate state.
    core.sessions[key].feed.encoder.release();
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
                if !handle_message(core, key, message, now) {
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

fn handle_message(core: &mut ShardCore, key: SessionKey, message: Incoming, now: Instant) -> bool {
    let session = &mut core.sessions[key];
    let (encoding, mode) = (session.encoding(), session.mode);
    let control = match message {
        Incoming::Ping(payload) => {
            session
                .feed
                .send_frame(ws_frame::frame(OpCode::Pong, &payload), now);
            return true;
        }
        Incoming::Pong => return true,
        Incoming::Close(code) => {
            // RFC 6455 §5.5.1: answer a close with a close (echoing the code), then end.
            let deadline = now + core.shared.config.drain_timeout;
            core.sessions[key].close(code.unwrap_or(1000), "", deadline, true);
            return false;
        }
        Incoming::Text(text) if mode == Mode::Echo => {
            echo(session, OpCode::Text, &text, now);
            return true;
        }
        Incoming::Binary(bytes) if mode == Mode::Echo => {
            echo(session, OpCode::Binary, &bytes, now);
            return true;
        }
        _ if !session.control_rate.take(now) => Err(ControlError::RateLimited(
            core.shared.config.max_control_rate,
        )),
        Incoming::Text(text) => {
            let mut scratch = text.to_vec();
            core.control_parser.json(&mut scratch)
        }
        Incoming::Binary(bytes) if encoding == Encoding::Protobuf => {
            core.control_parser.protobuf(&bytes)
        }
        Incoming::Binary(_) => Err(ControlError::BinaryNotSupported),
    };
    match control {
        Ok(control) => apply(core, key, control, now),
        Err(error) => refuse(core, key, &error, now),
    }
    true
}

/// `/echo`: sends the message back in the same kind of frame. An echo is a burst the client
/// asked for, so it may exceed the outbox budget until it drains.
fn echo(session: &mut Session, opcode: OpCode, payload: &[u8], now: Instant) {
    session
        .feed
        .send_frame(ws_frame::frame(opcode, payload), now);
    session.feed.allow_burst();
}

fn refuse(core: &mut ShardCore, key: SessionKey, error: &ControlError, now: Instant) {
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

fn apply(core: &mut ShardCore, key: SessionKey, control: Control, now: Instant) {
    match control {
        Control::Subscribe(selection) => {
            if let Err(error) = check_limit(core, key, selection.all, &selection.symbols) {
                return refuse(core, key, &error, now);
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
        Control::Resume(positions) => {
            let session = &core.sessions[key];
            let taken: Vec<&str> = positions
                .iter()
                .filter(|(s, _)| session.all || session.symbols.contains(s))
                .map(|(s, _)| s.as_str())
                .collect();
            if !taken.is_empty() {
                let error = ControlError::AlreadySubscribed(taken.join(","));
                return refuse(core, key, &error, now);
            }
            let symbols: Vec<Symbol> = positions.iter().map(|(s, _)| s.clone()).collect();
            if let Err(error) = check_limit(core, key, false, &symbols) {
                return refuse(core, key, &error, now);
            }
            ack(
                core,
                key,
                "resumed",
                &Selection {
                    all: false,
                    symbols,
                },
                now,
            );
            resume(core, key, &positions, now);
        }
        Control::Heartbeat { interval } => {
            let session = &mut core.sessions[key];
            session.heartbeat = (!interval.is_zero()).then(|| interval.max(MIN_HEARTBEAT));
            session.signal.notify_one();
            ack(core, key, "heartbeat_set", &Selection::default(), now);
        }
    }
}

/// Refuses a subscription that would take the session past `--max-symbols-per-client`.
fn check_limit(
    core: &ShardCore,
    key: SessionKey,
    all: bool,
    symbols: &[Symbol],
) -> Result<(), ControlError> {
    let limit = core.shared.config.max_symbols_per_client;
    let session = &core.sessions[key];
    let held = if session.all {
        1
    } else {
        session.symbols.len()
    };
    let new = if all {
        usize::from(!session.all)
    } else if session.all {
        0
    } else {
        symbols
            .iter()
            .filter(|s| !session.symbols.contains(*s))
            .count()
    };
    if held + new > limit {
        return Err(ControlError::TooManySymbols {
            requested: held + new,
            limit,
        });
    }
    Ok(())
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
    let ShardCore {
        sessions, history, ..
    } = core;
    let session = &mut sessions[key];
    match added {
        Added::All => {
            let mut all: Vec<_> = history.values().filter_map(|h| h.last()).collect();
            all.sort_by(|a, b| a.tick().symbol.cmp(&b.tick().symbol));
            for frames in all {
                session.send(&Message::Snapshot(frames.tick()), now);
            }
        }
        Added::Symbols(symbols) => {
            for frames in symbols
                .iter()
                .filter_map(|s| history.get(s))
                .filter_map(|h| h.last())
            {
                session.send(&Message::Snapshot(frames.tick()), now);
            }
        }
    }
}

/// Subscribes each symbol and sends what the client missed after its position: the ticks
/// from the ring, or a `gap` and a snapshot when the position is older than the ring.
/// Runs between fan-out turns, so the replay ends exactly where the live stream resumes.
fn resume(core: &mut ShardCore, key: SessionKey, positions: &[(Symbol, Seq)], now: Instant) {
    if positions.is_empty() {
        return;
    }
    let symbols = positions.iter().map(|(s, _)| s.clone()).collect();
    subscribe(
        core,
        key,
        &Selection {
            all: false,
            symbols,
        },
    );
    let ShardCore {
        sessions,
        history,
        shared,
        id,
        ..
    } = core;
    let metrics = shared.metrics.shard(*id);
    let session = &mut sessions[key];
    for (symbol, seq) in positions {
        match history.get(symbol).and_then(|h| h.since(*seq)) {
            None => {}
            Some(Replay::Ticks(ticks)) => {
                for frames in ticks {
                    session.feed.push_tick(frames, now, metrics);
                }
            }
            Some(Replay::Gap { from, to, last }) => {
                session.send(&Message::Gap { symbol, from, to }, now);
                session.send(&Message::Snapshot(last.tick()), now);
            }
            Some(Replay::Ahead { last }) => session.send(&Message::Snapshot(last.tick()), now),
        }
    }
    session.feed.allow_burst();
}

fn ack(
    core: &mut ShardCore,
    key: SessionKey,
    op: &'static str,
    selection: &Selection,
    now: Instant,
) {
    core.sessions[key].send(
        &Message::Ack {
            op,
            all: selection.all,
            symbols: &selection.symbols,
        },
        now,
    );
}

/// Pings the client, or closes it with 4009 if it has sent nothing for `--idle-timeout`.
fn keep_alive(core: &Rc<RefCell<ShardCore>>, key: SessionKey, last_heard: Instant) {
    let mut core = core.borrow_mut();
    let now = Instant::now();
    let idle_timeout = core.shared.config.idle_timeout;
    if now.saturating_duration_since(last_heard) >= idle_timeout {
        core.shared.metrics.count_error("idle_timeout");
        let session = &mut core.sessions[key];
        debug!(session = session.id, "idle timeout");
        session.close(CLOSE_IDLE, "idle timeout", now + SLOW_CLOSE_GRACE, true);
    } else {
        core.sessions[key].feed.encoder.release_if_idle();
        let stamp = now_ns().to_be_bytes();
        core.sessions[key]
            .feed
            .send_frame(ws_frame::frame(OpCode::Ping, &stamp), now);
    }
    core.mark_dirty(key);
    core.flush_dirty();
}

fn protocol_error(core: &mut ShardCore, key: SessionKey, error: &WireError, now: Instant) {
    core.shared.metrics.count_error(error.code());
    let session = &mut core.sessions[key];
    debug!(session = session.id, code = error.code(), %error, "websocket protocol error");
    let deadline = now + core.shared.config.drain_timeout;
    if session.mode == Mode::Feed {
        // An error message first (the frame layer still works), then the close code.
        session.send(
            &Message::Error {
                code: error.code(),
                message: &error.to_string(),
            },
            now,
        );
    }
    session.close(error.close_code(), &error.to_string(), deadline, false);
}

/// Removes the session from its shard; true if its close frame was fully written (then the
/// socket should linger so the client reads it before the TCP close).
fn leave(core: &mut ShardCore, key: SessionKey) -> bool {
    let all = Selection {
        all: true,
        symbols: core.sessions[key].symbols.iter().cloned().collect(),
    };
    unsubscribe(core, key, &all);
    let session = core.sessions.remove(key);
    metrics::sub(&core.shared.metrics.shard(core.id).sessions, 1);
    matches!(session.feed.phase, Phase::Closing { .. }) && session.feed.outbox.is_empty()
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

/// An interval whose first tick is one period from now, skipping missed ticks.
fn every(period: Duration) -> Interval {
    let mut interval = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
    interval.set_missed_tick_behavior(MissedTickBehavior::Delay);
    interval
}

async fn tick_of(heartbeat: &mut Option<(Duration, Interval)>) {
    match heartbeat {
        Some((_, interval)) => {
            interval.tick().await;
        }
        None => std::future::pending().await,
    }
}

fn far_future() -> Instant {
    Instant::now() + Duration::from_secs(86_400 * 365)
}

/// Close code for a slow consumer (4000-4999: private use, RFC 6455 §7.4.2).
pub const CLOSE_SLOW: u16 = 4008;
/// Close code for a client silent for longer than `--idle-timeout`.
pub const CLOSE_IDLE: u16 = 4009;
/// How long a slow or idle client's close frame may take before the socket is dropped.
const SLOW_CLOSE_GRACE: Duration = Duration::from_secs(1);
/// How long a closing socket waits for the client's side of the close.
const LINGER: Duration = Duration::from_secs(2);
/// Most frames offered to one vectored write (Linux's IOV_MAX is 1024; 64 covers a turn).
const WRITE_SLICES: usize = 64;
/// Read buffer growth step: control messages are small, and memory per idle client counts.
const READ_CHUNK: usize = 1024;
/// Shortest application heartbeat interval honoured.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

impl std::borrow::Borrow<Feed> for Session {
    fn borrow(&self) -> &Feed {
        &self.feed
    }
}

impl std::borrow::BorrowMut<Feed> for Session {
    fn borrow_mut(&mut self) -> &mut Feed {
        &mut self.feed
    }
}
