//! Keep-alive HTTP/1.1 connections to pod addresses: the path nearly every request takes.
//!
//! hyper-util's general-purpose pooled client (still used for HTTP/2, TLS to pods and
//! ExternalName backends) keys its pool by scheme and authority with SipHash, boxes every
//! request future, and spawns a task per request to notice when the connection is free
//! again. Here a connection is keyed by the pod's socket address, taken from a short
//! per-address stack (newest first: warm connections stay warm), and handed back by the
//! response body (`body.rs`) when it has been read to the end: no extra task, no extra
//! allocation.
//!
//! A pooled connection the pod closed meanwhile is noticed before the request is written
//! (hyper hands the request back) and the request goes to the next connection, or a new
//! one; only a fresh connection's failure is an error. Connections idle for longer than
//! [`IDLE_TIMEOUT`] are dropped (pods come and go), and at most [`MAX_IDLE_PER_ADDR`] are
//! kept per address.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use http::{Request, Response, StatusCode};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpSocket;
use tracing::debug;

use super::body::UpstreamBody;

/// Idle upstream connections are closed after this (below the 75 s nginx and most servers
/// keep an idle connection, so the pod rarely closes one under us).
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(60);
/// Idle connections kept per pod address.
pub const MAX_IDLE_PER_ADDR: usize = 128;
/// TCP keepalive on upstream connections, to notice pods that vanished silently.
pub const TCP_KEEPALIVE: Duration = Duration::from_secs(60);

/// One pooled connection's request side.
pub type Sender = SendRequest<UpstreamBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

#[derive(Default)]
pub struct Http1Pool {
    idle: Mutex<HashMap<SocketAddr, Vec<Idle>, foldhash::fast::RandomState>>,
}

/// How sending failed.
#[derive(Debug, thiserror::Error)]
pub enum PoolError {
    /// No connection could be made: nothing was sent.
    #[error("connect: {source}")]
    Connect {
        #[source]
        source: std::io::Error,
        timed_out: bool,
    },
    /// The connection failed during or after sending.
    #[error(transparent)]
    Failed(#[from] hyper::Error),
}

impl Http1Pool {
    /// Sends `req` (origin-form URI, headers final) to `addr` over a pooled connection,
    /// or a new one. The connection comes back with the response, to be given back with
    /// [`Http1Pool::give_back`] once the body has been read (not after a 101: an upgraded
    /// connection belongs to the upgrade).
    pub async fn send(
        &self,
        addr: SocketAddr,
        mut req: Request<UpstreamBody>,
        connect_timeout: Duration,
    ) -> Result<(Response<Incoming>, Option<Sender>), PoolError> {
        loop {
            let (mut sender, fresh) = match self.checkout(addr) {
                Some(sender) => (sender, false),
                None => (connect(addr, connect_timeout).await?, true),
            };
            if let Err(e) = sender.ready().await {
                if fresh {
                    return Err(PoolError::Failed(e));
                }
                continue;
            }
            match sender.try_send_request(req).await {
                Ok(response) => {
                    let reusable = response.status() != StatusCode::SWITCHING_PROTOCOLS;
                    return Ok((response, reusable.then_some(sender)));
                }
                Err(mut e) => match e.take_message() {
                    // The pod closed this idle connection before it took the request:
                    // nothing was sent, try the next connection.
                    Some(unsent) if !fresh => {
                        debug!(%addr, "pooled upstream connection was closed; retrying on another");
                        req = unsent;
                    }
                    _ => return Err(PoolError::Failed(e.into_error())),
                },
            }
        }
    }

    fn checkout(&self, addr: SocketAddr) -> Option<Sender> {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.get_mut(&addr)?;
        while let Some(conn) = stack.pop() {
            if !conn.sender.is_closed() && conn.since.elapsed() < IDLE_TIMEOUT {
                return Some(conn.sender);
            }
        }
        None
    }

    pub fn give_back(&self, addr: SocketAddr, sender: Sender) {
        if sender.is_closed() {
            return;
        }
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        let stack = idle.entry(addr).or_default();
        if stack.len() < MAX_IDLE_PER_ADDR {
            stack.push(Idle {
                sender,
                since: Instant::now(),
            });
        }
    }

    /// Drops closed and expired idle connections, and addresses with none left.
    pub fn sweep(&self) {
        let mut idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.retain(|_, stack| {
            stack.retain(|c| !c.sender.is_closed() && c.since.elapsed() < IDLE_TIMEOUT);
            !stack.is_empty()
        });
    }

    /// Idle connections kept for `addr` (tests, debugging).
    pub fn idle_count(&self, addr: SocketAddr) -> usize {
        let idle = self.idle.lock().unwrap_or_else(|e| e.into_inner());
        idle.get(&addr).map_or(0, Vec::len)
    }
}

/// A new connection to `addr`, within `connect_timeout`.
async fn connect(addr: SocketAddr, connect_timeout: Duration) -> Result<Sender, PoolError> {
    let io_error = |source: std::io::Error| PoolError::Connect {
        timed_out: source.kind() == std::io::ErrorKind::TimedOut,
        source,
    };
    let socket = if addr.is_ipv4() {
        TcpSocket::new_v4()
    } else {
        TcpSocket::new_v6()
    }
    .map_err(io_error)?;
    socket.set_nodelay(true).map_err(io_error)?;
    socket2::SockRef::from(&socket)
        .set_tcp_keepalive(&socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE))
        .map_err(io_error)?;
    let stream = match tokio::time::timeout(connect_timeout, socket.connect(addr)).await {
        Ok(stream) => stream.map_err(io_error)?,
        Err(_) => {
            return Err(io_error(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no connection within {:?}", connect_timeout),
            )))
        }
    };
    let (sender, connection) = http1::Builder::new()
        .handshake(TokioIo::new(stream))
        .await?;
    tokio::spawn(async move {
        if let Err(error) = connection.with_upgrades().await {
            debug!(%addr, %error, "upstream connection ended with an error");
        }
    });
    Ok(sender)
}
