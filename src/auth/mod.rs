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

pub use errors::{AdminRefusal, AuthConfigError, AuthError};
pub use identity::Identity;
use identity::identity;

use std::path::Path;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::config::Config;
use crate::error::clip;
use crate::limits::{AtLimit, PerKeyLimit, Slot};

/// Verifies tokens; `None` from [`Verifier::from_config`] when no key is configured (then
/// the relay behaves as it did before auth: every client is anonymous).
#[derive(Debug)]
pub struct Verifier {
    /// Keys from files given at startup: fixed for the relay's life.
    fixed: Vec<PinnedKey>,
    /// Keys from the JWKS file or URL, replaced whole on each reload (rotation by `kid`).
    jwks: RwLock<Vec<PinnedKey>>,
    audience: Option<String>,
    issuer: Option<String>,
    leeway: Duration,
    /// Rung when a token names a `kid` no key has: the JWKS may have rotated since the last
    /// reload, so the reloader fetches it now rather than at its next interval.
    unknown_kid: tokio::sync::Notify,
}

/// One verification key and the one algorithm it accepts.
#[derive(Clone)]
pub struct PinnedKey {
    kid: Option<String>,
    algorithm: Algorithm,
    key: DecodingKey,
}

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

/// The claims a token must carry (`iat` and `nbf` are optional; checked when present).
#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
    #[serde(default)]
    allow: Option<Vec<String>>,
}

impl Verifier {
    /// The verifier the flags describe, or `None` when no key is configured.
    pub fn from_config(config: &Config) -> Result<Option<Self>, AuthConfigError> {
        let mut fixed = Vec::new();
        if let Some(path) = &config.jwt_secret_file {
            let secret = read(path, "--jwt-secret-file")?;
            let secret = trim_ascii(&secret);
            if secret.len() < MIN_SECRET_BYTES {
                return Err(AuthConfigError::Key {
                    flag: "--jwt-secret-file",
                    reason: format!(
                        "the secret is {} bytes; HS256 needs at least {MIN_SECRET_BYTES}",
                        secret.len()
                    ),
                });
            }
            fixed.push(PinnedKey {
                kid: None,
                algorithm: Algorithm::HS256,
                key: DecodingKey::from_secret(secret).map_err(|e| AuthConfigError::Key {
                    flag: "--jwt-secret-file",
                    reason: e.to_string(),
                })?,
            });
        }
        if let Some(path) = &config.jwt_public_key_file {
            let pem = read(path, "--jwt-public-key-file")?;
            fixed.push(public_key(&pem)?);
        }
        let jwks = match &config.jwks_file {
            Some(path) => {
                jwks::parse(&read(path, "--jwks-file")?).map_err(|reason| AuthConfigError::Key {
                    flag: "--jwks-file",
                    reason,
                })?
            }
            None => Vec::new(),
        };
        if fixed.is_empty() && jwks.is_empty() && config.jwks_url.is_none() {
            return Ok(None);
        }
        Ok(Some(Self {
            fixed,
            jwks: RwLock::new(jwks),
            audience: config.jwt_audience.clone(),
            issuer: config.jwt_issuer.clone(),
            leeway: config.jwt_leeway,
            unknown_kid: tokio::sync::Notify::new(),
        }))
    }

