//! A session task on a real shard core, for the session's unit tests: the relay side runs
//! [`run`](super::run) on one end of a loopback connection, the test holds the other end
//! as a WebSocket client (fastwebsockets, masked frames as a browser sends them).

use std::cell::RefCell;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use fastwebsockets::{Frame, OpCode, Payload, Role, WebSocket};
use hyper::header::HeaderMap;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::control::KeyRules;
use super::handshake::{self, Admission, SessionParams};
use crate::auth::{Auth, Identity};
use crate::config::Config;
use crate::event::Tiers;
use crate::ingest::Inbox;
use crate::shard::{ShardCore, Transport};
use crate::shared::Shared;

/// A running session and its client.
pub(super) struct Live {
    pub(super) core: Rc<RefCell<ShardCore>>,
    pub(super) client: WebSocket<TcpStream>,
    pub(super) task: JoinHandle<()>,
    /// The relay's end of the connection, a second handle (for its socket options).
    pub(super) relay_side: std::net::TcpStream,
}

/// Starts a session as an upgrade with `query` would (anonymous, auth off), inside the
/// caller's `LocalSet`.
pub(super) async fn start(config: Config, query: &str) -> Live {
    let params = parsed(&config, query);
    start_with(config, params).await
}

/// The session parameters of an upgrade with `query`.
fn parsed(config: &Config, query: &str) -> SessionParams {
    let rules = KeyRules {
        limit: config.max_symbols_per_client,
        tiers: Tiers::new(&config.rate_tiers),
    };
    handshake::parse(Some(query), &HeaderMap::new(), config, &rules).expect("a valid query")
}

/// Admitted without a token, as on a relay with auth off.
fn anonymous() -> Admission {
    Admission {
        identity: Some(Identity::anonymous()),
        slot: None,
    }
}

/// Starts a session with `params` as given (e.g. [`SessionParams::echo`]).
pub(super) async fn start_with(config: Config, params: SessionParams) -> Live {
    start_admitted(config, params, Auth::off(), anonymous()).await
}

/// Starts a session on a relay whose clients `auth` checks, admitted as `admission` says
/// (no identity: it must send `auth` first).
pub(super) async fn start_admitted(
    config: Config,
    params: SessionParams,
    auth: Auth,
    admission: Admission,
) -> Live {
    start_on(config, params, auth, admission, Side::Central).await
}

/// Starts a session as [`start`] does, with permessage-deflate agreed (the client offered
/// it with no parameters).
pub(super) async fn start_deflating(config: Config, query: &str) -> Live {
    let params = parsed(&config, query);
    start_on(config, params, Auth::off(), anonymous(), Side::Deflating).await
}

/// Starts a session as [`start`] does, on an edge whose follower has stopped: each key's
/// history is "read" at once (nothing), and a resume waits for the shard to hold its
/// positions (`session::history_wait`).
pub(super) async fn start_on_edge(config: Config, query: &str) -> Live {
    let params = parsed(&config, query);
    start_on(config, params, Auth::off(), anonymous(), Side::Edge).await
}

/// How [`start_on`] sets the session up beyond its parameters.
#[derive(PartialEq)]
enum Side {
    /// A relay that sequences its own ticks, no extension agreed.
    Central,
    /// An edge whose follower has stopped.
    Edge,
    /// permessage-deflate agreed.
    Deflating,
}

async fn start_on(
    config: Config,
    mut params: SessionParams,
    auth: Auth,
    admission: Admission,
    side: Side,
) -> Live {
    let (inbox, _receiver) = Inbox::bounded(16);
    let shared = Shared::with_access(config, inbox, auth, None);
    if side == Side::Edge {
        let (follow, _wants) = crate::nats::follow::channel();
        shared.follow.set(follow).expect("unset");
    }
    let deflate = (side == Side::Deflating).then(|| {
        let mut offer = HeaderMap::new();
        offer.insert(
            hyper::header::SEC_WEBSOCKET_EXTENSIONS,
            hyper::header::HeaderValue::from_static("permessage-deflate"),
        );
        let mode = crate::config::WsDeflate::On;
        super::extensions::negotiate(&offer, mode, params.encoding, &shared.deflate_slots)
            .expect("the offer is taken")
    });
    params.deflate = deflate.as_ref().map(|d| d.params);
    let core = Rc::new(RefCell::new(ShardCore::new(0, Arc::new(shared))));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let socket = TcpStream::connect(listener.local_addr().expect("addr"))
        .await
        .expect("connect");
    let (accepted, _) = listener.accept().await.expect("accept");
    let accepted = accepted.into_std().expect("a std socket");
    let relay_side = accepted.try_clone().expect("a second handle");
    let accepted = TcpStream::from_std(accepted).expect("back to tokio");
    let task = tokio::task::spawn_local(super::run(
        core.clone(),
        Transport::Plain(accepted),
        Bytes::new(),
        params,
        admission,
        None,
        deflate,
    ));
    let mut client = WebSocket::after_handshake(socket, Role::Client);
    client.set_auto_pong(false);
    client.set_auto_close(false);
    Live {
        core,
        client,
        task,
        relay_side,
    }
}

