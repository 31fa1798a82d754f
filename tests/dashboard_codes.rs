//! The dashboard sorts error codes into the relay's own and its clients' and publishers'
//! (src/http/dashboard.js: `CLIENT_ERRORS`, `RELAY_ERRORS`). Those two lists must cover
//! every `ErrorCode` exactly once, so a new code cannot land on the page unsorted or a
//! renamed one linger in the script.

use std::collections::BTreeSet;

use tickrelay::error::ErrorCode;

/// The quoted names in the JS `new Set([...])` that follows `const NAME =`.
fn js_set(script: &str, name: &str) -> BTreeSet<String> {
    let start = script
        .find(&format!("const {name} = new Set(["))
        .unwrap_or_else(|| panic!("dashboard.js has no {name} set"));
    let body = &script[start..];
    let end = body.find("])").expect("the set's end");
    body[..end]
        .split('\'')
        .skip(1)
        .step_by(2)
        .map(str::to_owned)
        .collect()
}

#[test]
fn the_dashboard_sorts_every_error_code_into_one_side() {
    let script = include_str!("../src/http/dashboard.js");
    let client = js_set(script, "CLIENT_ERRORS");
    let relay = js_set(script, "RELAY_ERRORS");
    let both: Vec<&String> = client.intersection(&relay).collect();
    assert!(both.is_empty(), "on both sides: {both:?}");
    let codes: BTreeSet<String> = ErrorCode::ALL
        .iter()
        .map(|c| c.as_str().to_owned())
        .collect();
    let listed: BTreeSet<String> = client.union(&relay).cloned().collect();
    let unsorted: Vec<&String> = codes.difference(&listed).collect();
    let unknown: Vec<&String> = listed.difference(&codes).collect();
    assert!(
        unsorted.is_empty(),
        "codes the dashboard does not sort: {unsorted:?}"
    );
    assert!(
        unknown.is_empty(),
        "names in dashboard.js that are no code: {unknown:?}"
    );
    assert!(relay.contains("nats_unavailable") && client.contains("not_found"));
}
