//! Sessions: one WebSocket client's task on its shard.
//!
//! [`run`] registers the client with its [`ShardCore`], sends `welcome` and the snapshots or
//! replays it asked for, then serves the socket's read side: it reads and answers control
//! frames (`dispatch.rs`), pings the client, sends heartbeats, waits for writability when the
//! shard found the socket full, and on leaving removes the client from its shard. The
//! shard owns the write side: every frame to the client goes through its outbox there.

pub mod control;
mod dispatch;
pub mod extensions;
pub mod handshake;
mod history_wait;
#[cfg(test)]
mod testkit;
pub mod wire;

use std::cell::RefCell;
use std::io;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use tokio::sync::Notify;
use tokio::time::{Interval, MissedTickBehavior};

use crate::encode::Message;
use crate::limits::IpSlot;
use crate::shard::{FeedPhase, SessionKey, ShardCore, Transport};
use crate::tick::now_ns;
use extensions::Deflate;
use handshake::{Admission, SessionParams};
use wire::FrameReader;

/// Runs one upgraded client until it leaves: registers it on the shard, sends `welcome`,
/// snapshots or replays, then serves its socket.
pub async fn run(
    core: Rc<RefCell<ShardCore>>,
    stream: Transport,
    leftover: Bytes,
    params: SessionParams,
    admission: Admission,
    ip_slot: Option<IpSlot>,
    deflate: Option<Deflate>,
) {
    let _ = stream.tcp().set_nodelay(true);
    // An edge reads the keys' history from NATS before the connect-time snapshots.
    // A tier's history is its base's.
    let mut wanted: Vec<_> = params
        .selection
        .keys()
        .iter()
        .map(|k| k.base().clone())
        .collect();
    wanted.extend(params.resume.iter().map(|(key, _)| key.base().clone()));
    history_wait::wait_for_history(&core, params.selection.all, wanted, &params.resume).await;
    let (send_buffer, max_message, ping_interval) = {
        let core = core.borrow();
        let config = &core.shared().config;
        (
            config.send_buffer_bytes,
            config.max_message_bytes,
            config.ping_interval,
        )
    };
    if send_buffer > 0 {
        let _ = socket2::SockRef::from(stream.tcp()).set_send_buffer_size(send_buffer);
    }
    let stream = Rc::new(stream);
    let signal = Rc::new(Notify::new());
    core.borrow().task_started();
    let mut session = dispatch::open(
        &mut core.borrow_mut(),
        stream.clone(),
        signal.clone(),
        params,
        admission,
    );
    let mut membership = Membership {
        core: core.clone(),
        key: Some(session.key),
    };
    let mut reader = match deflate {
        Some(_) => FrameReader::with_deflate(max_message),
        None => FrameReader::new(max_message),
    };
    let mut input = BytesMut::from(&leftover[..]);
    // `leftover` is a slice of hyper's read buffer: holding it would pin ~8 KiB per client.
    drop(leftover);
    // TLS: what the TLS session decrypted before hyper let go of it comes next.
    if stream.take_buffered(&mut input).is_err() {
        membership.leave();
        return;
    }
    serve(
        &core,
        &mut session,
        &stream,
        &signal,
        &mut reader,
        &mut input,
        ping_interval,
    )
    .await;
    let flushed_close = membership.leave();
    if flushed_close {
        stream.send_close_notify();
        linger(stream.tcp(), reader.saw_close()).await;
    }
    // The deflate slot goes last: the client compressed until it left.
    drop((stream, ip_slot, membership, deflate));
}

