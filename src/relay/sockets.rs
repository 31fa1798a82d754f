//! The relay's listening sockets, bound before any thread starts so a bad address fails at
//! once, naming its flag.

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
    /// NDJSON and protobuf ingest; `None` on an edge, which takes no ingest.
    pub(super) ingest: Option<(StdTcpListener, StdTcpListener)>,
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
        let (ingest, ingest_addr, ingest_protobuf_addr) = if config.scale.role == Role::Edge {
            (None, NO_ADDR, NO_ADDR)
        } else {
            let (json, json_addr) = bound("--ingest-tcp", config.ingest_tcp)?;
            let (proto, proto_addr) = bound("--ingest-tcp-protobuf", config.ingest_tcp_protobuf)?;
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

/// Binds a non-blocking listener with a deep accept queue: std's fixed backlog of 128
/// makes a burst of connects wait for SYN retransmits (1 s, then 3 s) once it overflows.
fn listen(addr: SocketAddr) -> std::io::Result<StdTcpListener> {
    let socket = socket2::Socket::new(
        socket2::Domain::for_address(addr),
        socket2::Type::STREAM,
        None,
    )?;
    socket.set_reuse_address(true)?;
    socket.bind(&addr.into())?;
    socket.listen(LISTEN_BACKLOG)?;
    socket.set_nonblocking(true)?;
    Ok(socket.into())
}

/// Accept queue length asked of the kernel (capped by net.core.somaxconn, 4096 here).
const LISTEN_BACKLOG: i32 = 4096;

/// The address reported for ingest an edge does not take.
const NO_ADDR: SocketAddr =
    SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::UNSPECIFIED), 0);
