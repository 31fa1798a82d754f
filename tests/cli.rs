//! The command line of the real binary: an error keeps clap's hint on its one line (the
//! possible values, a similar flag), a mistyped key or variable gets "did you mean", sizes
//! take units (`256KiB`, `256 KiB`, `1MiB`) and addresses take host names.

mod ops_common;

use ops_common::{run, spawn, temp_path};

/// Runs the binary expecting a start-up error: its one stderr line.
fn refused(args: &[&str], env: &[(&str, &str)]) -> String {
    let (code, out, err) = run(args, env);
    assert_eq!(code, Some(2), "stdout: {out} stderr: {err}");
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line: {err}");
    err.trim_end().to_owned()
}

#[test]
fn a_bad_choice_lists_the_possible_values_on_its_line() {
    let line = refused(&["--slow-policy", "drop"], &[]);
    assert!(
        line.starts_with("tickrelay: invalid value 'drop' for '--slow-policy"),
        "{line}"
    );
    assert!(
        line.ends_with("[possible values: disconnect, conflate]"),
        "{line}"
    );
}

#[test]
fn a_misspelt_flag_names_the_similar_one() {
    let line = refused(&["--lisen", "127.0.0.1:0"], &[]);
    assert_eq!(
        line,
        "tickrelay: unexpected argument '--lisen' found; tip: a similar argument exists: '--listen'"
    );
}

#[test]
fn a_misspelt_key_or_variable_gets_did_you_mean() {
    let file = temp_path("typo.toml");
    std::fs::write(&file, "slow-polcy = \"conflate\"\n").expect("write the config file");
    let line = refused(&["--config", &file.display().to_string()], &[]);
    assert!(
        line.contains("unknown key `slow-polcy` (did you mean `slow-policy`?)"),
        "{line}"
    );
    let line = refused(&[], &[("TICKRELAY_OUTBOX_BYTE", "1")]);
    assert!(line.contains("(did you mean `outbox-bytes`?)"), "{line}");
    // Nothing near: no guess.
    let line = refused(&[], &[("TICKRELAY_ZZZZ", "1")]);
    assert!(!line.contains("did you mean"), "{line}");
    // A bad value in the file keeps the possible values too.
    std::fs::write(&file, "slow-policy = \"drop\"\n").expect("write the config file");
    let line = refused(&["--config", &file.display().to_string()], &[]);
    assert!(
        line.contains("[possible values: disconnect, conflate]"),
        "{line}"
    );
    let _ = std::fs::remove_file(&file);
}

#[test]
fn sizes_take_units_with_or_without_a_space() {
    let (code, out, err) = run(
        &[
            "--print-config",
            "--outbox-bytes",
            "256KiB",
            "--max-http-body",
            "1MiB",
        ],
        &[("TICKRELAY_MAX_MESSAGE_BYTES", "32 KiB")],
    );
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("outbox-bytes = \"256KiB\"  # flag"), "{out}");
    // The relay runs with them: a publish body over 1 KiB (1,024 bytes) is refused.
    let relay = spawn(
        &["--outbox-bytes", "256 KiB", "--max-http-body", "1 KiB"],
        &[],
    );
    let tick = r#"{"symbol":"SIZE-T","price":1.5,"ts_ns":1}"#;
    let lines = |n: usize| vec![tick; n].join("\n");
    let small = lines(1024 / (tick.len() + 1));
    let (status, body) = ops_common::http_post(relay.http, "/api/publish", &small);
    assert_eq!(status, 202, "{} bytes: {body}", small.len());
    let big = lines(1024 / (tick.len() + 1) + 1);
    assert!(big.len() > 1024);
    let (status, body) = ops_common::http_post(relay.http, "/api/publish", &big);
    assert_eq!(status, 413, "{} bytes: {body}", big.len());
    assert_eq!(relay.stop(), Some(0));
    let line = refused(&["--outbox-bytes", "lots"], &[]);
    assert!(
        line.contains("--outbox-bytes") && line.contains("256KiB"),
        "{line}"
    );
}

#[test]
fn addresses_take_host_names_resolved_at_start() {
    let relay = spawn(&["--admin-listen", "localhost:0"], &[]);
    let (status, _) = ops_common::http_get(relay.http, "GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(relay.stop(), Some(0));
    let (code, out, err) = run(&["--print-config", "--listen", "localhost:8090"], &[]);
    assert_eq!(code, Some(0), "{err}");
    assert!(out.contains("listen = \"localhost:8090\"  # flag"), "{out}");
    let line = refused(&["--listen", "no-such-host.invalid:8080"], &[]);
    assert!(
        line.contains("--listen") && line.contains("does not resolve"),
        "{line}"
    );
}
