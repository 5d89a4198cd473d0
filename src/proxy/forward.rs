//! Forwarding to the pod: HTTP/1.1 to a pod address through the per-address pool in
//! `pool.rs`; everything else through pooled hyper-util clients shared by every worker, one
//! per upstream protocol (HTTP/1.1 to ExternalName hosts, HTTP/2 cleartext, HTTP/1.1 over
//! TLS, HTTP/2 over TLS).
//!
//! Timeouts: connecting (`--upstream-connect-timeout`); handing the request body to the pod
//! (`--upstream-send-timeout`: the pod must keep taking it); the response head
//! (`--upstream-timeout`, counted from the end of the request body); and the response body
//! (`--upstream-read-timeout` between bytes, in `body.rs`).
//!
//! Retries: a request whose connection could not be made is sent to another endpoint
//! (nothing was sent, so any method is safe). An idempotent request (RFC 9110 §9.2.2)
//! whose connection was reset before any response came is sent again too, when its body
//! is empty or was never read, within the backend's retry budget. Every outcome is reported
//! to the outlier detector (`outlier.rs`).
//!
//! TLS to pods does not verify the pod's certificate: pod certificates are rarely issued
//! for pod IP addresses. The handshake itself is still checked (the server must hold the
//! key of the certificate it presents).

use std::future::Future;
use std::net::{IpAddr, SocketAddr};
use std::pin::Pin;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Method, Request, Response, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::{Builder, Client, Error as ClientError};
use hyper_util::rt::{TokioExecutor, TokioTimer};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, SignatureScheme};
use tracing::debug;

use super::balance::{Balancer, Steer};
use super::body::{
    BoxError, ClientBody, ClientBodyError, Progress, ResponseBody, Sending, UpstreamBody,
};
use super::error::ProxyError;
use super::observe::Observer;
use super::outlier::{is_gateway_failure, Failure};
use super::pool::{Http1Pool, PoolError, Sender, IDLE_TIMEOUT, MAX_IDLE_PER_ADDR, TCP_KEEPALIVE};
use crate::admin::metrics::Metrics;
use crate::model::{Backend, Destination, NextUpstream, Policy, StatusSet, UpstreamProtocol};

/// Endpoints tried for one request before giving up (at most two retries), unless the
/// route's `proxy-next-upstream-tries` says otherwise.
pub const MAX_ATTEMPTS: usize = 3;
/// The most endpoints one request is ever sent to (`proxy-next-upstream-tries: 0` means as
/// many as there are, up to this).
pub const MAX_TRIES: usize = 8;

#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// Time to establish a TCP connection to a pod.
    pub connect_timeout: Duration,
    /// Time from the end of the request to the response head.
    pub response_timeout: Duration,
    /// Longest pause in the middle of a response body.
    pub read_timeout: Duration,
    /// Longest the pod may leave the request body untaken.
    pub send_timeout: Duration,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
            read_timeout: Duration::from_secs(60),
            send_timeout: Duration::from_secs(60),
        }
    }
}

/// What outlives `forward` with the response body: the pool its connection goes back to,
/// the balancer whose outlier detector hears how the body ended, the metrics.
pub struct Upstream {
    pool: Http1Pool,
    balancer: Arc<Balancer>,
    observer: Arc<Observer>,
}

impl Upstream {
    pub fn balancer(&self) -> &Balancer {
        &self.balancer
    }

    pub fn metrics(&self) -> &Metrics {
        self.observer.metrics()
    }

    pub fn give_back(&self, addr: SocketAddr, sender: Sender) {
        self.pool.give_back(addr, sender);
    }
}

pub struct Forwarder {
    http1: Client<HttpConnector, UpstreamBody>,
    h2c: Client<HttpConnector, UpstreamBody>,
    https: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    h2: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    upstream: Arc<Upstream>,
    settings: UpstreamSettings,
}

