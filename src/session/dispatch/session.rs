//! One client's session-side state ([`Session`]), how an admitted session starts
//! (`welcome`, then the connect-time subscriptions), and the two replies every handler
//! sends: an acknowledgement or a typed refusal.

use std::time::{Duration, Instant};

use tracing::debug;

use crate::auth::{Identity, UserSlot};
use crate::encode::{Encoding, Message};
use crate::event::Key;
use crate::limits::TokenBucket;
use crate::session::control::{Control, ControlError, Selection};
use crate::session::handshake::{Mode, SessionParams};
use crate::shard::{SessionKey, ShardCore};
use crate::tick::now_ns;

/// The session-side state of one client: what only its task reads.
#[derive(Debug)]
pub(in crate::session) struct Session {
    /// The client's key on its shard.
    pub(in crate::session) key: SessionKey,
    pub(super) id: u64,
    pub(super) encoding: Encoding,
    pub(super) mode: Mode,
    pub(super) control_rate: TokenBucket,
    /// Application heartbeat interval the client asked for.
    pub(in crate::session) heartbeat: Option<Duration>,
    /// Who the client is; `None` while it has still to authenticate in-band.
    pub(super) identity: Option<Identity>,
    /// Its place in its user's connection count (dropped with the session).
    pub(super) user_slot: Option<UserSlot>,
    /// The connect-time request of a pending session, served once it authenticates (boxed:
    /// most sessions never hold one, and idle sessions are counted in bytes).
    pub(super) deferred: Option<Box<SessionParams>>,
    /// When the pending session must have authenticated, or the session's token runs out.
    pub(in crate::session) deadline: Option<Instant>,
    /// On an edge: a control message waiting for its keys' history (`history_wait.rs`; boxed: rare).
    pub(in crate::session) held: Option<Box<Control>>,
}

/// Starts an admitted session: `welcome`, then the connect-time subscriptions, snapshots
/// and replays (the handshake checked them against the limit and, with a token at connect,
/// against the identity).
pub(super) fn start(
    core: &mut ShardCore,
    session: &mut Session,
    identity: Identity,
    params: &SessionParams,
    now: Instant,
) {
    let key = session.key;
    let resumed: Vec<Key> = params.resume.iter().map(|(s, _)| s.clone()).collect();
    let named = params.selection.keys();
    let mut welcome_keys = named.clone();
    welcome_keys.extend(resumed.iter().filter(|s| !named.contains(s)).cloned());
    let welcomed = Selection::of_keys(&welcome_keys);
    let welcome = Message::Welcome {
        session: session.id,
        shard: core.id() as u32,
        encoding: params.encoding,
        all: params.selection.all,
        symbols: &welcomed.symbols,
        channels: &welcomed.channels,
        user: identity.user.as_deref(),
        expires_ns: identity.expires_s.map(|s| s.saturating_mul(1_000_000_000)),
        epoch: core.epoch(),
    };
    core.send(key, &welcome, now);
    let live: Vec<Key> = named.into_iter().filter(|s| !resumed.contains(s)).collect();
    let added = core.subscribe(key, params.selection.all, &live);
    core.send_snapshots(key, &added, now);
    core.resume(key, &params.resume, params.resume.epoch, now);
    session.deadline = expiry(&identity, now);
    core.set_user(key, identity.user.clone());
    session.identity = Some(identity);
}

/// Answers a refused control message with its typed error (counted; the session stays
/// open).
pub(super) fn refuse(core: &mut ShardCore, session: &Session, error: &ControlError, now: Instant) {
    let code = error.code();
    core.shared().metrics.count_error(code);
    debug!(session = session.id, code = code.as_str(), %error, "control message refused");
    let message = Message::Error {
        code: code.as_str(),
        message: &error.to_string(),
    };
    core.send(session.key, &message, now);
}

/// Acknowledges a control message (`subscribed`, `unsubscribed`, ...): for a protobuf
/// client naming symbols and channels, an `Ack` and a `ChannelAck`.
pub(super) fn ack(
    core: &mut ShardCore,
    session: &Session,
    op: &'static str,
    selection: &Selection,
    now: Instant,
) {
    let both = (selection.all || !selection.symbols.is_empty()) && !selection.channels.is_empty();
    if session.encoding == Encoding::Protobuf && both {
        // A protobuf Ack names symbols only: the channels get their own ChannelAck.
        let symbols = Message::Ack {
            op,
            all: selection.all,
            symbols: &selection.symbols,
            channels: &[],
        };
        core.send(session.key, &symbols, now);
        let channels = Message::Ack {
            op,
            all: false,
            symbols: &[],
            channels: &selection.channels,
        };
        return core.send(session.key, &channels, now);
    }
    let message = Message::Ack {
        op,
        all: selection.all,
        symbols: &selection.symbols,
        channels: &selection.channels,
    };
    core.send(session.key, &message, now);
}

