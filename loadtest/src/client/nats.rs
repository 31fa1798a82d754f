//! A client of nats-server over WebSocket: what it sends once upgraded (CONNECT, a SUB per
//! symbol, a PING), and how the operations of its stream reach the tally (a MSG is a tick in
//! the JSON a relay client receives; the first PONG is the welcome: every SUB before it is in
//! place; a PING is answered).

use super::frame::{OP_BINARY, encode_client_frame, random_mask};
use super::tally::Tally;
use super::thread_state::{Figures, ThreadState};
use super::{ClientPlan, Target};
use crate::decode::{DecodeError, Message, NatsOp, NatsStream};
use crate::symbols::symbol_name;

/// The subject the publisher sends symbol `name`'s ticks on.
pub fn subject(name: &str) -> String {
    format!("{SUBJECT_PREFIX}{name}")
}

/// The first frame of a session: CONNECT (no echo, no verbose `+OK`s), a SUB per symbol, and a
/// PING, masked as every client frame is.
pub(super) fn hello(target: &Target, plan: &ClientPlan) -> Vec<u8> {
    let mut ops = String::from(CONNECT);
    for (sid, &s) in plan.symbols.iter().enumerate() {
        let name = symbol_name(s, target.symbol_count);
        ops.push_str(&format!("SUB {} {}\r\n", subject(&name), sid + 1));
    }
    ops.push_str("PING\r\n");
    let mut frame = Vec::with_capacity(ops.len() + 14);
    encode_client_frame(OP_BINARY, ops.as_bytes(), random_mask(), &mut frame);
    frame
}

/// One whole WebSocket message from nats-server: its operations counted, PINGs answered into
/// `replies`.
pub(super) fn on_payload(
    stream: &mut NatsStream,
    payload: &[u8],
    tally: &mut Tally,
    now: u64,
    fig: &mut Figures,
    threads: &ThreadState,
    replies: &mut Vec<u8>,
) {
    stream.feed(payload, |op| match op {
        Ok(NatsOp::Msg { payload, .. }) => tally.json(payload, now, fig, threads),
        Ok(NatsOp::Pong) => tally.apply(Ok(Message::Welcome), now, fig, threads),
        Ok(NatsOp::Ping) => {
            encode_client_frame(OP_BINARY, b"PONG\r\n", random_mask(), replies);
            tally.apply(Ok(Message::Other), now, fig, threads);
        }
        Ok(NatsOp::Info | NatsOp::Ok) => tally.apply(Ok(Message::Other), now, fig, threads),
        Ok(NatsOp::Err(_)) => tally.apply(Ok(Message::Error), now, fig, threads),
        Err(_) => tally.apply(Err(DecodeError::NotNats), now, fig, threads),
    });
}

/// Subjects are `ticks.SYM001`: one per symbol, a SUB each.
const SUBJECT_PREFIX: &str = "ticks.";
/// `protocol: 1` is what every current client sends; headers off, so every message is a MSG.
const CONNECT: &str = "CONNECT {\"verbose\":false,\"pedantic\":false,\"lang\":\"loadtest\",\
                       \"version\":\"0.1.0\",\"protocol\":1,\"echo\":false,\"headers\":false,\
                       \"no_responders\":false}\r\n";

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::client::{Encoding, Feed, Protocol};

    #[test]
    fn hello_connects_subscribes_each_symbol_and_pings() {
        let target = Target {
            addr: "127.0.0.1:1".parse().unwrap(),
            more: Vec::new(),
            symbol_count: 100,
            handshake_timeout: Duration::from_secs(1),
            protocol: Protocol::Nats,
        };
        let plan = ClientPlan {
            id: 0,
            symbols: vec![3, 42],
            encoding: Encoding::Json,
            source: None,
            slow: false,
            recv_buffer: None,
            feed: Feed::Ticks,
        };
        let frame = hello(&target, &plan);
        assert_eq!(frame[0], 0x82, "one final binary frame");
        assert_eq!(
            frame[1],
            0x80 | 126,
            "masked, 16-bit length (the CONNECT alone is 126+)"
        );
        let mask: [u8; 4] = frame[4..8].try_into().unwrap();
        let text: Vec<u8> = frame[8..]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        let text = String::from_utf8(text).unwrap();
        let lines: Vec<&str> = text.split("\r\n").collect();
        assert!(lines[0].starts_with("CONNECT {"), "{text}");
        let connect: serde_json::Value =
            serde_json::from_str(lines[0].trim_start_matches("CONNECT ")).unwrap();
        assert_eq!(connect["verbose"], false);
        assert_eq!(
            &lines[1..],
            ["SUB ticks.SYM003 1", "SUB ticks.SYM042 2", "PING", ""]
        );
    }
}
