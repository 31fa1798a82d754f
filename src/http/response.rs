//! The responses every route builds: JSON bodies, the error body, HTML, 204.

use bytes::Bytes;
use http_body_util::Full;
use hyper::header::{CONTENT_TYPE, HeaderValue};
use hyper::{Response, StatusCode};

use crate::error::ErrorCode;
use crate::shared::Shared;

/// The response type of every route.
pub type HttpResponse = Response<Full<Bytes>>;

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

pub(super) fn error_body(code: ErrorCode, message: &str) -> Vec<u8> {
    crate::encode::json::to_vec(&ErrorBody {
        kind: "error",
        code,
        message,
    })
}

pub(super) fn html(page: &'static str) -> HttpResponse {
    let mut response = Response::new(Full::new(Bytes::from_static(page.as_bytes())));
    response.headers_mut().insert(
        CONTENT_TYPE,
        HeaderValue::from_static("text/html; charset=utf-8"),
    );
    response
}

pub(super) fn no_content() -> HttpResponse {
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