/// When `identity`'s token runs out, as an instant (`None`: no token, or an `exp` so far
/// ahead that no instant can hold it: such a token never runs out while the process lives).
pub(super) fn expiry(identity: &Identity, now: Instant) -> Option<Instant> {
    let expires_s = identity.expires_s?;
    let now_s = now_ns() / 1_000_000_000;
    now.checked_add(Duration::from_secs(expires_s.saturating_sub(now_s)))
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use fastwebsockets::OpCode;
    use prost::Message as _;
    use serde_json::json;
    use tokio::task::LocalSet;

    use super::expiry;
    use crate::auth::Identity;
    use crate::config::Config;
    use crate::proto::server_message::Msg;
    use crate::proto::{Ack, ChannelAck, ServerMessage};
    use crate::session::testkit::{Live, deliver, start};
    use crate::tick::now_ns;

    /// The next message of a protobuf client.
    async fn decoded(live: &mut Live) -> Msg {
        let (opcode, payload) = live.frame().await;
        assert!(matches!(opcode, OpCode::Binary), "a binary frame");
        let message = ServerMessage::decode(payload.as_slice()).expect("a server message");
        message.msg.expect("a message")
    }

    #[tokio::test]
    async fn the_welcome_names_the_resumed_keys_too_and_the_named_ones_are_live() {
        LocalSet::new()
            .run_until(async {
                let mut live = start(Config::for_tests(), "symbols=BTC&resume=ETH:0").await;
                let welcome = live.message().await;
                let epoch = live.core.borrow().epoch();
                assert_eq!(
                    welcome,
                    json!({"type":"welcome","session":welcome["session"],"shard":0,
                        "encoding":"json","symbols":["BTC","ETH"],
                        "server":welcome["server"],"epoch":epoch})
                );
                deliver(&live, "BTC", 1);
                deliver(&live, "ETH", 1);
                for symbol in ["BTC", "ETH"] {
                    let tick = live.message().await;
                    assert_eq!(
                        (tick["type"].as_str(), tick["symbol"].as_str()),
                        (Some("tick"), Some(symbol))
                    );
                    assert_eq!(tick["seq"], 1);
                }
                assert!(live.quiet().await);
            })
            .await;
    }

    #[tokio::test]
    async fn a_refused_message_is_answered_with_its_code_and_why() {
        LocalSet::new()
            .run_until(async {
                let mut live = start(Config::for_tests(), "").await;
                assert_eq!(live.message().await["type"], "welcome");
                live.send(r#"{"op":"nope"}"#).await;
                let error = live.message().await;
                assert_eq!(error["type"], "error");
                assert_eq!(error["code"], "unknown_op");
                assert!(!error["message"].as_str().expect("a reason").is_empty());
            })
            .await;
    }

    #[tokio::test]
    async fn a_json_client_gets_one_ack_naming_symbols_and_channels() {
        LocalSet::new()
            .run_until(async {
                let mut live = start(Config::for_tests(), "").await;
                assert_eq!(live.message().await["type"], "welcome");
                live.send(r#"{"op":"subscribe","symbols":["BTC"],"channels":["news"]}"#)
                    .await;
                assert_eq!(
                    live.message().await,
                    json!({"type":"subscribed","symbols":["BTC"],"channels":["news"]})
                );
                assert!(live.quiet().await, "one ack");
            })
            .await;
    }

    #[tokio::test]
    async fn a_protobuf_client_gets_a_channel_ack_besides_the_ack_only_for_a_mixed_op() {
        LocalSet::new()
            .run_until(async {
                let mut live = start(Config::for_tests(), "encoding=protobuf").await;
                assert!(matches!(decoded(&mut live).await, Msg::Welcome(_)));
                live.send(r#"{"op":"subscribe","symbols":["BTC"],"channels":["news"]}"#)
                    .await;
                let symbols = Ack {
                    op: "subscribed".into(),
                    symbols: vec!["BTC".into()],
                };
                assert_eq!(decoded(&mut live).await, Msg::Ack(symbols));
                let channels = ChannelAck {
                    op: "subscribed".into(),
                    channels: vec!["news".into()],
                };
                assert_eq!(decoded(&mut live).await, Msg::ChannelAck(channels));
                live.send(r#"{"op":"subscribe","symbols":["ETH"]}"#).await;
                let only = Ack {
                    op: "subscribed".into(),
                    symbols: vec!["ETH".into()],
                };
                assert_eq!(decoded(&mut live).await, Msg::Ack(only));
                assert!(live.quiet().await, "no second ack");
            })
            .await;
    }

    #[test]
    fn a_token_runs_out_at_its_exp_and_no_token_never() {
        let now = Instant::now();
        let mut identity = Identity::anonymous();
        assert_eq!(expiry(&identity, now), None);
        identity.expires_s = Some(now_ns() / 1_000_000_000 + 100);
        let left = expiry(&identity, now).expect("an instant") - now;
        // Whole seconds: up to one less if a second began since `exp` was set.
        assert!(
            (Duration::from_secs(99)..=Duration::from_secs(100)).contains(&left),
            "{left:?}"
        );
        identity.expires_s = Some(1);
        assert_eq!(expiry(&identity, now), Some(now), "already run out");
        identity.expires_s = Some(u64::MAX);
        assert_eq!(expiry(&identity, now), None, "beyond any instant");
    }
}