/// How one attempt failed.
enum SendError {
    /// The connection could not be made; nothing was sent.
    Connect { error: BoxError, timed_out: bool },
    /// No response head in time.
    Timeout,
    /// The pod stopped taking the request body.
    SendTimeout,
    /// The client's body failed: the client's error, not the pod's.
    Client(ProxyError),
    /// Failed after (part of) the request was sent, before a response; `reset` when the
    /// connection was reset or closed (worth another endpoint for an idempotent request).
    Failed { error: BoxError, reset: bool },
}

impl Forwarder {
    pub fn upstream_balancer(&self) -> &Balancer {
        &self.upstream.balancer
    }

    /// Fails only if the TLS client configuration cannot be built (a rustls build without
    /// the protocol versions we ask for).
    pub fn new(
        settings: &UpstreamSettings,
        balancer: Arc<Balancer>,
        observer: Arc<Observer>,
    ) -> Result<Self, rustls::Error> {
        let connector = |enforce_http: bool| {
            let mut c = HttpConnector::new();
            c.set_nodelay(true);
            c.set_connect_timeout(Some(settings.connect_timeout));
            c.set_keepalive(Some(TCP_KEEPALIVE));
            c.enforce_http(enforce_http);
            c
        };
        let builder = |http2: bool| -> Builder {
            let mut b = Client::builder(TokioExecutor::new());
            b.pool_idle_timeout(IDLE_TIMEOUT)
                .pool_max_idle_per_host(MAX_IDLE_PER_ADDR)
                .pool_timer(TokioTimer::new())
                .timer(TokioTimer::new())
                // The client's Host header is the one to send, never the pod address.
                .set_host(false)
                .http2_only(http2);
            b
        };
        let tls = ClientConfig::builder_with_provider(Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(PodCertificates::new()))
        .with_no_client_auth();
        let https_connector = |http2: bool| -> HttpsConnector<HttpConnector> {
            let b = hyper_rustls::HttpsConnectorBuilder::new()
                .with_tls_config(tls.clone())
                .https_only();
            if http2 {
                b.enable_http2().wrap_connector(connector(false))
            } else {
                b.enable_http1().wrap_connector(connector(false))
            }
        };
        Ok(Self {
            http1: builder(false).build(connector(true)),
            h2c: builder(true).build(connector(true)),
            https: builder(false).build(https_connector(false)),
            h2: builder(true).build(https_connector(true)),
            upstream: Arc::new(Upstream {
                pool: Http1Pool::default(),
                balancer,
                observer,
            }),
            settings: settings.clone(),
        })
    }

    /// The timeouts of one request: the route's (annotations), else the flags'.
    fn timeouts(&self, policy: Option<&Policy>) -> Timeouts {
        let s = &self.settings;
        let or = |p: Option<Duration>, d: Duration| p.unwrap_or(d);
        match policy {
            None => Timeouts {
                connect: s.connect_timeout,
                response: s.response_timeout,
                send: s.send_timeout,
                read: s.read_timeout,
            },
            Some(p) => Timeouts {
                connect: or(p.connect_timeout, s.connect_timeout),
                // proxy-read-timeout is nginx's time to wait for the pod, before the head
                // and between body bytes alike.
                response: or(p.read_timeout, s.response_timeout),
                send: or(p.send_timeout, s.send_timeout),
                read: or(p.read_timeout, s.read_timeout),
            },
        }
    }

