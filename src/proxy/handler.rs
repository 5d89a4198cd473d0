//! One request, top to bottom, in the phases of ARCHITECTURE.md: the client address
//! (`trust.rs`), the request head's limits (`limits.rs`), route, redirect to HTTPS if
//! asked, the body's limit, rewrite (one authority, forwarding headers), forward, answer.
//!
//! `handle` is the infallible outer function that turns every error into its response and
//! logs the outcome; `proxy` is the inner one that uses `?`. The snapshot is loaded once
//! (no lock, no clone of any table) and released before the first `.await`: the request
//! keeps only its backend, so a swap mid-request changes nothing for it.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use http::header::{
    HeaderName, HeaderValue, AUTHORIZATION, CONTENT_LENGTH, HOST, ORIGIN, SET_COOKIE,
    STRICT_TRANSPORT_SECURITY, TE,
};
use http::uri::PathAndQuery;
use http::{Extensions, Method, Request, Response, StatusCode, Uri, Version};
use http_body::Body as _;
use hyper::body::Incoming;
use tracing::{debug, warn};

use super::affinity;
use super::auth::{self, Authenticator};
use super::balance::{Balancer, Steer};
use super::body::ClientBody;
use super::body::ProxyBody;
use super::conn::{ConnInfo, PeerCert};
use super::cors;
use super::error::ProxyError;
use super::error_page;
use super::external_auth::{self, AuthClient, Verdict};
use super::forward::{Attempts, Forwarder, UpstreamSettings};
use super::gateway;
use super::headers::{self, Forwarded, X_FORWARDED_PREFIX, X_REQUEST_ID};
use super::limits;
use super::observe::{self, Finish, Observer, Record};
use super::redirect;
use super::route;
use super::trust::TrustedProxies;
use super::tunnel;
use crate::admin::metrics::RouteLabels;
use crate::controller::publish::SharedSnapshot;
use crate::model::gateway::{
    Action, BackendTarget as GatewayTarget, GatewayRule, Matched, RequestFacts,
};
use crate::model::{
    collapse_slashes, Backend, Canary, ClientAuth, ExternalAuth, InFlight, Lookup, Policy,
    SourceRanges, Target, UpstreamProtocol, Verdict as CertVerdict, VerifyClient,
};

/// ACME HTTP-01 challenges (cert-manager) must reach their solver over plain HTTP; they are
/// never redirected, as in ingress-nginx.
const ACME_CHALLENGE_PREFIX: &str = "/.well-known/acme-challenge/";

/// `Strict-Transport-Security` for HTTPS responses of TLS hosts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Hsts {
    pub max_age: u64,
    pub include_subdomains: bool,
}

#[derive(Clone, Debug)]
pub struct ProxySettings {
    pub upstream: UpstreamSettings,
    /// Redirect plain-HTTP requests for TLS hosts to HTTPS (an Ingress can opt out).
    pub ssl_redirect: bool,
    /// The public HTTPS port put in redirects; 443 is left out of the URL.
    pub https_redirect_port: u16,
    pub hsts: Option<Hsts>,
    /// Request bodies larger than this are refused with 413 (None: no limit).
    pub max_request_body: Option<u64>,
    /// Longest pause while a client sends its request body (408 after it).
    pub client_body_timeout: Duration,
    /// Keep header names with `_` (dropped by default, as nginx does).
    pub allow_underscores_in_headers: bool,
    /// Peers whose forwarding headers are believed.
    pub trusted_proxies: Arc<TrustedProxies>,
    /// The secret persistent session cookies are keyed with (None: random per process).
    pub session_cookie_key: Option<Arc<[u8]>>,
    /// `--denylist-source-range` / `--allowlist-source-range`: which clients may use any
    /// route whose Ingress sets no list of its own.
    pub source: Option<Arc<SourceRanges>>,
    /// The status of a request a limit annotation refuses (503, or 429).
    pub limit_status: u16,
    /// How long an auth service (`auth-url`) may take to answer.
    pub auth_timeout: Duration,
}

impl Default for ProxySettings {
    fn default() -> Self {
        Self {
            upstream: UpstreamSettings::default(),
            ssl_redirect: true,
            https_redirect_port: 443,
            hsts: None,
            max_request_body: Some(limits::DEFAULT_MAX_BODY),
            client_body_timeout: Duration::from_secs(60),
            allow_underscores_in_headers: false,
            trusted_proxies: Arc::default(),
            session_cookie_key: None,
            source: None,
            limit_status: 503,
            auth_timeout: external_auth::AUTH_TIMEOUT,
        }
    }
}

