//! Accept loops: room for a new client (closing the longest-idle connections when the
//! listener is full), a backoff when accepting fails (out of file descriptors), TLS, and the
//! shutdown phases (GOAWAY while the shutdown delay lasts, then drain).

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::{Request, Response};
use hyper::body::Incoming;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tracing::{debug, info, warn};

use super::body::ProxyBody;
use super::conn::ClientIo;
use super::conn::{ConnInfo, Connections, PeerCert, Supervised};
use super::passthrough::{self, Passthrough};
use super::proxy_protocol::{self, Proxied, ProxyProtocolError};
use super::serve::Server;
use super::tls::Terminator;
use super::trust::TrustedProxies;
use crate::admin::metrics::Metrics;

/// First and longest pause after a failed accept.
const ACCEPT_BACKOFF_MIN: Duration = Duration::from_millis(5);
const ACCEPT_BACKOFF_MAX: Duration = Duration::from_secs(1);
/// A full listener whose connections are all busy looks again this often (connections
/// become idle without anyone being told).
const FULL_RECHECK: Duration = Duration::from_millis(100);

/// Where a listener is in the process's life.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    Serving,
    /// The shutdown delay: keep serving, but tell clients to go elsewhere (HTTP/1.1
    /// `Connection: close`, HTTP/2 GOAWAY).
    GoAway,
    /// Stop accepting; let requests in flight finish; close.
    Drain,
}

/// How a listener treats its clients.
#[derive(Clone, Debug)]
pub struct ListenerSettings {
    /// `http`, `https` or `admin`: the metrics' listener label.
    pub name: &'static str,
    /// The registry its connections join, with their limit and timeouts (the HTTP and
    /// HTTPS listeners share one: the limit is on client connections in all). At the limit
    /// the longest-idle connections are closed for new clients; when none is idle, new
    /// clients wait in the backlog.
    pub connections: Arc<Connections>,
    /// How long requests in flight may take to finish once draining starts.
    pub drain_timeout: Duration,
    /// Every connection starts with a PROXY protocol header.
    pub proxy_protocol: bool,
    /// Peers whose forwarding headers are believed.
    pub trusted: Arc<TrustedProxies>,
    /// `--enable-ssl-passthrough` (HTTPS listener): TLS for passed-through hosts is relayed.
    pub passthrough: Option<Arc<Passthrough>>,
}

/// At most one warning per this long about connections without a PROXY header (a
/// misconfigured load balancer sends nothing else).
const PROXY_PROTOCOL_WARN_EVERY: Duration = Duration::from_secs(60);

/// Binds `addr`, with a message that says which address could not be used.
pub async fn bind(addr: SocketAddr, what: &str) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await.map_err(|e| {
        std::io::Error::new(e.kind(), format!("cannot listen on {addr} ({what}): {e}"))
    })
}

