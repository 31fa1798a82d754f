//! permessage-deflate (RFC 7692): the compressed frames of one negotiated client, and the
//! bounded inflation of what such a client sends.
//!
//! Sending. A compressing client gets a [`DeflateStream`] in its encoder. Each message at
//! least `min_bytes` long is raw-deflated with a sync flush, the flush's trailing
//! `00 00 ff ff` is cut (§7.2.1) and the frame goes out with RSV1 set; shorter messages go
//! out as the shared, uncompressed frame every other client gets (§6: compression is chosen
//! per message). With context takeover the client owns a compressor, so each tick is
//! compressed against the ones before it (what makes a 150-byte tick shrink, as for gzip);
//! the state is dropped when the client goes idle and the next message starts a fresh
//! compressor, which is valid because a compressor never refers back to bytes it did not
//! produce and the client's inflater keeps its own window. With `server_no_context_takeover`
//! every message stands alone, so the shard thread's one compressor serves every such client
//! (reset per message) and the client holds no deflate state at all.
//!
//! Receiving. The relay always answers `client_no_context_takeover` (§7.1.1.2 lets a server
//! ask for it, and a client must honour it): every client message inflates on its own, so the
//! shard thread's one inflater, reset per message, serves all clients, and no client holds an
//! inflate window. The inflated size is bounded while inflating ([`inflate`]): a deflate bomb
//! stops at `limit + 1` bytes, never allocating more.

use std::cell::RefCell;

use bytes::{BufMut, Bytes, BytesMut};
use flate2::{Compress, Compression, Decompress, FlushCompress, FlushDecompress, Status};

use super::ws_frame::{self, OpCode};

/// What a permessage-deflate negotiation settled for the server's side of the connection.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct DeflateParams {
    /// `server_no_context_takeover`: every message is compressed on its own.
    pub no_context_takeover: bool,
    /// The compressor's LZ77 window, 2^bits bytes (9..=15; `server_max_window_bits` bounds it).
    pub window_bits: u8,
}

impl DeflateParams {
    /// Context takeover with the relay's own window ([`WINDOW_BITS`]).
    pub fn new() -> Self {
        Self {
            no_context_takeover: false,
            window_bits: WINDOW_BITS,
        }
    }
}

impl Default for DeflateParams {
    fn default() -> Self {
        Self::new()
    }
}

/// One compressing client's side of permessage-deflate.
#[derive(Debug)]
pub struct DeflateStream {
    params: DeflateParams,
    /// Payloads shorter than this go out uncompressed.
    min_bytes: usize,
    /// This client's compressor (context takeover only) and frame buffers.
    state: Compressor,
    /// Payload bytes compressed and compressed bytes produced, not yet counted in metrics.
    counts: (u64, u64),
}

impl DeflateStream {
    /// A stream with `params`, compressing payloads of at least `min_bytes`.
    pub fn new(params: DeflateParams, min_bytes: usize) -> Self {
        Self {
            params,
            min_bytes,
            state: Compressor::default(),
            counts: (0, 0),
        }
    }

    /// Whether a payload of `len` bytes is compressed.
    pub fn compresses(&self, len: usize) -> bool {
        len >= self.min_bytes
    }

    /// The frame of `payload`: compressed with RSV1 set when it is long enough, otherwise a
    /// plain frame (callers holding a shared plain frame send that instead).
    pub fn frame(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        if !self.compresses(payload.len()) {
            return ws_frame::frame(opcode, payload);
        }
        let bits = self.params.window_bits;
        if self.params.no_context_takeover {
            let scratch = self.state.scratch();
            SHARED_DEFLATE.with_borrow_mut(|slot| {
                let deflate = match slot {
                    Some((held_bits, deflate)) if *held_bits == bits => deflate,
                    _ => &mut slot.insert((bits, new_compressor(bits))).1,
                };
                compress_sync(deflate, payload, scratch);
                deflate.reset();
            });
        } else {
            self.state.compress(|| new_compressor(bits), payload);
        }
        // §7.2.1: a sync flush ends with an empty stored block, 00 00 ff ff; it is cut.
        let compressed = self.state.compressed();
        debug_assert!(compressed.ends_with(&SYNC_TAIL));
        let len = compressed.len().saturating_sub(SYNC_TAIL.len());
        self.counts.0 += payload.len() as u64;
        self.counts.1 += len as u64;
        self.state.carve(FIN_RSV1 | opcode as u8, len)
    }