pub struct Proxy {
    snapshot: SharedSnapshot,
    forwarder: Forwarder,
    observer: Arc<Observer>,
    ssl_redirect: bool,
    https_redirect_port: u16,
    hsts: Option<HeaderValue>,
    max_request_body: Option<u64>,
    client_body_timeout: Duration,
    allow_underscores: bool,
    trusted: Arc<TrustedProxies>,
    /// The proxy's own allow and deny lists.
    source: Option<Arc<SourceRanges>>,
    /// A WebSocket tunnel in which nothing moves this long is closed.
    tunnel_idle: Duration,
    /// Basic auth: remembered checks and each client's budget of password checks.
    auth: Authenticator,
    /// External auth: the pooled client of auth services.
    external: AuthClient,
    limit_status: StatusCode,
}

/// What the request path learnt for the access log and metrics.
#[derive(Default)]
struct Trace {
    route: RouteLabels,
    upstream: Attempts,
    request_id: Option<HeaderValue>,
    /// The route asked for no access-log line (`enable-access-log: "false"`).
    unlogged: bool,
    /// A route with CORS, and the request's `Origin`: every response gets the headers.
    cors: Option<(Arc<Policy>, Option<HeaderValue>)>,
    /// A route with `custom-headers`: every response gets them.
    headers: Option<Arc<Policy>>,
    /// A request counted against `limit-connections` until its response is done.
    in_flight: Option<InFlight>,
    /// Cookies an auth service set, and whether they go on any response
    /// (`auth-always-set-cookie`) or on successful ones only.
    auth_cookies: Option<(Vec<HeaderValue>, bool)>,
    /// A Gateway API rule with ResponseHeaderModifiers, and the backendRef chosen.
    gateway: Option<(Arc<GatewayRule>, usize)>,
    /// Errors are answered as gRPC statuses (a GRPCRoute rule, or an unrouted gRPC call).
    grpc: bool,
}

/// The access checks the routing step leaves to the request's task (they wait on
/// something): they decide before whatever the routing step decided.
#[derive(Default)]
struct Access {
    basic: Option<auth::Pending>,
    external: Option<(Arc<ExternalAuth>, String)>,
}

/// A request to send on, with what the routing step decided for it.
struct Forward {
    backend: Arc<Backend>,
    protocol: UpstreamProtocol,
    hsts: Option<HeaderValue>,
    /// The route's policy (annotations), if it has one.
    policy: Option<Arc<Policy>>,
    /// The largest request body the route accepts (None: no limit).
    body_limit: Option<u64>,
    /// The path and query the pod gets instead of the client's (`rewrite-target`).
    rewritten: Option<PathAndQuery>,
    /// The route's path as written, for a session cookie's default `Path`.
    route_path: Option<String>,
    /// The route's canary backend answers.
    canary: bool,
    /// Basic auth let the request in: its `Authorization` stays here.
    strip_authorization: bool,
    /// Headers set on (or, None, removed from) the request to the pod: `ssl-client-*`.
    set_headers: Vec<(HeaderName, Option<HeaderValue>)>,
}

/// What the routing step decided, taken out of the snapshot before any `.await`.
enum Decision {
    Forward(Forward),
    /// Answer without forwarding (the redirect to HTTPS).
    Respond(Box<Response<ProxyBody>>),
    /// The route's Service cannot take the request and its Ingress has an error backend
    /// (`default-backend`, or `custom-http-errors` with 503): it answers, with `X-Code: 503`.
    ErrorPage(Arc<Policy>),
}

impl Proxy {
    /// Closes pooled upstream connections that expired or that pods closed.
    pub fn sweep_idle_connections(&self) {
        self.forwarder.sweep();
    }

    pub fn new(
        snapshot: SharedSnapshot,
        balancer: Arc<Balancer>,
        settings: &ProxySettings,
        observer: Arc<Observer>,
    ) -> Result<Self, rustls::Error> {
        let hsts = settings.hsts.map(|h| {
            let value = if h.include_subdomains {
                format!("max-age={}; includeSubDomains", h.max_age)
            } else {
                format!("max-age={}", h.max_age)
            };
            HeaderValue::try_from(value).unwrap_or_else(|_| HeaderValue::from_static("max-age=0"))
        });
        Ok(Self {
            snapshot,
            forwarder: Forwarder::new(&settings.upstream, balancer, observer.clone())?,
            observer,
            ssl_redirect: settings.ssl_redirect,
            https_redirect_port: settings.https_redirect_port,
            hsts,
            max_request_body: settings.max_request_body,
            client_body_timeout: settings.client_body_timeout,
            allow_underscores: settings.allow_underscores_in_headers,
            trusted: settings.trusted_proxies.clone(),
            source: settings.source.clone(),
            tunnel_idle: settings.upstream.read_timeout,
            auth: Authenticator::new(),
            external: AuthClient::new(settings.auth_timeout)?,
            limit_status: StatusCode::from_u16(settings.limit_status)
                .unwrap_or(StatusCode::SERVICE_UNAVAILABLE),
        })
    }

