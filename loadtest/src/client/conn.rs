//! One open session: bytes → frames → messages → counts, and why it ended.

use std::sync::atomic::Ordering;
use std::time::Instant;

use tokio::io::{AsyncWriteExt, Interest};
use tokio::net::TcpStream;

use super::frame::{
    FrameError, FrameHeader, OP_BINARY, OP_CLOSE, OP_CONT, OP_PING, OP_PONG, OP_TEXT,
    encode_client_frame, parse_frame_header, random_mask,
};
use super::worker::{Worker, WorkerProgress, WorkerState};
use super::{ClientPlan, ClientProfile, Encoding};
use crate::decode::{self, DecodeError, GzipStream, Message};
use crate::latency::now_ns;
use crate::seq::SeqTrack;

/// Why a session ended before shutdown.
#[derive(Debug, thiserror::Error)]
pub(super) enum SessionEnd {
    #[error("relay closed the connection (EOF)")]
    Eof,
    #[error("relay sent close {0}")]
    CloseFrame(String),
    #[error("socket error: {0}")]
    Io(#[from] std::io::Error),
    #[error("bad frame from relay: {0}")]
    Frame(#[from] FrameError),
}

/// One open session: its unparsed bytes, fragment buffer, seq state and inflater.
pub(super) struct Conn {
    local: usize,
    profile: ClientProfile,
    slow: bool,
    encoding: Encoding,
    started: Instant,
    welcomed: bool,
    /// (symbol index, its seq state), sorted by index.
    tracks: Vec<(u32, SeqTrack)>,
    /// Bytes of a frame not yet complete.
    pending: Vec<u8>,
    /// Payload of a fragmented message being assembled, and its opcode.
    fragments: Vec<u8>,
    fragment_opcode: Option<u8>,
    gzip: Option<GzipStream>,
    /// Frames to send (pong, close), written after the read is processed.
    replies: Vec<u8>,
    close: Option<String>,
}

impl Conn {
    pub(super) fn new(
        local: usize,
        plan: &ClientPlan,
        started: Instant,
        profile: ClientProfile,
    ) -> Self {
        let mut tracks: Vec<(u32, SeqTrack)> = plan
            .symbols
            .iter()
            .map(|&s| (s, SeqTrack::default()))
            .collect();
        tracks.sort_unstable_by_key(|t| t.0);
        Self {
            local,
            profile,
            slow: plan.slow,
            encoding: plan.encoding,
            started,
            welcomed: false,
            tracks,
            pending: Vec::new(),
            fragments: Vec::new(),
            fragment_opcode: None,
            gzip: (plan.encoding == Encoding::Gzip).then(GzipStream::new),
            replies: Vec::new(),
            close: None,
        }
    }

    pub(super) async fn run(
        &mut self,
        stream: &mut TcpStream,
        worker: &Worker,
        leftover: &[u8],
    ) -> SessionEnd {
        if !leftover.is_empty()
            && let Err(e) = self.process(leftover, worker)
        {
            return e;
        }
        loop {
            if let Some(code) = self.close.take() {
                let _ = stream.write_all(&self.replies).await;
                return SessionEnd::CloseFrame(code);
            }
            if !self.replies.is_empty() {
                if let Err(e) = stream.write_all(&self.replies).await {
                    return e.into();
                }
                self.replies.clear();
            }
            if self.slow && self.welcomed && !worker.slow_awake.get() {
                // A stuck consumer: hold the socket unread until woken (or shut down). On this
                // single thread nothing runs between the check and the wait, so no wake is lost.
                worker.wake.notified().await;
                continue;
            }
            if let Err(e) = stream.readable().await {
                return e.into();
            }
            let mut buf = worker.read_buf.borrow_mut();
            let want = self.read_len(buf.len());
            match read_drained(stream, &mut buf[..want]) {
                Ok(0) => return SessionEnd::Eof,
                Ok(n) => {
                    if let Err(e) = self.process(&buf[..n], worker) {
                        return e;
                    }
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {}
                Err(e) => return e.into(),
            }
        }
    }

    /// Parses and checks every complete frame of `pending + data`; keeps the incomplete tail.
    fn process(&mut self, data: &[u8], worker: &Worker) -> Result<(), SessionEnd> {
        let now = now_ns();
        let mut st = worker.state.borrow_mut();
        let st = &mut *st;
        let mut pending = std::mem::take(&mut self.pending);
        let from_pending = !pending.is_empty();
        if from_pending {
            pending.extend_from_slice(data);
        }
        let src: &[u8] = if from_pending { &pending } else { data };
        st.clients[self.local].counts.reads += 1;
        let ticks_before = st.clients[self.local].counts.ticks;
        let mut off = 0;
        let mut result = Ok(());
        while let Some(header) = match parse_frame_header(&src[off..]) {
            Ok(h) => h,
            Err(e) => {
                result = Err(e.into());
                None
            }
        } {
            if src.len() - off < header.frame_len() {
                break;
            }
            let payload = &src[off + header.header_len..off + header.frame_len()];
            off += header.frame_len();
            let counts = &mut st.clients[self.local].counts;
            counts.frames += 1;
            counts.bytes += header.frame_len() as u64;
            if let Err(e) = self.frame(header, payload, now, st, worker) {
                result = Err(e);
                break;
            }
            if self.close.is_some() {
                break;
            }
        }
        if from_pending {
            pending.drain(..off);
        } else {
            pending.extend_from_slice(&data[off..]);
        }
        self.pending = pending;
        let delivered = st.clients[self.local].counts.ticks - ticks_before;
        if delivered > 0 {
            worker
                .progress
                .ticks
                .fetch_add(delivered, Ordering::Relaxed);
            if !self.slow {
                worker
                    .progress
                    .ticks_fast
                    .fetch_add(delivered, Ordering::Relaxed);
            }
        }
        result
    }

    fn frame(
        &mut self,
        header: FrameHeader,
        payload: &[u8],
        now: u64,
        st: &mut WorkerState,
        worker: &Worker,
    ) -> Result<(), SessionEnd> {
        match header.opcode {
            OP_TEXT | OP_BINARY if self.fragment_opcode.is_some() => {
                Err(FrameError::Fragmentation.into())
            }
            OP_TEXT | OP_BINARY if header.fin => {
                self.message(payload, now, st, worker);
                Ok(())
            }
            OP_TEXT | OP_BINARY => {
                self.fragment_opcode = Some(header.opcode);
                self.fragments.clear();
                self.fragments.extend_from_slice(payload);
                Ok(())
            }
            OP_CONT => {
                if self.fragment_opcode.is_none() {
                    return Err(FrameError::Fragmentation.into());
                }
                self.fragments.extend_from_slice(payload);
                if header.fin {
                    self.fragment_opcode = None;
                    let whole = std::mem::take(&mut self.fragments);
                    self.message(&whole, now, st, worker);
                    self.fragments = whole;
                }
                Ok(())
            }
            OP_PING => {
                encode_client_frame(OP_PONG, payload, random_mask(), &mut self.replies);
                Ok(())
            }
            OP_CLOSE => {
                let code = match payload {
                    [a, b, reason @ ..] => format!(
                        "{} {}",
                        u16::from_be_bytes([*a, *b]),
                        String::from_utf8_lossy(reason)
                    ),
                    _ => "(no code)".to_owned(),
                };
                encode_client_frame(
                    OP_CLOSE,
                    payload.get(..2).unwrap_or(&[]),
                    random_mask(),
                    &mut self.replies,
                );
                self.close = Some(code);
                Ok(())
            }
            _ => Ok(()), // pong
        }
    }

    /// Decodes one whole message and applies it to the counters.
    fn message(&mut self, payload: &[u8], now: u64, st: &mut WorkerState, worker: &Worker) {
        match self.encoding {
            Encoding::Json => self.json(payload, now, st, &worker.progress),
            Encoding::Protobuf => {
                self.apply(decode::scan_protobuf(payload), now, st, &worker.progress);
            }
            Encoding::Gzip => {
                let mut out = worker.inflate_buf.borrow_mut();
                let gzip = self.gzip.as_mut().expect("gzip sessions own an inflater");
                match gzip.inflate_frame(payload, &mut out) {
                    Ok(()) => self.json(&out, now, st, &worker.progress),
                    Err(e) => self.apply(Err(e), now, st, &worker.progress),
                }
            }
        }
    }

    /// One JSON message: the field scanner, or for the heavy profile a full `serde_json`
    /// parse into a `Value` (what a typical client pays) and the fields read from that.
    fn json(&mut self, msg: &[u8], now: u64, st: &mut WorkerState, progress: &WorkerProgress) {
        if self.profile == ClientProfile::Heavy {
            let parsed = serde_json::from_slice::<serde_json::Value>(msg);
            let decoded = match &parsed {
                Ok(v) => decode::from_value(v),
                Err(_) => Err(DecodeError::NotJson),
            };
            self.apply(decoded, now, st, progress);
        } else {
            self.apply(decode::scan_json(msg), now, st, progress);
        }
    }

    /// How much the next read asks for. Light: whatever the kernel has, up to the buffer.
    /// Heavy: what the frame in progress still needs plus the first 4 bytes of the next (a
    /// whole header for any frame under 64 KiB: 2 bytes, or 4 with the 16-bit length that
    /// payloads of 126 bytes or more carry), so a read never brings more than one frame: one
    /// read per frame while frames stream in back to back, two for a frame that arrives alone
    /// (its header, then the rest). With only 2 bytes of look-ahead a frame of 126 bytes or
    /// more cost an extra read for the rest of its header, so servers with larger frames paid
    /// two reads per frame where smaller ones paid one; now the rule does not depend on size.
    fn read_len(&self, buf_len: usize) -> usize {
        if self.profile == ClientProfile::Light {
            return buf_len;
        }
        let p = &self.pending;
        let need = match parse_frame_header(p) {
            Ok(Some(h)) => h.frame_len().saturating_sub(p.len()) + LOOK_AHEAD,
            Ok(None) if p.len() < LOOK_AHEAD => LOOK_AHEAD - p.len(),
            // The 16- or 64-bit length follows the first 2 bytes.
            Ok(None) => (if p[1] & 0x7f == 126 { 4 } else { 10 }) - p.len(),
            Err(_) => buf_len,
        };
        need.clamp(1, buf_len)
    }

    fn apply(
        &mut self,
        decoded: Result<Message<'_>, DecodeError>,
        now: u64,
        st: &mut WorkerState,
        progress: &WorkerProgress,
    ) {
        let counts = &mut st.clients[self.local].counts;
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
                        st.latency.record_since(now, ts_ns);
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
                    st.handshake
                        .record_us(u64::try_from(us).unwrap_or(u64::MAX));
                    // Progress is read by the coordinator only; Relaxed is enough for a count.
                    progress.welcomed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Message::Error => counts.error_msgs += 1,
            Message::Other => counts.other_msgs += 1,
        }
    }
}

/// One read syscall per wakeup: a read shorter than the buffer emptied the socket, so
/// readiness is cleared right away instead of by a second read that would return WouldBlock.
/// No wakeup is lost: data arriving later is a new epoll edge, and tokio ignores a clear made
/// with an older readiness tick.
fn read_drained(stream: &TcpStream, buf: &mut [u8]) -> std::io::Result<usize> {
    let mut got = None;
    let result = stream.try_io(Interest::READABLE, || {
        let n = stream.try_read(buf)?;
        if n > 0 && n < buf.len() {
            got = Some(n);
            return Err(std::io::ErrorKind::WouldBlock.into());
        }
        Ok(n)
    });
    match got {
        Some(n) => Ok(n),
        None => result,
    }
}

fn track<'t>(tracks: &'t mut [(u32, SeqTrack)], symbol: &[u8]) -> Option<&'t mut SeqTrack> {
    let id = crate::symbols::symbol_id(symbol)?;
    let i = tracks.binary_search_by_key(&id, |t| t.0).ok()?;
    Some(&mut tracks[i].1)
}

