//! How a connection ends ([`End`]): lost, closed by the relay for a reason the wire tables
//! name, or fatal for the stream.

use tokio_tungstenite::tungstenite;

use crate::error::Error;
use crate::item::{Disconnected, ServerError};
use crate::wire::{self, CLOSE_NO_STATUS, Then};

/// How a connection ended.
pub(crate) enum End {
    /// Reconnect after a backoff.
    Lost(Disconnected),
    /// The relay is stopping or restarting: reconnect at once (after a small jitter only).
    GoingAway(Disconnected),
    /// Stop, ending the stream with this error.
    Fatal(Error),
    /// The application is gone, or its stream already failed.
    Stop,
}

/// The connection was lost (`code`: the close code, if one came).
pub(crate) fn lost(code: Option<u16>, reason: String) -> End {
    End::Lost(Disconnected { code, reason })
}

/// How a close frame ends the connection; `auth_error`: the auth error the relay answered
/// just before, if any (it names why a 4001 came).
pub(crate) fn closed(
    close: Option<tungstenite::protocol::CloseFrame>,
    auth_error: Option<ServerError>,
) -> End {
    let (code, reason) = close.map_or((CLOSE_NO_STATUS, String::new()), |f| {
        (u16::from(f.code), f.reason.to_string())
    });
    match wire::on_close(code) {
        Then::Fatal => End::Fatal(Error::Closed { code, reason }),
        // The token was refused, or it ran out: the same token cannot do better.
        Then::Unauthorized => {
            let (code, message) = match auth_error {
                Some(e) => (e.code, e.message),
                None => {
                    let name = wire::close_code_name(code).unwrap_or("auth_required");
                    (name.to_owned(), reason)
                }
            };
            End::Fatal(Error::Unauthorized { code, message })
        }
        then @ (Then::ReconnectNow | Then::Reconnect | Then::ReconnectWithoutResume) => {
            let reason = match wire::close_name(code) {
                Some(name) if reason.is_empty() => name.to_owned(),
                _ => reason,
            };
            let lost = Disconnected {
                code: Some(code),
                reason: format!("closed by the relay: {code} {reason}"),
            };
            if then == Then::ReconnectNow {
                End::GoingAway(lost)
            } else {
                End::Lost(lost)
            }
        }
    }
}
