//! Forwarding to the pod: HTTP/1.1 to a pod address through the per-address pool in
//! `pool.rs`; everything else through pooled hyper-util clients shared by every worker, one
//! per upstream protocol (HTTP/1.1 to ExternalName hosts, HTTP/2 cleartext, HTTP/1.1 over
//! TLS, HTTP/2 over TLS) —
//! a connect timeout, a response-head timeout, and a retry on another endpoint when the
//! connection could not be made (nothing was sent, so any method is safe to retry).
//!
//! TLS to pods does not verify the pod's certificate: pod certificates are rarely issued
//! for pod IP addresses. The handshake itself is still checked (the server must hold the
//! key of the certificate it presents).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use http::request::Parts;
use http::uri::{Authority, PathAndQuery, Scheme, Uri};
use http::{Request, Response, Version};
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

use super::balance::Balancer;
use super::body::{ResponseBody, UpstreamBody};
use super::error::ProxyError;
use super::observe::Observer;
use super::pool::{Http1Pool, PoolError, IDLE_TIMEOUT, MAX_IDLE_PER_ADDR, TCP_KEEPALIVE};
use crate::model::{Backend, Destination, UpstreamProtocol};

/// Endpoints tried for one request before giving up.
pub const MAX_ATTEMPTS: usize = 3;

#[derive(Clone, Debug)]
pub struct UpstreamSettings {
    /// Time to establish a TCP connection to a pod.
    pub connect_timeout: Duration,
    /// Time from sending the request to receiving the response head.
    pub response_timeout: Duration,
}

impl Default for UpstreamSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            response_timeout: Duration::from_secs(60),
        }
    }
}

pub struct Forwarder {
    http1: Client<HttpConnector, UpstreamBody>,
    h2c: Client<HttpConnector, UpstreamBody>,
    https: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    h2: Client<HttpsConnector<HttpConnector>, UpstreamBody>,
    /// HTTP/1.1 to pod addresses (everything else goes through the clients above).
    pool: Arc<Http1Pool>,
    /// Endpoint choice (shared with the rest of the proxy: state outlives snapshots).
    balancer: Arc<Balancer>,
    /// Connect errors, retries and timeouts are counted per backend.
    observer: Arc<Observer>,
    response_timeout: Duration,
}

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How one attempt failed.
enum SendError {
    /// The connection could not be made; nothing was sent.
    Connect { error: BoxError, timed_out: bool },
    /// No response head in time.
    Timeout,
    /// Failed after (part of) the request was sent.
    Failed(BoxError),
}

