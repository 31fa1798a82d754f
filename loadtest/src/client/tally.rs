//! One connection's tally: each whole message decoded in the session's encoding and counted
//! (ticks seq-checked per symbol and timed, snapshots and gap notices moving the baseline, the
//! first welcome timing the handshake).

use std::sync::atomic::Ordering;
use std::time::Instant;

use super::thread_state::{Figures, ThreadState};
use super::{ClientPlan, ClientProfile, Encoding, Feed};
use crate::decode::{self, DecodeError, GzipStream, Message};
use crate::seq::SeqTrack;
use crate::symbols::symbol_id;
use crate::tier_seq::TierTrack;

/// What one connection needs to decode and count its messages.
pub(super) struct Tally {
    /// The client's index in its thread's figures.
    local: usize,
    profile: ClientProfile,
    slow: bool,
    encoding: Encoding,
    /// Several messages per frame (`batch=on`): NDJSON text, `ServerBatch` binary frames.
    batch: bool,
    /// When the TCP connect started (the handshake time ends at the welcome).
    started: Instant,
    welcomed: bool,
    /// (symbol index, its seq state), sorted by index.
    tracks: Vec<(u32, SeqTrack)>,
    /// A rate-tier client: (symbol index, its tier state), sorted by index; its frames are
    /// checked here and never counted as ticks.
    tier_tracks: Option<Vec<(u32, TierTrack)>>,
    gzip: Option<GzipStream>,
}

impl Tally {
    /// The tally of client `local` of its thread, following `plan`; `batch` when its frames
    /// may hold several messages.
    pub(super) fn new(
        local: usize,
        plan: &ClientPlan,
        started: Instant,
        profile: ClientProfile,
        batch: bool,
    ) -> Self {
        let mut tracks: Vec<(u32, SeqTrack)> = plan
            .symbols
            .iter()
            .map(|&s| (s, SeqTrack::default()))
            .collect();
        tracks.sort_unstable_by_key(|t| t.0);
        let tier_tracks = matches!(plan.feed, Feed::Tier(_)).then(|| {
            tracks
                .iter()
                .map(|&(s, _)| (s, TierTrack::default()))
                .collect()
        });
        Self {
            local,
            profile,
            slow: plan.slow,
            encoding: plan.encoding,
            batch,
            started,
            welcomed: false,
            tracks,
            tier_tracks,
            gzip: (plan.encoding == Encoding::Gzip).then(GzipStream::new),
        }
    }

    /// The client's index in its thread's figures.
    pub(super) fn local(&self) -> usize {
        self.local
    }

    /// A stuck consumer (the `slow` mode's).
    pub(super) fn slow(&self) -> bool {
        self.slow
    }

    /// Whether the welcome has arrived.
    pub(super) fn welcomed(&self) -> bool {
        self.welcomed
    }

    /// Decodes one whole WebSocket message (one message, or with `batch` every message it
    /// holds, in order) and applies each to the counters.
    pub(super) fn message(
        &mut self,
        payload: &[u8],
        now: u64,
        fig: &mut Figures,
        threads: &ThreadState,
    ) {
        match (self.encoding, self.batch) {
            (Encoding::Json, false) => self.json(payload, now, fig, threads),
            (Encoding::Json, true) => {
                for line in decode::ndjson_lines(payload) {
                    self.json(line, now, fig, threads);
                }
            }
            (Encoding::Protobuf, false) => {
                self.apply(decode::scan_protobuf(payload), now, fig, threads);
            }
            (Encoding::Protobuf, true) => {
                let walked = decode::server_batch(payload, |msg| {
                    self.apply(decode::scan_protobuf(msg), now, fig, threads);
                });
                if let Err(e) = walked {
                    self.apply(Err(e), now, fig, threads);
                }
            }
            (Encoding::Gzip, batch) => {
                let mut out = threads.inflate_buf.borrow_mut();
                let gzip = self.gzip.as_mut().expect("gzip sessions own an inflater");
                match gzip.inflate_frame(payload, &mut out) {
                    Ok(()) if batch => {
                        for line in decode::ndjson_lines(&out) {
                            self.json(line, now, fig, threads);
                        }
                    }
                    Ok(()) => self.json(&out, now, fig, threads),
                    Err(e) => self.apply(Err(e), now, fig, threads),
                }
            }
        }
    }

