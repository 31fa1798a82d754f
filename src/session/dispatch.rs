//! What a session does with what its client sends: the connect-time subscriptions and
//! replays, then each frame — control messages (subscribe, unsubscribe, snapshot, ping,
//! resume, heartbeat), WebSocket pings and closes, echoes on `/echo` — answered through
//! the shard's methods. Refusals are typed ([`ControlError`]), counted and answered with an
//! `error` message; the session stays open.
//!
//! Auth: a session opened without a token (auth on, no `--allow-anonymous`) is pending:
//! nothing is sent and nothing subscribed until its first message, `{"op":"auth"}`, is a
//! valid token; anything else, a refused token or the handshake timeout closes it with 4001.
//! Every subscribe, snapshot and resume is checked against the session's [`Identity`]; a
//! token that runs out closes the session with 4002; a refresh that narrows the allow-list
//! unsubscribes what it no longer allows.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use tokio::sync::Notify;
use tracing::debug;

use super::control::{Control, ControlError, ControlParser, KeyRules, Selection};
use super::handshake::{Admission, Mode, SessionParams};
use super::wire::{FrameReader, Incoming, WireError};
use crate::auth::AuthError;
use crate::encode::ws_frame::{self, OpCode};
use crate::encode::{Encoding, Message};
use crate::error::{CloseCode, ErrorCode};
use crate::event::Key;
use crate::limits::TokenBucket;
use crate::shard::{Added, ClientOptions, SLOW_CLOSE_GRACE, SessionKey, ShardCore, Transport};
use crate::tick::now_ns;
use auth::{authenticate, check_allowed, close_for_auth, refresh};
pub(super) use session::Session;
use session::{ack, refuse, start};

mod auth;
mod session;

/// Registers a new client; if it is admitted with an identity, subscribes it and queues
/// `welcome` and snapshots or replays, otherwise waits for its in-band auth.
pub(super) fn open(
    core: &mut ShardCore,
    stream: Rc<Transport>,
    signal: Rc<Notify>,
    params: SessionParams,
    admission: Admission,
) -> Session {
    let now = Instant::now();
    let options = ClientOptions {
        encoding: params.encoding,
        slow: params.slow,
        deflate: params.deflate,
        batch: params.batch,
    };
    let (key, id) = core.open(stream, signal, options);
    let mut session = Session {
        key,
        id,
        encoding: params.encoding,
        mode: params.mode,
        control_rate: TokenBucket::new(core.shared().live.max_control_rate(), now),
        heartbeat: None,
        identity: None,
        user_slot: admission.slot,
        deferred: None,
        deadline: None,
        held: None,
    };
    if params.mode == Mode::Echo {
        return session;
    }
    match admission.identity {
        Some(identity) => start(core, &mut session, identity, &params, now),
        None => {
            session.deadline = Some(now + core.shared().config.handshake_timeout);
            session.deferred = Some(Box::new(params));
        }
    }
    // The connect burst is compressed; a client that stays idle should not hold deflate state.
    core.release_encoder(key);
    core.flush(key);
    session
}

/// A session's deadline passed: a pending session did not authenticate in time (4001), or
/// the token ran out (4002).
pub(super) fn deadline_passed(core: &mut ShardCore, session: &mut Session) {
    let now = Instant::now();
    session.deadline = None;
    let (error, reason) = if session.identity.is_none() {
        (AuthError::Missing, "authentication required")
    } else {
        (AuthError::Expired, CloseCode::TOKEN_EXPIRED.reason())
    };
    close_for_auth(core, session, &error, reason, now);
    core.flush(session.key);
}

/// Handles every complete frame in `input`; false once the client has closed or broken the
/// protocol (the session is then closing).
pub(super) fn handle_input(
    core: &Rc<RefCell<ShardCore>>,
    session: &mut Session,
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
                if !handle_message(core, session, message, now) {
                    open = false;
                    break;
                }
                if session.held.is_some() {
                    break;
                }
            }
            Err(error) => {
                protocol_error(core, session, &error, now);
                open = false;
                break;
            }
        }
    }
    core.flush(session.key);
    open
}

