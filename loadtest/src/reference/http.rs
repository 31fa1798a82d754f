//! The HTTP side the reference servers share: what a request asks for, the plain answers, the
//! welcome, and the server's (unmasked) text frame.

use std::io;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::client::accept_key;

/// What a request head asks for.
#[derive(Debug, PartialEq, Eq)]
pub(super) enum Request {
    /// `GET /health` or `GET /ready`.
    Health,
    /// `GET /ws?symbols=..` with a WebSocket key.
    Upgrade { key: String, symbols: Vec<String> },
    /// Anything else we serve no page for.
    NotFound,
    /// A `/ws` request we refuse, with why.
    Refused(String),
}

/// Reads a request head (up to the blank line); `None` if the peer closed first.
pub(super) async fn read_head(stream: &mut TcpStream) -> io::Result<Option<String>> {
    let mut head = Vec::with_capacity(512);
    loop {
        if stream.read_buf(&mut head).await? == 0 {
            return Ok(None);
        }
        if memchr::memmem::find(&head, b"\r\n\r\n").is_some() {
            return Ok(Some(String::from_utf8_lossy(&head).into_owned()));
        }
        if head.len() > MAX_HEAD {
            return Err(io::Error::other("request head too long"));
        }
    }
}

/// Classifies a request head.
pub(super) fn parse_request(head: &str) -> Request {
    let target = head
        .lines()
        .next()
        .and_then(|l| l.strip_prefix("GET "))
        .and_then(|l| l.split_ascii_whitespace().next())
        .unwrap_or_default();
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    match path {
        "/health" | "/ready" => Request::Health,
        "/ws" => match (header(head, "sec-websocket-key"), query_symbols(query)) {
            (Some(key), Ok(symbols)) => Request::Upgrade { key, symbols },
            (None, _) => Request::Refused("not a WebSocket upgrade".into()),
            (_, Err(why)) => Request::Refused(why),
        },
        _ => Request::NotFound,
    }
}

/// The symbols of `symbols=A,B`; refuses any encoding but JSON.
pub(super) fn query_symbols(query: &str) -> Result<Vec<String>, String> {
    let mut symbols = Vec::new();
    for (k, v) in query.split('&').filter_map(|kv| kv.split_once('=')) {
        match (k, v) {
            ("symbols", v) => {
                symbols.extend(v.split(',').filter(|s| !s.is_empty()).map(String::from))
            }
            ("encoding", "json") => {}
            ("encoding", other) => return Err(format!("encoding `{other}`: only json is served")),
            _ => {}
        }
    }
    if symbols.is_empty() {
        return Err("no symbols".into());
    }
    Ok(symbols)
}

/// Writes a small plain-text answer and leaves the connection to be closed.
pub(super) async fn answer(stream: &mut TcpStream, status: &str, body: &str) -> io::Result<()> {
    let text = format!(
        "HTTP/1.1 {status}\r\ncontent-type: text/plain\r\ncontent-length: {}\r\n\
         connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.write_all(text.as_bytes()).await
}

/// The 101 answer to an upgrade with `key`.
pub(super) fn switching_protocols(key: &str) -> String {
    format!(
        "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\
         Sec-WebSocket-Accept: {}\r\n\r\n",
        accept_key(key)
    )
}

/// The first message of every session, in the relay's shape.
pub(super) fn welcome(session: u64, shard: usize, symbols: &[String], server: &str) -> String {
    let names = serde_json::to_string(symbols).expect("a list of strings serializes");
    format!(
        r#"{{"type":"welcome","session":{session},"shard":{shard},"encoding":"json","symbols":{names},"server":"{server}"}}"#
    )
}

/// Appends one unmasked, final text frame (RFC 6455 §5.1: server frames are never masked).
pub(super) fn text_frame(payload: &[u8], out: &mut Vec<u8>) {
    out.push(0x81);
    match payload.len() {
        n @ 0..=125 => out.push(n as u8),
        n @ 126..=0xffff => {
            out.push(126);
            out.extend_from_slice(&(n as u16).to_be_bytes());
        }
        n => {
            out.push(127);
            out.extend_from_slice(&(n as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(payload);
}

fn header(head: &str, name: &str) -> Option<String> {
    head.lines().skip(1).find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.trim()
            .eq_ignore_ascii_case(name)
            .then(|| v.trim().to_owned())
    })
}

/// Longest request head read (the relay's limit too).
const MAX_HEAD: usize = 16 * 1024;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::client::parse_frame_header;

    #[test]
    fn requests_are_classified() {
        let ws = "GET /ws?symbols=SYM001,SYM002&encoding=json HTTP/1.1\r\nHost: x\r\n\
                  Sec-WebSocket-Key: abc\r\n\r\n";
        assert_eq!(
            parse_request(ws),
            Request::Upgrade {
                key: "abc".into(),
                symbols: vec!["SYM001".into(), "SYM002".into()]
            }
        );
        assert_eq!(
            parse_request("GET /ready HTTP/1.1\r\n\r\n"),
            Request::Health
        );
        assert_eq!(
            parse_request("GET /stats HTTP/1.1\r\n\r\n"),
            Request::NotFound
        );
        let gzip = ws.replace("encoding=json", "encoding=gzip");
        assert!(matches!(parse_request(&gzip), Request::Refused(_)));
    }

    #[test]
    fn text_frames_parse_back() {
        for len in [0, 125, 126, 70_000] {
            let mut out = Vec::new();
            text_frame(&vec![b'x'; len], &mut out);
            let h = parse_frame_header(&out).unwrap().unwrap();
            assert_eq!((h.opcode, h.fin, h.frame_len()), (1, true, out.len()));
        }
    }

    #[test]
    fn welcome_is_json() {
        let w = welcome(3, 1, &["SYM001".into()], "loadtest-floor");
        let v: serde_json::Value = serde_json::from_str(&w).unwrap();
        assert_eq!(v["type"], "welcome");
        assert_eq!(v["symbols"][0], "SYM001");
    }
}
