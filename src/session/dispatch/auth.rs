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
