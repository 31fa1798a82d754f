//! A minimal field walk over `tickrelay.v1.ServerMessage` (the `protobuf` encoding): the
//! message kind and, for ticks, snapshots and gaps, the few fields the harness checks.

use super::{DecodeError, Message};

/// Decodes one `tickrelay.v1.ServerMessage` by walking its fields.
pub fn scan_protobuf(msg: &[u8]) -> Result<Message<'_>, DecodeError> {
    let mut fields = Fields::new(msg);
    let mut out = Message::Other;
    // A oneof: the last member on the wire wins (proto3 merge rule), so keep walking.
    while let Some((number, value)) = fields.next_field()? {
        out = match (number, value) {
            (SERVER_WELCOME, Value::Len(_)) => Message::Welcome,
            (SERVER_TICK, Value::Len(body)) => {
                let (symbol, seq, ts_ns) = scan_pb_tick(body)?;
                Message::Tick { symbol, seq, ts_ns }
            }
            (SERVER_SNAPSHOT, Value::Len(body)) => {
                let (symbol, seq, _) = scan_pb_tick(body)?;
                Message::Snapshot { symbol, seq }
            }
            (SERVER_ERROR, Value::Len(_)) => Message::Error,
            (SERVER_GAP, Value::Len(body)) => scan_pb_gap(body)?,
            _ => Message::Other,
        };
    }
    Ok(out)
}

/// Symbol, seq and ts_ns of a `tickrelay.v1.Tick`.
fn scan_pb_tick(body: &[u8]) -> Result<(&[u8], u64, u64), DecodeError> {
    let (mut symbol, mut seq, mut ts_ns) = (&b""[..], 0, 0);
    let mut fields = Fields::new(body);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (TICK_SYMBOL, Value::Len(s)) => symbol = s,
            (TICK_TS_NS, Value::Fixed64(v)) => ts_ns = v,
            (TICK_SEQ, Value::Varint(v)) => seq = v,
            _ => {}
        }
    }
    Ok((symbol, seq, ts_ns))
}

fn scan_pb_gap(body: &[u8]) -> Result<Message<'_>, DecodeError> {
    let (mut symbol, mut from, mut to) = (&b""[..], 0, 0);
    let mut fields = Fields::new(body);
    while let Some((number, value)) = fields.next_field()? {
        match (number, value) {
            (1, Value::Len(s)) => symbol = s,
            (2, Value::Varint(v)) => from = v,
            (3, Value::Varint(v)) => to = v,
            _ => {}
        }
    }
    Ok(Message::Gap { symbol, from, to })
}

/// A protobuf field value, by wire type.
#[derive(Clone, Copy)]
pub(super) enum Value<'a> {
    Varint(u64),
    Fixed64(u64),
    Len(&'a [u8]),
    Fixed32,
}

/// Walks the fields of one protobuf message.
pub(super) struct Fields<'a>(&'a [u8]);

impl<'a> Fields<'a> {
    /// The fields of the message `bytes`.
    pub(super) fn new(bytes: &'a [u8]) -> Self {
        Self(bytes)
    }

    /// The next field's number and value; `None` at the end of the message.
    pub(super) fn next_field(&mut self) -> Result<Option<(u64, Value<'a>)>, DecodeError> {
        if self.0.is_empty() {
            return Ok(None);
        }
        let key = self.varint()?;
        let value = match key & 7 {
            0 => Value::Varint(self.varint()?),
            1 => Value::Fixed64(u64::from_le_bytes(
                self.take(8)?.try_into().expect("take(8) returns 8 bytes"),
            )),
            2 => {
                let len = usize::try_from(self.varint()?).map_err(|_| DecodeError::BadProtobuf)?;
                Value::Len(self.take(len)?)
            }
            5 => {
                self.take(4)?;
                Value::Fixed32
            }
            _ => return Err(DecodeError::BadProtobuf),
        };
        Ok(Some((key >> 3, value)))
    }

    fn varint(&mut self) -> Result<u64, DecodeError> {
        let mut value = 0u64;
        for (i, &b) in self.0.iter().enumerate().take(10) {
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                self.0 = &self.0[i + 1..];
                return Ok(value);
            }
        }
        Err(DecodeError::BadProtobuf)
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::BadProtobuf);
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
}

// Field numbers from proto/tickrelay.proto.
const SERVER_WELCOME: u64 = 1;
const SERVER_TICK: u64 = 2;
const SERVER_SNAPSHOT: u64 = 3;
const SERVER_ERROR: u64 = 5;
const SERVER_GAP: u64 = 7;
const TICK_SYMBOL: u64 = 1;
const TICK_TS_NS: u64 = 10;
const TICK_SEQ: u64 = 11;

#[cfg(test)]
mod tests {
    use super::*;
    use crate::proto;
    use prost::Message as _;

    fn pb_tick(symbol: &str, seq: u64, ts_ns: u64) -> proto::Tick {
        proto::Tick {
            symbol: symbol.into(),
            kind: proto::TickKind::Trade.into(),
            price: Some(43250.5),
            size: Some(0.25),
            venue: Some("X".into()),
            ts_ns,
            seq,
            recv_ns: ts_ns + 1000,
            ..Default::default()
        }
    }

    fn pb(msg: proto::server_message::Msg) -> Vec<u8> {
        proto::ServerMessage { msg: Some(msg) }.encode_to_vec()
    }

    #[test]
    fn protobuf_messages_from_prost() {
        use proto::server_message::Msg;
        let tick = pb(Msg::Tick(pb_tick("SYM007", 300, 1_764_000_000_123_456_789)));
        assert_eq!(
            scan_protobuf(&tick),
            Ok(Message::Tick {
                symbol: b"SYM007",
                seq: 300,
                ts_ns: 1_764_000_000_123_456_789
            })
        );
        let snap = pb(Msg::Snapshot(pb_tick("SYM001", 12, 1)));
        assert_eq!(
            scan_protobuf(&snap),
            Ok(Message::Snapshot {
                symbol: b"SYM001",
                seq: 12
            })
        );
        let gap = pb(Msg::Gap(proto::Gap {
            symbol: "SYM003".into(),
            from: 4,
            to: 8,
            ..proto::Gap::default()
        }));
        assert_eq!(
            scan_protobuf(&gap),
            Ok(Message::Gap {
                symbol: b"SYM003",
                from: 4,
                to: 8
            })
        );
        let welcome = pb(Msg::Welcome(proto::Welcome {
            session: 1,
            shard: 0,
            encoding: "protobuf".into(),
            symbols: vec!["SYM001".into()],
            server: "tickrelay".into(),
            ..proto::Welcome::default()
        }));
        assert_eq!(scan_protobuf(&welcome), Ok(Message::Welcome));
        let hb = pb(Msg::Heartbeat(proto::Heartbeat { ts_ns: 1 }));
        assert_eq!(scan_protobuf(&hb), Ok(Message::Other));
        assert_eq!(
            scan_protobuf(&tick[..tick.len() - 1]),
            Err(DecodeError::BadProtobuf)
        );
    }
}