/// Bytes of the next frame a heavy client's read asks for beyond the frame in progress: the
/// whole header of any frame under 64 KiB (see `Conn::read_len`).
const LOOK_AHEAD: usize = 4;

#[cfg(test)]
mod tests {
    use super::*;

    fn heavy() -> Conn {
        let plan = ClientPlan {
            id: 0,
            symbols: vec![0],
            encoding: Encoding::Json,
            source: None,
            slow: false,
            recv_buffer: None,
        };
        Conn::new(0, &plan, Instant::now(), ClientProfile::Heavy)
    }

    /// A server text frame of `payload` bytes: 2-byte header under 126, 4-byte from 126.
    fn frame(payload: usize) -> Vec<u8> {
        let mut f = vec![0x81];
        if payload < 126 {
            f.push(payload as u8);
        } else {
            f.push(126);
            f.extend_from_slice(&(payload as u16).to_be_bytes());
        }
        f.resize(f.len() + payload, b'x');
        f
    }

    /// Reads a stream of back-to-back frames the way the heavy client does; returns how
    /// many reads it took.
    fn reads_for(frames: usize, payload: usize) -> usize {
        let mut conn = heavy();
        let stream: Vec<u8> = (0..frames).flat_map(|_| frame(payload)).collect();
        let (mut at, mut reads) = (0, 0);
        while at < stream.len() {
            let want = conn.read_len(64 * 1024).min(stream.len() - at);
            conn.pending.extend_from_slice(&stream[at..at + want]);
            at += want;
            reads += 1;
            // Take every complete frame off the front, as the read loop does.
            while let Ok(Some(h)) = parse_frame_header(&conn.pending) {
                if conn.pending.len() < h.frame_len() {
                    break;
                }
                conn.pending.drain(..h.frame_len());
            }
        }
        reads
    }

    #[test]
    fn heavy_reads_cost_one_per_frame_whatever_the_header_size() {
        // 99-byte and 146-byte frames (a 2-byte and a 4-byte header): the same reads.
        let small = reads_for(100, 97);
        let large = reads_for(100, 142);
        assert_eq!(small, large, "reads for 100 small frames vs 100 large ones");
        assert!(
            small <= 101,
            "one read per frame in a stream, plus the first header: {small}"
        );
    }
}
