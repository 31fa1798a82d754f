//! A session's identity: the first `auth` of a pending session, `refresh`, the closes
//! auth causes (4001, 4002), the token's expiry, and the check every subscribe, snapshot
//! and resume goes through.

use std::time::Instant;

use tracing::debug;

use super::session::{Session, ack, expiry, refuse, start};
use crate::auth::{AuthError, Identity, Token};
use crate::encode::Message;
use crate::error::CloseCode;
use crate::event::Key;
use crate::session::control::{ControlError, Selection};
use crate::session::handshake;
use crate::shard::{SLOW_CLOSE_GRACE, ShardCore};

/// A pending session's `auth`: a valid token starts the session; a refused one closes it
/// with 4001. Returns whether the session goes on.
pub(super) fn authenticate(
    core: &mut ShardCore,
    session: &mut Session,
    token: &Token,
    now: Instant,
) -> bool {
    let auth = &core.shared().auth;
    let admitted = auth
        .verify(token)
        .and_then(|identity| auth.slot(&identity).map(|slot| (identity, slot)));
    let (identity, slot) = match admitted {
        Ok(admitted) => admitted,
        Err(error) => {
            close_for_auth(core, session, &error, "authentication failed", now);
            return false;
        }
    };
    session.user_slot = slot;
    let mut params = *session
        .deferred
        .take()
        .expect("a pending session keeps its connect-time request");
    // The connect-time request was not checked against an identity yet: serve what it may
    // read and refuse the rest.
    let refused = handshake::forbidden(&identity, &params.selection, &params.resume);
    params.selection.all &= identity.may_read_all();
    params
        .selection
        .symbols
        .retain(|key| identity.may_read(key));
    params
        .selection
        .channels
        .retain(|key| identity.may_read(key));
    params.resume.from.retain(|(k, _)| identity.may_read(k));
    start(core, session, identity, &params, now);
    if !refused.is_empty() {
        refuse(core, session, &ControlError::Forbidden(refused), now);
    }
    true
}

/// `refresh` (or `auth` again): a newer token of the same user replaces the current one;
/// what the new allow-list no longer allows is unsubscribed (and acknowledged as such).
pub(super) fn refresh(core: &mut ShardCore, session: &mut Session, token: &Token, now: Instant) {
    let identity = match core.shared().auth.verify(token) {
        Ok(identity) => identity,
        Err(error) => return refuse(core, session, &error.into(), now),
    };
    let current = session.identity.as_ref().and_then(|i| i.user.clone());
    if current.is_some() && current != identity.user {
        return refuse(core, session, &AuthError::OtherUser.into(), now);
    }
    if current.is_none() {
        // An anonymous session becoming a user's: it takes a place in that user's count.
        match core.shared().auth.slot(&identity) {
            Ok(slot) => session.user_slot = slot,
            Err(error) => return refuse(core, session, &error.into(), now),
        }
    }
    let key = session.key;
    let (all, keys) = core.subscribed(key);
    let drop_all = all && !identity.may_read_all();
    let dropped: Vec<Key> = keys.into_iter().filter(|k| !identity.may_read(k)).collect();
    if drop_all || !dropped.is_empty() {
        core.unsubscribe(key, drop_all, &dropped);
        let mut gone = Selection::of_keys(&dropped);
        gone.all = drop_all;
        ack(core, session, "unsubscribed", &gone, now);
    }
    session.deadline = expiry(&identity, now);
    let message = Message::Authenticated {
        user: identity.user.as_deref().unwrap_or_default(),
        expires_ns: identity
            .expires_s
            .map_or(0, |s| s.saturating_mul(1_000_000_000)),
    };
    core.send(key, &message, now);
    core.set_user(key, identity.user.clone());
    session.identity = Some(identity);
}

/// Sends the auth error, then closes with its close code (4001, or 4002 for an expired
/// token).
pub(super) fn close_for_auth(
    core: &mut ShardCore,
    session: &Session,
    error: &AuthError,
    reason: &str,
    now: Instant,
) {
    let code = error.code();
    // An auth error without a close of its own (`forbidden`: a refresh's) still ends a
    // pending session as a failed authentication.
    let close = code.close().unwrap_or(CloseCode::AUTH_FAILED);
    core.shared().metrics.count_error(code);
    debug!(session = session.id, code = code.as_str(), %error, "session closed by auth");
    let message = Message::Error {
        code: code.as_str(),
        message: &error.to_string(),
    };
    core.send(session.key, &message, now);
    core.close(session.key, close, reason, now + SLOW_CLOSE_GRACE, false);
}

