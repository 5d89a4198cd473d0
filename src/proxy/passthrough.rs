//! `ssl-passthrough` (with `--enable-ssl-passthrough`, INGRESS-NGINX.md §C2): a TLS
//! connection whose SNI names a passed-through host is relayed as bytes to one of the
//! host's pods, never terminated, so the client talks TLS with the pod itself.
//!
//! Only while some host is passed through does the HTTPS listener read the ClientHello
//! before the handshake: rustls's own parser (`Acceptor`) reads the SNI from a copy of the
//! bytes, which are then put back in front of the stream for the relay or the handshake.

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::{debug, info};

use super::balance::Balancer;
use super::conn::{Active, ClientIo};
use super::outlier::Failure;
use super::route::normalize_host;
use crate::controller::publish::SharedSnapshot;
use crate::model::{Backend, SourceRanges, Target};

/// The most a ClientHello may take before the SNI is known (TLS allows 16 KiB records; a
/// hello larger than this is handed to the normal handshake, which refuses it).
const MAX_HELLO: usize = 32 * 1024;

pub struct Passthrough {
    snapshot: SharedSnapshot,
    balancer: Arc<Balancer>,
    connect_timeout: Duration,
    /// A relay in which nothing moves this long is closed.
    idle: Duration,
    /// The longest wait for the ClientHello.
    hello_timeout: Duration,
    /// `--denylist-source-range` / `--allowlist-source-range`.
    source: Option<Arc<SourceRanges>>,
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Passthrough")
            .field("connect_timeout", &self.connect_timeout)
            .field("idle", &self.idle)
            .finish_non_exhaustive()
    }
}

/// What to do with a TLS connection.
pub enum Route {
    /// Relay it to this backend, unterminated.
    Relay(Arc<Backend>, String),
    /// The host is passed through, but its backend cannot be used: close the connection.
    Refuse(String, Arc<str>),
    /// Terminate TLS as usual.
    Terminate,
}

impl Passthrough {
    pub fn new(
        snapshot: SharedSnapshot,
        balancer: Arc<Balancer>,
        connect_timeout: Duration,
        idle: Duration,
        hello_timeout: Duration,
        source: Option<Arc<SourceRanges>>,
    ) -> Self {
        Self {
            snapshot,
            balancer,
            connect_timeout,
            idle,
            hello_timeout,
            source,
        }
    }

    /// Whether any host is passed through now: otherwise the ClientHello is not read twice.
    pub fn active(&self) -> bool {
        self.snapshot.load().table.has_passthrough()
    }

    /// Reads the ClientHello, puts it back, and says where the connection from `client`
    /// goes. The allow and deny lists (the Ingress's, else the proxy's) hold for relayed
    /// connections as for requests: a refused client's connection is closed.
    pub async fn route(&self, io: &mut ClientIo, client: IpAddr) -> Route {
        let sni = match tokio::time::timeout(self.hello_timeout, read_sni(io)).await {
            Ok(Ok(sni)) => sni,
            // The handshake that follows fails and says why.
            Ok(Err(_)) | Err(_) => None,
        };
        let Some(sni) = sni else {
            return Route::Terminate;
        };
        let host = match normalize_host(&sni) {
            Ok(h) => h.into_owned(),
            Err(_) => return Route::Terminate,
        };
        let snapshot = self.snapshot.load();
        let Some(pass) = snapshot.table.passthrough(&host) else {
            return Route::Terminate;
        };
        if !SourceRanges::admits(pass.source.as_ref(), self.source.as_deref(), client) {
            return Route::Refuse(host, Arc::from("the client's address is refused"));
        }
        match &pass.target {
            Target::Backend(b) => Route::Relay(b.clone(), host),
            Target::Unavailable(why) => Route::Refuse(host, why.clone()),
        }
    }

    /// Relays `io` to a pod of `backend` until either side closes, nothing moves for the
    /// idle timeout, or the connection is told to close (shutdown).
    pub async fn relay(
        &self,
        mut io: ClientIo,
        backend: Arc<Backend>,
        host: String,
        peer: SocketAddr,
        active: Active,
    ) {
        let mut tried = Vec::new();
        let upstream = loop {
            let Some(endpoint) = self.balancer.pick(&backend, peer.ip(), &tried) else {
                info!(%peer, sni = %host, backend = %backend.id, "ssl-passthrough: no endpoint could be reached; connection closed");
                return;
            };
            let addr = endpoint.addr;
            match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
                Ok(Ok(stream)) => {
                    self.balancer.outliers().success(addr);
                    break stream;
                }
                Ok(Err(error)) => {
                    debug!(%addr, %error, "ssl-passthrough: connect failed");
                    self.balancer
                        .outliers()
                        .failure(addr, &backend, Failure::Connect);
                }
                Err(_) => {
                    debug!(%addr, "ssl-passthrough: connect timed out");
                    self.balancer
                        .outliers()
                        .failure(addr, &backend, Failure::Connect);
                }
            }
            tried.push(addr);
            if tried.len() >= 3 {
                info!(%peer, sni = %host, backend = %backend.id, "ssl-passthrough: no endpoint could be reached; connection closed");
                return;
            }
        };
        let _ = upstream.set_nodelay(true);
        debug!(%peer, sni = %host, upstream = ?upstream.peer_addr().ok(), "ssl-passthrough relay");
        let closed = active.conn().closed();
        let mut upstream = upstream;
        let relay = super::tunnel::relay_idle(&mut io, &mut upstream, self.idle);
        tokio::select! {
            () = relay => {}
            () = closed => {}
        }
        let _ = upstream.shutdown().await;
        drop(active);
    }
}

/// Reads until the ClientHello is complete and returns its SNI, with every byte read put
/// back in front of `io`.
async fn read_sni(io: &mut ClientIo) -> io::Result<Option<String>> {
    let mut seen = BytesMut::with_capacity(2048);
    let mut acceptor = rustls::server::Acceptor::default();
    let mut chunk = [0u8; 4096];
    let sni = loop {
        let n = match io.read(&mut chunk).await {
            Ok(n) => n,
            Err(e) => {
                io.unread(seen.freeze());
                return Err(e);
            }
        };
        if n == 0 {
            break None;
        }
        seen.extend_from_slice(&chunk[..n]);
        let mut fed = &chunk[..n];
        while !fed.is_empty() {
            if acceptor.read_tls(&mut fed).is_err() {
                break;
            }
        }
        match acceptor.accept() {
            Ok(Some(accepted)) => {
                break accepted.client_hello().server_name().map(str::to_owned);
            }
            Ok(None) if seen.len() < MAX_HELLO => {}
            Ok(None) | Err(_) => break None,
        }
    };
    io.unread(Bytes::from(seen));
    Ok(sni)
}
