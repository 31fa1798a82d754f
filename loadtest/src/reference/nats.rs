//! nats-server as a reference server: started on free loopback ports with a configuration
//! that sets only where it listens (the NATS port the publisher PUBs to, a `websocket { }`
//! listener without TLS for the clients, and the monitoring port whose `/healthz` says it is
//! up and whose `/varz` is its end-of-run stats), so every limit is its default.

use std::net::SocketAddr;
use std::path::Path;

use anyhow::{Context, Result};

use crate::relay::{Launch, free_addr};

/// How to start `binary` (nats-server) with `extra` flags, its configuration in a scratch
/// directory that goes when the process does.
pub fn launch(binary: &Path, extra: &[String]) -> Result<Launch> {
    let (ingest, listen, monitor) = (free_addr()?, free_addr()?, free_addr()?);
    let scratch = tempfile::Builder::new()
        .prefix("loadtest-nats-")
        .tempdir()
        .context("a directory for nats-server's configuration")?;
    let conf = scratch.path().join("nats-server.conf");
    std::fs::write(&conf, config(ingest, listen, monitor))
        .with_context(|| format!("writing {}", conf.display()))?;
    let mut args = vec!["-c".to_owned(), conf.display().to_string()];
    args.extend(extra.iter().cloned());
    Ok(Launch {
        binary: binary.to_owned(),
        args,
        listen,
        ingest_json: ingest,
        // Nothing listens there: the NATS port is the only ingest.
        ingest_protobuf: ingest,
        health: (monitor, "/healthz".into()),
        stats: (monitor, "/varz".into()),
        scratch: Some(scratch),
    })
}

/// The configuration: addresses only.
fn config(ingest: SocketAddr, listen: SocketAddr, monitor: SocketAddr) -> String {
    format!(
        "# Written by loadtest: addresses only, every limit at its default.\n\
         listen: \"{ingest}\"\n\
         http: \"{monitor}\"\n\
         websocket {{\n  listen: \"{listen}\"\n  no_tls: true\n}}\n"
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_configuration_names_the_three_addresses_and_no_limit() {
        let a = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        let conf = config(a(4222), a(8080), a(8222));
        assert!(conf.contains("listen: \"127.0.0.1:4222\"\n"), "{conf}");
        assert!(conf.contains("http: \"127.0.0.1:8222\"\n"), "{conf}");
        assert!(
            conf.contains("websocket {\n  listen: \"127.0.0.1:8080\"\n  no_tls: true\n}"),
            "{conf}"
        );
        for limit in ["max_", "write_deadline", "ping_"] {
            assert!(!conf.contains(limit), "{limit} in {conf}");
        }
    }
}