impl Live {
    /// The session's key on its shard (the only client there).
    pub(super) fn key(&self) -> crate::shard::SessionKey {
        0
    }

    /// Sends a text frame.
    pub(super) async fn send(&mut self, text: &str) {
        let frame = Frame::text(Payload::Owned(text.as_bytes().to_vec()));
        self.client.write_frame(frame).await.expect("send");
    }

    /// Sends a frame of any kind.
    pub(super) async fn send_frame(&mut self, opcode: OpCode, payload: &[u8]) {
        let frame = Frame::new(true, opcode, None, Payload::Owned(payload.to_vec()));
        self.client.write_frame(frame).await.expect("send");
    }

    /// The next frame (within 10 s), as its opcode and payload.
    pub(super) async fn frame(&mut self) -> (OpCode, Vec<u8>) {
        let frame = tokio::time::timeout(Duration::from_secs(10), self.client.read_frame())
            .await
            .expect("a frame within 10 s")
            .expect("a frame");
        (frame.opcode, frame.payload.to_vec())
    }

    /// The next frame, which must be a JSON message.
    pub(super) async fn message(&mut self) -> serde_json::Value {
        let (opcode, payload) = self.frame().await;
        assert!(matches!(opcode, OpCode::Text), "{opcode:?}: {payload:?}");
        serde_json::from_slice(&payload).expect("JSON")
    }

    /// Waits (10 s at most) until the relay has closed the session or left it.
    pub(super) async fn closing(&self) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        let closing = || {
            let core = self.core.borrow();
            core.sessions().is_empty()
                || core.status(self.key()).phase != crate::shard::FeedPhase::Live
        };
        while !closing() {
            assert!(std::time::Instant::now() < deadline, "never closed");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Whether a frame arrives within 100 ms (for "nothing more came").
    pub(super) async fn quiet(&mut self) -> bool {
        tokio::time::timeout(Duration::from_millis(100), self.client.read_frame())
            .await
            .is_err()
    }
}

/// `config` for a client that reads nothing for a while: a 4 KiB send buffer fills at
/// once, and its outbox is never judged slow (so the test, not the policy, decides).
pub(super) fn unread(config: Config) -> Config {
    Config {
        send_buffer_bytes: 4_096,
        outbox_bytes: 64 << 20,
        outbox_max_age: Duration::from_secs(600),
        ..config
    }
}

/// Runs `test` on a current-thread runtime inside a `LocalSet`, as a shard thread runs its
/// sessions (for tests that are `#[test]`, not `#[tokio::test]`).
pub(super) fn run(test: impl std::future::Future<Output = ()>) {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("a runtime");
    runtime.block_on(tokio::task::LocalSet::new().run_until(test));
}

/// A fresh tick of `symbol` at `seq` into the core, flushed like a fan-out turn.
pub(super) fn deliver(live: &Live, symbol: &str, seq: u64) {
    let mut core = live.core.borrow_mut();
    let frames = crate::encode::Frames::new(crate::tick::sequenced(symbol, seq));
    let batch = vec![Arc::new(frames)].into();
    let now = std::time::Instant::now();
    core.deliver(&batch, now);
    core.flush_dirty_and_enforce(now);
}

/// A config whose clients need an HS256 token signed with [`SECRET`] (the key file is
/// written under the system's temp directory), and a token for `user` allowed `allow`,
/// valid for `valid_s` seconds.
pub(super) fn with_tokens(config: Config) -> Config {
    // Written once per process: tests run on parallel threads, and a second write (which
    // truncates first) would let a test beside it read an empty key.
    static KEY: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    let path = KEY.get_or_init(|| {
        let path = std::env::temp_dir().join(format!("tickrelay-unit-{}.key", std::process::id()));
        std::fs::write(&path, SECRET).expect("write the key");
        path
    });
    Config {
        jwt_secret_file: Some(path.clone()),
        jwt_leeway: Duration::ZERO,
        ..config
    }
}

/// The HS256 secret of [`with_tokens`].
pub(super) const SECRET: &str = "a unit test secret of at least 32 bytes";

/// A token of `user` that may read `allow` (`None`: everything public), for `valid_s` s.
pub(super) fn token(user: &str, allow: Option<&[&str]>, valid_s: i64) -> String {
    let now = crate::tick::now_ns() / 1_000_000_000;
    let exp = u64::try_from(i64::try_from(now).expect("now") + valid_s).expect("exp");
    let mut claims = serde_json::json!({"sub": user, "exp": exp});
    if let Some(allow) = allow {
        claims["allow"] = serde_json::json!(allow);
    }
    jsonwebtoken::encode(
        &jsonwebtoken::Header::default(),
        &claims,
        &jsonwebtoken::EncodingKey::from_secret(SECRET.as_bytes()).expect("a key"),
    )
    .expect("a token")
}