fn handle_message(
    core: &mut ShardCore,
    session: &mut Session,
    message: Incoming,
    now: Instant,
) -> bool {
    let key = session.key;
    let control = match message {
        Incoming::Ping(payload) => {
            core.send_frame(key, ws_frame::frame(OpCode::Pong, &payload), now);
            return true;
        }
        Incoming::Pong => return true,
        Incoming::Close(code) => {
            // RFC 6455 §5.5.1: answer a close with a close (echoing the code), then end.
            let deadline = now + core.shared().config.drain_timeout;
            let echo = code.map_or(CloseCode::NORMAL, CloseCode::echo);
            core.close(key, echo, "", deadline, true);
            return false;
        }
        Incoming::Text(text) if session.mode == Mode::Echo => {
            echo(core, key, OpCode::Text, &text, now);
            return true;
        }
        Incoming::Binary(bytes) if session.mode == Mode::Echo => {
            echo(core, key, OpCode::Binary, &bytes, now);
            return true;
        }
        _ if !session.control_rate.take(now) => {
            Err(ControlError::RateLimited(session.control_rate.rate()))
        }
        Incoming::Text(text) => {
            let mut scratch = text.to_vec();
            with_parser(core, |parser| parser.json(&mut scratch))
        }
        Incoming::Binary(bytes) if session.encoding == Encoding::Protobuf => {
            with_parser(core, |parser| parser.protobuf(&bytes))
        }
        Incoming::Binary(_) => Err(ControlError::BinaryNotSupported),
    };
    if session.identity.is_none() && session.mode == Mode::Feed {
        // Pending: the only message that counts is a valid auth; anything else ends it.
        return match control {
            Ok(Control::Auth(token)) => authenticate(core, session, &token, now),
            other => {
                // A malformed message is answered first; either way the session ends.
                if let Err(error) = other {
                    refuse(core, session, &error, now);
                }
                close_for_auth(
                    core,
                    session,
                    &AuthError::Missing,
                    "authentication required",
                    now,
                );
                false
            }
        };
    }
    match control {
        // An edge first reads the history the message needs from the stream: the session
        // holds it and `session::serve_held` answers it once the shard has that history.
        Ok(control) if core.shared().follow.get().is_some() && control.history_keys().is_some() => {
            session.held = Some(Box::new(control));
        }
        Ok(control) => apply(core, session, control, now),
        Err(error) => refuse(core, session, &error, now),
    }
    true
}

/// Runs `parse` with this thread's control parser, whose scratch buffers every session on
/// the shard reuses (a parser per session would cost memory per idle client).
fn with_parser<T>(core: &ShardCore, parse: impl FnOnce(&mut ControlParser) -> T) -> T {
    thread_local! {
        static PARSER: RefCell<Option<ControlParser>> = const { RefCell::new(None) };
    }
    PARSER.with_borrow_mut(|parser| {
        parse(parser.get_or_insert_with(|| ControlParser::new(KeyRules::of(core.shared()))))
    })
}

/// `/echo`: sends the message back in the same kind of frame. An echo is a burst the client
/// asked for, so it may exceed the outbox budget until it drains.
fn echo(core: &mut ShardCore, key: SessionKey, opcode: OpCode, payload: &[u8], now: Instant) {
    core.send_data(key, opcode, payload, now);
    core.allow_burst(key);
}

