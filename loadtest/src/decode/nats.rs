//! The NATS client protocol as nats-server writes it to a subscriber: `MSG`, `PING`, `PONG`,
//! `INFO`, `+OK` and `-ERR` operations in one byte stream.
//!
//! Over WebSocket nats-server puts everything pending for a client into one binary frame when
//! it flushes (several `MSG`s per frame under load), and nothing promises an operation ends
//! where a frame does (a browser's connection gets 4 KiB frames that cut through them). So the
//! frames' payloads are one stream: [`NatsStream`] keeps the unparsed tail across frames and
//! hands out each complete operation, borrowed from the payload when nothing was pending.

use memchr::memmem;

/// One operation from the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum NatsOp<'a> {
    /// `MSG <subject> <sid> [reply-to] <#bytes>`: a message on a subscription.
    Msg {
        subject: &'a [u8],
        payload: &'a [u8],
    },
    /// The server checks we are alive: answer `PONG`.
    Ping,
    /// The answer to our `PING` (the first one: every `SUB` before it is in place).
    Pong,
    /// Server information (the first operation of every connection).
    Info,
    /// `+OK` (only in verbose mode).
    Ok,
    /// `-ERR '<reason>'`.
    Err(&'a [u8]),
}

/// A line the parser did not understand (it is skipped and the stream goes on).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not a NATS operation: `{0}`")]
pub struct BadOp(pub String);

/// One connection's unparsed NATS bytes.
#[derive(Debug, Default)]
pub struct NatsStream {
    pending: Vec<u8>,
}

impl NatsStream {
    /// Parses every complete operation of the pending bytes followed by `data`, calling `on`
    /// with each one (or the error of a line it skipped), and keeps the incomplete tail.
    pub fn feed(&mut self, data: &[u8], mut on: impl FnMut(Result<NatsOp<'_>, BadOp>)) {
        let mut pending = std::mem::take(&mut self.pending);
        let from_pending = !pending.is_empty();
        if from_pending {
            pending.extend_from_slice(data);
        }
        let src: &[u8] = if from_pending { &pending } else { data };
        let mut off = 0;
        while let Some((op, len)) = next_op(&src[off..]) {
            on(op);
            off += len;
        }
        if from_pending {
            pending.drain(..off);
        } else {
            pending.extend_from_slice(&data[off..]);
        }
        self.pending = pending;
    }
}

/// The first complete operation of `src` and the bytes it takes; `None` until it is whole.
fn next_op(src: &[u8]) -> Option<(Result<NatsOp<'_>, BadOp>, usize)> {
    let eol = memmem::find(src, b"\r\n")?;
    let line = &src[..eol];
    let after = eol + 2;
    let (verb, rest) = match memchr::memchr(b' ', line) {
        Some(i) => (&line[..i], &line[i + 1..]),
        None => (line, &b""[..]),
    };
    let op = match verb {
        b"MSG" => {
            let Some((subject, size)) = msg_args(rest) else {
                return Some((Err(bad(line)), after));
            };
            let end = after + size;
            if src.len() < end + 2 {
                return None;
            }
            if &src[end..end + 2] != b"\r\n" {
                return Some((Err(bad(line)), after));
            }
            return Some((
                Ok(NatsOp::Msg {
                    subject,
                    payload: &src[after..end],
                }),
                end + 2,
            ));
        }
        b"PING" => Ok(NatsOp::Ping),
        b"PONG" => Ok(NatsOp::Pong),
        b"INFO" => Ok(NatsOp::Info),
        b"+OK" => Ok(NatsOp::Ok),
        b"-ERR" => Ok(NatsOp::Err(rest)),
        _ => Err(bad(line)),
    };
    Some((op, after))
}

/// `<subject> <sid> [reply-to] <#bytes>` → the subject and the payload size.
fn msg_args(args: &[u8]) -> Option<(&[u8], usize)> {
    let mut parts = args.split(|&b| b == b' ').filter(|p| !p.is_empty());
    let subject = parts.next()?;
    let fields: Vec<&[u8]> = parts.collect();
    let size = match fields.as_slice() {
        [_, size] | [_, _, size] => *size,
        _ => return None,
    };
    let size = std::str::from_utf8(size).ok()?.parse().ok()?;
    Some((subject, size))
}

fn bad(line: &[u8]) -> BadOp {
    let shown = &line[..line.len().min(80)];
    BadOp(String::from_utf8_lossy(shown).into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Feeds `stream` cut into pieces of `chunk` bytes; each operation as text.
    fn ops(stream: &[u8], chunk: usize) -> Vec<String> {
        let mut parser = NatsStream::default();
        let mut seen = Vec::new();
        for part in stream.chunks(chunk) {
            parser.feed(part, |op| {
                seen.push(match op {
                    Ok(NatsOp::Msg { subject, payload }) => format!(
                        "msg {} {}",
                        String::from_utf8_lossy(subject),
                        String::from_utf8_lossy(payload)
                    ),
                    Ok(NatsOp::Err(why)) => format!("err {}", String::from_utf8_lossy(why)),
                    Ok(other) => format!("{other:?}"),
                    Err(e) => e.to_string(),
                });
            });
        }
        seen
    }

    #[test]
    fn operations_split_anywhere_come_out_whole() {
        let stream = b"INFO {\"server_id\":\"X\"}\r\nPONG\r\n\
                       MSG ticks.SYM001 1 22\r\n{\"seq\":1,\"x\":\"a\\r\\nb\"}\r\n\
                       MSG ticks.SYM002 2 reply.to 2\r\n{}\r\n\
                       PING\r\nMSG ticks.SYM001 1 0\r\n\r\n-ERR 'Slow Consumer'\r\n";
        let expected = [
            "Info",
            "Pong",
            r#"msg ticks.SYM001 {"seq":1,"x":"a\r\nb"}"#,
            "msg ticks.SYM002 {}",
            "Ping",
            "msg ticks.SYM001 ",
            "err 'Slow Consumer'",
        ];
        for chunk in [1, 2, 3, 5, 8, 13, 64, stream.len()] {
            assert_eq!(ops(stream, chunk), expected, "pieces of {chunk}");
        }
    }

    #[test]
    fn a_payload_holding_crlf_is_read_by_its_size_not_its_lines() {
        let stream = b"MSG a 1 6\r\nab\r\ncd\r\nPONG\r\n";
        assert_eq!(ops(stream, 3), ["msg a ab\r\ncd", "Pong"]);
    }

    #[test]
    fn a_bad_line_is_reported_and_skipped() {
        let stream = b"HELLO there\r\nMSG a 1 x\r\nMSG a 1 3\r\nabcd\r\nPONG\r\n";
        let seen = ops(stream, stream.len());
        assert_eq!(seen[0], "not a NATS operation: `HELLO there`");
        assert_eq!(seen[1], "not a NATS operation: `MSG a 1 x`");
        assert_eq!(seen[2], "not a NATS operation: `MSG a 1 3`");
        assert_eq!(seen.last().unwrap(), "Pong", "{seen:?}");
    }
}
