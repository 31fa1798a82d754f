//! [`ControlParser`]: JSON text or protobuf `ClientMessage` bytes → [`Control`], or a typed
//! [`ControlError`].

use std::collections::HashMap;

use prost::Message as _;
use serde::Deserialize;
use simd_json::Buffers;

use super::{Control, ControlError, KeyRules, Op, Selection, heartbeat, resume_keys};
use crate::auth::Token;
use crate::error::clip;
use crate::proto;

/// Parses control messages, reusing the JSON parser's buffers.
pub struct ControlParser {
    buffers: Buffers,
    rules: KeyRules,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawControl {
    op: String,
    symbols: Option<Vec<String>>,
    channels: Option<Vec<String>>,
    id: Option<u64>,
    from: Option<HashMap<String, u64>>,
    epoch: Option<u64>,
    from_channels: Option<HashMap<String, u64>>,
    interval_ms: Option<u64>,
    token: Option<String>,
}

impl ControlParser {
    /// A parser of names by `rules` (the per-client limit, the rate tiers).
    pub fn new(rules: KeyRules) -> Self {
        Self {
            buffers: Buffers::new(256),
            rules,
        }
    }

    /// Parses a JSON text control message (used as scratch space).
    pub fn json(&mut self, text: &mut [u8]) -> Result<Control, ControlError> {
        let raw: RawControl = simd_json::serde::from_slice_with_buffers(text, &mut self.buffers)
            .map_err(|e| {
                let text = e.to_string();
                if text.contains("unknown field") {
                    ControlError::UnknownField(text)
                } else {
                    ControlError::BadMessage(text)
                }
            })?;
        let rules = &self.rules;
        let symbols = |op| {
            if raw.symbols.is_none() && raw.channels.is_none() {
                return Err(ControlError::MissingField {
                    op,
                    field: "symbols",
                });
            }
            let names = raw.symbols.iter().flatten().map(String::as_str);
            let mut selection = Selection::parse(names, rules)?;
            selection.add_channels(raw.channels.iter().flatten().map(String::as_str), rules)?;
            Ok(selection)
        };
        let op = Op::parse(&raw.op).ok_or_else(|| ControlError::UnknownOp(clip(&raw.op)))?;
        match op {
            Op::Subscribe => symbols(op.name()).map(Control::Subscribe),
            Op::Unsubscribe => symbols(op.name()).map(Control::Unsubscribe),
            Op::Snapshot => symbols(op.name()).map(Control::Snapshot),
            Op::Ping => Ok(Control::Ping {
                id: raw.id.unwrap_or(0),
            }),
            Op::Resume => {
                if raw.from.is_none() && raw.from_channels.is_none() {
                    return Err(ControlError::MissingField {
                        op: op.name(),
                        field: "from",
                    });
                }
                let symbols = raw.from.iter().flatten().map(|(k, v)| (k.as_str(), *v));
                let channels = raw
                    .from_channels
                    .iter()
                    .flatten()
                    .map(|(k, v)| (k.as_str(), *v));
                let mut positions = resume_keys(symbols, channels, &self.rules)?;
                positions.epoch = raw.epoch;
                Ok(Control::Resume(positions))
            }
            Op::Heartbeat => {
                let ms = raw.interval_ms.ok_or(ControlError::MissingField {
                    op: op.name(),
                    field: "interval_ms",
                })?;
                heartbeat(ms)
            }
            Op::Auth | Op::Refresh => {
                let token = raw.token.clone().ok_or(ControlError::MissingField {
                    op: op.name(),
                    field: "token",
                })?;
                Ok(if op == Op::Auth {
                    Control::Auth(Token(token))
                } else {
                    Control::Refresh(Token(token))
                })
            }
        }
    }

    /// Parses a protobuf `ClientMessage`.
    pub fn protobuf(&self, bytes: &[u8]) -> Result<Control, ControlError> {
        use proto::client_message::Msg;
        let message = proto::ClientMessage::decode(bytes)
            .map_err(|e| ControlError::BadMessage(e.to_string()))?;
        let names = |s: &proto::Symbols| {
            Selection::parse(s.symbols.iter().map(String::as_str), &self.rules)
        };
        let channels = |c: &proto::Channels| {
            let mut selection = Selection::default();
            selection.add_channels(c.channels.iter().map(String::as_str), &self.rules)?;
            Ok(selection)
        };
        match message.msg {
            None => Err(ControlError::BadMessage(
                "ClientMessage has no msg set".into(),
            )),
            Some(Msg::Subscribe(s)) => names(&s).map(Control::Subscribe),
            Some(Msg::Unsubscribe(s)) => names(&s).map(Control::Unsubscribe),
            Some(Msg::Snapshot(s)) => names(&s).map(Control::Snapshot),
            Some(Msg::Ping(p)) => Ok(Control::Ping { id: p.id }),
            Some(Msg::Resume(r)) => {
                let mut positions = resume_keys(
                    r.from.iter().map(|(k, v)| (k.as_str(), *v)),
                    r.channels.iter().map(|(k, v)| (k.as_str(), *v)),
                    &self.rules,
                )?;
                // proto3: 0 is "not set"; epochs are never 0.
                positions.epoch = (r.epoch != 0).then_some(r.epoch);
                Ok(Control::Resume(positions))
            }
            Some(Msg::Auth(a)) => Ok(Control::Auth(Token(a.token))),
            Some(Msg::Refresh(a)) => Ok(Control::Refresh(Token(a.token))),
            Some(Msg::SubscribeChannels(c)) => channels(&c).map(Control::Subscribe),
            Some(Msg::UnsubscribeChannels(c)) => channels(&c).map(Control::Unsubscribe),
            Some(Msg::SnapshotChannels(c)) => channels(&c).map(Control::Snapshot),
            Some(Msg::Heartbeat(h)) => heartbeat(u64::from(h.interval_ms)),
        }
    }
}

impl std::fmt::Debug for ControlParser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControlParser")
            .field("limit", &self.rules.limit)
            .finish_non_exhaustive()
    }
}