pub(super) fn apply(core: &mut ShardCore, session: &mut Session, control: Control, now: Instant) {
    let key = session.key;
    match control {
        Control::Auth(token) | Control::Refresh(token) => refresh(core, session, &token, now),
        Control::Subscribe(selection) | Control::Snapshot(selection)
            if let Err(error) = check_derived_channels(core, &selection.keys()) =>
        {
            refuse(core, session, &error, now);
        }
        Control::Subscribe(selection) => {
            if let Err(error) = check_allowed(session, &selection, &[]) {
                return refuse(core, session, &error, now);
            }
            let keys = selection.keys();
            let replaced = other_tiers(core, key, &keys);
            if !replaced.is_empty() {
                // A tier changes in place: the old tier of the same base goes first.
                core.unsubscribe(key, false, &replaced);
                ack(
                    core,
                    session,
                    "unsubscribed",
                    &Selection::of_keys(&replaced),
                    now,
                );
            }
            if let Err(error) = check_limit(core, key, selection.all, &keys) {
                return refuse(core, session, &error, now);
            }
            let added = core.subscribe(key, selection.all, &keys);
            ack(core, session, "subscribed", &selection, now);
            core.send_snapshots(key, &added, now);
        }
        Control::Unsubscribe(selection) => {
            core.unsubscribe(key, selection.all, &selection.keys());
            ack(core, session, "unsubscribed", &selection, now);
        }
        Control::Snapshot(selection) => {
            if let Err(error) = check_allowed(session, &selection, &[]) {
                return refuse(core, session, &error, now);
            }
            let wanted = Added {
                all: selection.all,
                keys: selection.keys(),
            };
            core.send_snapshots(key, &wanted, now);
            ack(core, session, "snapshot", &selection, now);
        }
        Control::Ping { id } => core.send(key, &Message::Pong { id }, now),
        Control::Resume(positions) => {
            let keys = positions.iter().map(|(key, _)| key);
            let derived = super::control::check_derived_channels(keys, &core.shared().config);
            if let Err(error) =
                derived.and_then(|()| check_allowed(session, &Selection::default(), &positions))
            {
                return refuse(core, session, &error, now);
            }
            let taken: Vec<&str> = positions
                .iter()
                .filter(|(s, _)| core.receives(key, s))
                .map(|(s, _)| s.as_str())
                .collect();
            if !taken.is_empty() {
                let error = ControlError::AlreadySubscribed(taken.join(","));
                return refuse(core, session, &error, now);
            }
            let keys: Vec<Key> = positions.iter().map(|(s, _)| s.clone()).collect();
            if let Err(error) = check_limit(core, key, false, &keys) {
                return refuse(core, session, &error, now);
            }
            ack(core, session, "resumed", &Selection::of_keys(&keys), now);
            core.resume(key, &positions, positions.epoch, now);
        }
        Control::Heartbeat { interval } => {
            session.heartbeat = (!interval.is_zero()).then(|| interval.max(MIN_HEARTBEAT));
            ack(core, session, "heartbeat_set", &Selection::default(), now);
        }
    }
}

/// The client's tiered keys that a subscribe of `keys` replaces: another tier of a base
/// `keys` names a tier of (a client follows a base at one tier at a time).
fn other_tiers(core: &ShardCore, key: SessionKey, keys: &[Key]) -> Vec<Key> {
    let (_, held) = core.subscribed(key);
    held.into_iter()
        .filter(|old| {
            old.tier().is_some()
                && keys
                    .iter()
                    .any(|new| new.tier().is_some() && new.base() == old.base() && new != old)
        })
        .collect()
}

/// Refuses a derived channel this relay does not serve (a book depth, a bars interval).
fn check_derived_channels(core: &ShardCore, keys: &[Key]) -> Result<(), ControlError> {
    super::control::check_derived_channels(keys, &core.shared().config)
}

/// Refuses a subscription that would take the session past `--max-symbols-per-client`.
fn check_limit(
    core: &ShardCore,
    key: SessionKey,
    all: bool,
    symbols: &[Key],
) -> Result<(), ControlError> {
    let limit = core.shared().config.max_symbols_per_client;
    let requested = core.subscriptions_after(key, all, symbols);
    if requested > limit {
        return Err(ControlError::TooManySymbols { requested, limit });
    }
    Ok(())
}

/// Pings the client, or closes it with 4009 if it has sent nothing for `--idle-timeout`.
pub(super) fn keep_alive(core: &mut ShardCore, session: &Session, last_heard: Instant) {
    let now = Instant::now();
    let key = session.key;
    if now.saturating_duration_since(last_heard) >= core.shared().config.idle_timeout {
        core.shared().metrics.count_error(ErrorCode::IdleTimeout);
        debug!(session = session.id, "idle timeout");
        let idle = CloseCode::IDLE_TIMEOUT;
        core.close(key, idle, idle.reason(), now + SLOW_CLOSE_GRACE, true);
    } else {
        core.release_encoder_if_idle(key);
        let stamp = now_ns().to_be_bytes();
        core.send_frame(key, ws_frame::frame(OpCode::Ping, &stamp), now);
    }
    core.flush(key);
}

