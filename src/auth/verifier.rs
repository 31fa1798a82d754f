//! [`Verifier`]: checks a token's signature with a key pinned to the algorithm its header
//! names, then its claims (`exp`, `nbf`, `iat`, audience, issuer) with the leeway.

use std::sync::RwLock;
use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, Validation, errors::ErrorKind};

use super::errors::{AuthConfigError, AuthError};
use super::identity::{Claims, Identity, identity};
use super::key::{self, MIN_SECRET_BYTES, PinnedKey, public_key, read, trim_ascii};
use crate::config::Config;
use crate::error::clip;

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
                key::parse(&read(path, "--jwks-file")?).map_err(|reason| AuthConfigError::Key {
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

/// Longest token accepted, in bytes: far above any real JWT, well below a header limit.
const MAX_TOKEN_BYTES: usize = 8 * 1024;