/// Accepts connections (terminating TLS when `tls` is set) until `phase` turns to
/// [`Phase::Drain`], then drains. Connections open and closed are counted in `metrics`.
pub async fn run<H, Fut>(
    listener: TcpListener,
    tls: Option<Arc<Terminator>>,
    handler: H,
    settings: ListenerSettings,
    mut phase: watch::Receiver<Phase>,
    metrics: Arc<Metrics>,
) where
    H: Fn(Arc<ConnInfo>, Request<Incoming>) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = Response<ProxyBody>> + Send + 'static,
{
    let server = Arc::new(Server::new());
    let name = settings.name;
    let conns = settings.connections.clone();
    let open = metrics.connections(name);
    let warned = Arc::new(WarnEvery::new(PROXY_PROTOCOL_WARN_EVERY));
    let local = listener.local_addr().ok();
    let mut backoff = ACCEPT_BACKOFF_MIN;
    'accept: loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            changed = phase.changed() => {
                if changed.is_err() || !on_phase(&phase, &conns) {
                    break;
                }
                continue;
            }
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
        let tracked = conns.register(name);
        // A full listener makes room by closing its longest-idle connections; if every one
        // is busy, this client waits (and the next ones in the backlog) until one goes.
        while conns.over_limit() {
            if conns.evict_idle(&tracked) == 0 {
                tokio::select! {
                    () = conns.wait_for_room(FULL_RECHECK) => {}
                    changed = phase.changed() => if changed.is_err() || !on_phase(&phase, &conns) {
                        break 'accept;
                    },
                }
            }
        }
        let server = server.clone();
        let handler = handler.clone();
        let tls = tls.clone();
        let settings = settings.clone();
        let metrics = metrics.clone();
        let warned = warned.clone();
        open.inc();
        let open = open.clone();
        tokio::spawn(async move {
            // The listener's address: only its port is used (X-Forwarded-Port), and asking
            // the socket would cost a syscall per connection.
            let local = local.unwrap_or(peer);
            // Until the first request, any signal but GOAWAY ends the connection.
            let start = Supervised::new(
                tracked.clone(),
                accept(stream, peer, local, settings.proxy_protocol),
                |_, _, _| {},
            );
            let (mut io, peer, local) = match start.await {
                Some(Ok(accepted)) => accepted,
                Some(Err(error)) => {
                    metrics.connection_closed(name, "proxy_protocol");
                    debug!(%peer, %error, "connection refused");
                    if warned.now() {
                        warn!(listener = name, %peer, %error, "connection without a valid PROXY protocol header closed (--proxy-protocol is on: is the load balancer sending it?)");
                    }
                    open.dec();
                    return;
                }
                None => {
                    open.dec();
                    return;
                }
            };
            io.watch(tracked.clone());
            let conn = ConnInfo::new(peer, local, tls.is_some(), tracked.clone())
                .with_trust(settings.trusted.contains(peer.ip()));
            match tls {
                None => server.serve(io, Arc::new(conn), handler).await,
                Some(tls) => {
                    if let Some(pass) = settings.passthrough.as_ref().filter(|p| p.active()) {
                        let routed = Supervised::new(
                            tracked.clone(),
                            pass.route(&mut io, peer.ip()),
                            |_, _, _| {},
                        );
                        match routed.await {
                            None => {
                                open.dec();
                                return;
                            }
                            Some(passthrough::Route::Relay(backend, host)) => {
                                let active = tracked.begin(false);
                                pass.relay(io, backend, host, peer, active).await;
                                open.dec();
                                return;
                            }
                            Some(passthrough::Route::Refuse(host, why)) => {
                                info!(%peer, sni = %host, reason = %why, "ssl-passthrough host has no usable backend; connection closed");
                                open.dec();
                                return;
                            }
                            Some(passthrough::Route::Terminate) => {}
                        }
                    }
                    let handshake = Supervised::new(tracked, tls.accept(io, peer), |_, _, _| {});
                    if let Some(Some(stream)) = handshake.await {
                        let cert = stream
                            .get_ref()
                            .1
                            .peer_certificates()
                            .and_then(PeerCert::new);
                        let sni = stream.get_ref().1.server_name();
                        let conn = Arc::new(conn.with_peer_cert(cert).with_sni(sni));
                        server.serve(stream, conn, handler).await;
                    }
                }
            }
            open.dec();
        });
    }
    drop(listener);
    if let Some(addr) = local {
        info!(%addr, open = conns.open(), "stopped accepting; draining connections");
    }
    if !conns.drain(settings.drain_timeout).await {
        warn!(timeout = ?settings.drain_timeout, "connections still open after the drain timeout; closed them");
    }
}

/// The connection's stream and addresses: the TCP ones, or those a PROXY header gives.
async fn accept(
    stream: TcpStream,
    peer: SocketAddr,
    local: SocketAddr,
    proxy_protocol: bool,
) -> Result<(ClientIo, SocketAddr, SocketAddr), ProxyProtocolError> {
    if !proxy_protocol {
        return Ok((ClientIo::new(stream), peer, local));
    }
    let (proxied, io) = proxy_protocol::read_header(stream).await?;
    Ok(match proxied {
        Proxied::Addresses {
            source,
            destination,
        } => (io, source, destination),
        Proxied::Local => (io, peer, local),
    })
}

/// A rate limit for one kind of warning.
struct WarnEvery {
    every: Duration,
    last: std::sync::Mutex<Option<std::time::Instant>>,
}

impl WarnEvery {
    fn new(every: Duration) -> Self {
        Self {
            every,
            last: std::sync::Mutex::new(None),
        }
    }

    /// Whether to warn now (and not again for a while).
    fn now(&self) -> bool {
        let mut last = self.last.lock().unwrap_or_else(|e| e.into_inner());
        let due = last.is_none_or(|at| at.elapsed() >= self.every);
        if due {
            *last = Some(std::time::Instant::now());
        }
        due
    }
}

/// Acts on a phase change; false when the listener should stop accepting.
fn on_phase(phase: &watch::Receiver<Phase>, conns: &Connections) -> bool {
    match *phase.borrow() {
        Phase::Serving => true,
        Phase::GoAway => {
            conns.go_away();
            true
        }
        Phase::Drain => false,
    }
}