fn protocol_error(core: &mut ShardCore, session: &Session, error: &WireError, now: Instant) {
    let code = error.code();
    core.shared().metrics.count_error(code);
    debug!(session = session.id, code = code.as_str(), %error, "websocket protocol error");
    let deadline = now + core.shared().config.drain_timeout;
    if session.mode == Mode::Feed {
        // An error message first (the frame layer still works), then the close code.
        let message = Message::Error {
            code: code.as_str(),
            message: &error.to_string(),
        };
        core.send(session.key, &message, now);
    }
    core.close(
        session.key,
        error.close_code(),
        &error.to_string(),
        deadline,
        false,
    );
}

/// Shortest application heartbeat interval honoured.
const MIN_HEARTBEAT: Duration = Duration::from_millis(100);

#[cfg(test)]
mod tests {
    use fastwebsockets::OpCode;
    use serde_json::{Value, json};

    use super::super::handshake::SessionParams;
    use super::super::testkit::{Live, deliver, run, start, start_on_edge, start_with, unread};
    use crate::config::Config;

    /// `(type, symbol, seq)` of a message.
    fn said(message: &Value) -> (String, String, u64) {
        (
            message["type"].as_str().unwrap_or("?").to_owned(),
            message["symbol"].as_str().unwrap_or("").to_owned(),
            message["seq"].as_u64().unwrap_or(0),
        )
    }

    fn s(kind: &str, symbol: &str, seq: u64) -> (String, String, u64) {
        (kind.to_owned(), symbol.to_owned(), seq)
    }

    async fn welcomed(config: Config, query: &str) -> Live {
        let mut live = start(config, query).await;
        assert_eq!(live.message().await["type"], "welcome");
        live
    }

    async fn error_code(live: &mut Live) -> String {
        let error = live.message().await;
        assert_eq!(error["type"], "error", "{error}");
        error["code"].as_str().expect("a code").to_owned()
    }

