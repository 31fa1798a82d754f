//! Who a client is and what it may read: JWT verification against keys pinned to one
//! algorithm each ([`Verifier`]), the [`Identity`] a valid token gives (its subject and
//! allow-list), and the per-user connection count ([`UserLimit`]).
//!
//! What stays true: a token is accepted only if its header names the exact algorithm a
//! configured key is pinned to (so `alg: none` and HS/RS confusion never reach a signature
//! check), its signature verifies, `sub` and `exp` are present, `exp` is in the future
//! (within `--jwt-leeway`), and `aud`/`iss` match when configured. A `user:<id>` channel is
//! readable only by the identity whose subject is `<id>`, whatever its allow-list says.
//! Tokens are never logged; only their subject and the reason for a refusal are.

mod errors;
mod identity;
pub mod jwks;
mod key;
mod verifier;

pub use errors::{AdminRefusal, AuthConfigError, AuthError};
pub use identity::Identity;
pub use key::PinnedKey;
use key::{MIN_SECRET_BYTES, read};
pub use verifier::Verifier;

use std::sync::Arc;

use crate::config::Config;
use crate::limits::{AtLimit, PerKeyLimit, Slot};

/// A bearer token as the client sent it. Its `Debug` is redacted: tokens are credentials
/// and never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Token(pub String);

impl std::fmt::Debug for Token {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Token(<{} bytes>)", self.0.len())
    }
}

/// The relay's auth state: the verifier (when a key is configured), whether tokenless
/// clients are let in, and the per-user connection count.
#[derive(Debug)]
pub struct Auth {
    /// `None`: auth is off and every client is anonymous.
    pub verifier: Option<Arc<Verifier>>,
    /// `--allow-anonymous`.
    pub allow_anonymous: bool,
    /// `--max-connections-per-user`.
    pub users: Arc<UserLimit>,
    /// `--admin-token-file`: the bearer token of the admin routes; `None`: loopback only.
    admin: Option<Token>,
    /// `--allowed-origin`: browser origins allowed to open a WebSocket; empty: any.
    origins: Vec<String>,
}

impl Auth {
    /// Auth as the flags describe it: reads the key and admin token files.
    pub fn from_config(config: &Config) -> Result<Self, AuthConfigError> {
        let admin = match &config.admin_token_file {
            Some(path) => {
                let token = String::from_utf8(read(path, "--admin-token-file")?).map_err(|_| {
                    AuthConfigError::Key {
                        flag: "--admin-token-file",
                        reason: "the token is not UTF-8 text".into(),
                    }
                })?;
                let token = token.trim().to_owned();
                if token.len() < MIN_SECRET_BYTES {
                    return Err(AuthConfigError::Key {
                        flag: "--admin-token-file",
                        reason: format!("the token needs at least {MIN_SECRET_BYTES} bytes"),
                    });
                }
                Some(Token(token))
            }
            None => None,
        };
        Ok(Self {
            verifier: Verifier::from_config(config)?.map(Arc::new),
            allow_anonymous: config.allow_anonymous,
            users: UserLimit::new(config.max_connections_per_user),
            admin,
            origins: config.allowed_origin.clone(),
        })
    }

    /// Auth off: every client anonymous (the relay before auth existed), admin routes for
    /// loopback peers, any origin.
    pub fn off() -> Self {
        Self {
            verifier: None,
            allow_anonymous: true,
            users: UserLimit::new(0),
            admin: None,
            origins: Vec::new(),
        }
    }

    /// Whether a request may use the admin routes: with an admin token, it must carry
    /// `Authorization: Bearer <token>` (the scheme in any case); without one, only loopback
    /// peers may (an IPv4 peer of a dual-stack listener, `::ffff:127.0.0.1`, included), and
    /// the caller then checks that the request is no browser's or proxy's
    /// ([`AdminAccess::Loopback`]).
    pub fn admin_allowed(
        &self,
        peer: Option<std::net::IpAddr>,
        authorization: Option<&[u8]>,
    ) -> Result<AdminAccess, AdminRefusal> {
        match &self.admin {
            Some(token) => {
                let given = authorization
                    .and_then(bearer)
                    .ok_or(AdminRefusal::NoToken)?;
                if constant_time_eq(given, token.0.as_bytes()) {
                    Ok(AdminAccess::Token)
                } else {
                    Err(AdminRefusal::WrongToken)
                }
            }
            None if peer.is_some_and(|ip| ip.to_canonical().is_loopback()) => {
                Ok(AdminAccess::Loopback)
            }
            None => Err(AdminRefusal::NotLoopback),
        }
    }

    /// Whether a WebSocket upgrade with this `Origin` header may proceed (a request without
    /// one is not from a browser page, and is not an Origin matter).
    pub fn origin_allowed(&self, origin: Option<&[u8]>) -> bool {
        match origin {
            Some(origin) if !self.origins.is_empty() => {
                self.origins.iter().any(|o| o.as_bytes() == origin)
            }
            _ => true,
        }
    }

    /// Verifies `token` (auth off: refused, there is nothing to check it with).
    pub fn verify(&self, token: &Token) -> Result<Identity, AuthError> {
        match &self.verifier {
            Some(verifier) => verifier.verify(&token.0),
            None => Err(AuthError::Invalid(
                "auth is not enabled on this relay".into(),
            )),
        }
    }

    /// The identity of a client that sent no token: anonymous if allowed (or auth is off),
    /// `None` if it must authenticate in-band first.
    pub fn tokenless(&self) -> Option<Identity> {
        (self.verifier.is_none() || self.allow_anonymous).then(Identity::anonymous)
    }

    /// A connection slot for the identity's user (anonymous clients take none).
    pub fn slot(&self, identity: &Identity) -> Result<Option<UserSlot>, AuthError> {
        match &identity.user {
            Some(user) => self
                .users
                .acquire(user)
                .map_err(|AtLimit| AuthError::UserLimit(self.users.max())),
            None => Ok(None),
        }
    }
}

/// How a request was let onto the admin routes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum AdminAccess {
    /// It carried the admin token.
    Token,
    /// No admin token is configured and the peer is on loopback: the request must still
    /// prove it is no browser page's or proxy's (the HTTP layer checks its headers).
    Loopback,
}

/// The token of an `Authorization` header value: `Bearer <token>`, the scheme matched
/// without regard to case (RFC 9110 §11.1), the token trimmed and not empty.
pub fn bearer(value: &[u8]) -> Option<&[u8]> {
    let (scheme, token) = value.split_at_checked(BEARER.len())?;
    let token = token.trim_ascii();
    (scheme.eq_ignore_ascii_case(BEARER) && !token.is_empty()).then_some(token)
}

/// Connections per user, relay-wide (`--max-connections-per-user`): taken when a token's
/// session starts, released when its [`UserSlot`] drops.
pub type UserLimit = PerKeyLimit<Arc<str>>;

/// One connection's place in its user's count; released on drop.
pub type UserSlot = Slot<Arc<str>>;

/// Compares secrets in time that depends on their length only, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// The `Authorization` scheme of bearer tokens, with its separating space.
const BEARER: &[u8] = b"bearer ";
