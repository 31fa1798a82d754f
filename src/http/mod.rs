//! HTTP on the WebSocket port, served by hyper on the shard that accepted the connection.
//!
//! Routes ([`ROUTES`]): `GET /ws` (upgrade → [`session::run`]), `GET /health`, `GET /ready`,
//! `GET /stats`, `GET /metrics`, `GET /symbols`, `GET /price/{symbol}`, `POST /api/publish`,
//! `POST /api/events`, `GET /api/sessions`, `DELETE /api/sessions/{id}`, `GET /` and
//! `GET /dashboard.js` and `GET /dashboard-bars.js` (the operator dashboard, [`assets`]), `GET /tickrelay.js` (the
//! JavaScript client the dashboard imports). Every error
//! is JSON, `{"type":"error","code":"...","message":"..."}`, and counted under its code.
//!
//! The admin routes (publish, events, sessions) need the admin token, or with none
//! configured a loopback peer. With `--admin-listen` they, `/stats` and `/metrics` are
//! served on that address only; the client port answers them 404.

pub mod admin;
pub mod assets;
pub mod counters;
pub mod prometheus;
pub mod publish;
pub mod stats;
mod upgrade;

use upgrade::upgrade;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use crate::auth;
use crate::error::ErrorCode;
use crate::limits::IpSlot;
use crate::metrics::CountedConnection;
use crate::session::handshake::Mode;
use crate::shard::ShardCore;
use crate::shared::Shared;

/// The response type of every route.
pub type HttpResponse = Response<Full<Bytes>>;

/// Serves one connection until it closes or upgrades to a WebSocket session;
/// `admin_port`: it was accepted on `--admin-listen`.
pub async fn serve(
    core: Rc<RefCell<ShardCore>>,
    stream: TcpStream,
    ip_slot: Option<IpSlot>,
    counted: CountedConnection,
    admin_port: bool,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok().map(|a| a.ip());
    let shared = core.borrow().shared().clone();
    // Counted since accept; uncounted when this returns (the session counts itself).
    let _counted = counted;
    // The slot follows the connection into its WebSocket session, if it upgrades.
    let ip_slot = Rc::new(Cell::new(ip_slot));
    let port = Port { admin_port, peer };
    let service = service_fn(move |request| route(core.clone(), ip_slot.clone(), port, request));
    let mut builder = http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        // Slowloris guard: the request head must arrive within the handshake timeout.
        .header_read_timeout(shared.config.handshake_timeout)
        .max_buf_size(MAX_HEAD_BYTES);
    // TLS is for --listen; --admin-listen is meant for a private address and stays plain.
    let served = match shared.tls.as_ref().filter(|_| !admin_port) {
        None => {
            builder
                .serve_connection(TokioIo::new(stream), service)
                .with_upgrades()
                .await
        }
        Some(tls) => {
            let acceptor = tokio_rustls::TlsAcceptor::from(tls.current());
            let timeout = shared.config.handshake_timeout;
            match tokio::time::timeout(timeout, acceptor.accept(stream)).await {
                Ok(Ok(tls_stream)) => {
                    builder
                        .serve_connection(TokioIo::new(tls_stream), service)
                        .with_upgrades()
                        .await
                }
                failed => {
                    shared.metrics.count_error(ErrorCode::TlsHandshake);
                    match failed {
                        Ok(Err(e)) => debug!(error = %e, "TLS handshake failed"),
                        _ => debug!("TLS handshake timed out"),
                    }
                    return;
                }
            }
        }
    };
    if let Err(e) = served {
        if e.is_timeout() {
            shared.metrics.count_error(ErrorCode::HandshakeTimeout);
        }
        debug!(error = %e, "http connection ended with an error");
    }
}

/// Where a request came in: which port, from which peer.
#[derive(Clone, Copy, Debug)]
struct Port {
    admin_port: bool,
    peer: Option<std::net::IpAddr>,
}

