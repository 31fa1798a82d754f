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

/// Percent-encodes a query value (symbols are `A-Z a-z 0-9 . _ : / -`; `,` separates them;
/// `@` names a rate tier, `BTC-USD@1s`, and stays as it is: a query may hold it, RFC 3986
/// §3.4, and the relay reads it either way).
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
            | b'@'
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
    #[test]
    fn tiers_are_named_and_resumed_as_written() {
        use crate::item::{Item, Kind, Tick, TickTier};
        let symbols = ["A".to_owned(), "A@1s".to_owned()].into_iter().collect();
        let mut seq_check = SeqCheck::default();
        seq_check.welcome(Some("7"));
        let tick = |seq, tier: Option<TickTier>| {
            Item::Tick(Tick {
                symbol: "A".into(),
                seq,
                kind: Kind::Trade,
                ts_ns: seq,
                recv_ns: seq,
                price: Some(1.0),
                size: None,
                bid: None,
                ask: None,
                bid_size: None,
                ask_size: None,
                venue: None,
                tier,
            })
        };
        let tier = |from_seq| TickTier {
            name: "1s".into(),
            from_seq,
            trades: 1,
            volume: 1.0,
            high: None,
            low: None,
        };
        let mut out = Vec::new();
        seq_check.item(tick(9, None), &mut out);
        seq_check.item(tick(5, Some(tier(5))), &mut out);
        let options = Options::new().batch(false);
        let wanted = Wanted {
            base: "ws://relay/ws",
            options: &options,
            symbols: &symbols,
            seq_check: &seq_check,
            resume_in_url: true,
        };
        let (url, resuming) = wanted.url();
        // The raw stream one before its last seq, the tier at its last (seq_check.rs).
        assert_eq!(
            url,
            "ws://relay/ws?symbols=A,A@1s&encoding=json&resume=A:8,A@1s:5&epoch=7"
        );
        assert_eq!(resuming.len(), 2);
    }
}
