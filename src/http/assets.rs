//! The operator dashboard's files, compiled into the binary: `GET /dashboard.js`, the page's
//! script (the page itself, `GET /`, is `dashboard.html`), and `GET /dashboard-bars.js`, its
//! bars panel. The script reads `GET /stats` and imports the JavaScript client from
//! `GET /tickrelay.js` for its tick tape; the panel imports it for the tape symbol's bars and
//! 24-hour statistics.

use bytes::Bytes;
use http_body_util::Full;
use hyper::Response;
use hyper::header::{CACHE_CONTROL, CONTENT_TYPE, HeaderValue};

use super::response::HttpResponse;

/// `GET /dashboard.js`: the dashboard's script (an ES module).
pub fn dashboard_js() -> HttpResponse {
    script(DASHBOARD_JS)
}

/// `GET /dashboard-bars.js`: the dashboard's bars panel (an ES module).
pub fn dashboard_bars_js() -> HttpResponse {
    script(DASHBOARD_BARS_JS)
}

/// `GET /book-panel.js`: the dashboard's order-book panel (an ES module the page loads
/// beside its script).
pub fn book_panel_js() -> HttpResponse {
    script(BOOK_PANEL_JS)
}

/// `GET /book.js`: the JavaScript client's order books, which `/tickrelay.js` imports.
pub fn client_book_js() -> HttpResponse {
    script(CLIENT_BOOK_JS)
}

fn script(body: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    let headers = response.headers_mut();
    headers.insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/javascript; charset=utf-8"),
    );
    // A relay upgraded in place serves a new script: browsers revalidate instead of mixing
    // an old script with a new /stats.
    headers.insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    response
}

/// The dashboard's script.
const DASHBOARD_JS: &str = include_str!("dashboard.js");
/// The dashboard's bars panel.
const DASHBOARD_BARS_JS: &str = include_str!("dashboard_bars.js");
/// The dashboard's order-book panel.
const BOOK_PANEL_JS: &str = include_str!("book_panel.js");
/// The JavaScript client's order books (`clients/js/book.js`).
const CLIENT_BOOK_JS: &str = include_str!("../../clients/js/book.js");
