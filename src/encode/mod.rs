//! Encodings: a tick or an event is encoded once per encoding into a complete WebSocket frame
//! ([`Frames`]), and every client of that encoding gets a handle to the same bytes.
//!
//! gzip is the one encoding with per-client state: each gzip client owns one gzip stream
//! ([`gzip::GzipStream`]) that compresses the shared JSON payload with a sync flush per frame
//! (the only way a small tick shrinks: earlier ticks are the dictionary). [`Encoder`] hides
//! that difference from the shard. A client that negotiated permessage-deflate (RFC 7692)
//! likewise owns a [`deflate::DeflateStream`] compressing its JSON or protobuf frames; every
//! other client's delivery stays a refcount bump.

pub mod batch;
pub mod deflate;
pub mod derived;
pub mod gzip;
pub mod json;
pub mod message;
pub mod protobuf;
pub mod ws_frame;

use std::sync::OnceLock;

use bytes::Bytes;

pub use message::Message;
pub use ws_frame::Wire;

use crate::event::{Item, Key, Tag};
use crate::tick::{Seq, Tick};
use ws_frame::OpCode;

/// The encoding a client receives.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Encoding {
    /// JSON text frames, one object per message.
    Json,
    /// Binary frames, one `tickrelay.v1.ServerMessage` each.
    Protobuf,
    /// Binary frames of one gzip stream per connection, a sync flush per message.
    Gzip,
}

impl Encoding {
    /// Every encoding, in index order.
    pub const ALL: [Self; 3] = [Self::Json, Self::Protobuf, Self::Gzip];

    /// Every encoding's name, in index order (error messages list them).
    pub const NAMES: [&'static str; 3] = ["json", "protobuf", "gzip"];

    /// Parses `json`, `protobuf` or `gzip`.
    pub fn parse(name: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|e| e.as_str() == name)
    }

    /// Parses a `Sec-WebSocket-Protocol` entry: `tickrelay.json`, `tickrelay.protobuf`, `tickrelay.gzip`.
    pub fn from_subprotocol(name: &str) -> Option<Self> {
        name.strip_prefix("tickrelay.").and_then(Self::parse)
    }

    /// The name in `?encoding=`.
    pub fn as_str(self) -> &'static str {
        Self::NAMES[self.index()]
    }

    /// The subprotocol name the relay answers with.
    pub fn subprotocol(self) -> &'static str {
        match self {
            Self::Json => "tickrelay.json",
            Self::Protobuf => "tickrelay.protobuf",
            Self::Gzip => "tickrelay.gzip",
        }
    }

    /// A dense index (for per-encoding counters).
    pub fn index(self) -> usize {
        self as usize
    }

    /// The shared frame this encoding is built from (gzip compresses the JSON payload).
    pub fn wire(self) -> Wire {
        match self {
            Self::Json | Self::Gzip => Wire::Json,
            Self::Protobuf => Wire::Protobuf,
        }
    }
}

/// One sequenced item (a tick or an event) and its pre-framed encodings, shared (behind an
/// `Arc`) by every shard.
///
/// The sequencer fills the encodings that have subscribers; a shard that meets a subscriber
/// whose encoding was not filled (it subscribed a moment ago) fills it itself, once, through
/// the `OnceLock`.
#[derive(Debug)]
pub struct Frames {
    /// The item's key, built once here so the fan-out looks subscribers up without
    /// building it per tick.
    key: Key,
    item: Item,
    json: OnceLock<Bytes>,
    protobuf: OnceLock<Bytes>,
    /// Its publisher's tag (acknowledged ingest), set by the sequencer before the frames
    /// are shared: it goes into the stream with the item, so a successor knows it is stored.
    tag: OnceLock<Tag>,
}

impl Frames {
    /// Wraps a sequenced tick; nothing is encoded yet.
    pub fn new(tick: Tick) -> Self {
        Self::of(Item::Tick(tick))
    }

    /// Wraps a sequenced tick or event; nothing is encoded yet.
    pub fn of(item: Item) -> Self {
        Self {
            key: item.key(),
            item,
            json: OnceLock::new(),
            protobuf: OnceLock::new(),
            tag: OnceLock::new(),
        }
    }

