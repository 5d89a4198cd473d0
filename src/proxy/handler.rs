//! One request, top to bottom: load the snapshot, route, rewrite, forward, answer.
//!
//! `handle` is the infallible outer function that turns every error into its response and
//! logs the outcome; `proxy` is the inner one that uses `?`. The snapshot is loaded once
//! (no lock, no clone of any table) and released before the first `.await`: the request
//! keeps only its backend, so a swap mid-request changes nothing for it.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use http::header::{HeaderValue, HOST};
use http::{Extensions, Method, Request, Response, StatusCode, Version};
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tracing::{debug, warn};

use super::balance::Balancer;
use super::body::ProxyBody;
use super::error::ProxyError;
use super::forward::{Forwarder, UpstreamSettings};
use super::headers::{self, Forwarded};
use super::route;
use crate::controller::publish::SharedSnapshot;
use crate::model::{Lookup, Target};

/// What the handler knows about the downstream connection.
#[derive(Clone, Copy, Debug)]
pub struct ConnInfo {
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub tls: bool,
}

pub struct Proxy {
    snapshot: SharedSnapshot,
    balancer: Arc<Balancer>,
    forwarder: Forwarder,
}

impl Proxy {
    pub fn new(
        snapshot: SharedSnapshot,
        balancer: Arc<Balancer>,
        upstream: &UpstreamSettings,
    ) -> Self {
        Self {
            snapshot,
            balancer,
            forwarder: Forwarder::new(upstream),
        }
    }

    /// Never fails: every error becomes its response here.
    pub async fn handle(&self, conn: ConnInfo, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let uri = req.uri().clone();
        match self.proxy(conn, req).await {
            Ok(response) => {
                debug!(peer = %conn.peer, %method, %uri, status = response.status().as_u16(),
                    elapsed_us = started.elapsed().as_micros() as u64, "proxied");
                response
            }
            Err(error) => {
                let status = error.status();
                if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                    warn!(peer = %conn.peer, %method, %uri, status = status.as_u16(), error = %error,
                        source = ?std::error::Error::source(&error), "request failed");
                } else {
                    debug!(peer = %conn.peer, %method, %uri, status = status.as_u16(), error = %error, "request refused");
                }
                error.into_response()
            }
        }
    }

    async fn proxy(
        &self,
        conn: ConnInfo,
        mut req: Request<Incoming>,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if req.method() == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed);
        }
        let backend = {
            let snapshot = self.snapshot.load();
            if !snapshot.is_ready() {
                return Err(ProxyError::NotReady);
            }
            let host = route::request_host(&req)?;
            let path = req.uri().path();
            route::check_path(path)?;
            let target = match snapshot.table.lookup(&host, path) {
                Lookup::Route { route, .. } => &route.target,
                Lookup::Default { backend, .. } => &backend.target,
                Lookup::NotFound { .. } => return Err(ProxyError::NoRoute),
            };
            match target {
                Target::Backend(backend) => backend.clone(),
                Target::Unavailable(why) => {
                    return Err(ProxyError::BackendUnavailable(why.clone()))
                }
            }
        };

        let upgrade =
            req.version() == Version::HTTP_11 && headers::is_upgrade_request(req.headers());
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let forwarded_host = match req.uri().authority() {
            Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
            None => req.headers().get(HOST).cloned(),
        };

        let (mut parts, body) = req.into_parts();
        let downstream_version = parts.version;
        headers::remove_hop_by_hop(&mut parts.headers, upgrade);
        if downstream_version == Version::HTTP_2 {
            headers::join_cookies(&mut parts.headers);
            headers::ensure_host(
                &mut parts.headers,
                parts.uri.authority().map(|a| a.as_str()),
            );
        }
        headers::set_forwarded(
            &mut parts.headers,
            &Forwarded {
                client_ip: conn.peer.ip(),
                proto: if conn.tls { "https" } else { "http" },
                port: conn.local.port(),
                host: forwarded_host.as_ref().and_then(|h| h.to_str().ok()),
            },
        );
        parts.version = Version::HTTP_11;
        parts.extensions = Extensions::new();

        let upstreamed = self
            .forwarder
            .forward(&self.balancer, &backend, conn.peer.ip(), parts, body)
            .await?;
        let mut response = upstreamed.response;

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            let Some(downstream) = downstream_upgrade else {
                // A 101 nobody asked for cannot be relayed.
                return Err(ProxyError::BadUpstream("switched protocols unasked"));
            };
            let upstream = hyper::upgrade::on(&mut response);
            tokio::spawn(async move {
                match tokio::try_join!(downstream, upstream) {
                    Ok((down, up)) => {
                        let mut down = TokioIo::new(down);
                        let mut up = TokioIo::new(up);
                        let _ = tokio::io::copy_bidirectional(&mut down, &mut up).await;
                    }
                    Err(error) => debug!(%error, "protocol upgrade failed"),
                }
            });
        }
        let (mut head, body) = response.into_parts();
        headers::prepare_response(&mut head.headers, switching);
        Ok(Response::from_parts(head, ProxyBody::Upstream(body)))
    }
}