    /// Runs `fut` (sending a request, up to its response head) within the timeouts: from
    /// the end of the request body (or from now, without one) the response timeout; while
    /// the body is on its way, the pod must take some of it every send timeout.
    async fn within<F: Future>(
        &self,
        mut fut: Pin<&mut F>,
        progress: Option<&Progress>,
        t: &Timeouts,
    ) -> Result<F::Output, SendError> {
        let first = if progress.is_some() {
            t.send.min(t.response)
        } else {
            t.response
        };
        let sleep = tokio::time::sleep(first);
        tokio::pin!(sleep);
        loop {
            tokio::select! {
                biased;
                out = &mut fut => return Ok(out),
                () = &mut sleep => {}
            }
            let Some(progress) = progress else {
                return Err(SendError::Timeout);
            };
            let now = Instant::now();
            let (state, at) = progress.get();
            let deadline = match state {
                Sending::Done => at + t.response,
                // The client is slow, not the pod: the client body timeout decides.
                Sending::WaitingForClient => now + t.send,
                Sending::Sending => at + t.send,
            };
            if deadline <= now {
                return Err(match state {
                    Sending::Done => SendError::Timeout,
                    _ => SendError::SendTimeout,
                });
            }
            sleep.as_mut().reset(deadline.into());
        }
    }