    /// Drops the compressor and buffers (the next message starts a fresh compressor).
    pub fn release(&mut self) {
        self.state.release();
    }

    /// Releases the state if no message was compressed since the last call.
    pub fn release_if_idle(&mut self) {
        self.state.release_if_idle();
    }

    /// Whether this client holds a compressor now.
    pub fn holds_state(&self) -> bool {
        self.state.holds_state()
    }

    /// Payload bytes compressed and compressed bytes produced since the last call.
    pub fn take_counts(&mut self) -> (u64, u64) {
        std::mem::take(&mut self.counts)
    }
}

/// Why a compressed client message could not be inflated.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InflateError {
    /// It inflates past the limit (a deflate bomb, or just too big).
    #[error("compressed message inflates past {limit} bytes")]
    TooBig {
        /// The limit.
        limit: usize,
    },
    /// Not a valid raw deflate stream.
    #[error("compressed message is not valid deflate data")]
    Corrupt,
}

/// Inflates one permessage-deflate message (without its cut `00 00 ff ff`) with the shard
/// thread's inflater, never producing more than `limit + 1` bytes.
pub fn inflate(compressed: &[u8], limit: usize) -> Result<Vec<u8>, InflateError> {
    SHARED_INFLATE.with_borrow_mut(|slot| {
        let inflater = slot.get_or_insert_with(|| Decompress::new(false));
        inflater.reset(false);
        let result = inflate_with(inflater, compressed, limit);
        if result.is_err() {
            // A failed stream leaves the state mid-block; the next message resets it anyway.
            inflater.reset(false);
        }
        result
    })
}

fn inflate_with(
    inflater: &mut Decompress,
    compressed: &[u8],
    limit: usize,
) -> Result<Vec<u8>, InflateError> {
    let mut out: Vec<u8> = Vec::new();
    let inputs = [compressed, &SYNC_TAIL[..]];
    let mut part = 0;
    let mut offset = 0;
    loop {
        if out.len() > limit {
            return Err(InflateError::TooBig { limit });
        }
        if out.capacity() == out.len() {
            // Grow in steps, never past limit + 1: what a bomb can make us hold.
            let room = (limit.saturating_add(1) - out.len()).min(INFLATE_STEP.max(out.len()));
            out.reserve_exact(room);
        }
        let input = &inputs[part][offset..];
        let (before_in, before_out) = (inflater.total_in(), out.len());
        let status = inflater
            .decompress_vec(input, &mut out, FlushDecompress::Sync)
            .map_err(|_| InflateError::Corrupt)?;
        let taken = usize::try_from(inflater.total_in() - before_in)
            .expect("an inflater takes at most its input");
        offset += taken;
        if status == Status::StreamEnd {
            // A final block: the message is complete (the rest, our tail, is ignored).
            break;
        }
        if offset == inputs[part].len() {
            if part + 1 < inputs.len() {
                part += 1;
                offset = 0;
                continue;
            }
            if out.len() < out.capacity() {
                // All input taken and room left: everything is out.
                break;
            }
        } else if taken == 0 && out.len() == before_out && out.len() < out.capacity() {
            // Input left, room left, no progress: the data is not deflate.
            return Err(InflateError::Corrupt);
        }
    }
    if out.len() > limit {
        return Err(InflateError::TooBig { limit });
    }
    Ok(out)
}

/// One client's compressor and the buffers its frames are built in, held only while the
/// client receives (gzip streams and permessage-deflate clients share it): released, an idle
/// client holds no deflate state (~210 KiB resident each).
#[derive(Debug, Default)]
pub struct Compressor {
    deflate: Option<Compress>,
    /// A message was compressed since the last [`Compressor::release_if_idle`].
    used: bool,
    scratch: Vec<u8>,
    arena: BytesMut,
}

impl Compressor {
    /// The emptied output buffer for a message compressed elsewhere (a shared compressor).
    pub fn scratch(&mut self) -> &mut Vec<u8> {
        self.used = true;
        self.scratch.clear();
        &mut self.scratch
    }

    /// Compresses `message` with a sync flush into the output buffer, with this client's
    /// compressor (made by `make` when none is held).
    pub fn compress(&mut self, make: impl FnOnce() -> Compress, message: &[u8]) {
        self.used = true;
        self.scratch.clear();
        let deflate = self.deflate.get_or_insert_with(make);
        compress_sync(deflate, message, &mut self.scratch);
    }

