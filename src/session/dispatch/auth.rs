//! A session's identity: the first `auth` of a pending session, `refresh`, the closes
//! auth causes (4001, 4002), the token's expiry, and the check every subscribe, snapshot
//! and resume goes through.

use std::time::{Duration, Instant};

use tracing::debug;

use super::{CLOSE_AUTH_FAILED, CLOSE_TOKEN_EXPIRED, Session, ack, refuse, start};
use crate::auth::{AuthError, Identity, Token};
use crate::encode::Message;
use crate::event::Key;
use crate::session::control::{ControlError, Selection};
use crate::session::handshake;
use crate::shard::{SLOW_CLOSE_GRACE, ShardCore};
use crate::tick::now_ns;

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
            let close = if error == AuthError::Expired {
                CLOSE_TOKEN_EXPIRED
            } else {
                CLOSE_AUTH_FAILED
            };
            close_for_auth(core, session, &error, close, "authentication failed", now);
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
        .retain(|s| identity.may_read(&Key::Symbol(s.clone())));
    params
        .selection
        .channels
        .retain(|c| identity.may_read(&Key::Channel(c.clone())));
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

/// Sends the auth error, then closes with `close` (4001 or 4002).
pub(super) fn close_for_auth(
    core: &mut ShardCore,
    session: &Session,
    error: &AuthError,
    close: u16,
    reason: &str,
    now: Instant,
) {
    let code = error.code();
    core.shared().metrics.count_error(code);
    debug!(session = session.id, code = code.as_str(), %error, "session closed by auth");
    let message = Message::Error {
        code: code.as_str(),
        message: &error.to_string(),
    };
    core.send(session.key, &message, now);
    core.close(session.key, close, reason, now + SLOW_CLOSE_GRACE, false);
}

/// When `identity`'s token runs out, as an instant (`None`: no token, or an expiry so far
/// ahead that no clock instant holds it, such as an `exp` near 2^64: the token outlives the
/// process). The arithmetic is checked: a token's claims must never panic a session.
pub(super) fn expiry(identity: &Identity, now: Instant) -> Option<Instant> {
    let expires_s = identity.expires_s?;
    let now_s = now_ns() / 1_000_000_000;
    now.checked_add(Duration::from_secs(expires_s.saturating_sub(now_s)))
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
