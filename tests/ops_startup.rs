//! Start-up failures and log output of the real binary: one line, exit 2, no backtrace;
//! no colour codes when stderr is not a terminal; `--log-format json`.

mod ops_common;

use ops_common::{run, spawn};

#[test]
fn a_bad_flag_is_one_line_and_exit_2_even_with_rust_backtrace() {
    let (code, out, err) = run(&["--max-connections", "lots"], &[("RUST_BACKTRACE", "1")]);
    assert_eq!(code, Some(2));
    assert!(out.is_empty(), "{out}");
    assert_eq!(err.lines().count(), 1, "one line, got: {err}");
    assert!(
        err.starts_with("tickrelay: ") && err.contains("--max-connections"),
        "{err}"
    );
    assert!(
        !err.contains("backtrace") && !err.contains("Error:"),
        "{err}"
    );
}

#[test]
fn an_address_in_use_is_one_line_naming_the_flag() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = taken.local_addr().expect("addr").to_string();
    let (code, _, err) = run(
        &[
            "--listen",
            &addr,
            "--ingest-tcp",
            "127.0.0.1:0",
            "--ingest-tcp-protobuf",
            "127.0.0.1:0",
        ],
        &[("RUST_BACKTRACE", "full"), ("RUST_LOG", "off")],
    );
    assert_eq!(code, Some(2));
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("tickrelay: --listen {addr}: ")),
        "{err}"
    );
}

#[test]
fn help_and_version_exit_0() {
    let (code, out, _) = run(&["--version"], &[]);
    assert_eq!(code, Some(0));
    assert!(out.starts_with("tickrelay "), "{out}");
    let (code, out, _) = run(&["--help"], &[]);
    assert_eq!(code, Some(0));
    assert!(
        out.contains("--config <FILE>") && out.contains("--print-config"),
        "{out}"
    );
}

#[test]
fn logs_go_to_stderr_without_colour_codes_when_it_is_not_a_terminal() {
    let relay = spawn(&[], &[]);
    let line = relay.stderr_line(|l| l.contains("tickrelay started"), "the start-up log line");
    assert!(
        !line.contains('\u{1b}'),
        "escape codes in a piped log: {line:?}"
    );
    assert!(line.contains("INFO"), "{line}");
    assert_eq!(relay.stop(), Some(0));
}

#[test]
fn log_format_json_writes_one_object_per_line() {
    let relay = spawn(&["--log-format", "json"], &[]);
    let line = relay.stderr_line(|l| l.contains("tickrelay started"), "the start-up log line");
    let value: serde_json::Value = serde_json::from_str(&line).expect("a JSON log line");
    assert_eq!(value["level"], "INFO", "{line}");
    assert_eq!(value["fields"]["message"], "tickrelay started", "{line}");
    assert_eq!(relay.stop(), Some(0));
}

#[test]
fn logs_name_a_peer_plainly_and_leave_ingest_connections_to_debug() {
    use std::io::{Read as _, Write as _};
    let relay = spawn(&[], &[]);
    // A publisher connects and sends one tick; once /stats counts it, the accept is past.
    let mut ingest = std::net::TcpStream::connect(relay.ingest).expect("ingest connect");
    ingest
        .write_all(b"{\"symbol\":\"LOG-T\",\"price\":1.5,\"ts_ns\":1}\n")
        .expect("ingest write");
    let deadline = std::time::Instant::now() + ops_common::WAIT;
    while !ops_common::http_get(relay.http, "GET", "/stats")
        .1
        .contains("\"ticks_in\":1")
    {
        assert!(
            std::time::Instant::now() < deadline,
            "the tick never counted"
        );
        // The test's own thread between two polls of a condition, not a shard.
        #[allow(clippy::disallowed_methods)]
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    // A WebSocket client: its `session connected` line names the peer as an address.
    let mut ws = std::net::TcpStream::connect(relay.http).expect("ws connect");
    write!(
        ws,
        "GET /ws?symbols=LOG-T HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
    )
    .expect("upgrade request");
    let mut head = [0u8; 12];
    ws.read_exact(&mut head).expect("upgrade answer");
    assert_eq!(&head, b"HTTP/1.1 101");
    let mut before = Vec::new();
    let connected = loop {
        let line = relay
            .stderr
            .recv_timeout(ops_common::WAIT)
            .expect("a `session connected` log line");
        if line.contains("session connected") {
            break line;
        }
        before.push(line);
    };
    let local = ws.local_addr().expect("local addr").to_string();
    assert!(connected.contains(&format!("peer={local}")), "{connected}");
    assert!(!connected.contains("Some("), "{connected}");
    assert!(
        before.iter().all(|l| !l.contains("ingest connection")),
        "an ingest connection logged at info: {before:#?}"
    );
    assert_eq!(relay.stop(), Some(0));
}