    /// What the last message compressed to.
    pub fn compressed(&self) -> &[u8] {
        &self.scratch
    }

    /// The first `len` compressed bytes as one frame with first byte `first` (see [`carve`]).
    pub fn carve(&mut self, first: u8, len: usize) -> Bytes {
        carve(&mut self.arena, first, &self.scratch[..len])
    }

    /// Drops the compressor and buffers (the next message starts a fresh compressor).
    pub fn release(&mut self) {
        *self = Self::default();
    }

    /// Releases the state if no message was compressed since the last call.
    pub fn release_if_idle(&mut self) {
        if !std::mem::take(&mut self.used) {
            self.release();
        }
    }

    /// Whether a compressor is held now.
    pub fn holds_state(&self) -> bool {
        self.deflate.is_some()
    }
}

/// Compresses `message` into `out` with a sync flush (the shared loop of gzip and
/// permessage-deflate): the output ends on a byte boundary with `00 00 ff ff`.
pub fn compress_sync(deflate: &mut Compress, message: &[u8], out: &mut Vec<u8>) {
    let start_in = deflate.total_in();
    loop {
        // A sync flush is complete once deflate returns with output space left over.
        if out.capacity() - out.len() < 64 {
            out.reserve(message.len() / 2 + 64);
        }
        let consumed = usize::try_from(deflate.total_in() - start_in)
            .expect("consumed input never exceeds the message length");
        let status = deflate
            .compress_vec(&message[consumed..], out, FlushCompress::Sync)
            .expect("deflate with a sync flush on a live stream cannot fail");
        let consumed = usize::try_from(deflate.total_in() - start_in)
            .expect("consumed input never exceeds the message length");
        let room_left = out.len() < out.capacity();
        if consumed == message.len() && room_left || status == Status::StreamEnd {
            break;
        }
    }
}

/// Appends a frame (first header byte `first`, then `payload`) to `arena` and splits it off:
/// frames are carved from blocks of [`ARENA_BLOCK`], so a delivery does not allocate alone.
pub fn carve(arena: &mut BytesMut, first: u8, payload: &[u8]) -> Bytes {
    let len = payload.len();
    if arena.capacity() < ws_frame::MAX_HEADER_LEN + len {
        arena.reserve(ARENA_BLOCK.max(ws_frame::MAX_HEADER_LEN + len));
    }
    ws_frame::write_head(arena, first, len);
    arena.put_slice(payload);
    arena.split().freeze()
}

fn new_compressor(window_bits: u8) -> Compress {
    Compress::new_with_window_bits(Compression::new(LEVEL), false, window_bits)
}

thread_local! {
    /// The shard thread's compressor for clients without context takeover (and its bits).
    static SHARED_DEFLATE: RefCell<Option<(u8, Compress)>> = const { RefCell::new(None) };
    /// The shard thread's inflater: every client compresses without context takeover.
    static SHARED_INFLATE: RefCell<Option<Decompress>> = const { RefCell::new(None) };
}

/// Deflate level 1, for gzip and permessage-deflate. Measured with zlib-rs on 145-byte tick
/// JSON, sync flush per message, 4 KiB window, one stream: level 1 ≈ 2.0 µs and 32 B per
/// message, level 6 ≈ 5.9 µs / 31.5 B; on more varied ticks (benches/encode.rs) level 6 is
/// 15% smaller for ~4x the CPU. Per-client CPU is the scarcer resource (miniz_oxide: 14 µs /
/// 47 B at level 1).
pub const LEVEL: u32 = 1;
/// 2^12 = 4 KiB window: ~25 recent ticks of context, plenty for repeated keys and symbols
/// (a permessage-deflate client may ask for less).
pub const WINDOW_BITS: u8 = 12;
/// Smallest window flate2 (and zlib) can compress with: 2^9. An offer of
/// `server_max_window_bits=8` is declined.
pub const MIN_WINDOW_BITS: u8 = 9;
/// The end of every sync flush, cut from each message and put back before inflating.
const SYNC_TAIL: [u8; 4] = [0x00, 0x00, 0xff, 0xff];
/// FIN and RSV1 ("this message is compressed", RFC 7692 §6).
const FIN_RSV1: u8 = 0x80 | 0x40;
/// Frames are carved from blocks of this size.
pub const ARENA_BLOCK: usize = 16 * 1024;
/// Inflate output grows by at least this much per step.
const INFLATE_STEP: usize = 4 * 1024;

#[cfg(test)]
mod tests {
    use super::*;

