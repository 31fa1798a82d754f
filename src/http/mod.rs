//! HTTP on the WebSocket port, served by hyper on the shard that accepted the connection.
//!
//! Routes ([`ROUTES`]): `GET /ws` (upgrade → [`session::run`]), `GET /health`, `GET /ready`,
//! `GET /stats`, `GET /metrics`, `GET /symbols`, `GET /price/{symbol}`,
//! `GET /book/{symbol}?depth=N`, `POST /api/publish`,
//! `POST /api/events`, `GET /api/sessions`, `DELETE /api/sessions/{id}`, `GET /` and
//! `GET /dashboard.js` and `GET /dashboard-bars.js` (the operator dashboard, [`assets`]), `GET /tickrelay.js` (the
//! JavaScript client the dashboard imports). Every error
//! is JSON, `{"type":"error","code":"...","message":"..."}`, and counted under its code.
//!
//! The admin routes (publish, events, sessions) need the admin token, or with none
//! configured a loopback request that is this host's own ([`guard`]); `/price`, `/book` and
//! `/symbols` need what `/ws` needs when auth is on. With `--admin-listen` the admin routes,
//! `/stats` and `/metrics` are served on that address only; the client port answers them
//! 404.

pub mod admin;
pub mod assets;
pub mod book;
pub mod counters;
mod guard;
pub mod prometheus;
pub mod publish;
mod response;
mod routes;
pub mod stats;
mod upgrade;

use guard::Port;
pub use response::{HttpResponse, json, refuse};
use response::{html, no_content};
pub use routes::{Access, ROUTES, Route};
use upgrade::upgrade;

use std::cell::{Cell, RefCell};
use std::convert::Infallible;
use std::rc::Rc;

use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, StatusCode};
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::net::TcpStream;
use tracing::debug;

use crate::auth;
use crate::error::ErrorCode;
use crate::limits::IpSlot;
use crate::metrics::CountedConnection;
use crate::session::handshake::Mode;
use crate::shard::ShardCore;

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
    let local = stream.local_addr().ok();
    let shared = core.borrow().shared().clone();
    let _live = crate::metrics::Live::new(&shared.metrics.http_tasks);
    // Counted since accept; uncounted when this returns (the session counts itself).
    let _counted = counted;
    // The slot follows the connection into its WebSocket session, if it upgrades.
    let ip_slot = Rc::new(Cell::new(ip_slot));
    let port = Port {
        admin_port,
        peer,
        local,
    };
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
    if route.is_admin()
        && let Err(refusal) = guard::admin(&shared, port, &request)
    {
        let status = match &refusal {
            auth::AdminRefusal::NoToken | auth::AdminRefusal::WrongToken => {
                StatusCode::UNAUTHORIZED
            }
            auth::AdminRefusal::ContentType(_) => StatusCode::UNSUPPORTED_MEDIA_TYPE,
            _ => StatusCode::FORBIDDEN,
        };
        debug!(peer = ?port.peer, route = ?route, %refusal, "admin route refused");
        return Ok(refuse(
            &shared,
            status,
            refusal.code(),
            &refusal.to_string(),
        ));
    }
    let response = match route {
        Route::Ws => upgrade(core, &shared, ip_slot, request, Mode::Feed),
        Route::Echo => upgrade(core, &shared, ip_slot, request, Mode::Echo),
        Route::Health => stats::health(&shared),
        Route::Ready => stats::ready(&shared),
        Route::Stats => stats::stats(&shared, &core.borrow()),
        Route::Metrics => prometheus::metrics(&shared, &core.borrow()),
        Route::Symbols => match guard::reader(&shared, &request) {
            Ok(reader) => stats::symbols(&core.borrow(), &reader),
            Err(e) => refuse(&shared, StatusCode::UNAUTHORIZED, e.code(), &e.to_string()),
        },
        Route::Price => {
            let symbol = &path["/price/".len()..];
            let price = guard::reader(&shared, &request)
                .map_err(|e| (StatusCode::UNAUTHORIZED, e.code(), e.to_string()))
                .and_then(|reader| stats::price(&core.borrow(), symbol, &reader));
            match price {
                Ok(response) => response,
                Err((status, code, message)) => refuse(&shared, status, code, &message),
            }
        }
        Route::Book => {
            let symbol = &path["/book/".len()..];
            let query = request.uri().query();
            let book = guard::reader(&shared, &request)
                .map_err(|e| (e.code(), e.to_string()))
                .and_then(|reader| book::book(&core.borrow(), symbol, query, &reader));
            match book {
                Ok(response) => response,
                Err((code, message)) => refuse(&shared, code.http_status(), code, &message),
            }
        }
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
        Route::BookPanelJs => assets::book_panel_js(),
        Route::ClientBookJs => assets::client_book_js(),
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

/// Largest request head hyper buffers (bytes); a longer one is refused.
const MAX_HEAD_BYTES: usize = 16 * 1024;

/// The live dashboard at `/`.
const DASHBOARD: &str = include_str!("dashboard.html");

/// The JavaScript client (`clients/js/tickrelay.js`) at `/tickrelay.js`, which the dashboard uses.
const CLIENT_JS: &str = include_str!("../../clients/js/tickrelay.js");
