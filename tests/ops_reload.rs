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
    std::fs::write(&file, "log = \"info\"\nmax-connections = 10\n").expect("rewrite");
    relay.signal("HUP");
    let warned = relay.stderr_line(
        |l| l.contains("apply only after a restart"),
        "the restart warning",
    );
    assert!(warned.contains("max-connections"), "{warned}");
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