    async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: Option<SocketAddr>,
        mut req: Request<UpstreamBody>,
        progress: Option<&Progress>,
        t: &Timeouts,
    ) -> Result<(Response<Incoming>, Option<Sender>), SendError> {
        if let (UpstreamProtocol::Http1, Some(addr)) = (protocol, endpoint) {
            // The pod address is known: the lean pool, origin-form request target.
            let target = req.uri().path_and_query().cloned();
            *req.uri_mut() = target.map_or_else(|| Uri::from_static("/"), Uri::from);
            // Pinned here and polled through a reference: the (large) send future is not
            // moved again into the timeout's state.
            let sent = self.upstream.pool.send(addr, req, t.connect);
            tokio::pin!(sent);
            return match self.within(sent, progress, t).await? {
                Ok(sent) => Ok(sent),
                Err(PoolError::Connect { source, timed_out }) => Err(SendError::Connect {
                    error: source.into(),
                    timed_out,
                }),
                Err(PoolError::Failed(error)) => Err(failed(error.into())),
            };
        }
        let response = match protocol {
            UpstreamProtocol::Http1 => self.http1.request(req),
            UpstreamProtocol::H2c => self.h2c.request(req),
            UpstreamProtocol::Https => self.https.request(req),
            UpstreamProtocol::H2 => self.h2.request(req),
        };
        tokio::pin!(response);
        match self.within(response, progress, t).await? {
            Ok(response) => Ok((response, None)),
            Err(error) if error.is_connect() => {
                let timed_out = is_timeout(&error);
                Err(SendError::Connect {
                    error: error.into(),
                    timed_out,
                })
            }
            Err(error) => Err(failed(error.into())),
        }
    }

    /// Drops idle pooled connections that expired or were closed by the pod.
    pub fn sweep(&self) {
        self.upstream.pool.sweep();
    }

    /// Sends the request to an endpoint of `backend`; when an attempt fails in a way the
    /// route's retry rules (`policy`, else the defaults) allow, to another.
    /// `parts` must already be rewritten for the upstream (headers, version).
    #[allow(clippy::too_many_arguments)]
    pub async fn forward(
        &self,
        backend: Arc<Backend>,
        protocol: UpstreamProtocol,
        client_ip: IpAddr,
        mut parts: Parts,
        body: ClientBody,
        policy: Option<&Policy>,
        steer: Steer,
        upstream: &mut Attempts,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let metrics = self.upstream.metrics();
        let balancer = &self.upstream.balancer;
        let outliers = balancer.outliers();
        let timeouts = self.timeouts(policy);
        let retry = Retry::new(policy.and_then(|p| p.next_upstream.as_ref()), &parts.method);
        let (scheme, version) = match protocol {
            UpstreamProtocol::Http1 => (Scheme::HTTP, Version::HTTP_11),
            UpstreamProtocol::H2c => (Scheme::HTTP, Version::HTTP_2),
            UpstreamProtocol::Https => (Scheme::HTTPS, Version::HTTP_11),
            UpstreamProtocol::H2 => (Scheme::HTTPS, Version::HTTP_2),
        };
        parts.version = version;
        let path_and_query = parts
            .uri
            .path_and_query()
            .cloned()
            .unwrap_or_else(|| PathAndQuery::from_static("/"));
        // An empty body is rebuilt for free on a retry; a real one is handed back by the
        // client when it was dropped unread.
        let empty = body.is_end_stream();
        let mut body = Some(body);
        let mut tried = [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_TRIES];
        let mut attempts = 0;
        let possible = match &backend.destination {
            Destination::Endpoints { usable, .. } => usable.len().min(retry.tries),
            Destination::ExternalName { .. } => 1,
        };

        loop {
            let (authority, endpoint): (Authority, Option<SocketAddr>) = match &backend.destination
            {
                Destination::ExternalName { authority, .. } => (authority.clone(), None),
                Destination::Endpoints { .. } => {
                    match balancer.pick_steered(&backend, client_ip, &tried[..attempts], steer) {
                        Some(e) => {
                            if e.remote_zone {
                                metrics.cross_zone(&backend.id);
                            }
                            (e.authority.clone(), Some(e.addr))
                        }
                        None => return Err(ProxyError::NoEndpoints(backend.id.clone())),
                    }
                }
            };
            attempts += 1;
            if attempts > 1 {
                metrics.retry(&backend.id);
            }
            if let Some(addr) = endpoint {
                tried[attempts - 1] = addr;
            }
            upstream.authority = Some(authority.clone());
            upstream.endpoint = endpoint;
            upstream.attempts = attempts;
            // load-balance: ewma learns each attempt's response time.
            let ewma = match (steer, endpoint) {
                (Steer::Ewma, Some(addr)) => Some(EwmaAttempt {
                    balancer,
                    addr,
                    began: Instant::now(),
                }),
                _ => None,
            };
            // Whether another endpoint may still be tried.
            let more = attempts < possible && retry.in_time();

            let mut uri = {
                let mut target = http::uri::Parts::default();
                target.scheme = Some(scheme.clone());
                target.authority = Some(authority.clone());
                target.path_and_query = Some(path_and_query.clone());
                Uri::from_parts(target)
                    .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?
            };
            // Clone the request head only when another attempt could follow.
            let mut head = if more {
                parts.clone()
            } else {
                std::mem::replace(&mut parts, empty_parts())
            };
            std::mem::swap(&mut head.uri, &mut uri);
            let (upstream_body, reclaim, progress) = match (empty, body.take()) {
                (false, Some(mut b)) => {
                    let progress = Progress::new();
                    b.watch(progress.clone());
                    let (b, rx) = UpstreamBody::reclaimable(b);
                    (b, Some(rx), Some(progress))
                }
                _ => (UpstreamBody::empty(), None, None),
            };

            let sent = self
                .send(
                    protocol,
                    endpoint,
                    Request::from_parts(head, upstream_body),
                    progress.as_deref(),
                    &timeouts,
                )
                .await;
            if let Some(attempt) = ewma {
                attempt
                    .done(!matches!(&sent, Ok((r, _)) if !is_gateway_failure(r.status().as_u16())));
            }
            // A request that reached the pod may be sent again only if the route allows it
            // for this method, its body can be sent again, and the retry budget has room.
            let again_after_sent = |body: &mut Option<ClientBody>, reclaim| {
                more && retry.sent_again
                    && (empty || reclaimed(reclaim, body))
                    && balancer.try_retry(&backend)
            };
            match sent {
                Ok((response, pooled)) => {
                    let status = response.status();
                    let healthy = !is_gateway_failure(status.as_u16());
                    if let Some(addr) = endpoint {
                        if !healthy {
                            outliers.failure(addr, &backend, Failure::Status(status.as_u16()));
                        } else if status == http::StatusCode::SWITCHING_PROTOCOLS {
                            outliers.success(addr);
                        }
                    }
                    if retry.statuses.contains(status.as_u16())
                        && again_after_sent(&mut body, reclaim)
                    {
                        debug!(endpoint = %authority, status = status.as_u16(), attempt = attempts, "status retried on another endpoint");
                        continue;
                    }
                    // A gateway failure counts now; success only once the whole body came
                    // (a pod that cuts its responses short fails them), or at once for an
                    // upgrade, whose body is a tunnel.
                    let (head, incoming) = response.into_parts();
                    let body = ResponseBody::new(
                        incoming,
                        self.upstream.clone(),
                        backend,
                        endpoint,
                        pooled,
                        healthy,
                        timeouts.read,
                    );
                    return Ok(Response::from_parts(head, body));
                }
                Err(SendError::Client(error)) => return Err(error),
                Err(SendError::Timeout | SendError::SendTimeout) => {
                    metrics.timeout(&backend.id);
                    if let Some(addr) = endpoint {
                        outliers.failure(addr, &backend, Failure::Timeout);
                    }
                    if retry.timeout && again_after_sent(&mut body, reclaim) {
                        continue;
                    }
                    return Err(ProxyError::Timeout {
                        endpoint: authority.to_string(),
                    });
                }
                Err(SendError::Failed { error, reset }) => {
                    if let Some(addr) = endpoint {
                        outliers.failure(addr, &backend, Failure::Reset);
                    }
                    // The pod may have acted on it: only a reset (no response at all) of a
                    // request the route allows to be sent again goes to another endpoint.
                    let again = reset && retry.error && again_after_sent(&mut body, reclaim);
                    debug!(endpoint = %authority, %error, retry = again, attempt = attempts, "upstream request failed");
                    if again {
                        continue;
                    }
                    return Err(ProxyError::Upstream {
                        endpoint: authority.to_string(),
                        source: error,
                    });
                }
                Err(SendError::Connect { error, timed_out }) => {
                    metrics.connect_error(&backend.id);
                    if let Some(addr) = endpoint {
                        metrics.traffic().connect_error(addr);
                        outliers.failure(addr, &backend, Failure::Connect);
                    }
                    debug!(endpoint = %authority, %error, timed_out, attempt = attempts, "upstream connect failed");
                    // Nothing was sent: any method may go to another endpoint.
                    let allowed = if timed_out {
                        retry.timeout_connect
                    } else {
                        retry.error
                    };
                    if allowed && more && (empty || reclaimed(reclaim, &mut body)) {
                        continue;
                    }
                    return Err(if timed_out {
                        ProxyError::Timeout {
                            endpoint: authority.to_string(),
                        }
                    } else {
                        ProxyError::Connect {
                            endpoint: authority.to_string(),
                            source: error,
                        }
                    });
                }
            }
        }
    }
}