    /// Frames one after another in memory: carved from one block, not allocated each.
    fn one_block(frames: &[Bytes]) -> bool {
        frames
            .windows(2)
            .all(|w| w[1].as_ptr() == w[0].as_ptr().wrapping_add(w[0].len()))
    }

    #[test]
    fn frames_are_carved_from_shared_blocks_and_a_frame_that_fits_stays_in_its_block() {
        let mut arena = BytesMut::new();
        let payload = [7u8; 200];
        let small: Vec<Bytes> = (0..40).map(|_| carve(&mut arena, 0x81, &payload)).collect();
        assert!(one_block(&small[..20]), "4 KiB of frames share one block");
        for frame in &small {
            assert_eq!((frame.len(), &frame[4..]), (204, &payload[..]));
        }
        // A frame that fits the block's rest exactly (by the largest header) goes there.
        let last = carve(&mut arena, 0x81, &payload);
        let rest = vec![9u8; arena.capacity() - ws_frame::MAX_HEADER_LEN];
        let fitting = carve(&mut arena, 0x82, &rest);
        assert!(
            one_block(&[last, fitting.clone()]),
            "the block's rest is used"
        );
        assert_eq!(&fitting[fitting.len() - rest.len()..], &rest[..]);
        // A frame larger than a block is carved alone, whole.
        let big = vec![1u8; ARENA_BLOCK * 2];
        let alone = carve(&mut arena, 0x82, &big);
        assert_eq!((alone.len(), &alone[4..]), (big.len() + 4, &big[..]));
        assert!(
            arena.capacity() < ARENA_BLOCK,
            "room for that frame, not a multiple of it: {} left",
            arena.capacity()
        );
    }

    /// What a client's inflater does: put the tail back and inflate, keeping the window
    /// (context takeover) across messages.
    fn client_inflate(inflater: &mut Decompress, frame: &Bytes) -> Vec<u8> {
        assert_eq!(frame[0] & 0x40, 0x40, "RSV1 set on a compressed frame");
        let skip = match frame[1] & 0x7F {
            126 => 4,
            127 => 10,
            _ => 2,
        };
        let mut input = frame[skip..].to_vec();
        input.extend_from_slice(&SYNC_TAIL);
        let mut out = Vec::with_capacity(64 * 1024);
        inflater
            .decompress_vec(&input, &mut out, FlushDecompress::Sync)
            .unwrap();
        out
    }

    fn tick(seq: u64) -> String {
        format!(
            r#"{{"type":"tick","symbol":"BTC-USD","seq":{seq},"kind":"trade","ts_ns":17640000000{seq:08},"price":{}.5,"size":0.25}}"#,
            43000 + seq % 17
        )
    }

    #[test]
    fn context_takeover_frames_inflate_in_order_and_shrink_across_releases() {
        let mut stream = DeflateStream::new(DeflateParams::new(), 0);
        let mut inflater = Decompress::new(false);
        let (mut plain, mut sent) = (0, 0);
        for seq in 0..200 {
            if seq % 50 == 49 {
                stream.release();
                assert!(!stream.holds_state());
            }
            let msg = tick(seq);
            let frame = stream.frame(OpCode::Text, msg.as_bytes());
            assert_eq!(frame[0], 0xC1, "FIN + RSV1 + text");
            assert_eq!(client_inflate(&mut inflater, &frame), msg.as_bytes());
            plain += msg.len();
            sent += frame.len();
        }
        assert!(sent * 2 < plain, "{sent} compressed vs {plain} plain");
        assert_eq!(stream.take_counts().0, plain as u64);
        stream.release_if_idle();
        assert!(stream.holds_state(), "used since the last check: kept");
        stream.release_if_idle();
        assert!(!stream.holds_state(), "idle for a whole period: released");
    }

    #[test]
    fn no_context_takeover_messages_inflate_alone_and_hold_no_state() {
        let params = DeflateParams {
            no_context_takeover: true,
            window_bits: 9,
        };
        let mut stream = DeflateStream::new(params, 0);
        for seq in 0..20 {
            let msg = tick(seq).repeat(4);
            let frame = stream.frame(OpCode::Binary, msg.as_bytes());
            assert_eq!(frame[0], 0xC2);
            // A fresh inflater with the smallest window per message.
            let mut alone = Decompress::new_with_window_bits(false, 9);
            assert_eq!(client_inflate(&mut alone, &frame), msg.as_bytes());
            assert!(!stream.holds_state());
        }
    }

