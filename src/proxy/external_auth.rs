//! External auth on the request path (`auth-url`, INGRESS-NGINX.md §C3): before a request
//! of the route goes to its pod, the auth service is asked, as nginx's `auth_request` does.
//!
//! The auth request: `auth-method` (GET by default) to the expanded `auth-url`, no body,
//! the client's headers (hop-by-hop ones, `Content-Length`, `Transfer-Encoding` and
//! `X-Forwarded-Proto` left out; `Host` the auth URL's), plus `X-Original-URL`,
//! `X-Original-Method`, `X-Sent-From`, `X-Real-IP`, `X-Forwarded-For`,
//! `X-Auth-Request-Redirect`, `X-Request-ID` (and `X-Original-URI`, `X-Scheme` with
//! `auth-method`). Its answer: 2xx lets the request through, with the
//! `auth-response-headers` copied onto it; 401 is relayed (with the auth service's
//! `WWW-Authenticate`), or becomes a 302 to `auth-signin`; 403 is relayed; anything else,
//! no answer within [`AUTH_TIMEOUT`], or no connection at all is a 500. Never a pass.

use std::net::IpAddr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::header::{
    CONTENT_LENGTH, HOST, LOCATION, SET_COOKIE, TRANSFER_ENCODING, WWW_AUTHENTICATE,
};
use http::{HeaderMap, HeaderName, HeaderValue, Method, Request, Response, StatusCode, Uri};
use http_body_util::{BodyExt, Empty, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::client::legacy::Client;
use hyper_util::rt::{TokioExecutor, TokioTimer};

use super::body::ProxyBody;
use super::error::ProxyError;
use super::headers;
use crate::model::{escape_into, BoundedMap, ExternalAuth, RequestVars};

/// How long the auth service may take to answer, connection included (`--auth-timeout`).
pub const AUTH_TIMEOUT: Duration = Duration::from_secs(15);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Idle pooled connections to auth services are closed after this.
const IDLE_TIMEOUT: Duration = Duration::from_secs(90);
/// The most of an auth response's body read (and dropped) so its connection can be reused.
const MAX_DRAINED: usize = 64 * 1024;

static X_ORIGINAL_URL: HeaderName = HeaderName::from_static("x-original-url");
static X_ORIGINAL_METHOD: HeaderName = HeaderName::from_static("x-original-method");
static X_ORIGINAL_URI: HeaderName = HeaderName::from_static("x-original-uri");
static X_SCHEME: HeaderName = HeaderName::from_static("x-scheme");
static X_SENT_FROM: HeaderName = HeaderName::from_static("x-sent-from");
static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
static X_AUTH_REQUEST_REDIRECT: HeaderName = HeaderName::from_static("x-auth-request-redirect");

/// The client of auth services: pooled connections, HTTP/1.1, https verified against the
/// Mozilla roots.
pub struct AuthClient {
    client: Client<HttpsConnector<HttpConnector>, Empty<Bytes>>,
    timeout: Duration,
    /// `auth-cache-key`: remembered answers (status and the headers that matter).
    cache: BoundedMap<[u8; 32], Cached>,
}

/// Answers remembered at most (about; see [`BoundedMap`]).
const CACHE_CAPACITY: usize = 16_384;

#[derive(Clone)]
struct Cached {
    until: Instant,
    status: StatusCode,
    /// The `auth-response-headers` and `WWW-Authenticate` of the answer.
    headers: HeaderMap,
}

/// SHA-256 as a `Hasher`, for keys an attacker could otherwise make collide.
struct Sha256(aws_lc_rs::digest::Context);

impl std::hash::Hasher for Sha256 {
    fn write(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finish(&self) -> u64 {
        0
    }
}

/// The request being checked, as the auth service is told about it.
pub struct Checked<'a> {
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub headers: &'a HeaderMap,
    /// The host it was routed by.
    pub host: &'a str,
    pub tls: bool,
    pub client: IpAddr,
}

/// What the auth service decided.
pub enum Verdict {
    /// Go on, with these headers set on (or, None, removed from) the request to the pod.
    Allow(Vec<(HeaderName, Option<HeaderValue>)>),
    /// 302 to the sign-in page.
    SignIn(HeaderValue),
    Refuse(ProxyError),
}

/// A verdict, and the cookies the auth service set (for the client's response).
pub struct Outcome {
    pub verdict: Verdict,
    pub cookies: Vec<HeaderValue>,
}

/// Statuses of the final response that get the auth service's cookies (ingress-nginx),
/// unless `auth-always-set-cookie`.
pub fn passes_cookies(status: StatusCode) -> bool {
    matches!(
        status.as_u16(),
        200 | 201 | 204 | 206 | 301 | 302 | 303 | 304 | 307 | 308
    )
}

impl AuthClient {
    pub fn new(timeout: Duration) -> Result<Self, rustls::Error> {
        let mut http = HttpConnector::new();
        http.set_nodelay(true);
        http.set_connect_timeout(Some(CONNECT_TIMEOUT));
        http.enforce_http(false);
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::aws_lc_rs::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(rustls::RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        })
        .with_no_client_auth();
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(IDLE_TIMEOUT)
            .pool_timer(TokioTimer::new())
            .timer(TokioTimer::new())
            .build(connector);
        Ok(Self {
            client,
            timeout,
            cache: BoundedMap::new(CACHE_CAPACITY),
        })
    }

    /// Asks the auth service about `req`.
    pub async fn check(&self, auth: &ExternalAuth, req: Checked<'_>) -> Outcome {
        let scheme = if req.tls { "https" } else { "http" };
        let request_uri = req
            .uri
            .path_and_query()
            .map_or("/", http::uri::PathAndQuery::as_str);
        let vars = RequestVars {
            host: req.host,
            scheme,
            request_uri,
        };
        let refuse = |why: String| Outcome {
            verdict: Verdict::Refuse(ProxyError::AuthFailed(why)),
            cookies: Vec::new(),
        };
        let url = auth.url.expand(vars);
        let cache_key = auth.cache.as_ref().map(|cache| {
            use std::hash::Hasher as _;
            let mut h = Sha256(aws_lc_rs::digest::Context::new(&aws_lc_rs::digest::SHA256));
            h.write(auth.url.as_str().as_bytes());
            h.write_u8(0);
            h.write(auth.method.as_str().as_bytes());
            h.write_u8(0);
            super::affinity::key_bytes(
                &cache.pieces,
                req.method,
                req.uri,
                req.headers,
                req.client,
                req.tls,
                &mut h,
            );
            let mut key = [0; 32];
            key.copy_from_slice(h.0.finish().as_ref());
            key
        });
        if let Some(hit) = cache_key
            .as_ref()
            .and_then(|k| self.cache.get(k))
            .filter(|c| c.until > Instant::now())
        {
            return Outcome {
                verdict: verdict(auth, hit.status, &hit.headers, vars, &url),
                cookies: Vec::new(),
            };
        }
        let Ok(target) = url.parse::<Uri>() else {
            return refuse(format!(
                "the auth URL {url:?} is not a URL for this request"
            ));
        };
        let mut request = Request::new(Empty::<Bytes>::new());
        *request.method_mut() = auth.method.clone();
        let mut sent = req.headers.clone();
        headers::remove_hop_by_hop(&mut sent, false);
        for name in [
            &CONTENT_LENGTH,
            &TRANSFER_ENCODING,
            &HOST,
            &X_FORWARDED_PROTO,
        ] {
            sent.remove(name);
        }
        if let Some(authority) = target.authority() {
            if let Ok(v) = HeaderValue::from_str(authority.as_str()) {
                sent.insert(HOST, v);
            }
        }
        let original = format!("{scheme}://{}{request_uri}", req.host);
        let set = |sent: &mut HeaderMap, name: &HeaderName, value: &str| {
            if let Ok(v) = HeaderValue::from_str(value) {
                sent.insert(name.clone(), v);
            }
        };
        set(&mut sent, &X_ORIGINAL_URL, &original);
        set(&mut sent, &X_ORIGINAL_METHOD, req.method.as_str());
        set(&mut sent, &X_SENT_FROM, "wicket");
        let client = req.client.to_string();
        set(&mut sent, &X_REAL_IP, &client);
        set(&mut sent, &X_FORWARDED_FOR, &client);
        match &auth.request_redirect {
            Some(v) => {
                sent.insert(X_AUTH_REQUEST_REDIRECT.clone(), v.clone());
            }
            None => set(&mut sent, &X_AUTH_REQUEST_REDIRECT, request_uri),
        }
        for (name, value) in &auth.extra_headers {
            sent.insert(name.clone(), value.clone());
        }
        if auth.method_set {
            set(&mut sent, &X_ORIGINAL_URI, request_uri);
            set(&mut sent, &X_SCHEME, scheme);
        }
        *request.headers_mut() = sent;
        *request.uri_mut() = target;

        let answer = tokio::time::timeout(self.timeout, async {
            let response = self.client.request(request).await?;
            let (parts, body) = response.into_parts();
            // Read (and drop) a short body so the connection goes back to the pool.
            let _ = Limited::new(body, MAX_DRAINED).collect().await;
            Ok::<_, hyper_util::client::legacy::Error>(parts)
        })
        .await;
        let parts = match answer {
            Ok(Ok(parts)) => parts,
            Ok(Err(e)) => {
                return refuse(format!(
                    "the auth service at {url} could not be asked: {}",
                    crate::telemetry::error_chain(&e)
                ))
            }
            Err(_) => {
                return refuse(format!(
                    "the auth service at {url} did not answer within {}",
                    humantime::format_duration(self.timeout)
                ))
            }
        };
        let cookies: Vec<HeaderValue> = parts.headers.get_all(SET_COOKIE).iter().cloned().collect();
        if let (Some(key), Some(cache)) = (cache_key, &auth.cache) {
            if cache.statuses.contains(&parts.status.as_u16()) {
                let mut kept = HeaderMap::new();
                for name in auth.response_headers.iter().chain([&WWW_AUTHENTICATE]) {
                    if let Some(v) = parts.headers.get(name) {
                        kept.insert(name.clone(), v.clone());
                    }
                }
                self.cache.insert(
                    key,
                    Cached {
                        until: Instant::now() + cache.duration,
                        status: parts.status,
                        headers: kept,
                    },
                );
            }
        }
        Outcome {
            verdict: verdict(auth, parts.status, &parts.headers, vars, &url),
            cookies,
        }
    }
}

