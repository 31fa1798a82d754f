//! `GET /ws` (and `/echo`): checks the WebSocket handshake, admits the connection (limits,
//! token, origin) and hands the upgraded socket to [`session::run`] on this shard.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{HeaderValue, ORIGIN, SEC_WEBSOCKET_EXTENSIONS, SEC_WEBSOCKET_PROTOCOL};
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio_rustls::server::TlsStream;
use tracing::debug;

use super::response::{HttpResponse, error_body, json};
use crate::encode::Encoding;
use crate::error::ErrorCode;
use crate::limits::IpSlot;
use crate::session::control::KeyRules;
use crate::session::handshake::{HandshakeError, Mode};
use crate::session::{self, extensions, handshake};
use crate::shard::{ShardCore, Transport};
use crate::shared::Shared;
use crate::shutdown::Phase;

pub(super) fn upgrade(
    core: Rc<RefCell<ShardCore>>,
    shared: &Shared,
    ip_slot: Rc<Cell<Option<IpSlot>>>,
    mut request: Request<Incoming>,
    mode: Mode,
) -> HttpResponse {
    let refuse = |e: HandshakeError| {
        let code = e.code();
        shared.metrics.count_error(code);
        debug!(code = code.as_str(), error = %e, "upgrade refused");
        let message = e.to_string();
        let body = match e {
            HandshakeError::UnknownEncoding(_)
            | HandshakeError::ConflictingEncoding { .. }
            | HandshakeError::RepeatedEncoding => crate::encode::json::to_vec(&UnknownEncoding {
                kind: "error",
                code,
                message: &message,
                supported: Encoding::NAMES,
            }),
            _ => error_body(code, &message),
        };
        json(e.status(), body)
    };
    if shared.shutdown.phase() == Phase::Draining {
        return refuse(HandshakeError::Draining);
    }
    let origin = request.headers().get(ORIGIN).map(HeaderValue::as_bytes);
    if !shared.auth.origin_allowed(origin) {
        return refuse(HandshakeError::Origin(
            String::from_utf8_lossy(origin.unwrap_or_default())
                .chars()
                .take(80)
                .collect(),
        ));
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return refuse(HandshakeError::NotUpgrade(
            "expected `Upgrade: websocket`".into(),
        ));
    }
    let params = match mode {
        Mode::Feed => handshake::parse(
            request.uri().query(),
            request.headers(),
            &shared.config,
            &KeyRules::of(shared),
        ),
        Mode::Echo => Ok(handshake::SessionParams::echo()),
    };
    let mut params = match params {
        Ok(params) => params,
        Err(e) => return refuse(e),
    };
    let admission = match mode {
        Mode::Feed => handshake::admit(&params, &shared.auth),
        Mode::Echo => Ok(handshake::Admission {
            identity: None,
            slot: None,
        }),
    };
    let admission = match admission {
        Ok(admission) => admission,
        Err(e) => return refuse(e),
    };
    let deflate = extensions::negotiate(
        request.headers(),
        shared.config.deflate.ws_deflate,
        params.encoding,
        &shared.deflate_slots,
    );
    params.deflate = deflate.as_ref().map(|d| d.params);
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(e) => return refuse(HandshakeError::NotUpgrade(e.to_string())),
    };
    let (mut parts, _) = response.into_parts();
    if params.by_subprotocol {
        parts.headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(params.encoding.subprotocol()),
        );
    }
    if let Some(deflate) = &deflate {
        parts
            .headers
            .insert(SEC_WEBSOCKET_EXTENSIONS, deflate.response());
    }
    let ip_slot = ip_slot.take();
    tokio::task::spawn_local(async move {
        let shared = core.borrow().shared().clone();
        let _live = crate::metrics::Live::new(&shared.metrics.session_tasks);
        let websocket = match upgraded.await {
            Ok(websocket) => websocket,
            Err(e) => {
                debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        // We write pre-framed bytes ourselves, so take the socket back from hyper (and, for
        // TLS, the TLS session with it: the shard drives it from here on).
        let upgraded = websocket.into_inner().into_inner();
        let (transport, read_buf) = match upgraded.downcast::<TokioIo<TcpStream>>() {
            Ok(io) => (Transport::Plain(io.io.into_inner()), io.read_buf),
            Err(upgraded) => match upgraded.downcast::<TokioIo<TlsStream<TcpStream>>>() {
                Ok(io) => {
                    let (tcp, conn) = io.io.into_inner().into_inner();
                    let conn = Box::new(RefCell::new(conn));
                    (Transport::Tls { tcp, conn }, io.read_buf)
                }
                Err(_) => {
                    debug!("upgraded connection is neither TCP nor TLS over TCP");
                    return;
                }
            },
        };
        session::run(
            core, transport, read_buf, params, admission, ip_slot, deflate,
        )
        .await;
    });
    Response::from_parts(parts, Full::new(Bytes::new()))
}

#[derive(serde::Serialize)]
struct UnknownEncoding<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: ErrorCode,
    message: &'a str,
    supported: [&'static str; 3],
}
