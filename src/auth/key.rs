//! Verification keys: each pinned to the one algorithm it accepts ([`PinnedKey`]), read from
//! a PEM file, an HS256 secret or a JSON Web Key Set.

use std::path::Path;
use std::str::FromStr;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, JwkSet};
use jsonwebtoken::{Algorithm, DecodingKey};
use tracing::debug;

use super::errors::AuthConfigError;

/// One verification key and the one algorithm it accepts.
#[derive(Clone)]
pub struct PinnedKey {
    pub(super) kid: Option<String>,
    pub(super) algorithm: Algorithm,
    pub(super) key: DecodingKey,
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

/// Parses a PEM public key: RSA → RS256, EC → ES256, Ed25519 → EdDSA (one algorithm each).
pub(super) fn public_key(pem: &[u8]) -> Result<PinnedKey, AuthConfigError> {
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

/// Parses a JWKS document. A key without `alg` is pinned by its type (RSA → RS256, EC P-256
/// → ES256, P-384 → ES384, Ed25519 → EdDSA); symmetric (`oct`) keys need an explicit `alg`.
pub fn parse(json: &[u8]) -> Result<Vec<PinnedKey>, String> {
    let set: JwkSet = serde_json::from_slice(json).map_err(|e| format!("not a JWKS: {e}"))?;
    let mut keys = Vec::new();
    for jwk in &set.keys {
        let named = jwk
            .common
            .key_algorithm
            .and_then(|a| Algorithm::from_str(&a.to_string()).ok());
        let inferred = match &jwk.algorithm {
            AlgorithmParameters::RSA(_) => Some(Algorithm::RS256),
            AlgorithmParameters::EllipticCurve(ec) => match ec.curve {
                EllipticCurve::P256 => Some(Algorithm::ES256),
                EllipticCurve::P384 => Some(Algorithm::ES384),
                _ => None,
            },
            AlgorithmParameters::OctetKeyPair(_) => Some(Algorithm::EdDSA),
            // Symmetric and unknown key types: only with an explicit `alg`.
            _ => None,
        };
        let Some(algorithm) = named.or(inferred) else {
            debug!(kid = ?jwk.common.key_id, "JWKS key skipped: no usable algorithm");
            continue;
        };
        let key = DecodingKey::from_jwk(jwk).map_err(|e| {
            format!(
                "key {}: {e}",
                jwk.common.key_id.as_deref().unwrap_or("without kid")
            )
        })?;
        keys.push(PinnedKey {
            kid: jwk.common.key_id.clone(),
            algorithm,
            key,
        });
    }
    if keys.is_empty() {
        return Err("the JWKS holds no usable key".into());
    }
    Ok(keys)
}

/// Reads a key or token file named by `flag`.
pub(super) fn read(path: &Path, flag: &'static str) -> Result<Vec<u8>, AuthConfigError> {
    std::fs::read(path).map_err(|source| AuthConfigError::Read {
        flag,
        path: path.display().to_string(),
        source,
    })
}

/// `bytes` without leading and trailing ASCII whitespace (a file's final newline).
pub(super) fn trim_ascii(bytes: &[u8]) -> &[u8] {
    bytes.trim_ascii()
}

/// Shortest HS256 secret accepted (RFC 7518 §3.2: at least the hash size, 256 bits).
pub(super) const MIN_SECRET_BYTES: usize = 32;
