//! The value types of settings (enums with their names) and the parsers of the flags that
//! take a duration, a size or an address: the bottom of the `config` module, imported by the
//! defaults, the flag groups and `Config` alike. An operator writes what the docs write:
//! `256KiB`, `256 KiB`, `1MiB` or plain bytes; `localhost:8080` as well as
//! `127.0.0.1:8080`; each error names what was expected and gives an example.

use std::net::{SocketAddr, ToSocketAddrs};
use std::time::Duration;

use clap::ValueEnum;

/// What to do when a client's outbound budget is exceeded.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum SlowPolicy {
    /// Close the connection with code 4008 "slow consumer"; the client may reconnect and resume.
    Disconnect,
    /// Keep only the latest tick per symbol while the client lags, then report the skipped seqs.
    Conflate,
}

impl SlowPolicy {
    /// Every policy's name, as `?slow=` and `/stats` spell it (error messages list them).
    pub const NAMES: [&'static str; 2] = ["disconnect", "conflate"];
    const ALL: [Self; 2] = [Self::Disconnect, Self::Conflate];

    /// The name used in the query string and in `/stats`.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self as usize]
    }

    /// The policy named `name`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|p| p.as_str() == name)
    }
}

/// How log lines are written (`--log-format`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object per line.
    Json,
}

/// What this process does in a deployment.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum Role {
    /// One box: ingest, sequencer and clients (with `--nats`, it also publishes like a
    /// sequencer).
    All,
    /// Ingest and seq; publishes every sequenced tick once into the JetStream stream.
    Sequencer,
    /// No ingest: follows the stream from NATS and serves clients.
    Edge,
}

impl Role {
    /// The name on the command line and in `/stats`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Sequencer => "sequencer",
            Self::Edge => "edge",
        }
    }
}

/// Whether the relay negotiates permessage-deflate.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum WsDeflate {
    /// Never: offers are ignored and every client gets the shared, uncompressed frames.
    Off,
    /// Accept a client's permessage-deflate offer (up to `--ws-deflate-max-clients`).
    On,
}

/// Parses `500ms`, `5s`, `2m` (humantime syntax).
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("`{text}` is not a duration ({e}); try 5s or 500ms"))
}

/// Parses a size in bytes: a plain number (`262144`), or a number and a unit with or
/// without a space (`256KiB`, `256 KiB`, `1MiB`, `1.5 MiB`). `KiB`/`MiB`/`GiB` are powers of
/// 1024; `KB`/`MB`/`GB` (and `k`/`m`/`g`) are powers of 1000, as `bytesize` reads them.
pub fn parse_size(text: &str) -> Result<usize, String> {
    let trimmed = text.trim();
    let hint = "try 262144, 256KiB or 1MiB";
    // bytesize reads "" as 0 bytes and a leading sign as garbage after the number; both are
    // mistakes here.
    if trimmed.is_empty() || !trimmed.starts_with(|c: char| c.is_ascii_digit()) {
        return Err(format!("`{text}` is not a size; {hint}"));
    }
    let size: bytesize::ByteSize = trimmed
        .parse()
        .map_err(|e| format!("`{text}` is not a size ({e}); {hint}"))?;
    usize::try_from(size.as_u64()).map_err(|_| format!("`{text}` is too large"))
}

/// Parses `HOST:PORT` where HOST is an IP address or a name (`localhost:8080`). A name is
/// resolved now, once, at start-up: the first IPv4 address it has, else the first
/// address, so `localhost` means `127.0.0.1` whatever order the resolver lists it in.
pub fn parse_addr(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    let hint = "HOST:PORT, e.g. 127.0.0.1:8080 or localhost:8080";
    if text.rsplit_once(':').is_none_or(|(host, port)| {
        host.is_empty() || port.is_empty() || port.parse::<u16>().is_err()
    }) {
        return Err(format!("`{text}` is not an address ({hint})"));
    }
    let found: Vec<SocketAddr> = text
        .to_socket_addrs()
        .map_err(|e| format!("`{text}`: the host name does not resolve ({e}); expected {hint}"))?
        .collect();
    found
        .iter()
        .find(|addr| addr.is_ipv4())
        .or_else(|| found.first())
        .copied()
        .ok_or_else(|| format!("`{text}`: the host name resolves to no address"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_take_plain_bytes_and_binary_or_decimal_units() {
        assert_eq!(parse_size("262144"), Ok(262_144));
        assert_eq!(parse_size("256KiB"), Ok(262_144));
        assert_eq!(parse_size("256 KiB"), Ok(262_144));
        assert_eq!(parse_size("1MiB"), Ok(1_048_576));
        assert_eq!(parse_size("1.5 MiB"), Ok(1_572_864));
        assert_eq!(parse_size("64kb"), Ok(64_000));
        assert_eq!(parse_size("0"), Ok(0));
        for bad in ["", " ", "-1", "KiB", "256 potatoes", "lots", "1e3"] {
            let error = parse_size(bad).unwrap_err();
            assert!(error.contains("256KiB"), "{bad:?}: {error}");
        }
    }

    #[test]
    fn addresses_take_ips_and_host_names() {
        assert_eq!(
            parse_addr("127.0.0.1:8080"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8080)))
        );
        assert_eq!(
            parse_addr("[::1]:9").map(|a| a.is_ipv6()),
            Ok(true),
            "an IPv6 literal"
        );
        assert_eq!(
            parse_addr("localhost:8090"),
            Ok(SocketAddr::from(([127, 0, 0, 1], 8090)))
        );
        for bad in [
            "nowhere",
            "localhost",
            ":80",
            "localhost:http",
            "localhost:99999",
        ] {
            let error = parse_addr(bad).unwrap_err();
            assert!(error.contains("HOST:PORT"), "{bad:?}: {error}");
        }
        let error = parse_addr("no-such-host.invalid:80").unwrap_err();
        assert!(error.contains("does not resolve"), "{error}");
    }
}
