//! The JavaScript client keeps its own table of the relay's wire facts (`WIRE` in
//! `clients/js/tickrelay.js`); this test reads it and holds it to the relay's tables: every
//! error code it acts on exists with the same close code and HTTP status, every close code
//! the relay sends is one it knows, and every query parameter it sends is one `/ws` takes.
//! (The Rust client checks its own table in `client/src/wire.rs`.)

use std::collections::BTreeMap;

use tickrelay::error::{CloseCode, ErrorCode};
use tickrelay::session::handshake::QUERY_PARAMS;

/// The `WIRE = Object.freeze({ ... });` block of the JS client.
fn wire_block() -> String {
    let js = std::fs::read_to_string(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("clients/js/tickrelay.js"),
    )
    .expect("read clients/js/tickrelay.js");
    let start = js.find("export const WIRE").expect("the WIRE table");
    let end = js[start..].find("\n});").expect("the end of WIRE") + start;
    js[start..end].to_string()
}

/// `{ key: value, ... }` rows of a block, as key → value text.
fn rows(block: &str) -> Vec<BTreeMap<String, String>> {
    block
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with("{ ") && l.ends_with("},"))
        .map(|l| {
            l.trim_start_matches("{ ")
                .trim_end_matches("},")
                .trim_end_matches(' ')
                .split(", ")
                .filter_map(|field| field.split_once(": "))
                .map(|(k, v)| (k.to_owned(), v.trim_matches('\'').to_owned()))
                .collect()
        })
        .collect()
}

#[test]
fn the_js_clients_wire_table_agrees_with_the_relays() {
    let block = wire_block();
    let (errors_part, rest) = block.split_once("closes:").expect("errors, then closes");
    let (closes_part, params_part) = rest.split_once("params:").expect("then params");
    let errors = rows(errors_part);
    let closes = rows(closes_part);
    assert!(
        errors.len() >= 10 && closes.len() >= 3,
        "the scan read the table"
    );
    let number = |v: &String| (v != "null").then(|| v.parse::<u16>().expect("a number"));
    for row in &errors {
        let code = &row["code"];
        let relay = ErrorCode::ALL
            .iter()
            .find(|c| c.as_str() == code)
            .unwrap_or_else(|| panic!("the relay has no error `{code}`"));
        assert_eq!(
            number(&row["close"]),
            relay.close().map(CloseCode::value),
            "{code}"
        );
        if let Some(http) = number(&row["http"]) {
            assert_eq!(http, relay.http_status().as_u16(), "{code}");
        }
    }
    for close in CloseCode::ALL {
        let value = close.value().to_string();
        let known = closes.iter().any(|r| r["close"] == value)
            || errors.iter().any(|r| r["close"] == value);
        assert!(
            known,
            "the relay sends {close}, which the JS client does not know"
        );
    }
    let sent: Vec<&str> = params_part
        .split(['\n', ','])
        .filter_map(|p| p.split_once(": '"))
        .map(|(_, v)| v.trim_end_matches(['\'', ' ']).trim_end_matches('\''))
        .collect();
    assert!(sent.len() >= 7, "the scan read the params: {sent:?}");
    for param in sent {
        assert!(
            QUERY_PARAMS.contains(&param),
            "`{param}` is not a /ws parameter"
        );
    }
}
