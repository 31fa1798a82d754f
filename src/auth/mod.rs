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

pub mod jwks;

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Arc, Mutex, RwLock};
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};
use serde::Deserialize;

use crate::config::Config;
use crate::error::ErrorCode;
use crate::event::Key;

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

/// What a connection may read, and until when.
#[derive(Debug, Clone, PartialEq)]
pub struct Identity {
    /// The token's subject; `None` for an anonymous client.
    pub user: Option<Arc<str>>,
    /// The token's `allow` patterns; `None`: every public symbol and channel.
    allow: Option<Vec<Pattern>>,
    /// When the token runs out (its `exp` plus the leeway), seconds since the Unix epoch.
    pub expires_s: Option<u64>,
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
    /// `Authorization: Bearer <token>`; without one, only loopback peers may.
    pub fn admin_allowed(
        &self,
        peer: Option<std::net::IpAddr>,
        authorization: Option<&[u8]>,
    ) -> Result<(), AdminRefusal> {
        match &self.admin {
            Some(token) => {
                let given = authorization
                    .and_then(|v| v.strip_prefix(b"Bearer "))
                    .map(<[u8]>::trim_ascii)
                    .ok_or(AdminRefusal::NoToken)?;
                if constant_time_eq(given, token.0.as_bytes()) {
                    Ok(())
                } else {
                    Err(AdminRefusal::WrongToken)
                }
            }
            None if peer.is_some_and(|ip| ip.is_loopback()) => Ok(()),
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
            Some(user) => self.users.acquire(user),
            None => Ok(None),
        }
    }
}

/// A symbol or channel pattern of an allow-list: a name, or a prefix ending in `*`.
#[derive(Debug, Clone, PartialEq)]
struct Pattern(String);

#[derive(Deserialize)]
struct Claims {
    sub: String,
    exp: u64,
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
                Ok(data) => return identity(data.claims, self.leeway),
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

impl Identity {
    /// A client without a token: every public symbol and channel, no private one.
    pub fn anonymous() -> Self {
        Self {
            user: None,
            allow: None,
            expires_s: None,
        }
    }

    /// Whether this identity may read `key`: a `user:<id>` channel only if the subject is
    /// `<id>`; anything else if the allow-list (when there is one) matches its name.
    pub fn may_read(&self, key: &Key) -> bool {
        if let Key::Channel(channel) = key
            && let Some(owner) = channel.owner()
        {
            return self.user.as_deref() == Some(owner);
        }
        match &self.allow {
            None => true,
            Some(patterns) => patterns.iter().any(|p| p.matches(key.as_str())),
        }
    }

    /// Whether this identity may subscribe to `*` (every symbol): only without an
    /// allow-list, or with `*` in it (the fan-out does not filter per tick).
    pub fn may_read_all(&self) -> bool {
        self.allow
            .as_ref()
            .is_none_or(|patterns| patterns.iter().any(|p| p.0 == "*"))
    }
}

impl Pattern {
    fn parse(text: &str) -> Result<Self, AuthError> {
        let name = text.strip_suffix('*').unwrap_or(text);
        let valid = text.len() <= MAX_PATTERN_BYTES
            && name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '/' | '-'))
            && !text.is_empty();
        if !valid {
            return Err(AuthError::Invalid(format!(
                "allow pattern `{}` is not a symbol or channel name, or a prefix ending in *",
                clip(text)
            )));
        }
        Ok(Self(text.to_owned()))
    }

    fn matches(&self, name: &str) -> bool {
        match self.0.strip_suffix('*') {
            Some(prefix) => name.starts_with(prefix),
            None => self.0 == name,
        }
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

/// Connections per user, relay-wide: taken when a token's session starts, released when
/// its [`UserSlot`] drops. Touched once per connect, auth and disconnect, never per tick.
#[derive(Debug)]
pub struct UserLimit {
    max: usize,
    held: Mutex<HashMap<Arc<str>, usize>>,
}

/// One connection's place in its user's count; released on drop.
#[derive(Debug)]
pub struct UserSlot {
    limit: Arc<UserLimit>,
    user: Arc<str>,
}

impl UserLimit {
    /// At most `max` connections per user (0: unlimited).
    pub fn new(max: usize) -> Arc<Self> {
        Arc::new(Self {
            max,
            held: Mutex::new(HashMap::new()),
        })
    }

    /// A slot for a new connection of `user`; `None` when unlimited.
    pub fn acquire(self: &Arc<Self>, user: &Arc<str>) -> Result<Option<UserSlot>, AuthError> {
        if self.max == 0 {
            return Ok(None);
        }
        let mut held = self
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = held.entry(user.clone()).or_insert(0);
        if *count >= self.max {
            return Err(AuthError::UserLimit(self.max));
        }
        *count += 1;
        Ok(Some(UserSlot {
            limit: self.clone(),
            user: user.clone(),
        }))
    }
}

impl Drop for UserSlot {
    fn drop(&mut self) {
        let mut held = self
            .limit
            .held
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(count) = held.get_mut(&self.user) {
            *count -= 1;
            if *count == 0 {
                held.remove(&self.user);
            }
        }
    }
}

/// Why a token or a request was refused.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum AuthError {
    /// No token where one is required.
    #[error("a token is required: Authorization: Bearer, ?token=, or a first auth message")]
    Missing,
    /// A token that does not verify (malformed, bad signature, wrong algorithm, audience or
    /// issuer, bad claims).
    #[error("invalid token: {0}")]
    Invalid(String),
    /// A token past its `exp`.
    #[error("the token has expired")]
    Expired,
    /// A refresh token for another subject.
    #[error("a refresh must be for the same user")]
    OtherUser,
    /// The user holds `--max-connections-per-user` connections already.
    #[error("this user holds {0} connections, the limit")]
    UserLimit(usize),
}

