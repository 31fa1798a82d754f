//! `POST /api/publish` refusals name the line and the field and speak of the tick, never
//! of the JSON parser (issue 12's rough edges), through the real binary.

mod ops_common;

use ops_common::{http_post, spawn};

#[test]
fn publish_refusals_name_line_and_field_in_words_about_the_tick() {
    let relay = spawn(&[], &[]);
    let cases = [
        (
            r#"{"symbol":"A","prce":1,"ts_ns":1}"#,
            "unknown_field",
            Some("prce"),
            "unknown field `prce`",
        ),
        (
            "{\"symbol\":\"A\",\"price\":1,\"ts_ns\":1}\n{\"symbol\":\"A\",\"price\":NaN,\"ts_ns\":2}",
            "not_finite",
            Some("price"),
            "field `price` is not a finite number",
        ),
        (
            r#"[{"symbol":"A","price":1,"ts_ns":1},{"symbol":"B","price":1,"ts_ns":2,"sise":1}]"#,
            "unknown_field",
            Some("sise"),
            "unknown field `sise`",
        ),
    ];
    for (body, code, field, message) in cases {
        let (status, reply) = http_post(relay.http, "/api/publish", body);
        assert_eq!(status, 400, "{body} → {reply}");
        let reply: serde_json::Value = serde_json::from_str(&reply).expect("a JSON refusal");
        assert_eq!(reply["code"], code, "{reply}");
        assert_eq!(reply["field"].as_str(), field, "{reply}");
        assert_eq!(reply["message"], message, "{reply}");
        let line = if body.contains('\n') || body.starts_with('[') {
            2
        } else {
            1
        };
        assert_eq!(reply["line"], line, "{reply}");
    }
    let (status, reply) = http_post(relay.http, "/api/publish", r#"{"symbol":"A","venue":nul}"#);
    assert_eq!(status, 400);
    assert!(
        !reply.contains("Expected") && !reply.contains("character"),
        "{reply}"
    );
    assert_eq!(relay.stop(), Some(0));
}
