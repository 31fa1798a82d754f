//! The relay's listening sockets, bound before any thread starts so a bad address fails at
//! once, naming its flag. The ingest ports are bound then but listen only once the relay
//! sequences ([`Sockets::listen_ingest`]): a standby sequencer refuses publishers' connects
//! (they go to the sequencer that holds the lease) instead of queueing them unread.

use std::net::{SocketAddr, TcpListener as StdTcpListener};

use super::error::StartError;
use crate::config::{Config, Role};

/// Every listener and the address it was bound to.
#[derive(Debug)]
pub(super) struct Sockets {
    pub(super) http: StdTcpListener,
    pub(super) http_addr: SocketAddr,
    pub(super) admin: Option<StdTcpListener>,
    pub(super) admin_addr: Option<SocketAddr>,
    /// NDJSON and protobuf ingest, bound, not yet listening; `None` on an edge, which
    /// takes no ingest.
    ingest: Option<(socket2::Socket, socket2::Socket)>,
    pub(super) ingest_addr: SocketAddr,
    pub(super) ingest_protobuf_addr: SocketAddr,
}

impl Sockets {
    /// Binds `--listen`, `--admin-listen` and (but on an edge) the two ingest ports.
    pub(super) fn bind(config: &Config) -> Result<Self, StartError> {
        let bound = |flag, addr| {
            let listener =
                listen(addr).map_err(|source| StartError::Bind { flag, addr, source })?;
            let local =
                listener
                    .local_addr()
                    .map_err(|source| StartError::Bind { flag, addr, source })?;
            Ok::<_, StartError>((listener, local))
        };
        let (http, http_addr) = bound("--listen", config.listen)?;
        let (admin, admin_addr) = match config.admin_listen {
            Some(addr) => {
                let (listener, local) = bound("--admin-listen", addr)?;
                (Some(listener), Some(local))
            }
            None => (None, None),
        };
        let bound_only = |flag, addr| {
            let fail = |source| StartError::Bind { flag, addr, source };
            let socket = bind(addr).map_err(fail)?;
            let local = socket
                .local_addr()
                .map_err(fail)?
                .as_socket()
                .ok_or_else(|| fail(std::io::Error::other("not an IP address")))?;
            Ok::<_, StartError>((socket, local))
        };
        let (ingest, ingest_addr, ingest_protobuf_addr) = if config.scale.role == Role::Edge {
            (None, NO_ADDR, NO_ADDR)
        } else {
            let (json, json_addr) = bound_only("--ingest-tcp", config.ingest_tcp)?;
            let (proto, proto_addr) =
                bound_only("--ingest-tcp-protobuf", config.ingest_tcp_protobuf)?;
            (Some((json, proto)), json_addr, proto_addr)
        };
        Ok(Self {
            http,
            http_addr,
            admin,
            admin_addr,
            ingest,
            ingest_addr,
            ingest_protobuf_addr,
        })
    }
}

impl Sockets {
    /// Starts listening on the ingest ports (taking them: a second call gets `None`).
    pub(super) fn listen_ingest(
        &mut self,
    ) -> Result<Option<(StdTcpListener, StdTcpListener)>, StartError> {
        let Some((json, proto)) = self.ingest.take() else {
            return Ok(None);
        };
        let (json_addr, proto_addr) = (self.ingest_addr, self.ingest_protobuf_addr);
        let json = listening(json).map_err(|source| StartError::Bind {
            flag: "--ingest-tcp",
            addr: json_addr,
            source,
        })?;
        let proto = listening(proto).map_err(|source| StartError::Bind {
            flag: "--ingest-tcp-protobuf",
            addr: proto_addr,
            source,
        })?;
        Ok(Some((json, proto)))
    }
}

/// Binds a non-blocking listener with a deep accept queue: std's fixed backlog of 128
/// makes a burst of connects wait for SYN retransmits (1 s, then 3 s) once it overflows.
fn listen(addr: SocketAddr) -> std::io::Result<StdTcpListener> {
    listening(bind(addr)?)
}

/// A socket bound to `addr`, not yet listening: a connect to it is refused.
fn bind(addr: SocketAddr) -> std::io::Result<socket2::Socket> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    Ok(socket)
}

/// `socket` listening, non-blocking, with [`LISTEN_BACKLOG`].
fn listening(socket: socket2::Socket) -> std::io::Result<StdTcpListener> {
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accept queue length asked of the kernel (capped by net.core.somaxconn, 4096 here).
const LISTEN_BACKLOG: i32 = 4096;

/// The address reported for ingest an edge does not take.
const NO_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
