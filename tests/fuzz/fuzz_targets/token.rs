//! JWT verification: `Verifier::verify` on arbitrary text, against an HS256 secret and an
//! audience (what a stranger reaches with `?token=`, `Authorization: Bearer` or `auth`).
//!
//! Checks: no panic; nothing that is not signed with the secret is ever accepted.
#![no_main]

use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use tickrelay::Config;
use tickrelay::auth::Verifier;

static VERIFIER: LazyLock<Verifier> = LazyLock::new(|| {
    let path = std::env::temp_dir().join(format!("tickrelay-fuzz-secret-{}", std::process::id()));
    std::fs::write(&path, "fuzz-secret-0123456789abcdef-0123456789").expect("write the secret");
    let config = Config {
        jwt_secret_file: Some(path),
        jwt_audience: Some("tickrelay".into()),
        ..Config::for_tests()
    };
    Verifier::from_config(&config)
        .expect("a valid secret file")
        .expect("a key is configured")
});

fuzz_target!(|data: &[u8]| {
    if let Ok(text) = std::str::from_utf8(data) {
        // A fuzzer cannot forge an HMAC: any acceptance is a finding.
        assert!(VERIFIER.verify(text).is_err(), "accepted an unsigned token");
    }
});