    #[test]
    fn subscribe_acks_then_snapshots_and_unsubscribe_stops_the_feed() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "").await;
            deliver(&live, "BTC", 1);
            live.send(r#"{"op":"subscribe","symbols":["BTC","ETH"]}"#)
                .await;
            let ack = live.message().await;
            assert_eq!(ack, json!({"type":"subscribed","symbols":["BTC","ETH"]}));
            assert_eq!(said(&live.message().await), s("snapshot", "BTC", 1));
            deliver(&live, "ETH", 1);
            assert_eq!(said(&live.message().await), s("tick", "ETH", 1));
            live.send(r#"{"op":"unsubscribe","symbols":["ETH"]}"#).await;
            let ack = live.message().await;
            assert_eq!(ack, json!({"type":"unsubscribed","symbols":["ETH"]}));
            deliver(&live, "ETH", 2);
            deliver(&live, "BTC", 2);
            assert_eq!(said(&live.message().await), s("tick", "BTC", 2), "no ETH");
        });
    }

    #[test]
    fn a_snapshot_is_sent_then_acked_without_subscribing() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "").await;
            deliver(&live, "BTC", 4);
            live.send(r#"{"op":"snapshot","symbols":["BTC"]}"#).await;
            assert_eq!(said(&live.message().await), s("snapshot", "BTC", 4));
            let ack = live.message().await;
            assert_eq!(ack, json!({"type":"snapshot","symbols":["BTC"]}));
            deliver(&live, "BTC", 5);
            assert!(live.quiet().await, "not subscribed");
        });
    }

    #[test]
    fn subscriptions_past_the_limit_are_refused_and_the_limit_itself_is_not() {
        run(async {
            let config = Config {
                max_symbols_per_client: 2,
                ..Config::for_tests()
            };
            let mut live = welcomed(config, "").await;
            live.send(r#"{"op":"subscribe","symbols":["A","B","C"]}"#)
                .await;
            assert_eq!(error_code(&mut live).await, "too_many_symbols");
            live.send(r#"{"op":"subscribe","symbols":["A","B"]}"#).await;
            assert_eq!(live.message().await["type"], "subscribed");
            live.send(r#"{"op":"resume","from":{"C":1}}"#).await;
            assert_eq!(error_code(&mut live).await, "too_many_symbols");
        });
    }

    #[test]
    fn a_resume_replays_what_followed_and_refuses_a_key_already_followed() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "symbols=ETH").await;
            for seq in 1..=3 {
                deliver(&live, "BTC", seq);
            }
            let epoch = live.core.borrow().epoch();
            let resume = json!({"op":"resume","from":{"BTC":1},"epoch":epoch});
            live.send(&resume.to_string()).await;
            let ack = live.message().await;
            assert_eq!(ack, json!({"type":"resumed","symbols":["BTC"]}));
            assert_eq!(said(&live.message().await), s("tick", "BTC", 2));
            assert_eq!(said(&live.message().await), s("tick", "BTC", 3));
            live.send(r#"{"op":"resume","from":{"ETH":1}}"#).await;
            assert_eq!(error_code(&mut live).await, "already_subscribed");
        });
    }

    #[test]
    fn a_tier_replaces_the_other_tier_of_its_symbol() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "").await;
            live.send(r#"{"op":"subscribe","symbols":["BTC@1s"]}"#)
                .await;
            assert_eq!(live.message().await["type"], "subscribed");
            live.send(r#"{"op":"subscribe","symbols":["BTC@5s"]}"#)
                .await;
            let gone = live.message().await;
            assert_eq!(gone, json!({"type":"unsubscribed","symbols":["BTC@1s"]}));
            let ack = live.message().await;
            assert_eq!(ack, json!({"type":"subscribed","symbols":["BTC@5s"]}));
            live.send(r#"{"op":"subscribe","symbols":["ETH@5s"]}"#)
                .await;
            let ack = live.message().await;
            assert_eq!(
                ack["type"], "subscribed",
                "another base keeps BTC's tier: {ack}"
            );
            let (_, held) = live.core.borrow().subscribed(0);
            assert_eq!(held.len(), 2);
        });
    }

    #[test]
    fn bad_messages_are_answered_with_their_code_and_the_session_goes_on() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "").await;
            live.send(r#"{"op":"nope"}"#).await;
            assert_eq!(error_code(&mut live).await, "unknown_op");
            live.send_frame(OpCode::Binary, b"\x01\x02").await;
            assert_eq!(error_code(&mut live).await, "binary_not_supported");
            live.send(r#"{"op":"subscribe","channels":["bars:7m:BTC"]}"#)
                .await;
            let code = error_code(&mut live).await;
            assert!(code.starts_with("invalid"), "{code}");
            live.send(r#"{"op":"ping","id":1}"#).await;
            assert_eq!(live.message().await["type"], "pong", "still open");
        });
    }

    #[test]
    fn a_protobuf_client_sends_its_control_messages_as_binary_frames() {
        use crate::proto::{ClientMessage, Ping, ServerMessage, client_message, server_message};
        use prost::Message as _;
        run(async {
            let mut live = start(Config::for_tests(), "encoding=protobuf").await;
            let (_, welcome) = live.frame().await;
            assert!(matches!(
                ServerMessage::decode(&welcome[..]).unwrap().msg,
                Some(server_message::Msg::Welcome(_))
            ));
            let ping = ClientMessage {
                msg: Some(client_message::Msg::Ping(Ping { id: 7 })),
            };
            live.send_frame(OpCode::Binary, &ping.encode_to_vec()).await;
            let (opcode, pong) = live.frame().await;
            assert!(matches!(opcode, OpCode::Binary), "{opcode:?}");
            let pong = ServerMessage::decode(&pong[..]).unwrap().msg;
            assert!(
                matches!(pong, Some(server_message::Msg::Pong(ref p)) if p.id == 7),
                "{pong:?}"
            );
        });
    }

    #[test]
    fn control_messages_past_the_rate_are_refused() {
        run(async {
            let config = Config {
                max_control_rate: 2,
                ..Config::for_tests()
            };
            let mut live = welcomed(config, "").await;
            for id in 0..4 {
                live.send(&json!({"op":"ping","id":id}).to_string()).await;
            }
            let mut codes = Vec::new();
            for _ in 0..4 {
                let answer = live.message().await;
                codes.push(answer["code"].as_str().unwrap_or("pong").to_owned());
            }
            assert_eq!(
                codes.iter().filter(|c| *c == "pong").count(),
                2,
                "{codes:?}"
            );
            assert_eq!(
                codes.iter().filter(|c| *c == "rate_limited").count(),
                2,
                "{codes:?}"
            );
        });
    }

    #[test]
    fn heartbeats_at_zero_stop() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "").await;
            live.send(r#"{"op":"heartbeat","interval_ms":100}"#).await;
            assert_eq!(live.message().await["type"], "heartbeat_set");
            assert_eq!(live.message().await["type"], "heartbeat");
            live.send(r#"{"op":"heartbeat","interval_ms":0}"#).await;
            let mut answer = live.message().await;
            while answer["type"] == "heartbeat" {
                answer = live.message().await;
            }
            assert_eq!(answer["type"], "heartbeat_set");
            assert!(live.quiet().await, "no heartbeat after 0");
        });
    }

    #[test]
    fn an_echo_session_sends_back_each_frame_as_it_came() {
        run(async {
            let mut live = start_with(Config::for_tests(), SessionParams::echo()).await;
            live.send(r#"{"op":"ping","id":1}"#).await;
            let (opcode, payload) = live.frame().await;
            assert!(matches!(opcode, OpCode::Text));
            assert_eq!(payload, br#"{"op":"ping","id":1}"#, "echoed, not answered");
            live.send_frame(OpCode::Binary, b"\x00\xff").await;
            let (opcode, payload) = live.frame().await;
            assert!(matches!(opcode, OpCode::Binary));
            assert_eq!(payload, b"\x00\xff");
        });
    }

    #[test]
    fn a_protocol_error_is_explained_then_closes_the_session() {
        run(async {
            let mut live = welcomed(Config::for_tests(), "").await;
            live.send_frame(OpCode::Text, b"\xff\xfe not utf-8").await;
            let code = error_code(&mut live).await;
            let (opcode, payload) = live.frame().await;
            assert!(matches!(opcode, OpCode::Close), "{opcode:?}");
            assert_eq!(u16::from_be_bytes([payload[0], payload[1]]), 1007, "{code}");
            let counted = live.core.borrow().shared().metrics.errors().count();
            assert_eq!(counted, 1, "counted");
        });
    }

    #[test]
    fn a_silent_client_behind_a_full_socket_still_gets_its_4009_close() {
        run(async {
            let config = unread(Config {
                ping_interval: std::time::Duration::from_millis(20),
                idle_timeout: std::time::Duration::from_millis(50),
                ..Config::for_tests()
            });
            let mut live = start(config, "symbols=BTC").await;
            assert_eq!(live.message().await["type"], "welcome");
            for seq in 1..=5_000 {
                deliver(&live, "BTC", seq);
            }
            // The client neither reads nor says anything: at a ping after the idle timeout,
            // the relay closes it, and waits (a grace) for the socket to take the close.
            live.closing().await;
            let close = loop {
                match live.frame().await {
                    (OpCode::Close, payload) => break payload,
                    (OpCode::Text | OpCode::Ping, _) => {}
                    (opcode, payload) => panic!("{opcode:?}: {payload:?}"),
                }
            };
            assert_eq!(&close[..2], &4009u16.to_be_bytes());
        });
    }

    #[test]
    fn on_an_edge_a_resume_waits_until_the_shard_holds_the_clients_position() {
        run(async {
            let mut live = start_on_edge(Config::for_tests(), "").await;
            let welcome = live.message().await;
            let epoch = welcome["epoch"].as_u64().expect("an epoch");
            deliver(&live, "BTC", 1);
            deliver(&live, "BTC", 2);
            // The client saw seq 3 on an edge ahead of this one; this shard holds 2.
            live.send(&format!(
                r#"{{"op":"resume","from":{{"BTC":3}},"epoch":{epoch}}}"#
            ))
            .await;
            // (Time for the session to read it: it must hold it rather than answer now.)
            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
            deliver(&live, "BTC", 3);
            deliver(&live, "BTC", 4);
            let mut seen = Vec::new();
            while seen.last().map(|(_, _, seq)| *seq) != Some(4) {
                let message = live.message().await;
                if message["symbol"] == "BTC" {
                    seen.push(said(&message));
                }
            }
            assert!(
                seen.iter().all(|(_, _, seq)| *seq >= 3),
                "nothing older than the client's position: {seen:?}"
            );
            // Served, the session reads on.
            live.send(r#"{"op":"ping","id":9}"#).await;
            let pong = loop {
                let message = live.message().await;
                if message["type"] != "tick" {
                    break message;
                }
            };
            assert_eq!((&pong["type"], &pong["id"]), (&json!("pong"), &json!(9)));
        });
    }
}
