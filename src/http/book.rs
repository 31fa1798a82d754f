//! `GET /book/{symbol}?depth=N`: the top N levels a side of a book (a depth of
//! `--book-depths`; without `depth`, the whole book), as the JSON snapshot message a
//! subscriber of `book:SYMBOL:N` gets first, from the shard's own copy of the book.

use hyper::StatusCode;

use super::response::{HttpResponse, json};
use crate::auth::Identity;
use crate::book::BookChannel;
use crate::encode::json::write_book;
use crate::error::{ErrorCode, clip};
use crate::event::Key;
use crate::shard::ShardCore;
use crate::tick::Symbol;

/// The book's snapshot, or the error code and message to refuse with.
pub fn book(
    core: &ShardCore,
    symbol: &str,
    query: Option<&str>,
    reader: &Identity,
) -> Result<HttpResponse, (ErrorCode, String)> {
    if let Ok(key) = Symbol::parse(symbol).map(Key::Symbol)
        && !reader.may_read(&key)
    {
        let message = format!("not allowed for this token: {}", clip(symbol));
        return Err((ErrorCode::Forbidden, message));
    }
    let depth = form_urlencoded::parse(query.unwrap_or("").as_bytes())
        .find(|(name, _)| name == "depth")
        .map(|(_, value)| value.into_owned());
    // The channel name a subscriber would use: one rule for names, depths and symbols.
    let name = match &depth {
        Some(depth) => format!("book:{symbol}:{depth}"),
        None => format!("book:{symbol}"),
    };
    let depths = &core.shared().config.book.book_depths;
    let channel = match BookChannel::parse(&name, depths) {
        Some(Ok(channel)) if channel.symbol().as_str() == symbol => channel,
        Some(Err(reason)) => return Err((ErrorCode::InvalidChannel, reason.to_string())),
        _ => {
            let message =
                format!("`depth` must be one of {depths:?}, or absent for the whole book");
            return Err((ErrorCode::InvalidChannel, message));
        }
    };
    let depth = channel.depth();
    match core.book_snapshot(channel.symbol(), depth) {
        Some(snapshot) => {
            let mut body = Vec::with_capacity(256);
            write_book(&mut body, &snapshot);
            Ok(json(StatusCode::OK, body))
        }
        None => Err((
            ErrorCode::UnknownSymbol,
            format!("no book seen for `{}`", clip(symbol)),
        )),
    }
}
