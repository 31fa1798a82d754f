//! An event's `data`: the limits every source applies before an event is accepted (size,
//! depth, and a value every client's decoder reads).

use super::error::EventError;

/// Deepest nesting of arrays and objects in an event's `data`. The clients' JSON decoders
/// stop at a depth (serde_json at 128 for a whole frame, which wraps `data` in one or two
/// more levels); 32 is far beyond any event's shape and well inside every decoder's limit.
pub const MAX_EVENT_DEPTH: usize = 32;

/// Checks an event's `data` (one JSON value, already parsed as such) against the limits
/// every source applies: at most `max_data` bytes, nested at most [`MAX_EVENT_DEPTH`] deep,
/// and a value every client decodes: JSON's grammar lets through numbers no double holds
/// (`8e999`) and escapes of lone UTF-16 surrogates (`"\ud800"`), which serde_json (the Rust
/// client's decoder) refuses, so one such event would be as undecodable as a deep one.
pub fn check_data(data: &[u8], max_data: usize) -> Result<(), EventError> {
    if data.len() > max_data {
        return Err(EventError::TooLarge {
            len: data.len(),
            limit: max_data,
        });
    }
    if let Some(depth) = depth_beyond(data, MAX_EVENT_DEPTH) {
        return Err(EventError::TooDeep {
            depth,
            limit: MAX_EVENT_DEPTH,
        });
    }
    // Cold path (events, at most --max-event-bytes): a full parse decides it.
    serde_json::from_slice::<serde_json::Value>(data)
        .map(drop)
        .map_err(|e| EventError::Undecodable(e.to_string()))
}

/// How deep `json` (valid JSON) nests arrays and objects, if deeper than `limit`: the scan
/// stops one level past it. Brackets inside strings do not count.
fn depth_beyond(json: &[u8], limit: usize) -> Option<usize> {
    let (mut depth, mut in_string, mut escaped) = (0usize, false, false);
    for &byte in json {
        if in_string {
            match byte {
                _ if escaped => escaped = false,
                b'\\' => escaped = true,
                b'"' => in_string = false,
                _ => {}
            }
            continue;
        }
        match byte {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                if depth > limit {
                    return Some(depth);
                }
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    None
}
