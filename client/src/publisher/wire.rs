//! The lines on the wire: the hello the task writes, the answers it reads, and what each
//! answer does to the shared state.

use super::config::PublisherError;
use super::state::Shared;

/// The hello line (with its `\n`) for a validated id.
pub(super) fn hello_line(id: &str, pseq: u64) -> String {
    format!("{{\"type\":\"hello\",\"publisher\":\"{id}\",\"pseq\":{pseq}}}\n")
}

/// The pseq of line `line` (counted from 1, the hello) on a connection whose hello carried
/// `hello_pseq`; `None` for the hello itself and line 0.
fn line_pseq(hello_pseq: u64, line: u64) -> Option<u64> {
    if line < 2 {
        return None;
    }
    hello_pseq.checked_add(line - 2)
}

/// One answer line from the relay.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Answer {
    /// Every line up to `pseq` is settled; `duplicates` is the connection's running count
    /// (`None` when the relay left it out).
    Ack { pseq: u64, duplicates: Option<u64> },
    /// Line `line` of the connection was refused.
    Error {
        line: u64,
        code: String,
        message: String,
    },
    /// An answer of a type this client does not know: ignored.
    Other,
    /// Not a JSON object with a string `type`, or an ack/error missing its fields.
    Garbled,
}

pub(super) fn parse_answer(line: &[u8]) -> Answer {
    let Ok(serde_json::Value::Object(map)) = serde_json::from_slice::<serde_json::Value>(line)
    else {
        return Answer::Garbled;
    };
    let field_u64 = |name: &str| map.get(name).and_then(serde_json::Value::as_u64);
    let field_str = |name: &str| map.get(name).and_then(serde_json::Value::as_str);
    match field_str("type") {
        Some("ack") => match (field_u64("pseq"), map.get("duplicates")) {
            (Some(pseq), None) => Answer::Ack {
                pseq,
                duplicates: None,
            },
            (Some(pseq), Some(d)) => match d.as_u64() {
                Some(d) => Answer::Ack {
                    pseq,
                    duplicates: Some(d),
                },
                None => Answer::Garbled,
            },
            (None, _) => Answer::Garbled,
        },
        Some("error") => match (field_u64("line"), field_str("code")) {
            (Some(line), Some(code)) => Answer::Error {
                line,
                code: code.to_owned(),
                message: field_str("message").unwrap_or_default().to_owned(),
            },
            _ => Answer::Garbled,
        },
        Some(_) => Answer::Other,
        None => Answer::Garbled,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Applied {
    Done,
    Fatal,
}

/// Applies one answer of a connection whose hello carried `hello_pseq` and on which the
/// lines up to `written` were sent.
pub(super) fn apply(shared: &Shared, answer: Answer, hello_pseq: u64, written: u64) -> Applied {
    let mut state = shared.lock();
    match answer {
        Answer::Ack { pseq, duplicates } => {
            let pseq = pseq.min(written);
            if let Some(duplicates) = duplicates {
                state.duplicates_now = state.duplicates_now.max(duplicates);
            }
            if pseq >= shared.first_pseq && pseq > state.acked {
                state.acked = pseq;
                state.unacked.trim(pseq);
                drop(state);
                shared.settled.notify_waiters();
            }
        }
        Answer::Error {
            line,
            code,
            message,
        } => match line_pseq(hello_pseq, line) {
            Some(pseq) if pseq <= written => {
                state.errors.entry(pseq).or_insert(code);
            }
            Some(_) => state.garbled += 1,
            None if line == 1 => {
                state.fatal = Some(PublisherError::HelloRefused { code, message });
                drop(state);
                shared.settled.notify_waiters();
                return Applied::Fatal;
            }
            None => state.garbled += 1,
        },
        Answer::Other => {}
        Answer::Garbled => state.garbled += 1,
    }
    Applied::Done
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Mutex;

    use tokio::sync::Notify;

    use crate::publisher::state::State;

    #[test]
    fn answers_parse() {
        assert_eq!(
            parse_answer(br#"{"type":"ack","pseq":7,"duplicates":2}"#),
            Answer::Ack {
                pseq: 7,
                duplicates: Some(2)
            }
        );
        assert_eq!(
            parse_answer(br#"{"pseq":7,"type":"ack","extra":[1]}"#),
            Answer::Ack {
                pseq: 7,
                duplicates: None
            }
        );
        assert_eq!(
            parse_answer(br#"{"type":"error","line":3,"code":"bad_tick","message":"m"}"#),
            Answer::Error {
                line: 3,
                code: "bad_tick".into(),
                message: "m".into()
            }
        );
        assert_eq!(
            parse_answer(br#"{"type":"stats","pseq":"x"}"#),
            Answer::Other
        );
        for garbled in [
            &b"not json"[..],
            b"[1,2]",
            b"{\"type\":1}",
            b"{\"pseq\":1}",
            b"{\"type\":\"ack\"}",
            b"{\"type\":\"ack\",\"pseq\":-1}",
            b"{\"type\":\"ack\",\"pseq\":1.5}",
            b"{\"type\":\"ack\",\"pseq\":1,\"duplicates\":\"2\"}",
            b"{\"type\":\"error\",\"code\":\"x\"}",
            b"{\"type\":\"ack\",\"pseq\":1",
            b"\xff\xfe",
        ] {
            assert_eq!(parse_answer(garbled), Answer::Garbled, "{garbled:?}");
        }
    }

    #[test]
    fn lines_map_to_pseqs() {
        assert_eq!(line_pseq(1, 0), None);
        assert_eq!(line_pseq(1, 1), None);
        assert_eq!(line_pseq(1, 2), Some(1));
        assert_eq!(line_pseq(5, 2), Some(5));
        assert_eq!(line_pseq(5, 4), Some(7));
        assert_eq!(line_pseq(u64::MAX, 3), None);
        assert_eq!(
            hello_line("feed-a", 42),
            "{\"type\":\"hello\",\"publisher\":\"feed-a\",\"pseq\":42}\n"
        );
    }

    #[test]
    fn answers_apply_to_the_state() {
        let shared = Shared {
            state: Mutex::new(State::new(5)),
            queued: Notify::new(),
            settled: Notify::new(),
            max_unacked: 10,
            first_pseq: 5,
        };
        {
            let mut state = shared.lock();
            for pseq in 5..=8 {
                state.unacked.push(pseq, String::new());
            }
            state.next_pseq = 9;
            state.sent = 8;
        }
        let ack = |pseq, duplicates| Answer::Ack {
            pseq,
            duplicates: Some(duplicates),
        };
        let error = |line: u64| Answer::Error {
            line,
            code: format!("c{line}"),
            message: String::new(),
        };
        // Only lines 5..=7 were written so far: an ack of 8 counts as 7; an ack below the
        // first pseq acks nothing.
        assert_eq!(apply(&shared, ack(4, 0), 5, 7), Applied::Done);
        assert_eq!(shared.lock().acked, 0);
        assert_eq!(apply(&shared, ack(8, 1), 5, 7), Applied::Done);
        assert_eq!(apply(&shared, error(3), 5, 7), Applied::Done);
        assert_eq!(apply(&shared, error(3), 5, 7), Applied::Done);
        assert_eq!(apply(&shared, error(9), 5, 7), Applied::Done);
        assert_eq!(apply(&shared, error(0), 5, 7), Applied::Done);
        assert_eq!(apply(&shared, Answer::Garbled, 5, 7), Applied::Done);
        assert_eq!(apply(&shared, Answer::Other, 5, 7), Applied::Done);
        {
            let state = shared.lock();
            assert_eq!((state.acked, state.unacked.first()), (7, Some(8)));
            assert_eq!(state.duplicates_now, 1);
            assert_eq!(
                state.errors.iter().collect::<Vec<_>>(),
                [(&6, &"c3".to_owned())]
            );
            assert_eq!(state.garbled, 3);
        }
        assert_eq!(apply(&shared, error(1), 5, 7), Applied::Fatal);
        assert!(matches!(
            shared.lock().fatal,
            Some(PublisherError::HelloRefused { .. })
        ));
    }
}