impl Forwarder {
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
            pool: Http1Pool::new(settings.connect_timeout),
            balancer,
            observer,
            response_timeout: settings.response_timeout,
        })
    }

    async fn send(
        &self,
        protocol: UpstreamProtocol,
        endpoint: Option<SocketAddr>,
        mut req: Request<UpstreamBody>,
    ) -> Result<Response<ResponseBody>, SendError> {
        if let (UpstreamProtocol::Http1, Some(addr)) = (protocol, endpoint) {
            // The pod address is known: the lean pool, origin-form request target.
            let target = req.uri().path_and_query().cloned();
            *req.uri_mut() = target.map_or_else(|| Uri::from_static("/"), Uri::from);
            let sent = self.pool.send(addr, req);
            return match tokio::time::timeout(self.response_timeout, sent).await {
                Err(_) => Err(SendError::Timeout),
                Ok(Ok(response)) => Ok(response),
                Ok(Err(PoolError::Connect { source, timed_out })) => Err(SendError::Connect {
                    error: source.into(),
                    timed_out,
                }),
                Ok(Err(PoolError::Failed(error))) => Err(SendError::Failed(error.into())),
            };
        }
        let response = match protocol {
            UpstreamProtocol::Http1 => self.http1.request(req),
            UpstreamProtocol::H2c => self.h2c.request(req),
            UpstreamProtocol::Https => self.https.request(req),
            UpstreamProtocol::H2 => self.h2.request(req),
        };
        match tokio::time::timeout(self.response_timeout, response).await {
            Err(_) => Err(SendError::Timeout),
            Ok(Ok(response)) => Ok(response.map(ResponseBody::plain)),
            Ok(Err(error)) if error.is_connect() => {
                let timed_out = is_timeout(&error);
                Err(SendError::Connect {
                    error: error.into(),
                    timed_out,
                })
            }
            Ok(Err(error)) => Err(SendError::Failed(error.into())),
        }
    }

    /// Drops idle pooled connections that expired or were closed by the pod.
    pub fn sweep(&self) {
        self.pool.sweep();
    }

    /// Sends the request to an endpoint of `backend`; on a connect failure, to another.
    /// `parts` must already be rewritten for the upstream (headers, version).
    pub async fn forward(
        &self,
        backend: &Backend,
        protocol: UpstreamProtocol,
        client_ip: IpAddr,
        mut parts: Parts,
        body: Incoming,
        upstream: &mut Option<Authority>,
    ) -> Result<Response<ResponseBody>, ProxyError> {
        let metrics = self.observer.metrics();
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
        let mut tried = [SocketAddr::from(([0, 0, 0, 0], 0)); MAX_ATTEMPTS];
        let mut attempts = 0;
        let possible = match &backend.destination {
            Destination::Endpoints { usable, .. } => usable.len().min(MAX_ATTEMPTS),
            Destination::ExternalName { .. } => 1,
        };

        loop {
            let (authority, endpoint): (Authority, Option<SocketAddr>) = match &backend.destination
            {
                Destination::ExternalName { authority, .. } => (authority.clone(), None),
                Destination::Endpoints { .. } => {
                    match self.balancer.pick(backend, client_ip, &tried[..attempts]) {
                        Some(e) => (e.authority.clone(), Some(e.addr)),
                        None => return Err(ProxyError::NoEndpoints(backend.id.clone())),
                    }
                }
            };
            attempts += 1;
            if attempts > 1 {
                metrics.retry(&backend.id);
            }
            *upstream = Some(authority.clone());
            let last = attempts >= possible;

            let mut uri = {
                let mut target = http::uri::Parts::default();
                target.scheme = Some(scheme.clone());
                target.authority = Some(authority.clone());
                target.path_and_query = Some(path_and_query.clone());
                Uri::from_parts(target)
                    .map_err(|_| ProxyError::BadRequest("request target cannot be forwarded"))?
            };
            // Clone the request head only when another attempt could follow.
            let mut head = if last {
                std::mem::replace(&mut parts, empty_parts())
            } else {
                parts.clone()
            };
            std::mem::swap(&mut head.uri, &mut uri);
            let (upstream_body, reclaim) = match (empty, body.take()) {
                (false, Some(b)) => {
                    let (b, rx) = UpstreamBody::reclaimable(b);
                    (b, Some(rx))
                }
                _ => (UpstreamBody::empty(), None),
            };

            match self
                .send(protocol, endpoint, Request::from_parts(head, upstream_body))
                .await
            {
                Ok(response) => return Ok(response),
                Err(SendError::Timeout) => {
                    metrics.timeout(&backend.id);
                    return Err(ProxyError::Timeout {
                        endpoint: authority.to_string(),
                    });
                }
                Err(SendError::Failed(source)) => {
                    return Err(ProxyError::Upstream {
                        endpoint: authority.to_string(),
                        source,
                    })
                }
                Err(SendError::Connect { error, timed_out }) => {
                    metrics.connect_error(&backend.id);
                    debug!(endpoint = %authority, %error, timed_out, attempt = attempts, "upstream connect failed");
                    if let Some(addr) = endpoint {
                        tried[attempts - 1] = addr;
                    }
                    if let Some(mut rx) = reclaim {
                        body = rx.try_recv().ok();
                    }
                    let retry = !last && (empty || body.is_some());
                    if !retry {
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