    /// Never fails: every error becomes its response here.
    pub async fn handle(&self, conn: Arc<ConnInfo>, req: Request<Incoming>) -> Response<ProxyBody> {
        let started = Instant::now();
        let method = req.method().clone();
        let peer = conn.peer;
        // The client: the peer, unless a trusted proxy forwarded for someone.
        let client = if conn.trusted {
            observe::Client::forwarded(self.trusted.client(peer.ip(), req.headers()), peer)
        } else {
            observe::Client::peer(peer)
        };
        // What only the access log needs is kept only when there is one.
        let request = self.observer.logs().then(|| {
            Box::new(observe::Request {
                client,
                host: request_authority(&req),
                uri: req.uri().clone(),
                version: req.version(),
                bytes_in: req
                    .headers()
                    .get(CONTENT_LENGTH)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.parse().ok()),
                upstream: None,
                request_id: None,
            })
        });
        let mut trace = Trace::default();
        // For the error log below (a reference-counted copy, no allocation).
        let uri = req.uri().clone();
        let mut response = match self.proxy(conn, client.ip, req, &mut trace).await {
            Ok(response) => response,
            Err(error) => {
                let status = error.status();
                if status.is_server_error() && status != StatusCode::SERVICE_UNAVAILABLE {
                    warn!(%peer, %method, %uri, status = status.as_u16(), error = %error,
                        source = ?std::error::Error::source(&error), "request failed");
                } else {
                    debug!(%peer, %method, %uri, status = status.as_u16(), error = %error, "request refused");
                }
                if trace.grpc {
                    error.into_grpc_response()
                } else {
                    error.into_response()
                }
            }
        };
        if let Some((cookies, always)) = trace.auth_cookies.take() {
            if always || external_auth::passes_cookies(response.status()) {
                for cookie in cookies {
                    response.headers_mut().append(SET_COOKIE, cookie);
                }
            }
        }
        if let Some((policy, origin)) = trace.cors.take() {
            if let Some(c) = &policy.cors {
                if let Some(allow) = cors::allowed(c, origin.as_ref()) {
                    cors::apply(response.headers_mut(), c, allow);
                }
            }
        }
        if let Some(policy) = trace.headers.take() {
            let headers = response.headers_mut();
            for (name, value) in &policy.response_headers {
                headers.insert(name, value.clone());
            }
        }
        if let Some((rule, chosen)) = trace.gateway.take() {
            gateway::edit_response(&rule, chosen, response.headers_mut());
        }
        let request = request.filter(|_| !trace.unlogged).map(|mut r| {
            r.upstream = trace.upstream.authority;
            r.request_id = trace.request_id;
            r
        });
        let record = Record {
            started,
            method,
            status: response.status(),
            route: trace.route,
            endpoint: trace.upstream.endpoint,
            request,
            in_flight: trace.in_flight,
        };
        response
            .body_mut()
            .on_finish(Finish::new(self.observer.clone(), record));
        response
    }

    /// Looks the request up in the current snapshot and runs the phases before forwarding,
    /// in ingress-nginx's order (INGRESS-NGINX.md §A6): the body limit (413), the
    /// Ingress's own redirect, the redirect to HTTPS, the access checks; then the route's
    /// backend, or an error. The checks that wait on something (a bcrypt check, the auth
    /// service) are left in `access`: they decide before whatever this returns.
    fn route<B: http_body::Body>(
        &self,
        conn: &ConnInfo,
        client: IpAddr,
        req: &Request<B>,
        trace: &mut Trace,
        access: &mut Access,
    ) -> Result<Decision, ProxyError> {
        let snapshot = self.snapshot.load();
        if !snapshot.is_ready() {
            return Err(ProxyError::NotReady);
        }
        let host = route::request_host(req)?;
        let path = req.uri().path();
        route::check_path(path)?;
        // Gateway API routes first: a request no HTTPRoute rule takes goes on to the
        // Ingress rules (README, "Gateway API"). One pointer check when there are none.
        if let Some(table) = snapshot.gateway.as_deref() {
            let facts = RequestFacts {
                method: req.method(),
                headers: req.headers(),
                query: req.uri().query(),
            };
            if let Some(matched) = table.lookup(conn.tls, &host, path, &facts) {
                // A Host of another listener than the one the TLS server name chose: the
                // certificate was for that one (GATEWAY-API.md, listener isolation).
                if let Some(sni) = conn.sni.as_deref().filter(|sni| *sni != &*host) {
                    let chose = table.https.host(sni).map(|h| &*h.listener);
                    if chose.is_some_and(|l| l != matched.listener) {
                        return Err(ProxyError::Misdirected);
                    }
                }
                if self.source.is_some()
                    && !SourceRanges::admits(None, self.source.as_deref(), client)
                {
                    return Err(ProxyError::Forbidden);
                }
                return self.gateway_route(conn, req, &host, matched, trace);
            }
        }
        // Client certificates first (INGRESS-NGINX.md §A6 steps 1–2); over plain HTTP there
        // is none, and the check waits for the redirects to HTTPS.
        let mut set_headers = Vec::new();
        let client_auth = if snapshot.tls.has_client_auth() {
            snapshot.tls.client_auth(&host)
        } else {
            None
        };
        if let Some(auth) = client_auth.filter(|_| conn.tls) {
            if let Some(page) = client_certificate(conn, auth, &mut set_headers)? {
                return Ok(page);
            }
        }
        // Server-level redirects first (INGRESS-NGINX.md §A6 step 2).
        if let Some(to) = snapshot.table.www_redirect(&host) {
            let port = if conn.tls {
                self.https_redirect_port
            } else {
                80
            };
            return Ok(Decision::Respond(Box::new(redirect::www(
                to,
                req.uri(),
                conn.tls,
                port,
            ))));
        }
        let lookup = snapshot.table.lookup(&host, path);
        if path == "/" {
            if let Some(root) = lookup.vhost().and_then(|v| v.app_root.as_ref()) {
                let authority = request_authority(req);
                let shown = authority
                    .as_ref()
                    .and_then(|a| a.to_str().ok())
                    .unwrap_or(&host);
                return Ok(Decision::Respond(Box::new(redirect::app_root(
                    root,
                    shown,
                    req.uri(),
                    conn.tls,
                ))));
            }
        }
        let policy = lookup.policy();
        trace.unlogged = policy.is_some_and(|p| p.no_access_log);
        if let Some(p) = policy.filter(|p| !p.response_headers.is_empty()) {
            trace.headers = Some(p.clone());
        }
        let body_limit = match policy.and_then(|p| p.body_limit) {
            Some(limit) => limit.bytes(),
            None => self.max_request_body,
        };
        // Unrouted requests get their 404 whatever their size, unless the host's oldest
        // Ingress sets a limit (INGRESS-NGINX.md §A4).
        if !matches!(lookup, Lookup::NotFound { .. }) || policy.is_some() {
            limits::check_declared_body(req.body(), body_limit)?;
        }
        if let (Some(policy), Some(c)) = (policy, policy.and_then(|p| p.cors.as_ref())) {
            let origin = req.headers().get(ORIGIN);
            trace.cors = Some((policy.clone(), origin.cloned()));
            if req.method() == Method::OPTIONS {
                if let Some(allow) = cors::allowed(c, origin) {
                    return Ok(Decision::Respond(Box::new(cors::preflight(c, allow))));
                }
            }
        }
        if let Some(r) = policy.and_then(|p| p.redirect.as_ref()) {
            return Ok(Decision::Respond(Box::new(redirect::configured(
                r, &host, conn.tls,
            ))));
        }
        // rewrite-target: a URL target is a 302 here; a path is what the pod gets.
        let mut rewritten = None;
        if let Lookup::Route { route, .. } = &lookup {
            if let Some(rewrite) = &route.rewrite {
                let path = collapse_slashes(path);
                if let Some(to) = rewrite.apply(&path, req.uri().query()) {
                    if rewrite.is_redirect() {
                        return Ok(Decision::Respond(Box::new(redirect::rewrite(&to))));
                    }
                    rewritten =
                        Some(PathAndQuery::try_from(to).map_err(|_| {
                            ProxyError::BadRequest("the rewritten path is invalid")
                        })?);
                }
            }
        }
        // The TLS host matters only for the redirect (plain HTTP) and for HSTS (HTTPS).
        let wants_tls_host = if conn.tls {
            self.hsts.is_some()
        } else {
            self.ssl_redirect
        };
        let tls_host = wants_tls_host.then(|| snapshot.tls.host(&host)).flatten();
        if !conn.tls && !path.starts_with(ACME_CHALLENGE_PREFIX) {
            // The matched route's Ingress decides; without a route, the Ingress that lists
            // the TLS host does. force-ssl-redirect needs no TLS host at all.
            let to_https = policy.is_some_and(|p| p.force_ssl_redirect)
                || tls_host.is_some_and(|tls_host| match &lookup {
                    Lookup::Route { route, .. } => route.ssl_redirect,
                    _ => tls_host.redirect,
                });
            if to_https {
                return Ok(Decision::Respond(Box::new(redirect::https(
                    &host,
                    req.uri(),
                    self.https_redirect_port,
                    policy.is_some_and(|p| p.preserve_trailing_slash),
                ))));
            }
        }
        // Limits (§A6 step 5): before the access checks, so a refused client counts too.
        if let Some(limit) = policy.and_then(|p| p.rate_limit.as_ref()) {
            if !limit.exempt.as_ref().is_some_and(|e| e.contains(client)) {
                match limit.zone.admit(client) {
                    Ok(in_flight) => trace.in_flight = in_flight,
                    Err(refused) => return Err(ProxyError::Limited(self.limit_status, refused)),
                }
            }
        }
        if let Some(auth) = client_auth.filter(|_| !conn.tls) {
            if let Some(page) = client_certificate(conn, auth, &mut set_headers)? {
                return Ok(page);
            }
        }
        // Access phase (INGRESS-NGINX.md §A6 step 6): after the redirects, before the pod.
        let source = policy.and_then(|p| p.source.as_ref());
        if (source.is_some() || self.source.is_some())
            && !SourceRanges::admits(source, self.source.as_deref(), client)
        {
            return Err(ProxyError::Forbidden);
        }
        if let Some(why) = policy.and_then(|p| p.blocked.as_ref()) {
            return Err(ProxyError::BackendUnavailable(why.clone()));
        }
        let basic_auth = policy.and_then(|p| p.basic_auth.as_ref());
        if let Some(auth) = basic_auth {
            access.basic = self.auth.check(auth, req.headers(), client)?;
        }
        if let Some(external) = policy.and_then(|p| p.external_auth.as_ref()) {
            access.external = Some((external.clone(), host.clone().into_owned()));
        }
        let (target, protocol, owner, policy, route, canary) = match lookup {
            Lookup::Route { route, .. } => match route.canary.as_deref() {
                Some(c) if to_canary(c, policy, req.headers()) => (
                    &c.target,
                    c.protocol,
                    &c.owner,
                    c.policy.as_ref(),
                    Some(route),
                    true,
                ),
                _ => (
                    &route.target,
                    route.protocol,
                    &route.owner,
                    policy,
                    Some(route),
                    false,
                ),
            },
            Lookup::Default { backend, .. } => (
                &backend.target,
                backend.protocol,
                &backend.owner,
                policy,
                None,
                false,
            ),
            Lookup::NotFound { .. } => {
                // A gRPC client is told UNIMPLEMENTED, in its own terms.
                trace.grpc = crate::model::gateway::is_grpc(req.headers());
                return Err(ProxyError::NoRoute);
            }
        };
        let route_path = match route {
            Some(route) if policy.is_some_and(|p| p.affinity.is_some()) => Some(route.path.clone()),
            _ => None,
        };
        trace.route = RouteLabels::new(Some(owner));
        let backend = match target {
            Target::Backend(backend) => backend.clone(),
            Target::Unavailable(why) => {
                return match policy {
                    Some(p) if p.errors.as_ref().is_some_and(|e| e.on_unavailable()) => {
                        Ok(Decision::ErrorPage(p.clone()))
                    }
                    _ => Err(ProxyError::BackendUnavailable(why.clone())),
                };
            }
        };
        Ok(Decision::Forward(Forward {
            protocol: protocol.unwrap_or(backend.protocol),
            backend,
            // HSTS is for HTTPS responses only, never plain ones (RFC 6797 §7.2).
            hsts: if conn.tls {
                tls_host.and(self.hsts.clone())
            } else {
                None
            },
            policy: policy.cloned(),
            body_limit,
            rewritten,
            route_path,
            canary,
            strip_authorization: basic_auth.is_some(),
            set_headers,
        }))
    }

    /// A request a Gateway API rule took: its redirect, or its backend with the rule's
    /// and the backendRef's filters.
    fn gateway_route<B: http_body::Body>(
        &self,
        conn: &ConnInfo,
        req: &Request<B>,
        host: &str,
        matched: Matched<'_>,
        trace: &mut Trace,
    ) -> Result<Decision, ProxyError> {
        let rule = &matched.entry.rule;
        trace.grpc = rule.grpc;
        let forward = match &rule.action {
            Action::Redirect(to) => {
                trace.route = RouteLabels::new(Some(&rule.owner));
                let location = to.location(
                    conn.tls,
                    host,
                    req.uri().path(),
                    req.uri().query(),
                    matched.listener.port,
                );
                return Ok(Decision::Respond(Box::new(redirect::gateway(
                    to.status, &location,
                ))));
            }
            Action::Forward(forward) => forward,
        };
        let Some((chosen, share)) = forward.pick() else {
            trace.route = RouteLabels::new(Some(&rule.owner));
            let why = forward
                .none
                .clone()
                .unwrap_or_else(|| Arc::from("no backendRef"));
            return Err(ProxyError::InvalidBackend(why));
        };
        trace.route = RouteLabels::new(Some(&share.owner));
        let backend = match &share.target {
            GatewayTarget::Backend(backend) => backend.clone(),
            GatewayTarget::Invalid(why) => return Err(ProxyError::InvalidBackend(why.clone())),
        };
        if forward.response.is_some() || share.response.is_some() {
            trace.gateway = Some((rule.clone(), chosen));
        }
        let mut set_headers = Vec::new();
        for edits in [forward.request.as_ref(), share.request.as_ref()]
            .into_iter()
            .flatten()
        {
            gateway::edit_request(edits, req.headers(), &mut set_headers);
        }
        let rewritten = match &forward.path {
            Some(rewrite) => Some(gateway::rewritten(rewrite, req.uri())?),
            None => None,
        };
        limits::check_declared_body(req.body(), self.max_request_body)?;
        // gRPC needs HTTP/2 to the pod: prior knowledge, or ALPN over TLS.
        let protocol = match backend.protocol {
            UpstreamProtocol::Http1 if rule.grpc => UpstreamProtocol::H2c,
            UpstreamProtocol::Https if rule.grpc => UpstreamProtocol::H2,
            other => other,
        };
        Ok(Decision::Forward(Forward {
            protocol,
            backend,
            hsts: None,
            policy: forward.policy.clone(),
            body_limit: self.max_request_body,
            rewritten,
            route_path: None,
            canary: false,
            strip_authorization: false,
            set_headers,
        }))
    }

    async fn proxy(
        &self,
        conn: Arc<ConnInfo>,
        client: IpAddr,
        mut req: Request<Incoming>,
        trace: &mut Trace,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        if req.method() == Method::CONNECT {
            return Err(ProxyError::MethodNotAllowed);
        }
        // One pass over the head serves the limits and the rewrite.
        let scan = headers::scan(req.headers());
        limits::check_head(&req, &scan)?;
        let mut access = Access::default();
        let decided = self.route(&conn, client, &req, trace, &mut access);
        // The access checks decide first: a client that fails one learns nothing more.
        if let Some(pending) = access.basic {
            self.auth.verify(pending).await?;
        }
        let mut auth_headers = Vec::new();
        if let Some((external, host)) = access.external {
            // The auth service and the pod see the same request ID.
            headers::ensure_request_id(req.headers_mut());
            let outcome = self
                .external
                .check(
                    &external,
                    external_auth::Checked {
                        method: req.method(),
                        uri: req.uri(),
                        headers: req.headers(),
                        host: &host,
                        tls: conn.tls,
                        client,
                    },
                )
                .await;
            if !outcome.cookies.is_empty() {
                trace.auth_cookies = Some((outcome.cookies, external.always_set_cookie));
            }
            match outcome.verdict {
                Verdict::Allow(set) => auth_headers = set,
                Verdict::SignIn(location) => return Ok(external_auth::sign_in_response(location)),
                Verdict::Refuse(error) => return Err(error),
            }
        }
        let Forward {
            backend,
            protocol,
            hsts,
            policy,
            body_limit,
            rewritten,
            route_path,
            canary,
            strip_authorization,
            set_headers,
        } = match decided? {
            Decision::Forward(forward) => forward,
            Decision::Respond(response) => return Ok(*response),
            Decision::ErrorPage(policy) => {
                let ctx = error_page::Context::new(
                    req.method(),
                    req.uri(),
                    request_authority(&req),
                    req.headers(),
                    client,
                );
                return Box::pin(self.error_page(&policy, 503, ctx, None, trace)).await;
            }
        };
        let h2_upstream = matches!(protocol, UpstreamProtocol::H2c | UpstreamProtocol::H2);

        let upgrade = req.version() == Version::HTTP_11
            && !h2_upstream
            && req.method() == Method::GET
            && headers::is_websocket_upgrade(req.headers());
        // gRPC needs `te: trailers` end to end; it is the one TE value HTTP/2 allows.
        let te_trailers = h2_upstream
            && req
                .headers()
                .get_all(TE)
                .iter()
                .any(|v| v.as_bytes().eq_ignore_ascii_case(b"trailers"));
        let downstream_upgrade = upgrade.then(|| hyper::upgrade::on(&mut req));
        let forwarded_host = request_authority(&req);
        // custom-http-errors / default-backend: what the error backend is told.
        let mut error_ctx = policy.as_ref().filter(|p| p.errors.is_some()).map(|_| {
            let host = forwarded_host.clone();
            error_page::Context::new(req.method(), req.uri(), host, req.headers(), client)
        });
        // Traffic annotations (cookie affinity, upstream-hash-by, ewma) steer the choice.
        let (steer, session) = match policy.as_deref() {
            Some(p) => affinity::steer(
                p,
                req.method(),
                req.uri(),
                req.headers(),
                client,
                conn.tls,
                route_path.as_deref(),
                canary,
            ),
            None => (Steer::Default, None),
        };
        let session = session.map(|s| (s, backend.clone()));

        let (mut parts, body) = req.into_parts();
        let downstream_version = parts.version;
        headers::remove_request_hop_by_hop(&mut parts.headers, &scan, upgrade);
        // auth-response-headers and ssl-client-* replace whatever the client sent under
        // those names.
        for (name, value) in set_headers.into_iter().chain(auth_headers) {
            parts.headers.remove(&name);
            if let Some(value) = value {
                parts.headers.insert(name, value);
            }
        }
        if strip_authorization {
            // The password is for wicket, not the pod (ingress-nginx clears it too).
            parts.headers.remove(AUTHORIZATION);
        }
        if scan.underscore && !self.allow_underscores {
            headers::remove_underscored(&mut parts.headers);
        }
        if downstream_version == Version::HTTP_2 && !h2_upstream {
            headers::join_cookies(&mut parts.headers);
        }
        // One authority: the pod gets the host the request was routed by. HTTP/2's
        // `:authority` and an absolute-form HTTP/1.1 target win over any Host field
        // (RFC 9112 §3.2.2).
        if let Some(authority) = parts.uri.authority() {
            headers::set_host(&mut parts.headers, authority.as_str());
        }
        if let Some(vhost) = policy.as_ref().and_then(|p| p.upstream_vhost.clone()) {
            parts.headers.insert(HOST, vhost);
        }
        if let Some(rewritten) = rewritten {
            let mut uri = std::mem::take(&mut parts.uri).into_parts();
            uri.path_and_query = Some(rewritten);
            parts.uri = Uri::from_parts(uri)
                .map_err(|_| ProxyError::BadRequest("the rewritten path is invalid"))?;
            if let Some(prefix) = policy.as_ref().and_then(|p| p.x_forwarded_prefix.clone()) {
                parts.headers.insert(&X_FORWARDED_PREFIX, prefix);
            }
        }
        if scan.content_length {
            headers::canonical_content_length(&mut parts.headers, body.size_hint().exact());
        }
        let forwarded_client = if conn.trusted {
            headers::ip_value(client)
        } else {
            conn.client.clone()
        };
        headers::set_forwarded(
            &mut parts.headers,
            Forwarded {
                peer: &conn.client,
                client: &forwarded_client,
                trusted: conn.trusted,
                proto: if conn.tls { "https" } else { "http" },
                port: &conn.port,
                host: forwarded_host,
            },
            &scan,
        );
        if te_trailers {
            parts
                .headers
                .insert(TE, HeaderValue::from_static("trailers"));
        }
        parts.extensions = Extensions::new();
        trace.request_id = parts.headers.get(&X_REQUEST_ID).cloned();
        if let Some(ctx) = &mut error_ctx {
            ctx.set_request_id(trace.request_id.clone());
        }
        let service_port = backend.service_port;

        let body = ClientBody::new(body, body_limit, self.client_body_timeout);
        let result = self
            .forwarder
            .forward(
                backend,
                protocol,
                client,
                parts,
                body,
                policy.as_deref(),
                steer,
                &mut trace.upstream,
            )
            .await;
        if let (Some(ctx), Some(p)) = (error_ctx, &policy) {
            let code = match (&result, &p.errors) {
                (Ok(r), Some(e)) if e.replaces(r.status().as_u16()) => Some(r.status().as_u16()),
                (Err(ProxyError::NoEndpoints(_)), Some(e)) if e.on_unavailable() => Some(503),
                // nginx's own error answers (502, 504, ...) are replaced as well.
                (Err(err), Some(e)) if e.replaces(err.status().as_u16()) => {
                    Some(err.status().as_u16())
                }
                _ => None,
            };
            if let Some(code) = code {
                drop(result);
                return Box::pin(self.error_page(p, code, ctx, Some(service_port), trace)).await;
            }
        }
        let mut response = result?;
        if let (Some((session, backend)), Some(a)) =
            (&session, policy.as_ref().and_then(|p| p.affinity.as_ref()))
        {
            if let Some(cookie) = affinity::finish(
                session,
                a,
                self.forwarder.upstream_balancer(),
                backend,
                trace.upstream.endpoint,
                trace.upstream.attempts,
            ) {
                response.headers_mut().append(SET_COOKIE, cookie);
            }
        }

        let switching = response.status() == StatusCode::SWITCHING_PROTOCOLS;
        if switching {
            // Only the protocol the client asked for, and only WebSocket: a tunnel never
            // carries a request wicket did not route.
            let Some(downstream) = downstream_upgrade else {
                return Err(ProxyError::BadUpstream("switched protocols unasked"));
            };
            if !headers::switches_to_websocket(response.headers()) {
                return Err(ProxyError::BadUpstream(
                    "switched to another protocol than WebSocket",
                ));
            }
            let upstream = hyper::upgrade::on(&mut response);
            let active = conn.tracked().begin(false);
            tokio::spawn(tunnel::run(downstream, upstream, active, self.tunnel_idle));
        }
        let (mut head, body) = response.into_parts();
        headers::prepare_response(&mut head.headers, switching);
        if let Some(hsts) = hsts {
            head.headers
                .entry(STRICT_TRANSPORT_SECURITY)
                .or_insert(hsts);
        }
        Ok(Response::from_parts(head, ProxyBody::upstream(body)))
    }
}

