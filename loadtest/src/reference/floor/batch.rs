//! What the floor's main thread hands its shards: a new subscriber, or the frames of one
//! ingest read ([`Batch`]), built once (a seq per symbol assigned here) and shared.

use std::collections::HashMap;
use std::io::Write as _;
use std::ops::Range;
use std::sync::Arc;

use crate::reference::http;

/// What the main thread hands a shard.
pub(super) enum ShardMsg {
    /// An upgraded subscriber; `greeting` (101 answer and welcome) is written first.
    Join {
        stream: std::net::TcpStream,
        symbols: Vec<String>,
        greeting: Vec<u8>,
    },
    /// The frames built from one ingest read.
    Batch(Arc<Batch>),
}

/// The frames of one ingest read, built once and shared by every shard.
#[derive(Default)]
pub(super) struct Batch {
    /// Frames (header and payload) back to back.
    pub(super) frames: Vec<u8>,
    /// Symbol names back to back.
    pub(super) names: Vec<u8>,
    /// Per frame: its symbol in `names`, itself in `frames`.
    pub(super) index: Vec<(Range<usize>, Range<usize>)>,
    /// The payload being built (reused).
    scratch: Vec<u8>,
}

impl Batch {
    /// Adds the frame for one ingest line, assigning the symbol's next seq.
    pub(super) fn push(
        &mut self,
        line: &[u8],
        seqs: &mut HashMap<Vec<u8>, u64>,
    ) -> Result<(), &'static str> {
        let (symbol, field_end) = symbol_field(line).ok_or("no \"symbol\" string field")?;
        let name = &line[symbol];
        let seq = match seqs.get_mut(name) {
            Some(seq) => seq,
            None => seqs.entry(name.to_vec()).or_insert(0),
        };
        *seq += 1;
        self.scratch.clear();
        self.scratch.extend_from_slice(br#"{"type":"tick","#);
        self.scratch.extend_from_slice(&line[1..field_end]);
        self.scratch.extend_from_slice(br#","seq":"#);
        // Writing to a Vec cannot fail.
        let _ = write!(self.scratch, "{seq}");
        self.scratch.extend_from_slice(&line[field_end..]);
        let (names_at, frames_at) = (self.names.len(), self.frames.len());
        self.names.extend_from_slice(name);
        http::text_frame(&self.scratch, &mut self.frames);
        self.index
            .push((names_at..self.names.len(), frames_at..self.frames.len()));
        Ok(())
    }
}

/// In `{..."symbol":"X"...}`: the range of `X`, and the index just past its closing quote.
fn symbol_field(line: &[u8]) -> Option<(Range<usize>, usize)> {
    if line.first() != Some(&b'{') {
        return None;
    }
    let key = memchr::memmem::find(line, br#""symbol""#)? + 8;
    let mut i = key;
    while matches!(line.get(i), Some(b' ' | b':')) {
        i += 1;
    }
    if line.get(i) != Some(&b'"') {
        return None;
    }
    let start = i + 1;
    let len = memchr::memchr(b'"', &line[start..])?;
    (len > 0).then_some((start..start + len, start + len + 1))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn frames_carry_the_line_plus_a_seq_per_symbol() {
        let mut seqs = HashMap::new();
        let mut batch = Batch::default();
        let line = br#"{"symbol":"SYM001","price":1.5,"size":0.25,"ts_ns":42}"#;
        batch.push(line, &mut seqs).unwrap();
        batch.push(line, &mut seqs).unwrap();
        batch
            .push(br#"{"symbol":"SYM002","ts_ns":7}"#, &mut seqs)
            .unwrap();
        assert!(batch.push(br#"{"price":1}"#, &mut seqs).is_err());
        let payloads: Vec<serde_json::Value> = batch
            .index
            .iter()
            .map(|(_, f)| serde_json::from_slice(&batch.frames[f.start + 2..f.end]).unwrap())
            .collect();
        assert_eq!(payloads[0]["type"], "tick");
        assert_eq!(payloads[0]["ts_ns"], 42);
        let seqs: Vec<u64> = payloads
            .iter()
            .map(|p| p["seq"].as_u64().unwrap())
            .collect();
        assert_eq!(seqs, [1, 2, 1]);
        assert_eq!(&batch.names[batch.index[2].0.clone()], b"SYM002");
    }

    #[test]
    fn the_symbol_field_is_found_wherever_it_is() {
        let line = br#"{"price":1,"symbol" : "AB","ts_ns":1}"#;
        let (name, end) = symbol_field(line).unwrap();
        assert_eq!(&line[name], b"AB");
        assert_eq!(&line[end..], br#","ts_ns":1}"#);
        assert_eq!(symbol_field(br#"{"symbol":""}"#), None);
        assert_eq!(symbol_field(b"[]"), None);
    }
}