/// Where a request went: the last endpoint tried, and how many attempts it took.
#[derive(Debug, Default)]
pub struct Attempts {
    pub authority: Option<Authority>,
    pub endpoint: Option<SocketAddr>,
    pub attempts: usize,
}

/// One attempt of a `load-balance: ewma` route, until it has its response head; dropped
/// unfinished (the client left), it only stops counting as in flight.
struct EwmaAttempt<'a> {
    balancer: &'a Balancer,
    addr: SocketAddr,
    began: Instant,
}

impl EwmaAttempt<'_> {
    fn done(self, failed: bool) {
        self.balancer
            .ewma_observe(self.addr, self.began.elapsed(), failed);
        std::mem::forget(self);
    }
}

impl Drop for EwmaAttempt<'_> {
    fn drop(&mut self) {
        self.balancer.ewma_cancel(self.addr);
    }
}

/// The timeouts of one request.
struct Timeouts {
    connect: Duration,
    response: Duration,
    send: Duration,
    read: Duration,
}

/// Which failed attempts go to another endpoint: the route's `proxy-next-upstream`, else
/// wicket's defaults (connection failures always; a reset before any response for an
/// idempotent request; no statuses, no response timeouts).
struct Retry {
    /// Connection refused or reset before a response.
    error: bool,
    /// A connect timeout.
    timeout_connect: bool,
    /// A response (or send) timeout of a request that reached the pod.
    timeout: bool,
    statuses: StatusSet,
    /// Whether this request may be sent again once it reached a pod (its method).
    sent_again: bool,
    /// Attempts in all.
    tries: usize,
    /// Retrying stops at this time.
    until: Option<Instant>,
}

