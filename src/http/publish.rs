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
use crate::ingest::{Answer, DecodeError, Hello, Publisher, Refused, Tagging};
use crate::shared::Shared;
use crate::tick::now_ns;

/// Handles one publish request.
pub async fn publish(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let hello = match hello(&request) {
        Ok(hello) => hello,
        Err(e) => return bad_hello(shared, &e),
    };
    let mut scratch = match body(shared, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    if memchr::memmem::find(&scratch, b"\"type\"").is_some() {
        let items = LineDecoder::new().decode_mixed(&mut scratch);
        return accept_books(shared, items, hello).await;
    }
    let ticks = LineDecoder::new().decode_document(&mut scratch);
    accept(
        shared,
        ticks.map(|ticks| numbered(ticks, Item::Tick)),
        hello,
    )
    .await
}

/// Acknowledged ingest over HTTP: `Tickrelay-Publisher` and `Tickrelay-Pseq` (the first
/// item's pseq; each item after it takes the next) say hello for the request's items.
fn hello(request: &Request<Incoming>) -> Result<Option<Hello>, DecodeError> {
    let header = |name| request.headers().get(name).map(|v| v.to_str());
    match (header(PUBLISHER_HEADER), header(PSEQ_HEADER)) {
        (None, None) => Ok(None),
        (Some(Ok(publisher)), Some(Ok(pseq))) => match pseq.parse::<u64>() {
            Ok(pseq) => Hello::new(publisher, pseq).map(Some),
            Err(_) => Err(DecodeError::Hello(format!(
                "`{PSEQ_HEADER}` is a whole number"
            ))),
        },
        _ => Err(DecodeError::Hello(format!(
            "`{PUBLISHER_HEADER}` and `{PSEQ_HEADER}` go together, in ASCII"
        ))),
    }
}

/// A bad hello's answer: 400 `bad_hello`, counted.
fn bad_hello(shared: &Shared, error: &DecodeError) -> HttpResponse {
    refuse(
        shared,
        StatusCode::BAD_REQUEST,
        error.code(),
        &error.to_string(),
    )
}

/// The request header naming an acking publisher.
pub const PUBLISHER_HEADER: &str = "tickrelay-publisher";
/// The request header with the pseq of the request's first item.
pub const PSEQ_HEADER: &str = "tickrelay-pseq";

/// Items at their positions, from 1.
fn numbered<T>(items: Vec<T>, item: impl Fn(T) -> Item) -> Vec<(u64, Item)> {
    (1..).zip(items.into_iter().map(item)).collect()
}

/// Publishes ticks and book updates (no events: those go to `/api/events`), each answered
/// at its own line.
async fn accept_books(
    shared: &Shared,
    items: Result<Vec<(usize, Item)>, (usize, DecodeError)>,
    hello: Option<Hello>,
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
    accept(shared, items, hello).await
}

/// Handles one `POST /api/events` request.
pub async fn events(shared: &Shared, request: Request<Incoming>) -> HttpResponse {
    let hello = match hello(&request) {
        Ok(hello) => hello,
        Err(e) => return bad_hello(shared, &e),
    };
    let mut scratch = match body(shared, request).await {
        Ok(body) => body,
        Err(response) => return response,
    };
    let events =
        LineDecoder::with_event_limit(shared.config.max_event_bytes).decode_events(&mut scratch);
    let events = events.map(|events| numbered(events, Item::Event));
    accept(shared, events, hello).await
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
    hello: Option<Hello>,
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
    let (answers, mut answered) = mpsc::unbounded_channel::<Answer>();
    let last = lines.last().copied().unwrap_or_default();
    let mut publisher = Publisher::new(lines, answers);
    // Positions count from 1: the hello stands at 0.
    publisher.tagged =
        hello.and_then(|hello| Tagging::new(hello, 0).tagged(&publisher.lines, last));
    if let Err(e) = shared.inbox.publish_from(ticks, publisher).await {
        return refuse(
            shared,
            StatusCode::SERVICE_UNAVAILABLE,
            ErrorCode::ShuttingDown,
            &e.to_string(),
        );
    }
    // The channel ends when the sequencer drops the hand-off: everything is sequenced (and,
    // tagged, durable).
    let mut first: Option<Refused> = None;
    let mut refusals = 0;
    let mut stored = None;
    while let Some(answer) = answered.recv().await {
        match answer {
            Answer::Refused(refusal) => {
                refusals += 1;
                first.get_or_insert(refusal);
            }
            Answer::Stored { pseq, duplicates } => stored = Some((pseq, duplicates)),
        }
    }
    match first {
        None => {
            let accepted = Accepted {
                accepted: count,
                pseq: stored.map(|s| s.0),
                duplicates: stored.map(|s| s.1),
            };
            json(StatusCode::ACCEPTED, to_vec(&accepted))
        }
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
    /// Acknowledged ingest: every item up to this pseq is durable.
    #[serde(skip_serializing_if = "Option::is_none")]
    pseq: Option<u64>,
    /// How many of them were resends, stored before.
    #[serde(skip_serializing_if = "Option::is_none")]
    duplicates: Option<u64>,
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
