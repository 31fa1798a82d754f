//! `POST /api/publish`: one tick object, a JSON array of ticks, or NDJSON lines (book
//! updates, `{"type":"book",..}`, among them); and `POST /api/events`: the same for events
//! (`{"channel":..,"data":..}`).
//!
//! All or nothing: every tick is validated first; any bad one answers 400 with its line (or
//! array position, from 1) and field, and nothing is published. Otherwise the ticks go to
//! the sequencer (waiting, like TCP ingest, while it is full), and once it has sequenced
//! them the answer is `202 {"accepted":N}`. The refusals left to the sequencer: a new
//! symbol or channel beyond `--max-symbols` with nothing idle to evict answers 503
//! `symbol_limit` naming the first refused item's position, with the number of the others,
//! which were published (`accepted`); a book update only its book can refuse (a delta
//! before any snapshot, a crossed result, too many levels) is refused alone: the answer
//! then carries the first refusal's code, line and message, and how many items were
//! accepted.

use http_body_util::{BodyExt, Limited};
use hyper::body::Incoming;
use hyper::header::{CONNECTION, HeaderValue};
use hyper::{Request, StatusCode};
use serde::Serialize;
use tokio::sync::mpsc;

use super::response::{HttpResponse, json, refuse};
use crate::book::{Origin, Rejection};
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
    let items = ticks.map(|ticks| ticks.into_iter().map(Item::Tick).collect());
    accept(shared, items).await
}

/// Publishes ticks and book updates: each book update carries the request's reply channel,
/// and the answer waits until the sequencer has taken every item (dropping the last sender).
async fn accept_books(
    shared: &Shared,
    items: Result<Vec<(usize, Item)>, (usize, DecodeError)>,
) -> HttpResponse {
    let (replies, mut refusals) = tokio::sync::mpsc::channel(MAX_REFUSALS);
    let items = items.and_then(|items| {
        items
            .into_iter()
            .map(|(line, item)| match item {
                Item::Book(mut update) => {
                    update.origin = Some(Origin::new(line as u64, replies.clone()));
                    Ok(Item::Book(update))
                }
                Item::Event(_) => Err((line, DecodeError::UnknownField("channel".into()))),
                tick => Ok(tick),
            })
            .collect::<Result<Vec<_>, _>>()
    });
    drop(replies);
    let count = items.as_ref().map_or(0, Vec::len);
    let answer = accept(shared, items).await;
    if answer.status() != StatusCode::ACCEPTED {
        return answer;
    }
    let mut refused: Vec<Rejection> = Vec::new();
    while let Some(refusal) = refusals.recv().await {
        refused.push(refusal);
    }
    let Some(first) = refused.first() else {
        return answer;
    };
    let code = first.error.code();
    let body = BookRefusal {
        kind: "error",
        code,
        message: &first.error.to_string(),
        line: first.line,
        field: first.error.field(),
        accepted: count - refused.len(),
        refused: refused.len(),
    };
    json(code.http_status(), to_vec(&body))
}

/// Handles one `POST /api/events` request.
pub async fn events(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let mut scratch = match body(shared, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let events =
        LineDecoder::with_event_limit(shared.config.max_event_bytes).decode_events(&mut scratch);
    let items = events.map(|events| events.into_iter().map(Item::Event).collect());
    accept(shared, items).await
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

/// Publishes every item, or answers 400 naming the first bad one (all or nothing).
async fn accept(shared: &Shared, items: Result<Vec<Item>, (usize, DecodeError)>) -> HttpResponse {
    if shared.config.scale.role == Role::Edge {
        // An edge's sequencer only follows the stream: a seq of its own would fork history.
        return refuse(
            shared,
            StatusCode::NOT_FOUND,
            ErrorCode::WrongRole,
            "this relay is an edge: publish to the sequencer",
        );
    }
    let mut ticks = match items {
        Ok(items) => items,
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
        lines: (1..=count as u64).collect(),
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
            let body = Refusal {
                kind: "error",
                code: refusal.code(),
                message: &refusal.to_string(),
                line: refusal.line,
                accepted: count - refusals,
                refused: refusals,
            };
            json(StatusCode::SERVICE_UNAVAILABLE, to_vec(&body))
        }
    }
}

/// Refusals a request's reply channel holds (one per book update at most is sent; more are
/// counted and logged but not listed).
const MAX_REFUSALS: usize = 1024;

#[derive(Serialize)]
struct BookRefusal<'a> {
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