impl AuthError {
    /// Stable code for error replies and metrics labels.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::Missing => ErrorCode::AuthRequired,
            Self::Invalid(_) => ErrorCode::InvalidToken,
            Self::Expired => ErrorCode::TokenExpired,
            Self::OtherUser => ErrorCode::Forbidden,
            Self::UserLimit(_) => ErrorCode::UserConnectionLimit,
        }
    }
}

/// Why a request may not use the admin routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum AdminRefusal {
    /// An admin token is configured and the request has none.
    #[error("the admin routes need Authorization: Bearer <admin token>")]
    NoToken,
    /// The request's token is not the admin token.
    #[error("wrong admin token")]
    WrongToken,
    /// No admin token is configured and the peer is not on loopback.
    #[error("without --admin-token-file the admin routes answer loopback peers only")]
    NotLoopback,
}

impl AdminRefusal {
    /// Stable code for the JSON error and metrics.
    pub fn code(self) -> ErrorCode {
        ErrorCode::AdminRequired
    }
}

/// Compares secrets in time that depends on their length only, not on where they differ.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |diff, (x, y)| diff | (x ^ y)) == 0
}

/// Why the auth flags cannot be used (reported at startup, naming the flag).
#[derive(Debug, thiserror::Error)]
pub enum AuthConfigError {
    /// A key file cannot be read.
    #[error("{flag} {path}: {source}")]
    Read {
        /// The flag.
        flag: &'static str,
        /// The path given.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
    /// A key file's content is not a usable key.
    #[error("{flag}: {reason}")]
    Key {
        /// The flag.
        flag: &'static str,
        /// What is wrong.
        reason: String,
    },
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

fn identity(claims: Claims, leeway: Duration) -> Result<Identity, AuthError> {
    if claims.sub.is_empty() || claims.sub.len() > MAX_PATTERN_BYTES {
        return Err(AuthError::Invalid(format!(
            "sub must be 1 to {MAX_PATTERN_BYTES} bytes"
        )));
    }
    let allow = match claims.allow {
        None => None,
        Some(patterns) if patterns.len() > MAX_PATTERNS => {
            return Err(AuthError::Invalid(format!(
                "allow has {} patterns, the limit is {MAX_PATTERNS}",
                patterns.len()
            )));
        }
        Some(patterns) => Some(
            patterns
                .iter()
                .map(|p| Pattern::parse(p))
                .collect::<Result<Vec<_>, _>>()?,
        ),
    };
    Ok(Identity {
        user: Some(Arc::from(claims.sub)),
        allow,
        expires_s: Some(claims.exp.saturating_add(leeway.as_secs())),
    })
}

fn refused(error: &jsonwebtoken::errors::Error) -> AuthError {
    match error.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
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

fn clip(text: &str) -> String {
    text.chars().take(80).collect()
}

/// Longest token accepted, in bytes: far above any real JWT, well below a header limit.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
/// Longest `sub` or allow pattern, in bytes.
const MAX_PATTERN_BYTES: usize = 128;
/// Most allow patterns in one token.
const MAX_PATTERNS: usize = 1024;
/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size, 256 bits).
const MIN_SECRET_BYTES: usize = 32;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::Channel;
    use crate::tick::Symbol;

    fn identity_with(user: &str, allow: Option<&[&str]>) -> Identity {
        Identity {
            user: Some(Arc::from(user)),
            allow: allow.map(|a| a.iter().map(|p| Pattern::parse(p).unwrap()).collect()),
            expires_s: None,
        }
    }

    #[test]
    fn private_channels_belong_to_their_user_only() {
        let a = identity_with("a", None);
        let user_a = Key::Channel(Channel::parse("user:a").unwrap());
        let user_b = Key::Channel(Channel::parse("user:b").unwrap());
        assert!(a.may_read(&user_a));
        assert!(!a.may_read(&user_b));
        assert!(!Identity::anonymous().may_read(&user_a));
        let everything = identity_with("a", Some(&["*"]));
        assert!(
            !everything.may_read(&user_b),
            "no pattern opens another user's channel"
        );
    }

    #[test]
    fn allow_lists_match_names_and_prefixes() {
        let id = identity_with("a", Some(&["BTC-*", "news"]));
        let sym = |s| Key::Symbol(Symbol::parse(s).unwrap());
        let chan = |s| Key::Channel(Channel::parse(s).unwrap());
        assert!(id.may_read(&sym("BTC-USD")));
        assert!(!id.may_read(&sym("ETH-USD")));
        assert!(id.may_read(&chan("news")));
        assert!(!id.may_read(&chan("alerts")));
        assert!(!id.may_read_all());
        assert!(Identity::anonymous().may_read_all());
        assert!(Pattern::parse("a b").is_err());
        assert!(Pattern::parse("").is_err());
    }
}