    /// Notes who published it (once; a second tag is ignored).
    pub fn set_tag(&self, tag: Tag) {
        let _ = self.tag.set(tag);
    }

    /// Who published it, when the publisher tagged it.
    pub fn tag(&self) -> Option<&Tag> {
        self.tag.get()
    }

    /// The tick or event.
    pub fn item(&self) -> &Item {
        &self.item
    }

    /// The tick, if this is one.
    pub fn tick(&self) -> Option<&Tick> {
        self.item.tick()
    }

    /// The key (symbol or channel) it was sequenced under.
    pub fn key(&self) -> &Key {
        &self.key
    }

    /// Its per-key seq.
    pub fn seq(&self) -> Seq {
        self.item.seq()
    }

    /// The first seq it stands for (a tier's frame stands for several).
    pub fn first_seq(&self) -> Seq {
        self.item.first_seq()
    }

    /// The complete frame for `wire`, encoding it on first use.
    pub fn frame(&self, wire: Wire) -> &Bytes {
        match wire {
            Wire::Json => self.json.get_or_init(|| {
                let mut payload = Vec::with_capacity(256);
                json::write_item(&mut payload, &self.item, false);
                ws_frame::frame(OpCode::Text, &payload)
            }),
            Wire::Protobuf => self.protobuf.get_or_init(|| {
                let payload = protobuf::server_message(protobuf::item_message(&self.item, false));
                ws_frame::frame(OpCode::Binary, &payload)
            }),
        }
    }

    /// The JSON message without its frame header (what a gzip stream compresses).
    pub fn json_payload(&self) -> &[u8] {
        payload_of(self.frame(Wire::Json))
    }

    /// The message in `wire` without its frame header, sharing the frame's bytes (what a
    /// batching client queues).
    pub fn payload(&self, wire: Wire) -> Bytes {
        let frame = self.frame(wire);
        frame.slice(frame.len() - payload_of(frame).len()..)
    }
}

/// Turns messages into frames for one client: shared bytes for JSON and protobuf, the
/// client's own gzip stream for gzip.
#[derive(Debug)]
pub enum Encoder {
    /// JSON text frames.
    Json,
    /// Protobuf binary frames.
    Protobuf,
    /// This client's gzip stream.
    Gzip(Box<gzip::GzipStream>),
    /// JSON or protobuf frames, compressed per message for a permessage-deflate client.
    Deflate(Wire, Box<deflate::DeflateStream>),
}

impl Encoder {
    /// The encoder for a new client of `encoding`.
    pub fn new(encoding: Encoding) -> Self {
        match encoding {
            Encoding::Json => Self::Json,
            Encoding::Protobuf => Self::Protobuf,
            Encoding::Gzip => Self::Gzip(Box::default()),
        }
    }

    /// A permessage-deflate encoder for a client of `encoding` (json or protobuf; gzip is
    /// compressed already and never negotiates it).
    pub fn deflate(encoding: Encoding, stream: deflate::DeflateStream) -> Self {
        Self::Deflate(encoding.wire(), Box::new(stream))
    }

    /// The encoding this encoder produces.
    pub fn encoding(&self) -> Encoding {
        match self {
            Self::Json | Self::Deflate(Wire::Json, _) => Encoding::Json,
            Self::Protobuf | Self::Deflate(Wire::Protobuf, _) => Encoding::Protobuf,
            Self::Gzip(_) => Encoding::Gzip,
        }
    }

    /// The frame of a tick: a refcount bump of the shared bytes, or (gzip, deflate) a
    /// compressed frame.
    pub fn tick(&mut self, frames: &Frames) -> Bytes {
        match self {
            Self::Json => frames.frame(Wire::Json).clone(),
            Self::Protobuf => frames.frame(Wire::Protobuf).clone(),
            Self::Gzip(stream) => stream.frame(frames.json_payload()),
            Self::Deflate(wire, stream) => {
                let shared = frames.frame(*wire);
                let payload = payload_of(shared);
                if stream.compresses(payload.len()) {
                    stream.frame(wire.opcode(), payload)
                } else {
                    shared.clone()
                }
            }
        }
    }