    #[test]
    fn the_threads_shared_compressor_is_made_again_for_another_window() {
        // Repeats 600 bytes apart: a 2^15 window refers back to them, 2^9 cannot. (zlib-rs
        // inflates such a reference even with a 2^9 window, so the frame itself is compared
        // with a fresh compressor's of the agreed window.)
        let message = lines(600).repeat(2);
        for bits in [15, 9, 15, 9] {
            let params = DeflateParams {
                no_context_takeover: true,
                window_bits: bits,
            };
            let frame = DeflateStream::new(params, 0).frame(OpCode::Binary, &message);
            let mut fresh = Vec::new();
            compress_sync(&mut new_compressor(bits), &message, &mut fresh);
            fresh.truncate(fresh.len() - SYNC_TAIL.len());
            let payload = &frame[if frame[1] & 0x7F == 126 { 4 } else { 2 }..];
            assert_eq!(payload, &fresh[..], "{bits} bits");
        }
    }

    #[test]
    fn short_messages_go_out_plain() {
        let mut stream = DeflateStream::new(DeflateParams::new(), 64);
        let frame = stream.frame(OpCode::Text, b"{\"type\":\"pong\"}");
        assert_eq!(frame[0], 0x81, "no RSV1");
        assert_eq!(&frame[2..], b"{\"type\":\"pong\"}");
        assert_eq!(stream.take_counts(), (0, 0));
    }

    #[test]
    fn inflate_round_trips_and_bounds_a_bomb() {
        let mut stream = DeflateStream::new(DeflateParams::new(), 0);
        let msg = tick(1);
        let frame = stream.frame(OpCode::Text, msg.as_bytes());
        assert_eq!(&inflate(&frame[2..], 1024).unwrap()[..], msg.as_bytes());
        // 10 MB of zeros compresses to ~10 KB: refused at the limit, holding at most limit + 1.
        let zeros = vec![0u8; 10_000_000];
        let mut bomb = Vec::new();
        let mut deflate = Compress::new(Compression::best(), false);
        compress_sync(&mut deflate, &zeros, &mut bomb);
        bomb.truncate(bomb.len() - 4);
        assert!(bomb.len() < 20_000, "{}", bomb.len());
        assert_eq!(
            inflate(&bomb, 65_536),
            Err(InflateError::TooBig { limit: 65_536 })
        );
        assert_eq!(inflate(&bomb, 10_000_000).unwrap().len(), 10_000_000);
        assert_eq!(
            inflate(&[0xff, 0xff, 0xff], 1024),
            Err(InflateError::Corrupt)
        );
        // The shared inflater is usable again after an error.
        assert_eq!(&inflate(&frame[2..], 1024).unwrap()[..], msg.as_bytes());
    }

    #[test]
    fn a_final_block_ends_the_message() {
        let mut deflate = new_compressor(15);
        let mut out = Vec::with_capacity(256);
        deflate
            .compress_vec(b"hello hello hello", &mut out, FlushCompress::Finish)
            .unwrap();
        assert_eq!(&inflate(&out, 64).unwrap()[..], b"hello hello hello");
        assert_eq!(inflate(&[], 64).unwrap().len(), 0);
    }

