//! Helpers of the `security_*` tests: key files that delete themselves, HS256 tokens minted
//! here with any claims, and the relay's error counters.
#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, EncodingKey, Header, encode};
use serde_json::Value;

/// The HS256 secret of the relays these tests start (`--jwt-secret-file`).
pub const SECRET: &str = "security-test-secret-0123456789abcdef";
/// The admin token of the relays that have one (`--admin-token-file`).
pub const ADMIN_TOKEN: &str = "security-admin-token-0123456789abcdef";

/// A file in the temp directory holding `contents`, removed when dropped.
#[derive(Debug)]
pub struct TempFile(pub PathBuf);

impl TempFile {
    pub fn new(name: &str, contents: &str) -> Self {
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "tickrelay-security-{}-{}-{name}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, contents).expect("write the temp file");
        Self(path)
    }

    pub fn path(&self) -> Option<PathBuf> {
        Some(self.0.clone())
    }
}

impl Drop for TempFile {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}

/// Seconds since the Unix epoch.
pub fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_secs()
}

/// An HS256 token signed with [`SECRET`] carrying exactly `claims`.
pub fn token(claims: &Value) -> String {
    encode(
        &Header::new(Algorithm::HS256),
        claims,
        &EncodingKey::from_secret(SECRET.as_bytes()).expect("an HS256 key"),
    )
    .expect("the claims serialize")
}

/// A valid token for `sub`, an hour long, with `allow` when given.
pub fn token_for(sub: &str, allow: Option<&[&str]>) -> String {
    let mut claims = serde_json::json!({"sub": sub, "exp": now_s() + 3600});
    if let Some(allow) = allow {
        claims["allow"] = serde_json::json!(allow);
    }
    token(&claims)
}

/// `GET /stats` `errors.<code>` of the relay at `addr`.
pub async fn errors(addr: std::net::SocketAddr, code: &str) -> u64 {
    let host = addr.to_string();
    let (_, body) = crate::support::http_with(addr, "GET", "/stats", &[("host", &host)], "").await;
    let stats: Value = serde_json::from_str(&body).expect("/stats is JSON");
    stats["errors"][code].as_u64().unwrap_or(0)
}
