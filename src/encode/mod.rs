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