    /// Text that compresses a little but not to nothing: each line differs, so the inflater's
    /// output keeps coming in pieces and crosses every growth step.
    fn lines(len: usize) -> Vec<u8> {
        let mut text = Vec::with_capacity(len + 64);
        let mut n: u64 = 0x9E37_79B9;
        while text.len() < len {
            n = n.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1);
            text.extend_from_slice(
                format!("{{\"seq\":{},\"p\":{}}}\n", n >> 40, n % 99_991).as_bytes(),
            );
        }
        text.truncate(len);
        text
    }

    fn compressed(message: &[u8]) -> Vec<u8> {
        let mut out = Vec::new();
        compress_sync(&mut new_compressor(15), message, &mut out);
        assert!(
            out.ends_with(&SYNC_TAIL),
            "a sync flush ends with 00 00 ff ff"
        );
        out.truncate(out.len() - SYNC_TAIL.len());
        out
    }

    #[test]
    fn messages_around_every_growth_step_round_trip_within_their_limit() {
        let sizes = [
            0,
            1,
            63,
            64,
            65,
            INFLATE_STEP - 1,
            INFLATE_STEP,
            INFLATE_STEP + 1,
        ];
        let more = [
            2 * INFLATE_STEP,
            3 * INFLATE_STEP + 5,
            8 * INFLATE_STEP,
            300_007,
        ];
        for len in sizes.into_iter().chain(more) {
            let message = lines(len);
            let data = compressed(&message);
            // Exactly at the limit: whole, and never held in more than limit + 1 bytes.
            let out = inflate(&data, len).unwrap_or_else(|e| panic!("{len} bytes: {e}"));
            assert_eq!(out, message, "{len} bytes inflate to themselves");
            assert!(
                out.capacity() <= len + 1,
                "{len} bytes held in {}",
                out.capacity()
            );
            // One byte short of it: refused, however the output was cut into steps.
            if len > 0 {
                assert_eq!(
                    inflate(&data, len - 1),
                    Err(InflateError::TooBig { limit: len - 1 })
                );
            }
            // With room to spare: the same bytes.
            assert_eq!(inflate(&data, 2 * len + 10).unwrap(), message);
        }
    }

    #[test]
    fn runs_of_one_byte_inflate_whole_or_too_big_at_every_limit_around_their_length() {
        // A run compresses to back-references of up to 258 bytes each: the inflater's
        // output comes in pieces that end anywhere, with input left or all taken.
        for len in (1..3 * INFLATE_STEP)
            .step_by(61)
            .chain([INFLATE_STEP, 2 * INFLATE_STEP])
        {
            let message = vec![b'x'; len];
            let data = compressed(&message);
            for limit in [
                len.saturating_sub(300),
                len - 1,
                len,
                len + 1,
                len + 258,
                2 * len,
            ] {
                let got = inflate(&data, limit);
                if limit >= len {
                    assert_eq!(
                        got.as_deref(),
                        Ok(&message[..]),
                        "{len} bytes, limit {limit}"
                    );
                } else {
                    assert_eq!(
                        got,
                        Err(InflateError::TooBig { limit }),
                        "{len} bytes, limit {limit}"
                    );
                }
            }
        }
    }

    #[test]
    fn compress_sync_takes_all_of_a_message_whatever_room_the_buffer_starts_with() {
        for room in [0, 1, 63, 64, 65, 4096] {
            for len in [0, 1, 100, 70_000] {
                let message = lines(len);
                let mut out = Vec::with_capacity(room);
                let mut deflate = new_compressor(15);
                compress_sync(&mut deflate, &message, &mut out);
                assert_eq!(
                    deflate.total_in(),
                    len as u64,
                    "room {room}, {len} bytes: all taken"
                );
                assert!(
                    out.ends_with(&SYNC_TAIL),
                    "room {room}, {len} bytes: flushed"
                );
                out.truncate(out.len() - SYNC_TAIL.len());
                assert_eq!(
                    inflate(&out, len).unwrap(),
                    message,
                    "room {room}, {len} bytes"
                );
            }
        }
    }

    #[test]
    fn compress_sync_writes_a_small_message_into_the_room_it_has_without_growing() {
        // The per-client path: a buffer with room enough keeps its allocation.
        for room in [64, 65, 4096] {
            let mut out = Vec::with_capacity(room);
            let mut deflate = new_compressor(15);
            compress_sync(&mut deflate, b"{\"seq\":1}", &mut out);
            assert!(out.len() < 64, "{} bytes", out.len());
            assert_eq!(out.capacity(), room, "room {room}: not grown");
        }
    }

    #[test]
    fn compress_sync_grows_its_buffer_by_about_half_the_message() {
        // Text compresses well: the first reservation (half the message and a little) holds
        // it: one reservation, under the message's size, not grown in small steps or to
        // several times the message.
        let message = lines(70_000);
        let mut out = Vec::new();
        let mut deflate = new_compressor(15);
        compress_sync(&mut deflate, &message, &mut out);
        assert!(out.ends_with(&SYNC_TAIL));
        assert_eq!(
            out.capacity(),
            message.len() / 2 + 64,
            "reserved for a {}-byte message compressed to {}",
            message.len(),
            out.len()
        );
    }

    #[test]
    fn bytes_that_are_not_deflate_are_corrupt_however_long() {
        // A reserved block type (BTYPE 11) at the start, then anything.
        for tail in [0usize, 1, 100, 10_000] {
            let mut data = vec![0x07u8];
            data.extend(std::iter::repeat_n(0x5Au8, tail));
            assert_eq!(
                inflate(&data, 1 << 20),
                Err(InflateError::Corrupt),
                "{tail}"
            );
        }
    }
}