impl Proxy {
    /// The error backend's answer in place of the pod's (`custom-http-errors`,
    /// `default-backend`); without any error backend, 404 as from ingress-nginx's built-in
    /// default backend.
    async fn error_page(
        &self,
        policy: &Policy,
        code: u16,
        ctx: error_page::Context,
        service_port: Option<u16>,
        trace: &mut Trace,
    ) -> Result<Response<ProxyBody>, ProxyError> {
        let backend = match policy.errors.as_ref().and_then(|e| e.target.as_ref()) {
            None => return Err(ProxyError::NoRoute),
            Some(Target::Unavailable(why)) => {
                return Err(ProxyError::BackendUnavailable(why.clone()))
            }
            Some(Target::Backend(backend)) => backend.clone(),
        };
        let parts = ctx.request(code, &trace.route, service_port);
        let mut attempts = Attempts::default();
        let result = self
            .forwarder
            .forward(
                backend.clone(),
                backend.protocol,
                ctx.client(),
                parts,
                ClientBody::empty(),
                None,
                Steer::Default,
                &mut attempts,
            )
            .await;
        trace.upstream = attempts;
        let (mut head, body) = result?.into_parts();
        headers::prepare_response(&mut head.headers, false);
        Ok(Response::from_parts(head, ProxyBody::upstream(body)))
    }
}

