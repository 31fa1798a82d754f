//! `POST /api/publish`: one tick object, a JSON array of ticks, or NDJSON lines.
//!
//! All or nothing: every tick is validated first; any bad one answers 400 with its line (or
//! array position, from 1) and field, and nothing is published. Otherwise the ticks go to
//! the sequencer (waiting, like TCP ingest, while it is full) and the answer is
//! `202 {"accepted":N}`.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::{Request, StatusCode};
use serde::Serialize;

use super::{HttpResponse, json, refuse};
use crate::encode::json::to_vec;
use crate::error::ErrorCode;
use crate::ingest::ndjson::LineDecoder;
use crate::shared::Shared;
use crate::tick::now_ns;

/// Handles one publish request.
pub async fn publish(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let limit = shared.config.max_http_body;
    let body = match Limited::new(request.into_body(), limit).collect().await {
        Ok(body) => body.to_bytes(),
        Err(e) => {
            let too_large = e
                .downcast_ref::<http_body_util::LengthLimitError>()
                .is_some();
            let (status, code, message) = if too_large {
                (
                    StatusCode::PAYLOAD_TOO_LARGE,
                    ErrorCode::BodyTooLarge,
                    format!("body over {limit} bytes"),
                )
            } else {
                (
                    StatusCode::BAD_REQUEST,
                    ErrorCode::BadRequest,
                    format!("could not read the body: {e}"),
                )
            };
            return refuse(shared, status, code, &message);
        }
    };
    let mut scratch = body.to_vec();
    let mut ticks = match LineDecoder::new().decode_document(&mut scratch) {
        Ok(ticks) => ticks,
        Err((line, e)) => {
            shared.metrics.count_error(e.code());
            let field = e.field();
            let body = PublishError {
                kind: "error",
                code: e.code(),
                message: &e.to_string(),
                line,
                field,
            };
            return json(StatusCode::BAD_REQUEST, to_vec(&body));
        }
    };
    let recv_ns = now_ns();
    for tick in &mut ticks {
        tick.recv_ns = recv_ns;
    }
    let accepted = ticks.len();
    match shared.inbox.publish(ticks).await {
        Ok(()) => json(StatusCode::ACCEPTED, to_vec(&Accepted { accepted })),
        Err(e) => refuse(
            shared,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            &e.to_string(),
        ),
    }
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

#[derive(Serialize)]
struct PublishError<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: ErrorCode,
    message: &'a str,
    line: usize,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
}