async fn route(
    core: Rc<RefCell<ShardCore>>,
    ip_slot: Rc<Cell<Option<IpSlot>>>,
    port: Port,
    request: Request<Incoming>,
) -> Result<HttpResponse, Infallible> {
    let shared = core.borrow().shared().clone();
    let path = request.uri().path().to_owned();
    let found = Route::find(&path, shared.config.conformance_echo).filter(|route| {
        // With --admin-listen, each port serves its own routes and 404s the others.
        let separate = shared.config.admin_listen.is_some();
        match (separate, port.admin_port) {
            (false, _) => true,
            (true, true) => route.on_admin_port(),
            (true, false) => !route.on_admin_port(),
        }
    });
    let Some(route) = found else {
        return Ok(refuse(
            &shared,
            StatusCode::NOT_FOUND,
            ErrorCode::NotFound,
            "no such path; see docs/PROTOCOL.md",
        ));
    };
    if !route.allows(request.method()) {
        return Ok(refuse(
            &shared,
            StatusCode::METHOD_NOT_ALLOWED,
            ErrorCode::MethodNotAllowed,
            "method not allowed on this path",
        ));
    }
    if route.is_admin() {
        let authorization = request
            .headers()
            .get(AUTHORIZATION)
            .map(HeaderValue::as_bytes);
        if let Err(refusal) = shared.auth.admin_allowed(port.peer, authorization) {
            let status = match refusal {
                auth::AdminRefusal::NotLoopback => StatusCode::FORBIDDEN,
                auth::AdminRefusal::NoToken | auth::AdminRefusal::WrongToken => {
                    StatusCode::UNAUTHORIZED
                }
            };
            debug!(peer = ?port.peer, route = ?route, %refusal, "admin route refused");
            return Ok(refuse(
                &shared,
                status,
                refusal.code(),
                &refusal.to_string(),
            ));
        }
    }
    let response = match route {
        Route::Ws => upgrade(core, &shared, ip_slot, request, Mode::Feed),
        Route::Echo => upgrade(core, &shared, ip_slot, request, Mode::Echo),
        Route::Health => stats::health(&shared),
        Route::Ready => stats::ready(&shared),
        Route::Stats => stats::stats(&shared, &core.borrow()),
        Route::Metrics => prometheus::metrics(&shared, &core.borrow()),
        Route::Symbols => stats::symbols(&core.borrow()),
        Route::Price => match stats::price(&core.borrow(), &path["/price/".len()..]) {
            Ok(response) => response,
            Err(message) => refuse(
                &shared,
                StatusCode::NOT_FOUND,
                ErrorCode::UnknownSymbol,
                &message,
            ),
        },
        Route::Publish => publish::publish(&shared, request).await,
        Route::Events => publish::events(&shared, request).await,
        Route::Sessions => admin::sessions(&shared).await,
        Route::CloseSession => {
            admin::close(
                &shared,
                &path["/api/sessions/".len()..],
                request.uri().query(),
            )
            .await
        }
        Route::Dashboard => html(DASHBOARD),
        Route::DashboardJs => assets::dashboard_js(),
        Route::DashboardBarsJs => assets::dashboard_bars_js(),
        Route::ClientJs => {
            let mut response = html(CLIENT_JS);
            let js = HeaderValue::from_static("text/javascript; charset=utf-8");
            response.headers_mut().insert(CONTENT_TYPE, js);
            response
        }
        Route::Favicon => no_content(),
    };
    Ok(response)
}

/// Every route: its path (a prefix for `/price/`) and method, written once.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Route {
    /// `GET /ws`: the WebSocket feed.
    Ws,
    /// `GET /echo` (with `--conformance-echo`): the WebSocket echo for conformance suites.
    Echo,
    /// `GET /health`.
    Health,
    /// `GET /ready`.
    Ready,
    /// `GET /stats`.
    Stats,
    /// `GET /metrics`.
    Metrics,
    /// `GET /symbols`.
    Symbols,
    /// `GET /price/{symbol}`.
    Price,
    /// `POST /api/publish`.
    Publish,
    /// `POST /api/events`.
    Events,
    /// `GET /api/sessions`.
    Sessions,
    /// `DELETE /api/sessions/{id}`.
    CloseSession,
    /// `GET /`: the dashboard.
    Dashboard,
    /// `GET /dashboard.js`: the dashboard's script.
    DashboardJs,
    /// `GET /dashboard-bars.js`: the dashboard's panel of 1 s bars and 24-hour statistics.
    DashboardBarsJs,
    /// `GET /tickrelay.js`: the JavaScript client (`clients/js/`), which the dashboard uses.
    ClientJs,
    /// `GET /favicon.ico`: 204, so browsers opening the dashboard log no 404.
    Favicon,
}