/// Refuses a selection or resume the session's identity may not read.
pub(super) fn check_allowed(
    session: &Session,
    selection: &Selection,
    resume: &[(Key, crate::tick::Seq)],
) -> Result<(), ControlError> {
    let identity = session
        .identity
        .as_ref()
        .map_or_else(Identity::anonymous, Clone::clone);
    let refused = handshake::forbidden(&identity, selection, resume);
    if refused.is_empty() {
        Ok(())
    } else {
        Err(ControlError::Forbidden(refused))
    }
}

#[cfg(test)]
mod tests {
    use hyper::header::HeaderMap;
    use serde_json::json;

    use crate::auth::Auth;
    use crate::config::Config;
    use crate::event::Tiers;
    use crate::session::control::KeyRules;
    use crate::session::handshake::{self, Admission};
    use crate::session::testkit::{Live, deliver, run, start_admitted, token, unread, with_tokens};

    /// A session that connected with `query` and no token: it must send `auth` first.
    async fn pending(config: Config, query: &str) -> Live {
        let config = with_tokens(config);
        let rules = KeyRules {
            limit: config.max_symbols_per_client,
            tiers: Tiers::new(&config.rate_tiers),
        };
        let params =
            handshake::parse(Some(query), &HeaderMap::new(), &config, &rules).expect("a query");
        let auth = Auth::from_config(&config).expect("auth on");
        let admission = Admission {
            identity: None,
            slot: None,
        };
        start_admitted(config, params, auth, admission).await
    }

    async fn close_code(live: &mut Live) -> u16 {
        loop {
            let (opcode, payload) = live.frame().await;
            if matches!(opcode, fastwebsockets::OpCode::Close) {
                return u16::from_be_bytes([payload[0], payload[1]]);
            }
        }
    }

    #[test]
    fn an_auth_starts_the_pending_session_with_what_the_token_may_read() {
        run(async {
            let mut live = pending(Config::for_tests(), "symbols=BTC,ETH").await;
            assert!(live.quiet().await, "nothing before the auth");
            let auth = json!({"op":"auth","token": token("alice", Some(&["BTC"]), 600)});
            live.send(&auth.to_string()).await;
            let welcome = live.message().await;
            assert_eq!(welcome["type"], "welcome");
            assert_eq!(welcome["user"], "alice");
            assert!(welcome["expires_ns"].as_u64().is_some_and(|ns| ns > 0));
            let refused = live.message().await;
            assert_eq!(
                (refused["type"].as_str(), refused["code"].as_str()),
                (Some("error"), Some("forbidden"))
            );
            assert!(
                refused["message"].as_str().unwrap_or("").contains("ETH"),
                "{refused}"
            );
            let (_, held) = live.core.borrow().subscribed(live.key());
            let held: Vec<&str> = held.iter().map(|k| k.as_str()).collect();
            assert_eq!(held, ["BTC"], "only what the token allows");
        });
    }

