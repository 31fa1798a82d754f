//! HTTP on the WebSocket port, served by hyper on the shard that accepted the connection.
//!
//! Routes: `GET /ws` (upgrade → [`session::run`]), `GET /health`, `GET /ready`,
//! `GET /stats`, `GET /metrics`, `GET /symbols`, `GET /price/{symbol}`, `POST /api/publish`, `GET /`,
//! `GET /tickrelay.js` (the JavaScript client the dashboard imports).
//! Every error is JSON: `{"type":"error","code":"...","message":"..."}`.

pub mod prometheus;
pub mod publish;
pub mod stats;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue, SEC_WEBSOCKET_PROTOCOL};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use crate::limits::IpSlot;
use crate::metrics;
use crate::session::handshake::Mode;
use crate::session::{self, handshake};
use crate::shard::ShardCore;
use crate::shutdown::Phase;

/// The response type of every route.
pub type HttpResponse = Response<Full<Bytes>>;

/// Serves one connection until it closes or upgrades to a WebSocket session.
pub async fn serve(core: Rc<RefCell<ShardCore>>, stream: TcpStream, ip_slot: Option<IpSlot>) {
    let _ = stream.set_nodelay(true);
    let (shared, id) = {
        let core = core.borrow();
        (core.shared.clone(), core.id)
    };
    let counters = shared.metrics.shard(id);
    metrics::add(&counters.connections, 1);
    // The slot follows the connection into its WebSocket session, if it upgrades.
    let ip_slot = Rc::new(Cell::new(ip_slot));
    let service = service_fn(move |request| route(core.clone(), ip_slot.clone(), request));
    let connection = http1::Builder::new()
        .timer(TokioTimer::new())
        // Slowloris guard: the request head must arrive within the handshake timeout.
        .header_read_timeout(shared.config.handshake_timeout)
        .max_buf_size(MAX_HEAD_BYTES)
        .serve_connection(TokioIo::new(stream), service)
        .with_upgrades();
    if let Err(e) = connection.await {
        if e.is_timeout() {
            shared.metrics.count_error("handshake_timeout");
        }
        debug!(error = %e, "http connection ended with an error");
    }
    metrics::sub(&shared.metrics.shard(id).connections, 1);
}

async fn route(
    core: Rc<RefCell<ShardCore>>,
    ip_slot: Rc<Cell<Option<IpSlot>>>,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let path = request.uri().path().to_owned();
    let echo = core.borrow().shared.config.conformance_echo;
    let response = match (request.method(), path.as_str()) {
        (&Method::GET, "/ws") => upgrade(core, ip_slot, request, Mode::Feed),
        (&Method::GET, "/echo") if echo => upgrade(core, ip_slot, request, Mode::Echo),
        (&Method::GET, "/health") => stats::health(&core.borrow()),
        (&Method::GET, "/ready") => stats::ready(&core.borrow()),
        (&Method::GET, "/stats") => stats::stats(&core.borrow()),
        (&Method::GET, "/metrics") => prometheus::metrics(&core.borrow()),
        (&Method::GET, "/symbols") => stats::symbols(&core.borrow()),
        (&Method::GET, p) if p.starts_with("/price/") => {
            stats::price(&core.borrow(), &p["/price/".len()..])
        }
        (&Method::POST, "/api/publish") => publish::publish(core, request).await,
        (&Method::GET, "/") => html(DASHBOARD),
        (&Method::GET, "/tickrelay.js") => {
            let mut response = html(CLIENT_JS);
            let js = HeaderValue::from_static("text/javascript; charset=utf-8");
            response.headers_mut().insert(CONTENT_TYPE, js);
            response
        }
        (
            _,
            "/ws" | "/health" | "/ready" | "/stats" | "/metrics" | "/symbols" | "/api/publish"
            | "/",
        ) => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        ),
        (_, p) if p.starts_with("/price/") => error(
            StatusCode::METHOD_NOT_ALLOWED,
            "method_not_allowed",
            "method not allowed on this path",
        ),
        _ => error(
            StatusCode::NOT_FOUND,
            "not_found",
            "no such path; see docs/PROTOCOL.md",
        ),
    };
    Ok(response)
}

fn upgrade(
    core: Rc<RefCell<ShardCore>>,
    ip_slot: Rc<Cell<Option<IpSlot>>>,
    mut request: Request<Incoming>,
    mode: Mode,
) -> HttpResponse {
    let shared = core.borrow().shared.clone();
    let refuse = |e: handshake::HandshakeError| {
        shared.metrics.count_error(e.code());
        debug!(code = e.code(), error = %e, "upgrade refused");
        let mut response = error(e.status(), e.code(), &e.to_string());
        if e.code() == "unknown_encoding" {
            *response.body_mut() =
                Full::new(Bytes::from(crate::encode::json::to_vec(&UnknownEncoding {
                    kind: "error",
                    code: e.code(),
                    message: &e.to_string(),
                    supported: ["json", "protobuf", "gzip"],
                })));
        }
        response
    };
    if shared.shutdown.phase() == Phase::Draining {
        return refuse(handshake::HandshakeError::Draining);
    }
    if !fastwebsockets::upgrade::is_upgrade_request(&request) {
        return refuse(handshake::HandshakeError::NotUpgrade(
            "expected `Upgrade: websocket`".into(),
        ));
    }
    let params = match mode {
        Mode::Feed => handshake::parse(request.uri().query(), request.headers(), &shared.config),
        Mode::Echo => Ok(handshake::SessionParams::echo()),
    };
    let params = match params {
        Ok(params) => params,
        Err(e) => return refuse(e),
    };
    let (response, upgraded) = match fastwebsockets::upgrade::upgrade(&mut request) {
        Ok(pair) => pair,
        Err(e) => return refuse(handshake::HandshakeError::NotUpgrade(e.to_string())),
    };
    let (mut parts, _) = response.into_parts();
    if params.by_subprotocol {
        parts.headers.insert(
            SEC_WEBSOCKET_PROTOCOL,
            HeaderValue::from_static(params.encoding.subprotocol()),
        );
    }
    let ip_slot = ip_slot.take();
    tokio::task::spawn_local(async move {
        let websocket = match upgraded.await {
            Ok(websocket) => websocket,
            Err(e) => {
                debug!(error = %e, "upgrade did not complete");
                return;
            }
        };
        // We write pre-framed bytes ourselves, so take the socket back from hyper.
        match websocket
            .into_inner()
            .into_inner()
            .downcast::<TokioIo<TcpStream>>()
        {
            Ok(io) => session::run(core, io.io.into_inner(), io.read_buf, params, ip_slot).await,
            Err(_) => debug!("upgraded connection is not a plain TCP stream"),
        }
    });
    Response::from_parts(parts, Full::new(Bytes::new()))
}

/// A JSON response.
pub fn json(status: StatusCode, body: Vec<u8>) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from(body)));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

/// A JSON error response `{"type":"error","code":..,"message":..}`.
pub fn error(status: StatusCode, code: &str, message: &str) -> HttpResponse {
    json(
        status,
        crate::encode::json::to_vec(&ErrorBody {
            kind: "error",
            code,
            message,
        }),
    )
}

fn html(page: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(page.as_bytes())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
}

#[derive(serde::Serialize)]
struct UnknownEncoding<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: &'a str,
    message: &'a str,
    supported: [&'static str; 3],
}

/// Largest request head hyper buffers (bytes); a longer one is refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The live dashboard at `/`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The JavaScript client (`clients/js/tickrelay.js`) at `/tickrelay.js`, which the dashboard uses.
const CLIENT_JS: &str = include_str!("../../clients/js/tickrelay.js");