/// What an answer of the auth service means for the request.
fn verdict(
    auth: &ExternalAuth,
    status: StatusCode,
    headers: &HeaderMap,
    vars: RequestVars<'_>,
    url: &str,
) -> Verdict {
    match status.as_u16() {
        200..=299 => Verdict::Allow(
            auth.response_headers
                .iter()
                .map(|name| (name.clone(), headers.get(name).cloned()))
                .collect(),
        ),
        401 => match &auth.signin {
            Some(signin) => match sign_in(
                signin.expand(vars),
                &auth.redirect_param,
                vars.scheme,
                vars.host,
                vars.request_uri,
            ) {
                Some(location) => Verdict::SignIn(location),
                None => Verdict::Refuse(ProxyError::AuthFailed(
                    "the auth-signin URL is not a header value for this request".into(),
                )),
            },
            None => Verdict::Refuse(ProxyError::Unauthorized(
                headers.get(WWW_AUTHENTICATE).cloned(),
            )),
        },
        403 => Verdict::Refuse(ProxyError::Forbidden),
        status => Verdict::Refuse(ProxyError::AuthFailed(format!(
            "the auth service at {url} answered {status}"
        ))),
    }
}

/// `<signin>?rd=<scheme>://<host><escaped request URI>` (ingress-nginx's
/// `buildAuthSignURL`): `&` when the URL has a query already, nothing added when it already
/// carries the parameter.
fn sign_in(
    signin: String,
    param: &str,
    scheme: &str,
    host: &str,
    request_uri: &str,
) -> Option<HeaderValue> {
    let mut location = signin;
    if !location.contains(&format!("{param}=")) {
        location.push(if location.contains('?') { '&' } else { '?' });
        location.push_str(param);
        location.push('=');
        location.push_str(scheme);
        location.push_str("://");
        location.push_str(host);
        escape_into(&mut location, request_uri);
    }
    HeaderValue::from_str(&location).ok()
}

/// The 302 to the sign-in page.
pub fn sign_in_response(location: HeaderValue) -> Response<ProxyBody> {
    let mut response = Response::new(ProxyBody::full("302 found: sign in first\n"));
    *response.status_mut() = StatusCode::FOUND;
    response.headers_mut().insert(LOCATION, location);
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_sign_in_url_carries_where_to_come_back_as_ingress_nginx() {
        // e2e auth.go "should redirect to signin url when not signed in".
        let l = sign_in(
            "http://auth/auth/start".into(),
            "rd",
            "http",
            "auth",
            "/?a=b&c=d",
        );
        assert_eq!(
            l.unwrap(),
            "http://auth/auth/start?rd=http://auth%2F%3Fa%3Db%26c%3Dd"
        );
        let l = sign_in("http://auth/start?x=1".into(), "orig", "https", "h", "/p");
        assert_eq!(l.unwrap(), "http://auth/start?x=1&orig=https://h%2Fp");
        let l = sign_in(
            "https://h/oauth2/start?rd=%2Fp".into(),
            "rd",
            "https",
            "h",
            "/p",
        );
        assert_eq!(l.unwrap(), "https://h/oauth2/start?rd=%2Fp");
    }
}
