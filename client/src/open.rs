//! Opening one connection: the upgrade (plain or TLS, with the token), then the relay's
//! welcome; and what a refused upgrade means (a token the relay will not take, or another
//! refusal).

use std::collections::HashSet;
use std::time::Duration;

use futures_util::StreamExt;
use tokio::net::TcpStream;
use tokio::time::{Instant, timeout};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::http::HeaderValue;
use tokio_tungstenite::tungstenite::{self, Message as Frame};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use crate::decode::Decoder;
use crate::error::ConnectError;
use crate::message::Message;
use crate::options::Options;
use crate::wire::{self, Then};

/// A WebSocket to the relay.
pub(crate) type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// An open connection whose welcome has been read.
#[derive(Debug)]
pub(crate) struct Connection {
    pub(crate) ws: Ws,
    pub(crate) decoder: Decoder,
    /// The relay's session id.
    pub(crate) session: u64,
    pub(crate) epoch: Option<String>,
    /// Symbols this connection resumed; a gap for one of them is a replay gap.
    pub(crate) resuming: HashSet<String>,
    /// Messages that came in the welcome's frame after it, to be read first.
    pub(crate) pending: Vec<Message>,
}

/// Why opening a connection failed.
#[derive(Debug)]
pub(crate) enum OpenError {
    /// The relay answered the upgrade with an HTTP error.
    Refused {
        status: u16,
        body: String,
    },
    /// The URL or an option cannot make a valid request.
    Invalid(String),
    Tls(String),
    Io(String),
    /// No welcome within the liveness timeout.
    NoWelcome(Duration),
}

/// Opens `url` and reads the welcome, within the liveness timeout for each step.
pub(crate) async fn open(
    url: String,
    resuming: HashSet<String>,
    options: &Options,
    tls: Option<Connector>,
) -> Result<Connection, OpenError> {
    let mut request = url
        .into_client_request()
        .map_err(|e| OpenError::Invalid(e.to_string()))?;
    if let Some(token) = &options.token {
        let value = HeaderValue::from_str(&format!("Bearer {token}"))
            .map_err(|e| OpenError::Invalid(format!("token: {e}")))?;
        request.headers_mut().insert("authorization", value);
    }
    let limit = options.liveness_timeout;
    let connecting = tokio_tungstenite::connect_async_tls_with_config(request, None, false, tls);
    let (mut ws, _) = timeout(limit, connecting)
        .await
        .map_err(|_| OpenError::Io(format!("no handshake within {limit:?}")))?
        .map_err(|e| match e {
            tungstenite::Error::Http(response) => OpenError::Refused {
                status: response.status().as_u16(),
                body: String::from_utf8_lossy(response.body().as_deref().unwrap_or(&[]))
                    .into_owned(),
            },
            tungstenite::Error::Url(e) => OpenError::Invalid(e.to_string()),
            tungstenite::Error::Tls(e) => OpenError::Tls(e.to_string()),
            // A certificate no root vouches for surfaces as an I/O error from rustls.
            tungstenite::Error::Io(e)
                if e.get_ref().is_some_and(|inner| inner.is::<rustls::Error>()) =>
            {
                OpenError::Tls(e.to_string())
            }
            other => OpenError::Io(other.to_string()),
        })?;
    let mut decoder = Decoder::new(options.encoding, options.batch);
    let deadline = Instant::now() + limit;
    let mut messages = Vec::new();
    loop {
        let frame = tokio::time::timeout_at(deadline, ws.next())
            .await
            .map_err(|_| OpenError::NoWelcome(limit))?;
        match frame {
            Some(Ok(Frame::Text(text))) => decoder.text(&text, &mut messages),
            Some(Ok(Frame::Binary(bytes))) => decoder
                .binary(bytes, &mut messages)
                .map_err(|e| OpenError::Io(e.to_string()))?,
            Some(Ok(Frame::Ping(_) | Frame::Pong(_) | Frame::Frame(_))) => continue,
            Some(Ok(Frame::Close(close))) => {
                return Err(OpenError::Io(format!(
                    "closed before the welcome: {close:?}"
                )));
            }
            Some(Err(e)) => return Err(OpenError::Io(e.to_string())),
            None => return Err(OpenError::Io("connection ended before the welcome".into())),
        }
        let mut messages = messages.drain(..);
        match messages.next() {
            Some(Message::Welcome { session, epoch }) => {
                return Ok(Connection {
                    ws,
                    decoder,
                    session,
                    epoch,
                    resuming,
                    pending: messages.collect(),
                });
            }
            Some(other) => {
                return Err(OpenError::Io(format!("expected a welcome, got {other:?}")));
            }
            None => {}
        }
    }
}

impl From<OpenError> for ConnectError {
    fn from(e: OpenError) -> Self {
        match e {
            OpenError::Refused { status, body } => match Refusal::read(status, &body) {
                (Then::Unauthorized, Some(r)) => Self::Unauthorized {
                    status,
                    code: r.code,
                    message: r.message,
                },
                _ => Self::Refused { status, body },
            },
            OpenError::Invalid(e) => Self::InvalidRequest(e),
            OpenError::Tls(e) => Self::Tls(e),
            OpenError::Io(e) => Self::Io(e),
            OpenError::NoWelcome(d) => Self::NoWelcome(d),
        }
    }
}

/// The relay's JSON answer to a refused upgrade (`{"type":"error","code":..,"message":..}`).
#[derive(Debug, serde::Deserialize)]
pub(crate) struct Refusal {
    pub(crate) code: String,
    #[serde(default)]
    pub(crate) message: String,
}

impl Refusal {
    /// What the stream does after an upgrade refused with `status` and `body`, and the
    /// relay's answer when the body is one.
    pub(crate) fn read(status: u16, body: &str) -> (Then, Option<Self>) {
        let refusal: Option<Self> = serde_json::from_str(body).ok();
        let then = wire::on_refusal(status, refusal.as_ref().map(|r| r.code.as_str()));
        (then, refusal)
    }
}
