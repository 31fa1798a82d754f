//! Opening a session: TCP connect (from a chosen source address), the HTTP upgrade with a
//! random key, and the check of the server's `Sec-WebSocket-Accept`.

use std::net::{IpAddr, SocketAddr};

use sha1::{Digest, Sha1};
use socket2::{Domain, Protocol as IpProtocol, Socket, Type};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};

use super::frame::random_u128;
use super::{ClientPlan, Feed, Protocol, Target, nats};
use crate::symbols::symbol_name;

/// Why a client could not open its session.
#[derive(Debug, thiserror::Error)]
pub(super) enum HandshakeError {
    #[error("connect: {0}")]
    Io(#[from] std::io::Error),
    #[error("connect + upgrade timed out")]
    Timeout,
    #[error("relay closed during the upgrade")]
    Eof,
    #[error("upgrade answered `{0}`, not 101")]
    Status(String),
    #[error("upgrade response has a wrong or missing Sec-WebSocket-Accept")]
    Accept,
    #[error("upgrade response headers exceed {MAX_RESPONSE_HEAD} bytes")]
    TooLong,
}

/// The `Sec-WebSocket-Accept` a server must answer to `key` (RFC 6455 §4.2.2).
pub fn accept_key(key: &str) -> String {
    let mut sha = Sha1::new();
    sha.update(key.as_bytes());
    sha.update(WS_GUID.as_bytes());
    base64(&sha.finalize())
}

/// The upgrade request for `plan`: the relay's `/ws` with the symbols, the encoding and the
/// batching asked for in the query; nats-server's `/` (what to receive is said after, in SUBs).
fn upgrade_request(target: &Target, plan: &ClientPlan, key: &str) -> String {
    let path = match target.protocol {
        Protocol::Relay { batch } => {
            let names = plan
                .symbols
                .iter()
                .map(|&s| symbol_name(s, target.symbol_count));
            let (param, names): (&str, Vec<String>) = match &plan.feed {
                Feed::Ticks => ("symbols", names.collect()),
                Feed::Tier(tier) => ("symbols", names.map(|n| format!("{n}@{tier}")).collect()),
                Feed::Book { depth: Some(d) } => {
                    ("channels", names.map(|n| format!("book:{n}:{d}")).collect())
                }
                Feed::Book { depth: None } => {
                    ("channels", names.map(|n| format!("book:{n}")).collect())
                }
            };
            format!(
                "/ws?{param}={}&encoding={}{}",
                names.join(","),
                plan.encoding.name(),
                if batch { "&batch=on" } else { "" }
            )
        }
        Protocol::Nats => "/".to_owned(),
    };
    format!(
        "GET {path} HTTP/1.1\r\nHost: {}\r\nUpgrade: websocket\r\n\
         Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n",
        target.addr_of(plan.id),
    )
}

/// Checks a complete response head: status 101 and the right accept key.
fn check_upgrade_response(head: &str, key: &str) -> Result<(), HandshakeError> {
    let status = head.lines().next().unwrap_or_default();
    if status.split_ascii_whitespace().nth(1) != Some("101") {
        return Err(HandshakeError::Status(status.to_owned()));
    }
    let expected = accept_key(key);
    let accepted = head.lines().skip(1).any(|line| {
        line.split_once(':').is_some_and(|(name, value)| {
            name.trim().eq_ignore_ascii_case("sec-websocket-accept") && value.trim() == expected
        })
    });
    if accepted {
        Ok(())
    } else {
        Err(HandshakeError::Accept)
    }
}

/// TCP connect (from `plan.source` if set) and the upgrade; returns bytes read past the head.
pub(super) async fn open(
    target: &Target,
    plan: &ClientPlan,
) -> Result<(TcpStream, Vec<u8>), HandshakeError> {
    let addr = target.addr_of(plan.id);
    let socket = Socket::new(
        Domain::for_address(addr),
        Type::STREAM,
        Some(IpProtocol::TCP),
    )?;
    socket.set_nonblocking(true)?;
    if let Some(bytes) = plan.recv_buffer {
        socket.set_recv_buffer_size(bytes)?;
    }
    if let (Some(ip), IpAddr::V4(_)) = (plan.source, addr.ip()) {
        // Reuse ports left in TIME_WAIT by an earlier run from this address.
        socket.set_reuse_address(true)?;
        bind_source(&socket, ip)?;
    }
    let socket = TcpSocket::from_std_stream(socket.into());
    let mut stream = socket.connect(addr).await?;
    stream.set_nodelay(true)?;

    let key = base64(&random_u128().to_le_bytes());
    stream
        .write_all(upgrade_request(target, plan, &key).as_bytes())
        .await?;
    let mut buf = Vec::with_capacity(1024);
    let head_end = loop {
        if stream.read_buf(&mut buf).await? == 0 {
            return Err(HandshakeError::Eof);
        }
        if let Some(i) = memchr::memmem::find(&buf, b"\r\n\r\n") {
            break i + 4;
        }
        if buf.len() > MAX_RESPONSE_HEAD {
            return Err(HandshakeError::TooLong);
        }
    };
    check_upgrade_response(&String::from_utf8_lossy(&buf[..head_end]), &key)?;
    if target.protocol == Protocol::Nats {
        stream.write_all(&nats::hello(target, plan)).await?;
    }
    Ok((stream, buf.split_off(head_end)))
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = match chunk {
            [a, b, c] => u32::from_be_bytes([0, *a, *b, *c]),
            [a, b] => u32::from_be_bytes([0, *a, *b, 0]),
            [a] => u32::from_be_bytes([0, *a, 0, 0]),
            _ => unreachable!("chunks(3) yields 1..=3 bytes"),
        };
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(ALPHABET[(n >> (18 - 6 * i) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// RFC 6455 §1.3.
const WS_GUID: &str = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11";
const MAX_RESPONSE_HEAD: usize = 16 * 1024;

/// Binds `socket` to `ip` and a port of our choosing. Binding to port 0 makes the kernel
/// search the whole ephemeral range for a free port on every connect; with tens of
/// thousands of sockets (and a previous run's TIME_WAIT) that search took the harness's
/// worker seconds per batch of connects (perf: `inet_bhash2_conflict` under `bind`), long
/// enough for the relay's handshake timeout to close sockets the harness had not yet
/// written to. A port named outright is one hash lookup; a taken one is skipped.
fn bind_source(socket: &Socket, ip: std::net::Ipv4Addr) -> std::io::Result<()> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static NEXT: AtomicU32 = AtomicU32::new(0);
    const LOW: u32 = 10_000;
    const PORTS: u32 = 65_000 - LOW;
    for _ in 0..64 {
        let port = LOW + NEXT.fetch_add(1, Ordering::Relaxed) % PORTS;
        let addr = SocketAddr::new(IpAddr::V4(ip), port as u16);
        match socket.bind(&addr.into()) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    socket.bind(&SocketAddr::new(IpAddr::V4(ip), 0).into())
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::Encoding;

    #[test]
    fn accept_key_matches_rfc_example() {
        // RFC 6455 §1.3.
        assert_eq!(
            accept_key("dGhlIHNhbXBsZSBub25jZQ=="),
            "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="
        );
        assert_eq!(base64(b"the sample nonce"), "dGhlIHNhbXBsZSBub25jZQ==");
        assert_eq!(base64(b"ab"), "YWI=");
        assert_eq!(base64(b""), "");
    }

    #[test]
    fn upgrade_response_is_checked() {
        let key = "dGhlIHNhbXBsZSBub25jZQ==";
        let ok = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
                  sec-websocket-accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n";
        assert!(check_upgrade_response(ok, key).is_ok());
        let wrong = ok.replace("s3pP", "AAAA");
        assert!(matches!(
            check_upgrade_response(&wrong, key),
            Err(HandshakeError::Accept)
        ));
        assert!(matches!(
            check_upgrade_response("HTTP/1.1 400 Bad Request\r\n\r\n", key),
            Err(HandshakeError::Status(_))
        ));
    }

    #[test]
    fn upgrade_request_names_symbols_and_encoding() {
        let target = Target {
            addr: "127.0.0.1:8080".parse().unwrap(),
            more: vec!["127.0.0.1:8081".parse().unwrap()],
            symbol_count: 100,
            handshake_timeout: Duration::from_secs(1),
            protocol: Protocol::Relay { batch: false },
        };
        let plan = ClientPlan {
            id: 0,
            symbols: vec![1, 42],
            encoding: Encoding::Gzip,
            source: None,
            slow: false,
            recv_buffer: None,
            feed: Feed::Ticks,
        };
        let req = upgrade_request(&target, &plan, "k");
        assert!(req.starts_with("GET /ws?symbols=SYM001,SYM042&encoding=gzip HTTP/1.1\r\n"));
        assert!(req.contains("Sec-WebSocket-Version: 13\r\n"));
        assert!(req.ends_with("\r\n\r\n"));
        assert!(
            req.contains("Host: 127.0.0.1:8080\r\n"),
            "client 0: the first relay"
        );
        let second = ClientPlan { id: 1, ..plan };
        let req = upgrade_request(&target, &second, "k");
        assert!(
            req.contains("Host: 127.0.0.1:8081\r\n"),
            "client 1: the next relay"
        );
        let batched = Target {
            protocol: Protocol::Relay { batch: true },
            ..target.clone()
        };
        let req = upgrade_request(&batched, &second, "k");
        assert!(
            req.starts_with("GET /ws?symbols=SYM001,SYM042&encoding=gzip&batch=on HTTP/1.1\r\n")
        );
        let nats = Target {
            protocol: Protocol::Nats,
            ..target
        };
        assert!(upgrade_request(&nats, &second, "k").starts_with("GET / HTTP/1.1\r\n"));
    }

    #[test]
    fn tier_and_book_clients_name_their_feed() {
        let target = Target {
            addr: "127.0.0.1:8080".parse().unwrap(),
            more: Vec::new(),
            symbol_count: 100,
            handshake_timeout: Duration::from_secs(1),
            protocol: Protocol::Relay { batch: false },
        };
        let plan = |feed| ClientPlan {
            id: 0,
            symbols: vec![1, 42],
            encoding: Encoding::Json,
            source: None,
            slow: false,
            recv_buffer: None,
            feed,
        };
        let req = |feed| upgrade_request(&target, &plan(feed), "k");
        assert!(
            req(Feed::Tier("1s".into()))
                .starts_with("GET /ws?symbols=SYM001@1s,SYM042@1s&encoding=json HTTP/1.1\r\n")
        );
        assert!(req(Feed::Book { depth: Some(10) }).starts_with(
            "GET /ws?channels=book:SYM001:10,book:SYM042:10&encoding=json HTTP/1.1\r\n"
        ));
        assert!(
            req(Feed::Book { depth: None })
                .starts_with("GET /ws?channels=book:SYM001,book:SYM042&encoding=json HTTP/1.1\r\n")
        );
    }
}
