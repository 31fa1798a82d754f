//! A WebSocket server that plays scripted frames, for what a real relay cannot be made to
//! send: bytes no relay writes (an event that does not decode, a frame of the wrong
//! encoding), close codes it does not use (1012), and batched frames before the relay
//! batches. Every message is written once in both wire forms ([`Msg`]); an [`Encoder`]
//! frames them as the relay does in each encoding, one per frame or batched.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use flate2::{Compress, Compression, FlushCompress};
use futures_util::{SinkExt, StreamExt};
use prost::Message as _;
use tickrelay::proto;
use tickrelay_client::Encoding;
use tokio::net::TcpListener;
use tokio_tungstenite::tungstenite::Message as Frame;
use tokio_tungstenite::tungstenite::handshake::server::{Request, Response};

/// One server message, as JSON text and as an encoded `ServerMessage`.
#[derive(Clone, Debug)]
pub struct Msg {
    pub json: String,
    pub proto: Vec<u8>,
}

pub fn welcome(session: u64) -> Msg {
    let welcome = proto::Welcome {
        session,
        epoch: 7,
        ..Default::default()
    };
    Msg {
        json: format!(r#"{{"type":"welcome","session":{session},"epoch":7}}"#),
        proto: server(proto::server_message::Msg::Welcome(welcome)),
    }
}

/// A tick whose `ts_ns` is its seq (so a replayed one is the same tick).
pub fn tick(symbol: &str, seq: u64) -> Msg {
    let tick = proto::Tick {
        symbol: symbol.into(),
        seq,
        ts_ns: seq,
        recv_ns: seq,
        price: Some(100.0 + seq as f64),
        ..Default::default()
    };
    Msg {
        json: format!(
            r#"{{"type":"tick","symbol":"{symbol}","seq":{seq},"kind":"trade","ts_ns":{seq},"recv_ns":{seq},"price":{}}}"#,
            100.0 + seq as f64
        ),
        proto: server(proto::server_message::Msg::Tick(tick)),
    }
}

/// An event whose `data` is `data`, byte for byte, in both forms.
pub fn event(channel: &str, seq: u64, data: &str) -> Msg {
    let event = proto::Event {
        channel: channel.into(),
        seq,
        ts_ns: seq,
        data: data.as_bytes().to_vec().into(),
        ..proto::Event::default()
    };
    Msg {
        json: format!(
            r#"{{"type":"event","channel":"{channel}","seq":{seq},"ts_ns":{seq},"data":{data}}}"#
        ),
        proto: server(proto::server_message::Msg::Event(event)),
    }
}

/// Exactly these bytes in each form.
pub fn raw(json: &str, proto: &[u8]) -> Msg {
    Msg {
        json: json.into(),
        proto: proto.to_vec(),
    }
}

fn server(msg: proto::server_message::Msg) -> Vec<u8> {
    proto::ServerMessage { msg: Some(msg) }.encode_to_vec()
}

/// Frames messages as the relay does for one connection of `encoding`.
pub struct Encoder {
    encoding: Encoding,
    batch: bool,
    /// gzip: one stream per connection, a sync flush per frame.
    deflate: Compress,
}

impl Encoder {
    pub fn new(encoding: Encoding, batch: bool) -> Self {
        Self {
            encoding,
            batch,
            deflate: Compress::new_gzip(Compression::fast(), 12),
        }
    }

    /// One frame carrying `messages` (with batches off, exactly one): json and gzip as
    /// messages separated by `\n`, protobuf as a `ServerBatch` (with batches on, always).
    pub fn frame(&mut self, messages: &[Msg]) -> Frame {
        assert!(
            self.batch || messages.len() == 1,
            "several messages need batch on"
        );
        let text = || {
            messages
                .iter()
                .map(|m| m.json.as_str())
                .collect::<Vec<_>>()
                .join("\n")
        };
        match self.encoding {
            Encoding::Json => Frame::text(text()),
            Encoding::Protobuf if !self.batch => Frame::binary(messages[0].proto.clone()),
            Encoding::Protobuf => {
                // ServerBatch { repeated ServerMessage messages = 1 }: each message as field 1.
                let mut out = Vec::new();
                for m in messages {
                    prost::encoding::bytes::encode(1, &m.proto, &mut out);
                }
                Frame::binary(out)
            }
            Encoding::Gzip => Frame::binary(self.gzip(text().as_bytes())),
        }
    }

    /// `text` as the next sync-flushed piece of this connection's gzip stream.
    pub fn gzip(&mut self, text: &[u8]) -> Vec<u8> {
        let mut out = Vec::with_capacity(text.len() + 64);
        self.deflate
            .compress_vec(text, &mut out, FlushCompress::Sync)
            .expect("deflate into a vector");
        out
    }
}

/// A loopback WebSocket server: its nth connection is sent the nth script's frames, then
/// held open (reading whatever the client sends) until the client closes it or the script
/// ended with a close frame. Connections beyond the scripts are held silent.
pub struct ScriptServer {
    pub addr: SocketAddr,
    requests: Arc<Mutex<Vec<String>>>,
    task: tokio::task::JoinHandle<()>,
}

impl ScriptServer {
    pub async fn start(scripts: Vec<Vec<Frame>>) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("binds");
        let addr = listener.local_addr().expect("address");
        let requests: Arc<Mutex<Vec<String>>> = Arc::default();
        let seen = requests.clone();
        let task = tokio::spawn(async move {
            let mut scripts = scripts.into_iter();
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let script = scripts.next().unwrap_or_default();
                let seen = seen.clone();
                tokio::spawn(async move {
                    // The signature is tungstenite's handshake callback (its error is a response).
                    #[allow(clippy::result_large_err)]
                    let record = |request: &Request, response: Response| {
                        seen.lock().unwrap().push(request.uri().to_string());
                        Ok(response)
                    };
                    let Ok(mut ws) = tokio_tungstenite::accept_hdr_async(stream, record).await
                    else {
                        return;
                    };
                    for frame in script {
                        if ws.send(frame).await.is_err() {
                            return;
                        }
                    }
                    while let Some(Ok(_)) = ws.next().await {}
                });
            }
        });
        Self {
            addr,
            requests,
            task,
        }
    }

    pub fn url(&self) -> String {
        format!("ws://{}/ws", self.addr)
    }

    /// The request URIs (path and query) of the connections so far, in order.
    pub fn requests(&self) -> Vec<String> {
        self.requests.lock().unwrap().clone()
    }
}

impl Drop for ScriptServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
