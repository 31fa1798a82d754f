//! Opening a connection and reading how it ended: the URL (symbols, channels, resume
//! positions, epoch), the upgrade (plain or TLS, the token), the welcome, and what the
//! relay's refusals and close codes mean for the stream: retry, or end with a clear error.

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as Frame};

use super::{Connection, End, Worker, lost};
use crate::decode::{Decoder, Message};
use crate::error::Error;
use crate::item::ServerError;
use crate::options::SlowConsumer;

impl Worker {
    /// The URL for the next connection: every wanted symbol, and a resume position for
    /// every one with a known seq.
    pub(super) fn url(&self) -> (String, HashSet<String>) {
        let all = self.symbols.contains("*");
        let resume: Vec<(String, u64)> = self
            .sequencer
            .resume_positions()
            .into_iter()
            .filter(|(s, _)| self.resume_in_url && (all || self.symbols.contains(s)))
            .collect();
        let mut params = Vec::new();
        // With `*` and positions, `*` is subscribed after the welcome (see `session`): at
        // connect its snapshots would come before the replays and break their order.
        let symbols: Vec<&str> = self
            .symbols
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "*" || resume.is_empty())
            .collect();
        if !symbols.is_empty() {
            params.push(format!("symbols={}", encode(&symbols.join(","))));
        }
        if !self.options.channels.is_empty() {
            params.push(format!(
                "channels={}",
                encode(&self.options.channels.join(","))
            ));
        }
        params.push(format!("encoding={}", self.options.encoding.as_str()));
        if self.options.slow_consumer == SlowConsumer::Conflate {
            params.push("slow=conflate".into());
        }
        if !resume.is_empty() {
            let list: Vec<String> = resume.iter().map(|(s, seq)| format!("{s}:{seq}")).collect();
            params.push(format!("resume={}", encode(&list.join(","))));
        }
        // Channels resume like symbols (`CHANNEL:SEQ`; the seq follows the last `:`).
        let channels: Vec<String> = self
            .sequencer
            .resume_channel_positions()
            .into_iter()
            .filter(|(c, _)| self.options.channels.contains(c))
            .map(|(c, seq)| format!("{c}:{seq}"))
            .collect();
        if !channels.is_empty() {
            params.push(format!("resume_channels={}", encode(&channels.join(","))));
        }
        if let Some(epoch) = self.sequencer.epoch() {
            params.push(format!("epoch={}", encode(epoch)));
        }
        let separator = if self.base.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}{}", self.base, params.join("&"));
        (url, resume.into_iter().map(|(s, _)| s).collect())
    }

    pub(super) async fn open(&mut self) -> Result<Connection, Open> {
        let (url, resuming) = self.url();
        let mut request = url
            .into_client_request()
            .map_err(|e| Open::Invalid(e.to_string()))?;
        if let Some(token) = &self.options.token {
            let value = HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|e| Open::Invalid(format!("token: {e}")))?;
            request.headers_mut().insert("authorization", value);
        }
        let limit = self.options.liveness_timeout;
        let connecting = tokio_tungstenite::connect_async_tls_with_config(
            request,
            None,
            false,
            self.tls.clone(),
        );
        let (mut ws, _) = timeout(limit, connecting)
            .await
            .map_err(|_| Open::Io(format!("no handshake within {limit:?}")))?
            .map_err(|e| match e {
                tungstenite::Error::Http(response) => Open::Refused {
                    status: response.status().as_u16(),
                    body: String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[]))
                        .into_owned(),
                },
                tungstenite::Error::Url(e) => Open::Invalid(e.to_string()),
                tungstenite::Error::Tls(e) => Open::Tls(e.to_string()),
                // A certificate no root vouches for surfaces as an I/O error from rustls.
                tungstenite::Error::Io(e)
                    if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
                {
                    Open::Tls(e.to_string())
                }
                other => Open::Io(other.to_string()),
            })?;
        let mut decoder = Decoder::new(self.options.encoding);
        let deadline = Instant::now() + limit;
        loop {
            let frame = tokio::time::timeout_at(deadline, ws.next())
                .await
                .map_err(|_| Open::NoWelcome(limit))?;
            let message = match frame {
                Some(Ok(Frame::Text(text))) => decoder.text(&text),
                Some(Ok(Frame::Binary(bytes))) => decoder.binary(&bytes),
                Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => continue,
                Some(Ok(Frame::Close(close))) => {
                    return Err(Open::Io(format!("closed before the welcome: {close:?}")));
                }
                Some(Err(e)) => return Err(Open::Io(e.to_string())),
                None => return Err(Open::Io("connection ended before the welcome".into())),
            };
            match message {
                Ok(Message::Welcome { session, epoch }) => {
                    return Ok(Connection {
                        ws,
                        decoder,
                        session,
                        epoch,
                        resuming,
                    });
                }
                Ok(other) => return Err(Open::Io(format!("expected a welcome, got {other:?}"))),
                Err(e) => return Err(Open::Io(e.to_string())),
            }
        }
    }
}

/// Why opening a connection failed.
pub(super) enum Open {
    Refused { status: u16, body: String },
    Invalid(String),
    Tls(String),
    Io(String),
    NoWelcome(Duration),
}

/// How a close frame ends the connection; `auth_error`: the auth error the relay answered
/// just before, if any (it names why a 4001 came).
pub(super) fn closed(
    close: Option<tungstenite::protocol::CloseFrame>,
    auth_error: Option<ServerError>,
) -> End {
    let (code, reason) = close.map_or((1005, String::new()), |f| {
        (u16::from(f.code), f.reason.to_string())
    });
    match code {
        // Protocol error, invalid data, message too big: reconnecting sends the same thing.
        1002 | 1003 | 1007 | 1009 => End::Fatal(Error::Closed { code, reason }),
        // 4001: the token was refused; 4002: it ran out. The same token cannot do better.
        CLOSE_AUTH_FAILED | CLOSE_TOKEN_EXPIRED => {
            let (code, message) = match auth_error {
                Some(e) => (e.code, e.message),
                None if code == CLOSE_TOKEN_EXPIRED => ("token_expired".into(), reason),
                None => ("auth_required".into(), reason),
            };
            End::Fatal(Error::Unauthorized { code, message })
        }
        _ => lost(Some(code), format!("closed by the relay: {code} {reason}")),
    }
}

/// Percent-encodes a query value (symbols are `A-Z a-z 0-9 . _ : / -`; `,` separates them).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'.'
            | b'_'
            | b':'
            | b'/'
            | b'-'
            | b','
            | b'*'
            | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

/// The relay's `code` and `message` when an upgrade refusal is about the token (docs/PROTOCOL.md,
/// Auth): 401, 403 or 429 with one of [`AUTH_CODES`].
pub(super) fn auth_refusal(status: u16, body: &str) -> Option<(String, String)> {
    #[derive(serde::Deserialize)]
    struct Refusal {
        code: String,
        #[serde(default)]
        message: String,
    }
    if !matches!(status, 401 | 403 | 429) {
        return None;
    }
    let refusal: Refusal = serde_json::from_str(body).ok()?;
    AUTH_CODES
        .contains(&refusal.code.as_str())
        .then_some((refusal.code, refusal.message))
}

/// The relay's error codes about a token or what it allows.
pub(super) const AUTH_CODES: &[&str] = &[
    "invalid_token",
    "token_expired",
    "auth_required",
    "forbidden",
    "user_connection_limit",
];

/// Close codes of a session ended by auth (docs/PROTOCOL.md, close codes).
const CLOSE_AUTH_FAILED: u16 = 4001;
const CLOSE_TOKEN_EXPIRED: u16 = 4002;