    /// One JSON message: the field scanner, or for the heavy profile a full `serde_json`
    /// parse into a `Value` (what a typical client pays) and the fields read from that.
    pub(super) fn json(&mut self, msg: &[u8], now: u64, fig: &mut Figures, threads: &ThreadState) {
        if self.tier_tracks.is_some() {
            self.tier_json(msg, now, fig, threads);
            return;
        }
        if self.profile == ClientProfile::Heavy {
            let parsed = serde_json::from_slice::<serde_json::Value>(msg);
            let decoded = match &parsed {
                Ok(v) => decode::from_value(v),
                Err(_) => Err(DecodeError::NotJson),
            };
            self.apply(decoded, now, fig, threads);
        } else {
            self.apply(decode::scan_json(msg), now, fig, threads);
        }
    }

    /// Counts one decoded message (or the failure to decode one).
    pub(super) fn apply(
        &mut self,
        decoded: Result<Message<'_>, DecodeError>,
        now: u64,
        fig: &mut Figures,
        threads: &ThreadState,
    ) {
        let counts = &mut fig.clients[self.local].counts;
        counts.messages += 1;
        let Ok(msg) = decoded else {
            counts.decode_errors += 1;
            return;
        };
        match msg {
            Message::Tick { symbol, seq, ts_ns } => match track(&mut self.tracks, symbol) {
                Some(t) => {
                    t.on_tick(seq, &mut counts.seq);
                    counts.ticks += 1;
                    if !self.slow {
                        fig.latency.record_since(now, ts_ns);
                    }
                }
                None => counts.unexpected_symbol += 1,
            },
            Message::Snapshot { symbol, seq } => {
                counts.snapshots += 1;
                if let Some(t) = track(&mut self.tracks, symbol) {
                    t.on_snapshot(seq);
                }
            }
            Message::Gap { symbol, from, to } => {
                counts.relay_gaps += 1;
                counts.relay_gap_ticks += (to + 1).saturating_sub(from);
                if let Some(t) = track(&mut self.tracks, symbol) {
                    t.on_gap_notice(to);
                }
            }
            Message::Welcome => {
                counts.other_msgs += 1;
                if !self.welcomed {
                    self.welcomed = true;
                    counts.welcomed = true;
                    let us = self.started.elapsed().as_micros();
                    fig.handshake
                        .record_us(u64::try_from(us).unwrap_or(u64::MAX));
                    // Progress is read by the coordinator only; Relaxed is enough for a count.
                    threads.progress.welcomed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Error => counts.error_msgs += 1,
            Message::Other => counts.other_msgs += 1,
        }
    }
}

impl Tally {
    /// One JSON message to a rate-tier client: frames, snapshots and gap notices go to its
    /// tier tracks; anything else is counted as [`Self::apply`] counts it.
    fn tier_json(&mut self, msg: &[u8], now: u64, fig: &mut Figures, threads: &ThreadState) {
        enum Tier {
            Frame,
            Snapshot,
            Gap,
        }
        let (symbol, seq, kind) = match decode::scan_json(msg) {
            Ok(Message::Tick { symbol, seq, .. }) => (symbol, seq, Tier::Frame),
            Ok(Message::Snapshot { symbol, seq }) => (symbol, seq, Tier::Snapshot),
            Ok(Message::Gap { symbol, to, .. }) => (symbol, to, Tier::Gap),
            other => return self.apply(other, now, fig, threads),
        };
        let tracks = self
            .tier_tracks
            .as_mut()
            .expect("tier_json is called for tier clients only");
        let counts = &mut fig.clients[self.local].counts;
        counts.messages += 1;
        let Some(t) = track(tracks, symbol) else {
            counts.unexpected_symbol += 1;
            return;
        };
        match kind {
            Tier::Frame => t.on_frame(seq, decode::from_seq(msg), &mut counts.tier),
            Tier::Snapshot => t.on_snapshot(seq, &mut counts.tier),
            Tier::Gap => t.on_gap_notice(seq, &mut counts.tier),
        }
    }
}

/// The state of `symbol` among a client's `tracks` (seq or tier), if it subscribed to it.
fn track<'t, T>(tracks: &'t mut [(u32, T)], symbol: &[u8]) -> Option<&'t mut T> {
    let id = symbol_id(symbol)?;
    let i = tracks.binary_search_by_key(&id, |t| t.0).ok()?;
    Some(&mut tracks[i].1)
}