/// Every route with its path; `/price/` matches as a prefix.
pub const ROUTES: &[(Route, &str)] = &[
    (Route::Ws, "/ws"),
    (Route::Echo, "/echo"),
    (Route::Health, "/health"),
    (Route::Ready, "/ready"),
    (Route::Stats, "/stats"),
    (Route::Metrics, "/metrics"),
    (Route::Symbols, "/symbols"),
    (Route::Price, "/price/"),
    (Route::Publish, "/api/publish"),
    (Route::Events, "/api/events"),
    (Route::Sessions, "/api/sessions"),
    (Route::CloseSession, "/api/sessions/"),
    (Route::Dashboard, "/"),
    (Route::DashboardJs, "/dashboard.js"),
    (Route::DashboardBarsJs, "/dashboard-bars.js"),
    (Route::ClientJs, "/tickrelay.js"),
    (Route::Favicon, "/favicon.ico"),
];

impl Route {
    /// The route serving `path`, if any (`/echo` only when `echo` is on).
    pub fn find(path: &str, echo: bool) -> Option<Self> {
        let (route, _) = ROUTES.iter().find(|(route, route_path)| match route {
            Self::Price | Self::CloseSession => path.starts_with(route_path),
            _ => path == *route_path,
        })?;
        (*route != Self::Echo || echo).then_some(*route)
    }

    /// The one method the route answers.
    pub fn method(self) -> Method {
        match self {
            Self::Publish | Self::Events => Method::POST,
            Self::CloseSession => Method::DELETE,
            Self::Ws
            | Self::Echo
            | Self::Health
            | Self::Ready
            | Self::Stats
            | Self::Metrics
            | Self::Symbols
            | Self::Price
            | Self::Sessions
            | Self::Dashboard
            | Self::DashboardJs
            | Self::DashboardBarsJs
            | Self::ClientJs
            | Self::Favicon => Method::GET,
        }
    }

    /// Whether `method` may be used: the route's own, or `HEAD` for a `GET` that is not a
    /// WebSocket upgrade (load balancers probe `HEAD /health`; hyper sends no body).
    pub fn allows(self, method: &Method) -> bool {
        *method == self.method()
            || (*method == Method::HEAD
                && self.method() == Method::GET
                && !matches!(self, Self::Ws | Self::Echo))
    }

    /// Whether the route is an operator's (publishing, the sessions API): guarded by the
    /// admin token, or loopback when none is configured.
    pub fn is_admin(self) -> bool {
        matches!(
            self,
            Self::Publish | Self::Events | Self::Sessions | Self::CloseSession
        )
    }

    /// Whether `--admin-listen` serves the route (instead of the client port).
    pub fn on_admin_port(self) -> bool {
        self.is_admin() || matches!(self, Self::Stats | Self::Metrics)
    }
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

/// A JSON error response `{"type":"error","code":..,"message":..}`, counted under `code`.
pub fn refuse(shared: &Shared, status: StatusCode, code: ErrorCode, message: &str) -> HttpResponse {
    shared.metrics.count_error(code);
    json(status, error_body(code, message))
}

fn error_body(code: ErrorCode, message: &str) -> Vec<u8> {
    crate::encode::json::to_vec(&ErrorBody {
        kind: "error",
        code,
        message,
    })
}

fn html(page: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(page.as_bytes())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

fn no_content() -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::new()));
    *response.status_mut() = StatusCode::NO_CONTENT;
    response
}

#[derive(serde::Serialize)]
struct ErrorBody<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: ErrorCode,
    message: &'a str,
}

/// Largest request head hyper buffers (bytes); a longer one is refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The live dashboard at `/`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The JavaScript client (`clients/js/tickrelay.js`) at `/tickrelay.js`, which the dashboard uses.
const CLIENT_JS: &str = include_str!("../../clients/js/tickrelay.js");