/// Whether a request of a route with a canary goes to the canary (INGRESS-NGINX.md §C4):
/// session cookies first, then the canary's header, cookie and weight.
fn to_canary(c: &Canary, main: Option<&Arc<Policy>>, headers: &http::HeaderMap) -> bool {
    let side = affinity::canary_side(main.map(|p| &**p), c.policy.as_deref(), headers);
    c.rule.decide(headers, side, affinity::cookie).0
}

/// The host as the client sent it: HTTP/2's `:authority`, else the Host header.
static SSL_CLIENT_VERIFY: HeaderName = HeaderName::from_static("ssl-client-verify");
static SSL_CLIENT_SUBJECT_DN: HeaderName = HeaderName::from_static("ssl-client-subject-dn");
static SSL_CLIENT_ISSUER_DN: HeaderName = HeaderName::from_static("ssl-client-issuer-dn");
static SSL_CLIENT_CERT: HeaderName = HeaderName::from_static("ssl-client-cert");

/// `auth-tls-*` for one request: 400 without a valid certificate (or the 302 to
/// `auth-tls-error-page`), 403 when `auth-tls-match-cn` does not match the subject, 503
/// when the host's CA Secret cannot be used; else the `ssl-client-*` headers for the pod.
fn client_certificate(
    conn: &ConnInfo,
    auth: &ClientAuth,
    set: &mut Vec<(HeaderName, Option<HeaderValue>)>,
) -> Result<Option<Decision>, ProxyError> {
    if let Some(why) = &auth.broken {
        return Err(ProxyError::BackendUnavailable(why.clone()));
    }
    let cert = conn.peer_cert.as_deref().filter(|_| conn.tls);
    let verdict = cert.map_or(CertVerdict::None, |c| c.verdict(auth));
    let refused = match (auth.verify, &verdict) {
        (VerifyClient::On, CertVerdict::None) => {
            Some("400 bad request: no required SSL certificate was sent\n")
        }
        (VerifyClient::On | VerifyClient::Optional, CertVerdict::Failed(_)) => {
            Some("400 bad request: the SSL certificate error\n")
        }
        _ => None,
    };
    if let Some(body) = refused {
        if let Some(page) = auth
            .error_page
            .as_deref()
            .and_then(|p| HeaderValue::from_str(p).ok())
        {
            let mut response = Response::new(ProxyBody::full("302 found\n"));
            *response.status_mut() = StatusCode::FOUND;
            response.headers_mut().insert(http::header::LOCATION, page);
            return Ok(Some(Decision::Respond(Box::new(response))));
        }
        return Err(ProxyError::ClientCertificate(body));
    }
    let subject = cert.map_or("", |c| c.subject.as_str());
    if let Some(pattern) = auth.checks.as_ref().and_then(|c| c.match_cn.as_ref()) {
        if !pattern.is_match(subject) {
            return Err(ProxyError::Forbidden);
        }
    }
    let verify = match &verdict {
        CertVerdict::Success => Some(HeaderValue::from_static("SUCCESS")),
        CertVerdict::None => Some(HeaderValue::from_static("NONE")),
        failed => HeaderValue::from_str(&failed.header()).ok(),
    };
    set.push((SSL_CLIENT_VERIFY.clone(), verify));
    set.push((
        SSL_CLIENT_SUBJECT_DN.clone(),
        cert.and_then(|c| c.subject_header.clone()),
    ));
    set.push((
        SSL_CLIENT_ISSUER_DN.clone(),
        cert.and_then(|c| c.issuer_header.clone()),
    ));
    let pem = cert
        .filter(|_| auth.pass_certificate)
        .and_then(PeerCert::escaped_pem);
    set.push((SSL_CLIENT_CERT.clone(), pem));
    Ok(None)
}

fn request_authority<B>(req: &Request<B>) -> Option<HeaderValue> {
    match req.uri().authority() {
        Some(authority) => HeaderValue::from_str(authority.as_str()).ok(),
        None => req.headers().get(HOST).cloned(),
    }
}
