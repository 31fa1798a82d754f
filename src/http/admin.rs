//! The sessions API: `GET /api/sessions` lists every session on every shard (asking each
//! shard on its own thread through its admin queue), `DELETE /api/sessions/{id}` closes one
//! with code 4003 and a reason (`?reason=`).

use hyper::StatusCode;
use serde::Serialize;
use tokio::sync::oneshot;

use super::response::{HttpResponse, json, refuse};
use crate::encode::json::to_vec;
use crate::error::ErrorCode;
use crate::shared::{SessionInfo, ShardRequest, Shared};

/// `GET /api/sessions`.
pub async fn sessions(shared: &Shared) -> HttpResponse {
    let mut pending = Vec::new();
    for shard in shard_queues(shared) {
        let (reply, answer) = oneshot::channel();
        if shard.send(ShardRequest::Sessions(reply)).is_ok() {
            pending.push(answer);
        }
    }
    let mut sessions = Vec::new();
    for answer in pending {
        // Err: the shard stopped (shutdown) before answering; it has no sessions left.
        if let Ok(list) = answer.await {
            sessions.extend(list);
        }
    }
    sessions.sort_by_key(|s| s.id);
    json(StatusCode::OK, to_vec(&Sessions { sessions }))
}

/// `DELETE /api/sessions/{id}?reason=...`.
pub async fn close(shared: &Shared, id: &str, query: Option<&str>) -> HttpResponse {
    let Ok(id) = id.parse::<u64>() else {
        return refuse(
            shared,
            StatusCode::BAD_REQUEST,
            ErrorCode::BadRequest,
            "a session id is a number: DELETE /api/sessions/{id}",
        );
    };
    let reason = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(k, _)| k == "reason")
        .map_or_else(|| DEFAULT_REASON.to_owned(), |(_, v)| v.into_owned());
    // A close frame's reason must fit its 125-byte payload with the code (RFC 6455 §5.5).
    let reason: String = reason
        .chars()
        .scan(0, |len, c| {
            *len += c.len_utf8();
            (*len <= MAX_REASON_BYTES).then_some(c)
        })
        .collect();
    for shard in shard_queues(shared) {
        let (done, answer) = oneshot::channel();
        let request = ShardRequest::Close {
            id,
            reason: reason.clone(),
            done,
        };
        if shard.send(request).is_ok() && answer.await == Ok(true) {
            return json(
                StatusCode::OK,
                to_vec(&Closed {
                    closed: id,
                    reason: &reason,
                }),
            );
        }
    }
    refuse(
        shared,
        StatusCode::NOT_FOUND,
        ErrorCode::UnknownSession,
        &format!("no session {id} is connected"),
    )
}

fn shard_queues(shared: &Shared) -> &[tokio::sync::mpsc::UnboundedSender<ShardRequest>] {
    shared.shard_requests.get().map_or(&[], Vec::as_slice)
}

#[derive(Serialize)]
struct Sessions {
    sessions: Vec<SessionInfo>,
}

#[derive(Serialize)]
struct Closed<'a> {
    closed: u64,
    reason: &'a str,
}

/// The close reason when the operator gives none.
const DEFAULT_REASON: &str = "closed by operator";
/// Longest close reason, in bytes (125 − the 2-byte code).
const MAX_REASON_BYTES: usize = 123;