    /// Replaces the JWKS keys (a reload of the file or URL).
    pub fn set_jwks(&self, keys: Vec<PinnedKey>) {
        *self
            .jwks
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner) = keys;
    }

    /// Resolves when a token named a `kid` no key has (see `unknown_kid`).
    pub async fn unknown_kid(&self) {
        self.unknown_kid.notified().await;
    }

    /// Verifies `token` and returns who it is for.
    pub fn verify(&self, token: &str) -> Result<Identity, AuthError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(AuthError::Invalid(format!(
                "token is {} bytes, the limit is {MAX_TOKEN_BYTES}",
                token.len()
            )));
        }
        // The header only chooses the key; nothing in it is trusted until the signature is
        // checked with a key pinned to exactly the algorithm it names.
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| AuthError::Invalid(format!("malformed token: {e}")))?;
        let jwks = self
            .jwks
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let by_kid: Vec<&PinnedKey> = match &header.kid {
            Some(kid) => jwks
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            None => Vec::new(),
        };
        if header.kid.is_some() && by_kid.is_empty() {
            self.unknown_kid.notify_one();
        }
        let candidates: Vec<&PinnedKey> = if by_kid.is_empty() {
            self.fixed.iter().chain(jwks.iter()).collect()
        } else {
            by_kid
        };
        let mut refusal = AuthError::Invalid(format!(
            "no key accepts algorithm {:?}{}",
            header.alg,
            header
                .kid
                .as_deref()
                .map(|k| format!(" with kid `{}`", clip(k)))
                .unwrap_or_default()
        ));
        for pinned in candidates.iter().filter(|k| k.algorithm == header.alg) {
            match jsonwebtoken::decode::<Claims>(token, &pinned.key, &self.validation(pinned)) {
                Ok(data) => {
                    let now_s = jsonwebtoken::get_current_timestamp();
                    return identity(data.claims, self.leeway, now_s);
                }
                Err(e) => refusal = refused(&e),
            }
        }
        Err(refusal)
    }

    fn validation(&self, key: &PinnedKey) -> Validation {
        let mut validation = Validation::new(key.algorithm);
        validation.algorithms = vec![key.algorithm];
        validation.leeway = self.leeway.as_secs();
        validation.set_required_spec_claims(&["exp", "sub"]);
        validation.validate_exp = true;
        // A token valid only from later (`nbf`) is refused until then, within the leeway.
        validation.validate_nbf = true;
        match &self.audience {
            Some(aud) => {
                validation.set_audience(&[aud]);
                validation.required_spec_claims.insert("aud".into());
            }
            None => validation.validate_aud = false,
        }
        if let Some(iss) = &self.issuer {
            validation.set_issuer(&[iss]);
            validation.required_spec_claims.insert("iss".into());
        }
        validation
    }
}

impl std::fmt::Debug for PinnedKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the key material.
        f.debug_struct("PinnedKey")
            .field("kid", &self.kid)
            .field("algorithm", &self.algorithm)
            .finish_non_exhaustive()
    }
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

/// Parses a PEM public key: RSA → RS256, EC → ES256, Ed25519 → EdDSA (one algorithm each).
fn public_key(pem: &[u8]) -> Result<PinnedKey, AuthConfigError> {
    let pinned = |algorithm, key| PinnedKey {
        kid: None,
        algorithm,
        key,
    };
    if let Ok(key) = DecodingKey::from_rsa_pem(pem) {
        return Ok(pinned(Algorithm::RS256, key));
    }
    if let Ok(key) = DecodingKey::from_ec_pem(pem) {
        return Ok(pinned(Algorithm::ES256, key));
    }
    if let Ok(key) = DecodingKey::from_ed_pem(pem) {
        return Ok(pinned(Algorithm::EdDSA, key));
    }
    Err(AuthConfigError::Key {
        flag: "--jwt-public-key-file",
        reason: "not a PEM RSA, EC (P-256) or Ed25519 public key".into(),
    })
}

fn refused(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::ImmatureSignature => AuthError::Invalid("not valid yet (nbf)".into()),
        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
        ErrorKind::InvalidAudience => AuthError::Invalid("wrong audience".into()),
        ErrorKind::InvalidIssuer => AuthError::Invalid("wrong issuer".into()),
        ErrorKind::MissingRequiredClaim(claim) => {
            AuthError::Invalid(format!("missing claim `{claim}`"))
        }
        ErrorKind::InvalidAlgorithm => AuthError::Invalid("algorithm not accepted".into()),
        other => AuthError::Invalid(format!("{other:?}")),
    }
}

fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// The `Authorization` scheme of bearer tokens, with its separating space.
const BEARER: &[u8] = b"bearer ";
/// Longest token accepted, in bytes: far above any real JWT, well below a header limit.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size, 256 bits).
const MIN_SECRET_BYTES: usize = 32;