    #[test]
    fn anything_but_a_valid_auth_first_closes_the_session() {
        run(async {
            let mut live = pending(Config::for_tests(), "").await;
            live.send(r#"{"op":"ping","id":1}"#).await;
            assert_eq!(close_code(&mut live).await, 4001);
        });
        run(async {
            let mut live = pending(Config::for_tests(), "").await;
            let forged = format!("{}x", token("alice", None, 600));
            live.send(&json!({"op":"auth","token": forged}).to_string())
                .await;
            let error = live.message().await;
            assert_eq!(error["code"], "invalid_token", "{error}");
            assert_eq!(
                close_code(&mut live).await,
                4001,
                "a token that does not verify"
            );
        });
        run(async {
            let mut live = pending(Config::for_tests(), "").await;
            let expired = json!({"op":"auth","token": token("alice", None, -600)});
            live.send(&expired.to_string()).await;
            let error = live.message().await;
            assert_eq!(error["code"], "token_expired", "{error}");
            assert_eq!(close_code(&mut live).await, 4002, "an expired token");
        });
    }

    #[test]
    fn a_pending_session_that_never_authenticates_is_closed_at_its_deadline() {
        run(async {
            let config = Config {
                handshake_timeout: std::time::Duration::from_millis(200),
                ..Config::for_tests()
            };
            let mut live = pending(config, "").await;
            assert_eq!(close_code(&mut live).await, 4001);
        });
    }

    #[test]
    fn a_refresh_narrows_what_is_followed_and_another_users_token_is_refused() {
        run(async {
            let mut live = pending(Config::for_tests(), "symbols=BTC,ETH").await;
            let auth = json!({"op":"auth","token": token("alice", None, 600)});
            live.send(&auth.to_string()).await;
            assert_eq!(live.message().await["type"], "welcome");
            let narrower = json!({"op":"refresh","token": token("alice", Some(&["ETH"]), 900)});
            live.send(&narrower.to_string()).await;
            let gone = live.message().await;
            assert_eq!(gone, json!({"type":"unsubscribed","symbols":["BTC"]}));
            let ok = live.message().await;
            assert_eq!(
                (ok["type"].as_str(), ok["user"].as_str()),
                (Some("authenticated"), Some("alice"))
            );
            let other = json!({"op":"refresh","token": token("mallory", None, 600)});
            live.send(&other.to_string()).await;
            let refused = live.message().await;
            let refused = (refused["code"].as_str(), refused["message"].as_str());
            assert_eq!(
                refused,
                (
                    Some("forbidden"),
                    Some("a refresh must be for the same user")
                )
            );
            let (_, held) = live.core.borrow().subscribed(live.key());
            assert_eq!(held.len(), 1, "still alice's ETH");
        });
    }

    #[test]
    fn a_refresh_that_may_not_read_everything_drops_the_wildcard_and_one_that_may_keeps_it() {
        run(async {
            let mut live = pending(Config::for_tests(), "symbols=%2A").await;
            let auth = json!({"op":"auth","token": token("alice", None, 600)});
            live.send(&auth.to_string()).await;
            assert_eq!(live.message().await["type"], "welcome");
            // Still everything: the wildcard stays, nothing unsubscribed.
            let again = json!({"op":"refresh","token": token("alice", None, 900)});
            live.send(&again.to_string()).await;
            assert_eq!(live.message().await["type"], "authenticated");
            assert!(live.core.borrow().subscribed(live.key()).0, "still `*`");
            // Only ETH now: the wildcard goes, and the client is told.
            let narrower = json!({"op":"refresh","token": token("alice", Some(&["ETH"]), 900)});
            live.send(&narrower.to_string()).await;
            assert_eq!(
                live.message().await,
                json!({"type":"unsubscribed","symbols":["*"]})
            );
            assert_eq!(live.message().await["type"], "authenticated");
            assert!(!live.core.borrow().subscribed(live.key()).0, "`*` dropped");
            // And what the narrower token may not read is refused when asked for.
            live.send(r#"{"op":"subscribe","symbols":["BTC"]}"#).await;
            let refused = live.message().await;
            assert_eq!(
                (refused["type"].as_str(), refused["code"].as_str()),
                (Some("error"), Some("forbidden")),
                "{refused}"
            );
            assert!(live.core.borrow().subscribed(live.key()).1.is_empty());
        });
    }

    #[test]
    fn a_token_that_runs_out_closes_the_session_with_4002() {
        run(async {
            let mut live = pending(Config::for_tests(), "").await;
            let short = json!({"op":"auth","token": token("alice", None, 1)});
            live.send(&short.to_string()).await;
            assert_eq!(live.message().await["type"], "welcome");
            assert_eq!(close_code(&mut live).await, 4002);
        });
    }

    #[test]
    fn a_token_that_runs_out_behind_a_full_socket_still_gets_its_4002_close() {
        run(async {
            let mut live = pending(unread(Config::for_tests()), "symbols=BTC").await;
            let short = json!({"op":"auth","token": token("alice", None, 1)});
            live.send(&short.to_string()).await;
            assert_eq!(live.message().await["type"], "welcome");
            // More than both sockets hold while the client reads nothing.
            for seq in 1..=5_000 {
                deliver(&live, "BTC", seq);
            }
            assert!(live.core.borrow().status(live.key()).blocked, "full");
            // The token runs out while the socket is full: the close waits its grace for
            // the socket, behind what was queued, rather than dropping the client unsaid.
            live.closing().await;
            assert_eq!(close_code(&mut live).await, 4002);
        });
    }
}
