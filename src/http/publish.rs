//! `POST /api/publish`: one tick object, a JSON array of ticks, or NDJSON lines (book
//! updates, `{"type":"book",..}`, among them); and `POST /api/events`: the same for events
//! (`{"channel":..,"data":..}`).
//!
//! All or nothing: every tick is validated first; any bad one answers 400 with its line (or
//! array position, from 1) and field, and nothing is published. Otherwise the ticks go to
//! the sequencer (waiting, like TCP ingest, while it is full), and once it has sequenced
//! them the answer is `202 {"accepted":N}`. The refusals left to the sequencer (a new
//! symbol or channel beyond `--max-symbols` with nothing idle to evict, `symbol_limit` 503;
//! a book update only its book can refuse, a delta before any snapshot, a crossed result,
//! too many levels, 400) refuse their item alone, and come back like the TCP ingest's,
//! through the hand-off: the answer carries the first refusal's status, code, line, field
//! and message, how many items were refused and how many accepted (published).

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::response::{HttpResponse, json, refuse};
use crate::config::Role;
use crate::encode::json::to_vec;
use crate::error::ErrorCode;
use crate::event::Item;
use crate::ingest::ndjson::LineDecoder;
use crate::ingest::{DecodeError, Publisher, Refused};
use crate::shared::Shared;
use crate::tick::now_ns;

/// Handles one publish request.
pub async fn publish(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let mut scratch = match body(shared, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if memchr::memmem::find(&scratch, b"\"type\"").is_some() {
        return accept_books(shared, LineDecoder::new().decode_mixed(&mut scratch)).await;
    }
    let ticks = LineDecoder::new().decode_document(&mut scratch);
    accept(shared, ticks.map(|ticks| numbered(ticks, Item::Tick))).await
}

/// Items at their positions, from 1.
fn numbered<T>(items: Vec<T>, item: impl Fn(T) -> Item) -> Vec<(u64, Item)> {
    (1..).zip(items.into_iter().map(item)).collect()
}

/// Publishes ticks and book updates (no events: those go to `/api/events`), each answered
/// at its own line.
async fn accept_books(
    shared: &Shared,
    items: Result<Vec<(usize, Item)>, (usize, DecodeError)>,
) -> HttpResponse {
    let items = items.and_then(|items| {
        items
            .into_iter()
            .map(|(line, item)| match item {
                Item::Event(_) => Err((line, DecodeError::UnknownField("channel".into()))),
                item => Ok((line as u64, item)),
            })
            .collect::<Result<Vec<_>, _>>()
    });
    accept(shared, items).await
}

/// Handles one `POST /api/events` request.
pub async fn events(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let mut scratch = match body(shared, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let events =
        LineDecoder::with_event_limit(shared.config.max_event_bytes).decode_events(&mut scratch);
    accept(shared, events.map(|events| numbered(events, Item::Event))).await
}

/// Reads the whole body (within `--max-http-body` and `--body-timeout`), or the error
/// response.
async fn body(shared: &Shared, request: Request<Incoming>) -> Result<Vec<u8>, HttpResponse> {
    let limit = shared.config.max_http_body;
    let timeout = shared.config.body_timeout;
    let read = Limited::new(request.into_body(), limit).collect();
    // The head is bounded by the handshake timeout; this bounds the body (Content-Length
    // or chunked alike), so a body trickled a byte at a time cannot hold the connection.
    let Ok(read) = tokio::time::timeout(timeout, read).await else {
        let message = format!(
            "the body did not arrive within {}",
            humantime::format_duration(timeout)
        );
        let mut response = refuse(
            shared,
            StatusCode::REQUEST_TIMEOUT,
            ErrorCode::BodyTimeout,
            &message,
        );
        // The rest of the body will not be read: the connection cannot carry another request.
        response
            .headers_mut()
            .insert(CONNECTION, HeaderValue::from_static("close"));
        return Err(response);
    };
    match read {
        Ok(body) => Ok(body.to_bytes().to_vec()),
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
            Err(refuse(shared, status, code, &message))
        }
    }
}

/// Publishes every item (each with its line or position), or answers 400 naming the first
/// bad one (all or nothing); then answers what the sequencer refused, if anything.
async fn accept(
    shared: &Shared,
    items: Result<Vec<(u64, Item)>, (usize, DecodeError)>,
) -> HttpResponse {
    if shared.config.scale.role == Role::Edge {
        // An edge's sequencer only follows the stream: a seq of its own would fork history.
        return refuse(
            shared,
            StatusCode::NOT_FOUND,
            ErrorCode::WrongRole,
            "this relay is an edge: publish to the sequencer",
        );
    }
    let (lines, mut ticks): (Vec<u64>, Vec<Item>) = match items {
        Ok(items) => items.into_iter().unzip(),
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
    for item in &mut ticks {
        item.stamp(recv_ns);
    }
    let count = ticks.len();
    let (refusals, mut refused) = mpsc::unbounded_channel::<Refused>();
    let publisher = Publisher {
        lines,
        refused: refusals,
    };
    if let Err(e) = shared.inbox.publish_from(ticks, publisher).await {
        return refuse(
            shared,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            &e.to_string(),
        );
    }
    // The channel ends when the sequencer drops the hand-off: everything is sequenced.
    let mut first = None;
    let mut refusals = 0;
    while let Some(refusal) = refused.recv().await {
        refusals += 1;
        first.get_or_insert(refusal);
    }
    match first {
        None => json(StatusCode::ACCEPTED, to_vec(&Accepted { accepted: count })),
        Some(refusal) => {
            // Counted by the sequencer, once per refused item.
            let code = refusal.code();
            let body = Refusal {
                kind: "error",
                code,
                message: &refusal.to_string(),
                line: refusal.line,
                field: refusal.field(),
                accepted: count - refusals,
                refused: refusals,
            };
            json(code.http_status(), to_vec(&body))
        }
    }
}

#[derive(Serialize)]
struct Accepted {
    accepted: usize,
}

#[derive(Serialize)]
struct Refusal<'a> {
    #[serde(rename = "type")]
    kind: &'static str,
    code: ErrorCode,
    message: &'a str,
    line: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    field: Option<&'a str>,
    accepted: usize,
    refused: usize,
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