    /// Drops per-client encoder state when the client has received nothing since the last
    /// call (only gzip and deflate have any).
    pub fn release_if_idle(&mut self) {
        match self {
            Self::Gzip(stream) => stream.release_if_idle(),
            Self::Deflate(_, stream) => stream.release_if_idle(),
            Self::Json | Self::Protobuf => {}
        }
    }

    /// Drops per-client encoder state now (after the connect burst of a client that may
    /// stay idle); the next message recreates it.
    pub fn release(&mut self) {
        match self {
            Self::Gzip(stream) => stream.release(),
            Self::Deflate(_, stream) => stream.release(),
            Self::Json | Self::Protobuf => {}
        }
    }

    /// The frame of any other server message, encoded for this client alone.
    pub fn message(&mut self, message: &Message<'_>) -> Bytes {
        match self {
            Self::Json => ws_frame::frame(OpCode::Text, &message.to_json()),
            Self::Protobuf => ws_frame::frame(OpCode::Binary, &message.to_protobuf()),
            Self::Gzip(stream) => stream.frame(&message.to_json()),
            Self::Deflate(Wire::Json, stream) => stream.frame(OpCode::Text, &message.to_json()),
            Self::Deflate(Wire::Protobuf, stream) => {
                stream.frame(OpCode::Binary, &message.to_protobuf())
            }
        }
    }

    /// A data frame of `payload` as given (an echo): compressed for a deflate client.
    pub fn data(&mut self, opcode: OpCode, payload: &[u8]) -> Bytes {
        match self {
            Self::Deflate(_, stream) => stream.frame(opcode, payload),
            Self::Json | Self::Protobuf | Self::Gzip(_) => ws_frame::frame(opcode, payload),
        }
    }

    /// What a batching client queues for a tick: the shared payload without its frame
    /// header (a refcount bump); gzip and permessage-deflate compress it with the rest of
    /// its batch when the batch is framed ([`Encoder::batch`]).
    pub fn tick_payload(&self, frames: &Frames) -> Bytes {
        frames.payload(self.batch_wire())
    }

    /// What a batching client queues for any other server message: its payload alone.
    pub fn message_payload(&self, message: &Message<'_>) -> Bytes {
        match self.batch_wire() {
            Wire::Json => Bytes::from(message.to_json()),
            Wire::Protobuf => Bytes::from(message.to_protobuf()),
        }
    }

    /// The frames of one batch of `payloads` (from [`Encoder::tick_payload`] and
    /// [`Encoder::message_payload`]), as pieces to write in order: for the shared
    /// encodings a small header around the shared payloads, for gzip and a compressing
    /// permessage-deflate client one compressed frame.
    pub fn batch(&mut self, payloads: &[Bytes]) -> Vec<Bytes> {
        let wire = self.batch_wire();
        let joined = |payloads: &[Bytes], compress: &mut dyn FnMut(&[u8]) -> Bytes| {
            BATCH_SCRATCH.with_borrow_mut(|scratch| {
                batch::join(wire, payloads, scratch);
                compress(scratch)
            })
        };
        match self {
            Self::Json | Self::Protobuf => batch::pieces(wire, payloads),
            Self::Gzip(stream) => vec![joined(payloads, &mut |body| stream.frame(body))],
            Self::Deflate(wire, stream) => {
                if stream.compresses(batch::body_len(*wire, payloads)) {
                    let opcode = wire.opcode();
                    vec![joined(payloads, &mut |body| stream.frame(opcode, body))]
                } else {
                    batch::pieces(*wire, payloads)
                }
            }
        }
    }

    /// The shared form a batch is built from: JSON for json and gzip clients, else the
    /// client's own.
    pub fn batch_wire(&self) -> Wire {
        match self {
            Self::Json | Self::Gzip(_) => Wire::Json,
            Self::Protobuf => Wire::Protobuf,
            Self::Deflate(wire, _) => *wire,
        }
    }

