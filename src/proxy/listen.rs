//! Accept loops: a connection limit (waiting for a free slot instead of accepting more),
//! a backoff when accepting fails (out of file descriptors), and a stop on shutdown.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use prometheus_client::metrics::gauge::Gauge;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tracing::{info, warn};

use super::body::ProxyBody;
use super::handler::ConnInfo;
use super::serve::Server;
use super::tls::Terminator;

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);

/// Binds `addr`, with a message that says which address could not be used.
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
    })
}

/// Accepts connections (terminating TLS when `tls` is set) until `shutdown` turns true,
/// then drains for `drain`. `open` counts the connections open.
pub async fn run<H, Fut>(
    listener: TcpListener,
    tls: Option<Arc<Terminator>>,
    handler: H,
    max_connections: usize,
    mut shutdown: watch::Receiver<bool>,
    drain: Duration,
    open: Gauge,
) where
    H: Fn(ConnInfo, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let server = Server::new();
    let limit = Arc::new(Semaphore::new(max_connections));
    let local = listener.local_addr().ok();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    loop {
        let permit = tokio::select! {
            permit = limit.clone().acquire_owned() => match permit {
                Ok(p) => p,
                Err(_) => break,
            },
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = shutdown.wait_for(|stop| *stop) => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => {
                backoff = ACCEPT_BACKOFF_MIN;
                a
            }
            Err(error) => {
                warn!(%error, retry_in = ?backoff, "accept failed");
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(ACCEPT_BACKOFF_MAX);
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        // The listener's address: only its port is used (X-Forwarded-Port), and asking the
        // socket would cost a syscall per connection.
        let conn = ConnInfo::new(peer, local.unwrap_or(peer), tls.is_some());
        let slot = server.slot();
        let handler = handler.clone();
        let tls = tls.clone();
        open.inc();
        let open = open.clone();
        tokio::spawn(async move {
            match tls {
                None => slot.serve(stream, conn, handler).await,
                Some(tls) => {
                    if let Some(stream) = tls.accept(stream, peer).await {
                        slot.serve(stream, conn, handler).await;
                    }
                }
            }
            drop(permit);
            open.dec();
        });
    }
    drop(listener);
    if let Some(addr) = local {
        info!(%addr, "stopped accepting; draining connections");
    }
    if !server.drain(drain).await {
        warn!(timeout = ?drain, "connections still open after the drain timeout; closing them");
    }
}