/// Serves the socket's read side until the client leaves, the session closes or the socket
/// fails: reads and answers frames, waits for writability when the shard found the socket
/// full, pings, sends heartbeats, and ends a pending or expired session at its deadline.
async fn serve(
    core: &Rc<RefCell<ShardCore>>,
    session: &mut dispatch::Session,
    stream: &Transport,
    signal: &Notify,
    reader: &mut FrameReader,
    input: &mut BytesMut,
    ping_interval: Duration,
) {
    let mut last_heard = Instant::now();
    let mut ping = every(ping_interval);
    let mut heartbeat: Option<(Duration, Interval)> = None;
    let mut client_closed = !read(core, session, reader, input);
    client_closed = serve_held(core, session, reader, input, client_closed).await;
    while !client_closed {
        let status = core.borrow().status(session.key);
        if session.heartbeat != heartbeat.as_ref().map(|(d, _)| *d) {
            heartbeat = session.heartbeat.map(|d| (d, every(d)));
        }
        let deadline = match status.phase {
            FeedPhase::Dead => break,
            FeedPhase::Closing { .. } if status.flushed => break,
            FeedPhase::Closing { deadline } => deadline,
            FeedPhase::Live => far_future(),
        };
        let auth_deadline = session.deadline.filter(|_| status.phase == FeedPhase::Live);
        tokio::select! {
            // The shard's signal first: closing and write errors change what we wait for.
            biased;
            () = signal.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => break,
            ready = stream.tcp().writable(), if status.blocked => {
                core.borrow_mut().writable(session.key, ready.is_ok());
            }
            ready = stream.tcp().readable() => {
                if ready.is_err() {
                    break;
                }
                input.reserve(READ_CHUNK);
                match stream.try_read_buf(input) {
                    Ok(0) => break,
                    Ok(_) => {
                        last_heard = Instant::now();
                        client_closed = !read(core, session, reader, input);
                        client_closed = serve_held(core, session, reader, input, client_closed).await;
                        if input.is_empty() {
                            // Every frame was consumed: an idle client holds no read buffer
                            // (the next read allocates one again, ~1 KiB).
                            *input = BytesMut::new();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                        // TLS: a record that held no data (a key update) may need an answer.
                        if stream.pending() {
                            core.borrow_mut().flush(session.key);
                        }
                    }
                    Err(_) => break,
                }
            }
            () = tokio::time::sleep_until(auth_deadline.unwrap_or_else(far_future).into()), if auth_deadline.is_some() => {
                dispatch::deadline_passed(&mut core.borrow_mut(), session);
            }
            _ = ping.tick() => dispatch::keep_alive(&mut core.borrow_mut(), session, last_heard),
            _ = tick_of(&mut heartbeat), if heartbeat.is_some() => {
                let mut core = core.borrow_mut();
                core.send(session.key, &Message::Heartbeat { ts_ns: now_ns() }, Instant::now());
                core.flush(session.key);
            }
        }
    }
    if client_closed {
        flush_close(core, session.key, stream, signal).await;
    }
}

/// After the client's close or a protocol error nothing more is read, but the close frame
/// that answers it (after a protocol error, the error and what was queued before it too)
/// still goes out while the socket takes it, until the close's deadline: a client behind a
/// full socket is told why, not only disconnected.
async fn flush_close(
    core: &Rc<RefCell<ShardCore>>,
    key: SessionKey,
    stream: &Transport,
    signal: &Notify,
) {
    loop {
        let status = core.borrow().status(key);
        let deadline = match status.phase {
            FeedPhase::Closing { deadline } if !status.flushed => deadline,
            _ => return,
        };
        tokio::select! {
            biased;
            () = signal.notified() => {}
            () = tokio::time::sleep_until(deadline.into()) => return,
            ready = stream.tcp().writable(), if status.blocked => {
                core.borrow_mut().writable(key, ready.is_ok());
            }
        }
    }
}

/// Serves the control message the session holds on an edge (and any held after it, from
/// the input that followed): waits for its keys' history, applies it, reads on. Returns
/// whether the client has closed.
async fn serve_held(
    core: &Rc<RefCell<ShardCore>>,
    session: &mut dispatch::Session,
    reader: &mut FrameReader,
    input: &mut BytesMut,
    mut closed: bool,
) -> bool {
    while !closed && let Some(control) = &session.held {
        if let Some((all, keys)) = control.history_keys() {
            let none = control::Positions::default();
            let positions = match control.as_ref() {
                control::Control::Resume(positions) => positions,
                _ => &none,
            };
            history_wait::wait_for_history(core, all, keys, positions).await;
        }
        if let Some(control) = session.held.take() {
            let mut core = core.borrow_mut();
            dispatch::apply(&mut core, session, *control, Instant::now());
            core.flush(session.key);
        }
        closed = !read(core, session, reader, input);
    }
    closed
}

/// Handles every complete frame in `input` (see [`dispatch::handle_input`]) and counts what
/// permessage-deflate inflated; false once the client has closed or broken the protocol.
fn read(
    core: &Rc<RefCell<ShardCore>>,
    session: &mut dispatch::Session,
    reader: &mut FrameReader,
    input: &mut BytesMut,
) -> bool {
    let open = dispatch::handle_input(core, session, reader, input);
    let (compressed, inflated) = reader.take_inflated();
    if compressed > 0 {
        let core = core.borrow();
        let metrics = core.shared().metrics.shard(core.id());
        crate::metrics::add(&metrics.inflate_in, compressed);
        crate::metrics::add(&metrics.inflate_out, inflated);
    }
    open
}

/// A session's place on its shard, given up when the task ends however it ends: a panic in
/// a handler must not leak the client, its subscriptions or its socket.
struct Membership {
    core: Rc<RefCell<ShardCore>>,
    key: Option<SessionKey>,
}

impl Membership {
    /// Leaves the shard now; true if the close frame was fully written (see
    /// [`ShardCore::leave`]).
    fn leave(&mut self) -> bool {
        match self.key.take() {
            Some(key) => self.core.borrow_mut().leave(key),
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
            core.leave(key);
        }
        core.task_ended();
    }
}

/// Half-closes our side and reads until the client closes (bounded), so our close frame is
/// not destroyed by a TCP reset when unread client bytes are pending.
///
/// When the relay closed first (`client_closed` false: no close frame from the client yet),
/// the half-close waits (bounded) for
/// the client's answer, normally its close frame, as RFC 6455 §7.1.1 has the server close
/// TCP after the closing handshake: a client that inflates permessage-deflate messages
/// asynchronously (Node's built-in WebSocket) may still be inflating the message before our
/// close frame when our FIN arrives, and then reports 1006 and loses both.
async fn linger(stream: &tokio::net::TcpStream, client_closed: bool) {
    let drain = async {
        // On the heap, and only while lingering: an array here would be part of every
        // session task's future (the largest state sizes the whole future), ~4 KiB per
        // idle client for the life of the connection.
        let mut sink = vec![0u8; 4096];
        if !client_closed {
            let _ = tokio::time::timeout(LINGER / 2, read_some(stream, &mut sink)).await;
        }
        let _ = socket2::SockRef::from(stream).shutdown(std::net::Shutdown::Write);
        while read_some(stream, &mut sink).await {}
    };
    let _ = tokio::time::timeout(LINGER, drain).await;
}

/// Reads and discards what the client sent; false once it has closed (or the socket failed).
async fn read_some(stream: &tokio::net::TcpStream, sink: &mut [u8]) -> bool {
    loop {
        if stream.readable().await.is_err() {
            return false;
        }
        match stream.try_read(sink) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
            Err(_) => return false,
        }
    }
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

/// How long a closing socket waits for the client's side of the close.
const LINGER: Duration = Duration::from_secs(2);
/// Read buffer growth step: control messages are small, and memory per idle client counts.
const READ_CHUNK: usize = 1024;

#[cfg(test)]
mod tests {
    use fastwebsockets::OpCode;
    use tokio::task::LocalSet;

    use std::sync::atomic::Ordering::Relaxed;

    use super::testkit::{Live, deliver, run, start, start_deflating, unread};
    use crate::config::Config;
    use crate::error::CloseCode;

    #[tokio::test(start_paused = true)]
    async fn a_relay_side_close_half_closes_after_half_the_linger_then_drains() {
        use tokio::io::AsyncReadExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let mut client = tokio::net::TcpStream::connect(addr).await.unwrap();
        let (relay, _) = listener.accept().await.unwrap();
        let start = tokio::time::Instant::now();
        let lingering = tokio::spawn(async move { super::linger(&relay, false).await });
        // The client says nothing: after half the linger (the paused clock's, exactly) the
        // relay sends its FIN and keeps reading.
        let mut byte = [0u8; 1];
        assert_eq!(client.read(&mut byte).await.unwrap(), 0);
        let fin = start.elapsed();
        assert!(super::LINGER / 2 <= fin && fin < super::LINGER, "{fin:?}");
        // The client's close ends the drain at once.
        drop(client);
        lingering.await.unwrap();
        assert_eq!(start.elapsed(), fin);
    }

    #[test]
    fn a_live_session_has_no_deadline_however_long_its_ping_interval() {
        run(async {
            let config = Config {
                ping_interval: std::time::Duration::from_secs(30 * 86_400),
                idle_timeout: std::time::Duration::from_secs(60 * 86_400),
                ..Config::for_tests()
            };
            let mut live = start(config, "symbols=BTC").await;
            assert_eq!(live.message().await["type"], "welcome");
            // The paused clock jumps to each timer due: a live session's far-off deadline
            // must be further than anything it waits for, here two days with no ping.
            tokio::time::pause();
            tokio::time::sleep(std::time::Duration::from_secs(2 * 86_400)).await;
            tokio::time::resume();
            assert!(!live.task.is_finished(), "the session still runs");
            deliver(&live, "BTC", 1);
            assert_eq!(live.message().await["seq"].as_u64(), Some(1));
        });
    }

    /// Reads the far end's TCP close after the closing handshake, on the paused clock:
    /// how long the relay held its FIN.
    async fn fin_after(live: Live) -> std::time::Duration {
        use tokio::io::AsyncReadExt;
        tokio::time::pause();
        let start = tokio::time::Instant::now();
        let Live { client, task, .. } = live;
        let mut socket = client.into_inner();
        let mut byte = [0u8; 1];
        assert_eq!(socket.read(&mut byte).await.unwrap(), 0, "a FIN, no data");
        let held = start.elapsed();
        tokio::time::resume();
        drop(socket);
        task.await.expect("no panic");
        held
    }

    #[test]
    fn the_relay_ends_the_tcp_at_once_after_a_clients_close_and_waits_after_its_own() {
        run(async {
            // The client closed first: it has its answer, nothing is left to wait for.
            let mut live = start(Config::for_tests(), "symbols=BTC").await;
            assert_eq!(live.message().await["type"], "welcome");
            live.send_frame(OpCode::Close, &1000u16.to_be_bytes()).await;
            assert!(matches!(live.frame().await.0, OpCode::Close));
            // No wait at all (on the paused clock, 0): a wait for a close that came already
            // would show as most of half the linger, whatever ran before the clock paused.
            let held = fin_after(live).await;
            assert!(held < super::LINGER / 4, "{held:?}");
            // The relay closed first: it waits half the linger for the client's close.
            let mut live = start(Config::for_tests(), "symbols=BTC").await;
            assert_eq!(live.message().await["type"], "welcome");
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            live.core
                .borrow_mut()
                .close_all(CloseCode::GOING_AWAY, "shutdown", deadline);
            assert!(matches!(live.frame().await.0, OpCode::Close));
            let held = fin_after(live).await;
            assert!(
                super::LINGER / 2 <= held && held < super::LINGER,
                "{held:?}"
            );
        });
    }

    #[test]
    fn a_session_whose_close_frame_cannot_be_written_ends_without_lingering() {
        run(async {
            let mut live = start(unread(Config::for_tests()), "symbols=BTC").await;
            assert_eq!(live.message().await["type"], "welcome");
            for seq in 1..=5_000 {
                deliver(&live, "BTC", seq);
            }
            assert!(live.core.borrow().status(live.key()).blocked, "full");
            // Past its deadline at once: the close frame never goes out, so there is no
            // closing handshake to linger for.
            tokio::time::pause();
            let start = tokio::time::Instant::now();
            live.core.borrow_mut().close_all(
                CloseCode::GOING_AWAY,
                "shutdown",
                std::time::Instant::now(),
            );
            let Live { client, task, .. } = live;
            task.await.expect("no panic");
            let held = start.elapsed();
            tokio::time::resume();
            assert!(held < super::LINGER / 2, "{held:?}");
            drop(client);
        });
    }

    #[test]
    fn a_closing_session_writes_all_it_queued_and_its_close_frame_before_it_ends() {
        run(async {
            let mut live = start(unread(Config::for_tests()), "symbols=BTC").await;
            assert_eq!(live.message().await["type"], "welcome");
            // More than both sockets hold while the client reads nothing.
            const TICKS: u64 = 5_000;
            for seq in 1..=TICKS {
                deliver(&live, "BTC", seq);
            }
            assert!(
                live.core.borrow().status(live.key()).blocked,
                "the socket is full"
            );
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
            live.core
                .borrow_mut()
                .close_all(CloseCode::GOING_AWAY, "shutdown", deadline);
            // The session waits for the socket until everything queued is written.
            for seq in 1..=TICKS {
                assert_eq!(live.message().await["seq"].as_u64(), Some(seq));
            }
            let (opcode, payload) = live.frame().await;
            assert!(matches!(opcode, OpCode::Close), "{opcode:?}");
            assert_eq!(&payload[..2], &1001u16.to_be_bytes());
            // Everything is out: the session ends after its linger, long before the
            // deadline, the client still connected and silent.
            let Live { client, task, .. } = live;
            let ended = tokio::time::timeout(std::time::Duration::from_secs(10), task).await;
            assert!(matches!(ended, Ok(Ok(()))), "{ended:?}");
            drop(client);
        });
    }

    /// A client that reads nothing, behind a socket that is full with `ticks` ticks.
    async fn behind_a_full_socket(ticks: u64) -> Live {
        let mut live = start(unread(Config::for_tests()), "symbols=BTC").await;
        assert_eq!(live.message().await["type"], "welcome");
        for seq in 1..=ticks {
            deliver(&live, "BTC", seq);
        }
        assert!(
            live.core.borrow().status(live.key()).blocked,
            "the socket is full"
        );
        live
    }

    #[test]
    fn a_protocol_error_behind_a_full_socket_is_still_explained_and_closed() {
        run(async {
            const TICKS: u64 = 5_000;
            let mut live = behind_a_full_socket(TICKS).await;
            // Nothing more is read after it, but what was queued, the error and the close
            // still go out as the client reads.
            live.send_frame(OpCode::Text, b"\xff\xfe not utf-8").await;
            for seq in 1..=TICKS {
                assert_eq!(live.message().await["seq"].as_u64(), Some(seq));
            }
            let error = live.message().await;
            assert_eq!(error["type"], "error", "{error}");
            let (opcode, payload) = live.frame().await;
            assert!(matches!(opcode, OpCode::Close), "{opcode:?}");
            assert_eq!(&payload[..2], &1007u16.to_be_bytes(), "{error}");
        });
    }

    #[test]
    fn a_clients_close_behind_a_full_socket_is_still_answered() {
        run(async {
            use tokio::io::AsyncWriteExt;
            let live = behind_a_full_socket(5_000).await;
            // The close goes out under the client's WebSocket, which would refuse the ticks
            // still on their way after its own close.
            let Live {
                core,
                client,
                task,
                relay_side,
            } = live;
            let mut socket = client.into_inner();
            let close = super::wire::client_frame(true, 0x8, &1000u16.to_be_bytes(), [7; 4]);
            socket.write_all(&close).await.expect("send");
            let mut client =
                fastwebsockets::WebSocket::after_handshake(socket, fastwebsockets::Role::Client);
            client.set_auto_close(false);
            let mut live = Live {
                core,
                client,
                task,
                relay_side,
            };
            // The ticks not yet begun are dropped; the echo follows what was on its way.
            let echo = loop {
                match live.frame().await {
                    (OpCode::Close, payload) => break payload,
                    (OpCode::Text, _) => {}
                    (opcode, payload) => panic!("{opcode:?}: {payload:?}"),
                }
            };
            assert_eq!(&echo[..], &1000u16.to_be_bytes());
        });
    }

    #[test]
    fn what_a_deflating_client_sends_is_counted_on_its_shard_compressed_and_inflated() {
        use tokio::io::AsyncWriteExt;
        run(async {
            let live = start_deflating(Config::for_tests(), "symbols=BTC").await;
            let text = br#"{"op":"subscribe","symbols":["ETH","ETH","ETH","ETH","ETH"]}"#;
            let mut compress = flate2::Compress::new(flate2::Compression::fast(), false);
            let mut compressed = Vec::new();
            crate::encode::deflate::compress_sync(&mut compress, text, &mut compressed);
            compressed.truncate(compressed.len() - 4);
            let Live { core, client, .. } = live;
            let mut socket = client.into_inner();
            // RSV1 on a text frame: a compressed message.
            let frame = crate::session::wire::client_frame(true, 0x41, &compressed, [1, 2, 3, 4]);
            socket.write_all(&frame).await.unwrap();
            let metrics = {
                let core = core.borrow();
                core.shared().metrics.clone()
            };
            let counted = || {
                let shard = metrics.shard(0);
                (
                    shard.inflate_in.load(Relaxed),
                    shard.inflate_out.load(Relaxed),
                )
            };
            let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
            while counted() == (0, 0) && std::time::Instant::now() < deadline {
                tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            }
            assert_eq!(counted(), (compressed.len() as u64, text.len() as u64));
        });
    }

    #[tokio::test]
    async fn a_lingering_read_ends_at_a_reset_as_at_a_close() {
        use tokio::io::AsyncWriteExt;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let mut client = tokio::net::TcpStream::connect(listener.local_addr().unwrap())
            .await
            .unwrap();
        let (relay, _) = listener.accept().await.unwrap();
        let mut sink = [0u8; 16];
        client.write_all(b"late bytes").await.unwrap();
        assert!(super::read_some(&relay, &mut sink).await, "bytes: read on");
        // An RST, not a FIN: the read fails, and the drain must end rather than retry.
        socket2::SockRef::from(&client)
            .set_linger(Some(std::time::Duration::ZERO))
            .unwrap();
        drop(client);
        let bound = std::time::Duration::from_secs(10);
        let read = tokio::time::timeout(bound, super::read_some(&relay, &mut sink)).await;
        assert_eq!(read, Ok(false), "a reset is an end, at once");
    }

    #[tokio::test]
    async fn a_session_is_welcomed_fed_answered_and_leaves_its_shard_on_close() {
        LocalSet::new()
            .run_until(async {
                let mut live = start(Config::for_tests(), "symbols=BTC").await;
                assert_eq!(live.message().await["type"], "welcome");
                assert_eq!(live.core.borrow().sessions().len(), 1);
                deliver(&live, "BTC", 1);
                deliver(&live, "ETH", 1);
                let tick = live.message().await;
                assert_eq!(
                    (tick["symbol"].as_str(), tick["seq"].as_u64()),
                    (Some("BTC"), Some(1))
                );
                live.send(r#"{"op":"ping","id":7}"#).await;
                let pong = live.message().await;
                assert_eq!(
                    (pong["type"].as_str(), pong["id"].as_u64()),
                    (Some("pong"), Some(7))
                );
                live.send_frame(OpCode::Ping, b"are you there").await;
                assert_eq!(
                    live.frame().await,
                    (OpCode::Pong, b"are you there".to_vec())
                );
                live.send_frame(OpCode::Close, &1000u16.to_be_bytes()).await;
                let (opcode, payload) = live.frame().await;
                assert!(matches!(opcode, OpCode::Close));
                assert_eq!(&payload[..2], &1000u16.to_be_bytes(), "the close echoed");
                // The relay lingers until the client closes TCP (bounded): close it.
                let Live {
                    core, client, task, ..
                } = live;
                drop(client);
                task.await.expect("the task ends cleanly");
                let core = core.borrow();
                assert!(core.sessions().is_empty(), "it left its shard");
                assert_eq!(core.tasks().0, 0, "and its task is gone");
            })
            .await;
    }

    #[tokio::test]
    async fn the_first_ping_waits_a_whole_interval_and_heartbeats_come_when_asked() {
        LocalSet::new()
            .run_until(async {
                let mut live = start(Config::for_tests(), "symbols=BTC").await;
                assert_eq!(live.message().await["type"], "welcome");
                assert!(live.quiet().await, "no ping right after the welcome");
                live.send(r#"{"op":"heartbeat","interval_ms":100}"#).await;
                assert_eq!(live.message().await["type"], "heartbeat_set");
                for _ in 0..2 {
                    let beat = live.message().await;
                    assert_eq!(beat["type"], "heartbeat");
                    assert!(beat["ts_ns"].as_u64().is_some_and(|ts| ts > 0));
                }
            })
            .await;
    }

    #[tokio::test]
    async fn a_client_that_says_nothing_is_pinged_then_closed_as_idle() {
        LocalSet::new()
            .run_until(async {
                let config = Config {
                    ping_interval: std::time::Duration::from_millis(100),
                    idle_timeout: std::time::Duration::from_millis(250),
                    ..Config::for_tests()
                };
                let mut live = start(config, "").await;
                assert_eq!(live.message().await["type"], "welcome");
                let (opcode, stamp) = live.frame().await;
                assert!(matches!(opcode, OpCode::Ping), "{opcode:?}");
                assert_eq!(stamp.len(), 8, "a timestamp");
                let mut frame = live.frame().await;
                while matches!(frame.0, OpCode::Ping) {
                    frame = live.frame().await;
                }
                assert!(matches!(frame.0, OpCode::Close), "{:?}", frame.0);
                let code = u16::from_be_bytes([frame.1[0], frame.1[1]]);
                assert_eq!(code, crate::error::CloseCode::IDLE_TIMEOUT.value());
            })
            .await;
    }

    #[tokio::test]
    async fn the_send_buffer_is_set_as_configured_and_left_to_the_kernel_at_zero() {
        LocalSet::new()
            .run_until(async {
                let size = |live: &Live| {
                    socket2::SockRef::from(&live.relay_side)
                        .send_buffer_size()
                        .expect("SO_SNDBUF")
                };
                let config = Config {
                    send_buffer_bytes: 0,
                    ..Config::for_tests()
                };
                let mut untouched = start(config, "").await;
                assert_eq!(untouched.message().await["type"], "welcome");
                let fresh = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
                let _peer = std::net::TcpStream::connect(fresh.local_addr().expect("addr"));
                let (control, _) = fresh.accept().expect("accept");
                let default = socket2::SockRef::from(&control)
                    .send_buffer_size()
                    .expect("SO_SNDBUF");
                assert_eq!(size(&untouched), default, "0: the kernel's own");
                let config = Config {
                    send_buffer_bytes: 65_536,
                    ..Config::for_tests()
                };
                let mut set = start(config, "").await;
                assert_eq!(set.message().await["type"], "welcome");
                assert_eq!(size(&set), 2 * 65_536, "Linux doubles what is set");
            })
            .await;
    }
}