impl Retry {
    fn new(next: Option<&NextUpstream>, method: &Method) -> Self {
        match next {
            None => Self {
                error: true,
                timeout_connect: true,
                timeout: false,
                statuses: StatusSet::default(),
                sent_again: is_idempotent(method),
                tries: MAX_ATTEMPTS,
                until: None,
            },
            Some(n) => Self {
                error: n.error,
                timeout_connect: n.timeout,
                timeout: n.timeout,
                statuses: n.statuses,
                sent_again: n.non_idempotent || is_idempotent(method),
                tries: match n.tries {
                    0 => MAX_TRIES,
                    t => (t as usize).min(MAX_TRIES),
                },
                until: n.within.map(|w| Instant::now() + w),
            },
        }
    }

    fn in_time(&self) -> bool {
        self.until.is_none_or(|until| Instant::now() < until)
    }
}

/// Takes back a request body the connection never read; true if there is one to send.
fn reclaimed(reclaim: Option<super::body::Reclaim>, body: &mut Option<ClientBody>) -> bool {
    if let Some(mut rx) = reclaim {
        *body = rx.try_recv().ok();
    }
    body.is_some()
}

/// Methods whose effect is the same however often they are sent (RFC 9110 §9.2.2).
fn is_idempotent(method: &Method) -> bool {
    matches!(
        *method,
        Method::GET | Method::HEAD | Method::OPTIONS | Method::PUT | Method::DELETE | Method::TRACE
    )
}

/// Sorts an error after the request was (partly) sent: the client's body failing is the
/// client's error; a connection reset or closed early may be worth a retry.
fn failed(error: BoxError) -> SendError {
    if let Some(client) = client_body_error(error.as_ref()) {
        return SendError::Client(client);
    }
    let reset = is_reset(error.as_ref());
    SendError::Failed { error, reset }
}

/// The client's body error somewhere in `error`'s chain, as the response it gets.
fn client_body_error(error: &(dyn std::error::Error + 'static)) -> Option<ProxyError> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(body) = e.downcast_ref::<ClientBodyError>() {
            return Some(match body {
                ClientBodyError::TooLarge { .. } => ProxyError::BodyTooLarge,
                ClientBodyError::Timeout(_) => ProxyError::BodyTimeout,
                ClientBodyError::Malformed(_) => {
                    ProxyError::MalformedBody(Box::new(std::io::Error::other(body.to_string())))
                }
            });
        }
        next = e.source();
    }
    None
}

/// Whether the connection was reset or closed before the response (rather than the pod
/// answering garbage).
fn is_reset(error: &(dyn std::error::Error + 'static)) -> bool {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(hyper) = e.downcast_ref::<hyper::Error>() {
            if hyper.is_incomplete_message() || hyper.is_canceled() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                return true;
            }
        }
        next = e.source();
    }
    false
}

/// Accepts the pod's certificate without checking its names or issuer, but checks that
/// the pod holds its key (the handshake signature).
#[derive(Debug)]
struct PodCertificates(Arc<CryptoProvider>);

impl PodCertificates {
    fn new() -> Self {
        Self(Arc::new(rustls::crypto::aws_lc_rs::default_provider()))
    }
}

impl ServerCertVerifier for PodCertificates {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

fn empty_parts() -> Parts {
    Request::new(()).into_parts().0
}

/// Whether a connect error was a timeout (504) rather than a refusal (502).
fn is_timeout(error: &ClientError) -> bool {
    let mut source: Option<&(dyn std::error::Error + 'static)> = std::error::Error::source(error);
    while let Some(e) = source {
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
        }
        source = e.source();
    }
    false
}
