//! SIGHUP to a running relay: the log filter from the file changes live; a changed setting
//! that needs a restart is named; a file that no longer loads keeps the running config.

mod ops_common;

use ops_common::{spawn, temp_path};

#[test]
fn sighup_reloads_the_log_filter_from_the_file() {
    let file = temp_path("reload.toml");
    std::fs::write(&file, "log = \"warn\"\n").expect("write the config");
    let path = file.display().to_string();
    let relay = spawn(&["--config", &path], &[]);

    // At `warn` the info lines of a reload would not show: seeing one proves the new filter.
    std::fs::write(&file, "log = \"info\"\nreplay-depth = 16\n").expect("rewrite");
    relay.signal("HUP");
    let warned = relay.stderr_line(
        |l| l.contains("apply only after a restart"),
        "the restart warning",
    );
    assert!(warned.contains("replay-depth"), "{warned}");
    let line = relay.stderr_line(
        |l| l.contains("SIGHUP: configuration reloaded"),
        "the reload line",
    );
    assert!(line.contains("log=info"), "{line}");

    // A broken file: reported, and the relay keeps running with what it has.
    std::fs::write(&file, "log = \n").expect("rewrite");
    relay.signal("HUP");
    let line = relay.stderr_line(|l| l.contains("configuration not reloaded"), "the refusal");
    assert!(line.contains(&format!("{path}:1")), "{line}");
    let (status, _) = ops_common::http_get(relay.http, "GET", "/health");
    assert_eq!(status, 200);
    assert_eq!(relay.stop(), Some(0));
}

/// Opens an HTTP connection and keeps it (answered once, so the relay surely counts it).
fn held_connection(addr: std::net::SocketAddr) -> std::net::TcpStream {
    use std::io::{Read, Write};
    let mut stream = std::net::TcpStream::connect(addr).expect("connect");
    stream
        .set_read_timeout(Some(ops_common::WAIT))
        .expect("timeout");
    stream
        .write_all(b"GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
        .expect("write");
    let mut seen = Vec::new();
    let mut buf = [0; 1024];
    while !seen.ends_with(b"}") {
        let n = stream.read(&mut buf).expect("read the health answer");
        assert!(n > 0, "closed before answering");
        seen.extend_from_slice(&buf[..n]);
    }
    stream
}

#[test]
fn sighup_applies_a_new_max_connections_to_the_next_accept() {
    let file = temp_path("reload-limits.toml");
    std::fs::write(&file, "max-connections = 10\n").expect("write the config");
    let path = file.display().to_string();
    let relay = spawn(&["--config", &path], &[]);
    let _held = held_connection(relay.http);
    assert_eq!(ops_common::http_get(relay.http, "GET", "/health").0, 200);

    std::fs::write(&file, "max-connections = 1\n").expect("rewrite");
    relay.signal("HUP");
    let line = relay.stderr_line(
        |l| l.contains("SIGHUP: configuration reloaded"),
        "the reload line",
    );
    assert!(line.contains("max_connections=1"), "{line}");
    let (status, body) = ops_common::http_get(relay.http, "GET", "/health");
    assert_eq!(status, 503, "the one allowed connection is held: {body}");

    // A value that does not validate changes nothing.
    std::fs::write(&file, "max-connections = 0\n").expect("rewrite");
    relay.signal("HUP");
    relay.stderr_line(|l| l.contains("configuration not reloaded"), "the refusal");
    assert_eq!(relay.stop(), Some(0));
}