    /// Payload bytes compressed and bytes produced by permessage-deflate since the last
    /// call (for the metrics); `None` for a client without it.
    pub fn take_deflate_counts(&mut self) -> Option<(u64, u64)> {
        match self {
            Self::Deflate(_, stream) => Some(stream.take_counts()),
            Self::Json | Self::Protobuf | Self::Gzip(_) => None,
        }
    }
}

thread_local! {
    /// The shard thread's buffer for the body of a batch a per-client compressor takes.
    static BATCH_SCRATCH: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// The payload of a frame built by [`ws_frame::frame`].
fn payload_of(frame: &Bytes) -> &[u8] {
    let skip = match frame[1] & 0x7F {
        126 => 4,
        127 => 10,
        _ => 2,
    };
    &frame[skip..]
}

#[cfg(test)]
mod tests {
    use super::deflate::{DeflateParams, DeflateStream};
    use super::*;
    use crate::tick::sequenced;
    use flate2::{Decompress, FlushDecompress};
    use prost::Message as _;

    fn frames(seq: u64) -> Frames {
        Frames::new(sequenced("BTC-USD", seq))
    }

    /// A permessage-deflate stream without context takeover: every frame inflates alone.
    fn deflating(encoding: Encoding, min_bytes: usize) -> Encoder {
        let params = DeflateParams {
            no_context_takeover: true,
            ..DeflateParams::new()
        };
        Encoder::deflate(encoding, DeflateStream::new(params, min_bytes))
    }

    fn inflated(frame: &Bytes) -> Vec<u8> {
        assert_eq!(frame[0] & 0x40, 0x40, "RSV1 marks a compressed frame");
        deflate::inflate(payload_of(frame), 1 << 20).expect("inflates")
    }

    fn gunzipped(inflate: &mut Decompress, frame: &Bytes) -> Vec<u8> {
        let mut out = Vec::with_capacity(1 << 16);
        inflate
            .decompress_vec(payload_of(frame), &mut out, FlushDecompress::Sync)
            .expect("gzip");
        out
    }

    #[test]
    fn names_and_subprotocols_parse_back_to_their_encoding() {
        for (index, encoding) in Encoding::ALL.into_iter().enumerate() {
            assert_eq!(encoding.index(), index);
            assert_eq!(Encoding::parse(encoding.as_str()), Some(encoding));
            assert_eq!(
                encoding.subprotocol(),
                format!("tickrelay.{}", Encoding::NAMES[index])
            );
            assert_eq!(
                Encoding::from_subprotocol(encoding.subprotocol()),
                Some(encoding)
            );
        }
        assert_eq!(Encoding::parse("xml"), None);
        assert_eq!(Encoding::from_subprotocol("json"), None);
        assert_eq!(Encoding::Json.wire(), Wire::Json);
        assert_eq!(
            Encoding::Gzip.wire(),
            Wire::Json,
            "gzip compresses the JSON"
        );
        assert_eq!(Encoding::Protobuf.wire(), Wire::Protobuf);
    }

    #[test]
    fn frames_encode_once_and_their_payloads_share_the_frame() {
        let frames = frames(7);
        assert_eq!((frames.seq(), frames.first_seq()), (Seq(7), Seq(7)));
        assert_eq!(frames.tick().map(|t| t.seq), Some(Seq(7)));
        assert_eq!(frames.item().seq(), Seq(7));
        assert_eq!(frames.key(), &frames.item().key());
        let json = frames.frame(Wire::Json).clone();
        assert_eq!(json[0], 0x81, "a final text frame");
        assert_eq!(
            frames.frame(Wire::Json).as_ptr(),
            json.as_ptr(),
            "encoded once"
        );
        let value: serde_json::Value = serde_json::from_slice(frames.json_payload()).expect("JSON");
        assert_eq!(
            (value["symbol"].as_str(), value["seq"].as_u64()),
            (Some("BTC-USD"), Some(7))
        );
        assert_eq!(frames.json_payload(), &json[2..]);
        assert_eq!(&frames.payload(Wire::Json)[..], &json[2..]);
        let protobuf = frames.frame(Wire::Protobuf).clone();
        assert_eq!(protobuf[0], 0x82, "a final binary frame");
        let payload = frames.payload(Wire::Protobuf);
        assert_eq!(&payload[..], &protobuf[2..]);
        crate::proto::ServerMessage::decode(&payload[..]).expect("a ServerMessage");
    }

    #[test]
    fn a_tag_is_set_once() {
        let frames = frames(1);
        assert!(frames.tag().is_none());
        let tag = |id: &str, pseq| Tag {
            publisher: id.into(),
            pseq,
        };
        frames.set_tag(tag("a", 5));
        frames.set_tag(tag("b", 6));
        assert_eq!(frames.tag(), Some(&tag("a", 5)), "the first tag stays");
    }

    #[test]
    fn a_payload_is_found_behind_every_header_length() {
        for len in [0, 125, 126, 65_535, 65_536] {
            let frame = ws_frame::frame(OpCode::Binary, &vec![7; len]);
            assert_eq!(payload_of(&frame).len(), len, "a payload of {len}");
        }
    }

    #[test]
    fn each_encoder_names_its_encoding_and_batch_form() {
        let cases = [
            (Encoder::new(Encoding::Json), Encoding::Json, Wire::Json),
            (
                Encoder::new(Encoding::Protobuf),
                Encoding::Protobuf,
                Wire::Protobuf,
            ),
            (Encoder::new(Encoding::Gzip), Encoding::Gzip, Wire::Json),
            (deflating(Encoding::Json, 0), Encoding::Json, Wire::Json),
            (
                deflating(Encoding::Protobuf, 0),
                Encoding::Protobuf,
                Wire::Protobuf,
            ),
        ];
        for (encoder, encoding, wire) in cases {
            assert_eq!(encoder.encoding(), encoding, "{encoder:?}");
            assert_eq!(encoder.batch_wire(), wire, "{encoder:?}");
        }
    }

    #[test]
    fn ticks_are_the_shared_frame_or_compress_it() {
        let frames = frames(3);
        for (encoding, wire) in [
            (Encoding::Json, Wire::Json),
            (Encoding::Protobuf, Wire::Protobuf),
        ] {
            let frame = Encoder::new(encoding).tick(&frames);
            assert_eq!(frame.as_ptr(), frames.frame(wire).as_ptr(), "shared");
        }
        let mut gzip = Encoder::new(Encoding::Gzip);
        let mut inflate = Decompress::new_gzip(15);
        for _ in 0..2 {
            let frame = gzip.tick(&frames);
            assert_eq!(gunzipped(&mut inflate, &frame), frames.json_payload());
        }
        for (encoding, wire) in [
            (Encoding::Json, Wire::Json),
            (Encoding::Protobuf, Wire::Protobuf),
        ] {
            let frame = deflating(encoding, 0).tick(&frames);
            assert_eq!(frame[0] & 0x0F, wire.opcode() as u8);
            assert_eq!(inflated(&frame), payload_of(frames.frame(wire)));
            let short = deflating(encoding, 1 << 20).tick(&frames);
            assert_eq!(
                short.as_ptr(),
                frames.frame(wire).as_ptr(),
                "too short: shared"
            );
        }
    }

    #[test]
    fn messages_and_echoes_take_the_clients_form() {
        let pong = Message::Pong { id: 5 };
        let plain = |encoder: &mut Encoder| encoder.message(&pong);
        assert_eq!(
            plain(&mut Encoder::new(Encoding::Json)),
            ws_frame::frame(OpCode::Text, &pong.to_json())
        );
        assert_eq!(
            plain(&mut Encoder::new(Encoding::Protobuf)),
            ws_frame::frame(OpCode::Binary, &pong.to_protobuf())
        );
        let frame = plain(&mut Encoder::new(Encoding::Gzip));
        assert_eq!(
            gunzipped(&mut Decompress::new_gzip(15), &frame),
            pong.to_json()
        );
        let frame = plain(&mut deflating(Encoding::Json, 0));
        assert_eq!(
            (frame[0] & 0x0F, inflated(&frame)),
            (OpCode::Text as u8, pong.to_json())
        );
        let frame = plain(&mut deflating(Encoding::Protobuf, 0));
        assert_eq!(
            (frame[0] & 0x0F, inflated(&frame)),
            (OpCode::Binary as u8, pong.to_protobuf())
        );
        for encoding in Encoding::ALL {
            let echo = Encoder::new(encoding).data(OpCode::Binary, b"echo");
            assert_eq!(echo, ws_frame::frame(OpCode::Binary, b"echo"));
        }
        let echo = deflating(Encoding::Json, 0).data(OpCode::Binary, b"echo echo echo");
        assert_eq!(inflated(&echo), b"echo echo echo");
    }

    #[test]
    fn batches_are_shared_pieces_or_one_compressed_frame() {
        let (one, two) = (frames(1), frames(2));
        let pong = Message::Pong { id: 9 };
        for (encoding, wire) in [
            (Encoding::Json, Wire::Json),
            (Encoding::Protobuf, Wire::Protobuf),
        ] {
            let encoder = Encoder::new(encoding);
            assert_eq!(encoder.tick_payload(&one), one.payload(wire));
            let message = encoder.message_payload(&pong);
            let expected = match wire {
                Wire::Json => pong.to_json(),
                Wire::Protobuf => pong.to_protobuf(),
            };
            assert_eq!(&message[..], &expected[..]);
        }
        let payloads = [one.payload(Wire::Json), two.payload(Wire::Json)];
        let mut body = Vec::new();
        batch::join(Wire::Json, &payloads, &mut body);
        assert_eq!(
            Encoder::new(Encoding::Json).batch(&payloads),
            batch::pieces(Wire::Json, &payloads)
        );
        let gzip = Encoder::new(Encoding::Gzip).batch(&payloads);
        assert_eq!(gzip.len(), 1, "one compressed frame");
        assert_eq!(gunzipped(&mut Decompress::new_gzip(15), &gzip[0]), body);
        let deflated = deflating(Encoding::Json, 0).batch(&payloads);
        assert_eq!(deflated.len(), 1, "one compressed frame");
        assert_eq!(inflated(&deflated[0]), body);
        let limit = batch::body_len(Wire::Json, &payloads);
        assert_eq!(
            deflating(Encoding::Json, limit + 1).batch(&payloads),
            batch::pieces(Wire::Json, &payloads),
            "a batch too short to compress goes out as shared pieces"
        );
        assert_eq!(deflating(Encoding::Json, limit).batch(&payloads).len(), 1);
    }

    #[test]
    fn idle_compressors_are_released_and_counted() {
        let holds = |encoder: &Encoder| match encoder {
            Encoder::Gzip(stream) => stream.holds_state(),
            Encoder::Deflate(_, stream) => stream.holds_state(),
            Encoder::Json | Encoder::Protobuf => false,
        };
        let frames = frames(1);
        let context = DeflateStream::new(DeflateParams::new(), 0);
        for mut encoder in [
            Encoder::new(Encoding::Gzip),
            Encoder::deflate(Encoding::Json, context),
        ] {
            encoder.tick(&frames);
            assert!(holds(&encoder), "{encoder:?} holds its compressor");
            encoder.release_if_idle();
            assert!(holds(&encoder), "it sent since the last look");
            encoder.release_if_idle();
            assert!(!holds(&encoder), "idle for a whole period: released");
            encoder.tick(&frames);
            encoder.release();
            assert!(!holds(&encoder), "released at once");
        }
        let mut json = Encoder::new(Encoding::Json);
        json.release_if_idle();
        json.release();
        assert_eq!(json.take_deflate_counts(), None);
        let mut deflate = deflating(Encoding::Json, 0);
        let frame = deflate.tick(&frames);
        let (input, output) = deflate.take_deflate_counts().expect("counts");
        assert_eq!(input, frames.json_payload().len() as u64);
        assert_eq!(output, payload_of(&frame).len() as u64);
        assert_eq!(deflate.take_deflate_counts(), Some((0, 0)), "taken");
    }
}
