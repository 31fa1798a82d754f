//! The URL of the next connection: every wanted symbol and channel, the encoding and slow
//! policy, a resume position for every key with a known seq, and the epoch those seqs
//! belong to (docs/PROTOCOL.md, Connecting).

use std::collections::{BTreeSet, HashSet};

use crate::options::{Options, SlowConsumer};
use crate::seq_check::SeqCheck;
use crate::wire::param;

/// What the next connection asks for.
#[derive(Debug)]
pub(crate) struct Wanted<'a> {
    /// The URL the application gave, e.g. `ws://127.0.0.1:8080/ws`.
    pub(crate) base: &'a str,
    pub(crate) options: &'a Options,
    /// The symbols wanted now; `*` for every symbol.
    pub(crate) symbols: &'a BTreeSet<String>,
    pub(crate) seq_check: &'a SeqCheck,
    /// False after the relay refused the resume list as too long: connect without it.
    pub(crate) resume_in_url: bool,
}

impl Wanted<'_> {
    /// The URL, and the symbols it resumes (a gap for one of them is a replay gap).
    pub(crate) fn url(&self) -> (String, HashSet<String>) {
        let all = self.symbols.contains("*");
        let resume: Vec<(String, u64)> = self
            .seq_check
            .resume_points()
            .into_iter()
            .filter(|(s, _)| self.resume_in_url && (all || self.symbols.contains(s)))
            .collect();
        let mut params = Vec::new();
        // With `*` and positions, `*` is subscribed after the welcome (see the task): at
        // connect its snapshots would come before the replays and break their order.
        let symbols: Vec<&str> = self
            .symbols
            .iter()
            .map(String::as_str)
            .filter(|s| *s != "*" || resume.is_empty())
            .collect();
        if !symbols.is_empty() {
            params.push(format!("{}={}", param::SYMBOLS, encode(&symbols.join(","))));
        }
        if !self.options.channels.is_empty() {
            let channels = encode(&self.options.channels.join(","));
            params.push(format!("{}={channels}", param::CHANNELS));
        }
        params.push(format!(
            "{}={}",
            param::ENCODING,
            self.options.encoding.as_str()
        ));
        if self.options.batch {
            params.push(format!("{}=on", param::BATCH));
        }
        if self.options.slow_consumer == SlowConsumer::Conflate {
            params.push(format!("{}=conflate", param::SLOW));
        }
        if !resume.is_empty() {
            let list: Vec<String> = resume.iter().map(|(s, seq)| format!("{s}:{seq}")).collect();
            params.push(format!("{}={}", param::RESUME, encode(&list.join(","))));
        }
        // Channels resume like symbols (`CHANNEL:SEQ`; the seq follows the last `:`).
        let channels: Vec<String> = self
            .seq_check
            .channel_resume_points()
            .into_iter()
            .filter(|(c, _)| self.options.channels.contains(c))
            .map(|(c, seq)| format!("{c}:{seq}"))
            .collect();
        if !channels.is_empty() {
            let list = encode(&channels.join(","));
            params.push(format!("{}={list}", param::RESUME_CHANNELS));
        }
        if let Some(epoch) = self.seq_check.epoch() {
            params.push(format!("{}={}", param::EPOCH, encode(epoch)));
        }
        let separator = if self.base.contains('?') { '&' } else { '?' };
        let url = format!("{}{separator}{}", self.base, params.join("&"));
        (url, resume.into_iter().map(|(s, _)| s).collect())
    }
}

/// Percent-encodes a query value (symbols are `A-Z a-z 0-9 . _ : / -`; `,` separates them).
fn encode(value: &str) -> String {
    let mut out = String::with_capacity(value.len());
    for byte in value.bytes() {
        match byte {
            b'A'..=b'Z'
            | b'a'..=b'z'
            | b'0'..=b'9'
            | b'.'
            | b'_'
            | b':'
            | b'/'
            | b'-'
            | b','
            | b'*'
            | b'~' => out.push(byte as char),
            _ => out.push_str(&format!("%{byte:02X}")),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::options::BATCH_BY_DEFAULT;

    fn url(options: &Options) -> String {
        let symbols = ["A".to_owned()].into_iter().collect();
        let seq_check = SeqCheck::default();
        let wanted = Wanted {
            base: "ws://relay/ws",
            options,
            symbols: &symbols,
            seq_check: &seq_check,
            resume_in_url: true,
        };
        wanted.url().0
    }

    #[test]
    fn batches_are_asked_for_by_default_exactly_when_the_constant_says_so() {
        let asks = |o: &Options| url(o).contains("&batch=on");
        assert_eq!(asks(&Options::new()), BATCH_BY_DEFAULT);
        assert!(asks(&Options::new().batch(true)));
        assert!(!asks(&Options::new().batch(false)));
        assert_eq!(
            url(&Options::new().batch(true)),
            "ws://relay/ws?symbols=A&encoding=json&batch=on"
        );
    }
}
