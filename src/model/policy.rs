//! Per-route policy: what an Ingress's annotations ask of the routes it defines, compiled
//! once by the control plane into typed values (never text), and what became of each
//! annotation.
//!
//! A route carries `Option<Arc<Policy>>`: `None`, the common case, costs the request path
//! one pointer check. The routes of one Ingress share one `Policy`.

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use serde::{Serialize, Serializer};

use super::problem::ObjectRef;

/// A request body limit set by an annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum BodyLimit {
    /// `proxy-body-size: 0`.
    Unlimited,
    Bytes(u64),
}

impl BodyLimit {
    /// As the request path takes it: `None` for no limit.
    pub fn bytes(self) -> Option<u64> {
        match self {
            BodyLimit::Unlimited => None,
            BodyLimit::Bytes(n) => Some(n),
        }
    }
}

/// When a failed attempt is sent again to another endpoint (`proxy-next-upstream`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NextUpstream {
    /// A connection that failed or was reset before any response (`error`).
    pub error: bool,
    /// A connect or response-head timeout (`timeout`).
    pub timeout: bool,
    /// Response statuses that are retried (`http_500`, `http_502`, ... `http_429`).
    pub statuses: StatusSet,
    /// Also POST, PATCH and LOCK (`non_idempotent`).
    pub non_idempotent: bool,
    /// Attempts in all, the first included (`proxy-next-upstream-tries`; 0 = as many as
    /// there are endpoints).
    pub tries: u32,
    /// How long retrying may go on (`proxy-next-upstream-timeout`; none: no limit).
    #[serde(serialize_with = "seconds")]
    pub within: Option<Duration>,
}

impl Default for NextUpstream {
    /// ingress-nginx's defaults: `error timeout`, 3 tries, no time limit.
    fn default() -> Self {
        Self {
            error: true,
            timeout: true,
            statuses: StatusSet::default(),
            non_idempotent: false,
            tries: 3,
            within: None,
        }
    }
}

/// A small set of the statuses `proxy-next-upstream` can name.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct StatusSet(u16);

/// The statuses, in bit order.
const RETRY_STATUSES: [u16; 7] = [500, 502, 503, 504, 403, 404, 429];

impl StatusSet {
    pub fn insert(&mut self, status: u16) -> bool {
        match RETRY_STATUSES.iter().position(|&s| s == status) {
            Some(bit) => {
                self.0 |= 1 << bit;
                true
            }
            None => false,
        }
    }

    pub fn contains(self, status: u16) -> bool {
        RETRY_STATUSES
            .iter()
            .position(|&s| s == status)
            .is_some_and(|bit| self.0 & (1 << bit) != 0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }
}

impl Serialize for StatusSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let listed: Vec<u16> = RETRY_STATUSES
            .iter()
            .copied()
            .filter(|&st| self.contains(st))
            .collect();
        listed.serialize(s)
    }
}

/// A redirect every request of the route gets instead of being proxied
/// (`permanent-redirect`, `temporal-redirect`).
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct Redirect {
    pub code: u16,
    #[serde(serialize_with = "header_text")]
    pub location: HeaderValue,
    /// `relative-redirects`: a path stays a path in `Location` (else `scheme://host/path`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub relative: bool,
}

/// Cross-origin resource sharing for a route (`enable-cors` and `cors-*`), with the header
/// values made once.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Cors {
    pub origins: CorsOrigins,
    #[serde(serialize_with = "header_text")]
    pub methods: HeaderValue,
    #[serde(serialize_with = "header_text")]
    pub headers: HeaderValue,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_header_text"
    )]
    pub expose: Option<HeaderValue>,
    pub credentials: bool,
    #[serde(serialize_with = "header_text")]
    pub max_age: HeaderValue,
}

/// Which origins may use a route from a browser.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum CorsOrigins {
    /// `*`: any origin (and `Access-Control-Allow-Origin: *`).
    Any,
    /// These; a matching request `Origin` is echoed back.
    List(Vec<OriginPattern>),
}

/// One allowed origin: `scheme://host[:port]`, or `scheme://*.host[:port]` for any one
/// extra DNS label, compared case-insensitively; `null` is an origin too.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct OriginPattern {
    /// Lowercase scheme and `://`.
    pub scheme: String,
    /// Lowercase host (without the `*.` of a wildcard).
    pub host: String,
    pub wildcard: bool,
    /// `:port` or empty.
    pub port: String,
}

impl OriginPattern {
    /// Whether a request's `Origin` is this one.
    pub fn matches(&self, origin: &str) -> bool {
        let origin = origin.to_ascii_lowercase();
        let Some(rest) = origin.strip_prefix(self.scheme.as_str()) else {
            return self.scheme.is_empty() && origin == self.host;
        };
        let Some(host) = rest.strip_suffix(self.port.as_str()) else {
            return false;
        };
        // A port in the origin that the pattern does not have is no match.
        if self.port.is_empty() && host.contains(':') {
            return false;
        }
        if !self.wildcard {
            return host == self.host;
        }
        match host.strip_suffix(self.host.as_str()) {
            Some(label) => label.strip_suffix('.').is_some_and(|l| {
                !l.is_empty() && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
            }),
            None => false,
        }
    }
}

/// Everything the annotations of one Ingress ask of its routes; `None` fields are the
/// global defaults.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Policy {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub body_limit: Option<BodyLimit>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds",
        rename = "connectTimeoutSeconds"
    )]
    pub connect_timeout: Option<Duration>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds",
        rename = "readTimeoutSeconds"
    )]
    pub read_timeout: Option<Duration>,
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "seconds",
        rename = "sendTimeoutSeconds"
    )]
    pub send_timeout: Option<Duration>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_upstream: Option<NextUpstream>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub redirect: Option<Redirect>,
    /// Redirect plain HTTP to HTTPS even for hosts without a `tls` section.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub force_ssl_redirect: bool,
    /// Keep a trailing `/` in HTTPS redirects (ingress-nginx removes one).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub preserve_trailing_slash: bool,
    /// The `Host` the pod gets instead of the client's (`upstream-vhost`).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_header_text"
    )]
    pub upstream_vhost: Option<HeaderValue>,
    /// `X-Forwarded-Prefix` sent to the pod on the routes that rewrite the path.
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "opt_header_text"
    )]
    pub x_forwarded_prefix: Option<HeaderValue>,
    /// Log no access-log line for these routes (`enable-access-log: "false"`).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub no_access_log: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cors: Option<Cors>,
    /// Cookie affinity (`affinity: cookie`); wins over `hash_by` and `load_balance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub affinity: Option<CookieAffinity>,
    /// Consistent hashing on a request attribute (`upstream-hash-by`); wins over
    /// `load_balance`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hash_by: Option<HashBy>,
    /// `load-balance: ewma` (round robin otherwise).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub ewma: bool,
    /// `custom-http-errors` and `default-backend`: error pages from another backend.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<ErrorPages>,
    /// `denylist-source-range` and `allowlist-source-range` (or `whitelist-source-range`):
    /// they replace the `--denylist-source-range`/`--allowlist-source-range` of the proxy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub source: Option<SourceRanges>,
    /// `limit-rps`, `limit-rpm`, `limit-connections`: per client address, per replica.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<super::rate_limit::RateLimit>,
    /// `auth-url`: the auth service every request is checked with.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub external_auth: Option<Arc<super::external_auth::ExternalAuth>>,
    /// `auth-type: basic`: who may use the routes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub basic_auth: Option<BasicAuth>,
    /// Why requests under this policy answer 503: an access guard wicket cannot honour
    /// (its routes' targets are unavailable too; this covers the paths of its hosts that no
    /// rule matches, INGRESS-NGINX.md §A4).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub blocked: Option<Arc<str>>,
    /// `custom-headers`: set on every response of the route, replacing the pod's.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "header_pairs")]
    pub response_headers: Vec<(http::HeaderName, HeaderValue)>,
}

pub(super) fn header_pairs<S: Serializer>(
    v: &[(http::HeaderName, HeaderValue)],
    s: S,
) -> Result<S::Ok, S::Error> {
    use serde::ser::SerializeMap;
    let mut map = s.serialize_map(Some(v.len()))?;
    for (name, value) in v {
        map.serialize_entry(name.as_str(), &String::from_utf8_lossy(value.as_bytes()))?;
    }
    map.end()
}

/// Which client addresses may use a route (INGRESS-NGINX.md §C3): the deny list first,
/// then, if there is one, the allow list. None: that list is the proxy's own.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
pub struct SourceRanges {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deny: Option<super::ip_set::IpSet>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub allow: Option<super::ip_set::IpSet>,
}

impl SourceRanges {
    /// Whether `client` may pass: `route`'s lists (an Ingress's), each replacing the one of
    /// `proxy` (the flags'). Deny first; with an allow list, only the addresses it lists.
    pub fn admits(
        route: Option<&SourceRanges>,
        proxy: Option<&SourceRanges>,
        client: std::net::IpAddr,
    ) -> bool {
        let deny = route
            .and_then(|r| r.deny.as_ref())
            .or_else(|| proxy.and_then(|p| p.deny.as_ref()));
        if deny.is_some_and(|d| d.contains(client)) {
            return false;
        }
        let allow = route
            .and_then(|r| r.allow.as_ref())
            .or_else(|| proxy.and_then(|p| p.allow.as_ref()));
        allow.is_none_or(|a| a.contains(client))
    }
}

/// `auth-type: basic` (INGRESS-NGINX.md §C3): the users of the `auth-secret`, and the
/// challenge a client without valid credentials gets.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct BasicAuth {
    /// `namespace/name` of the Secret.
    pub secret: String,
    /// `auth-realm`.
    pub realm: String,
    /// `WWW-Authenticate: Basic realm="..."`.
    #[serde(skip)]
    pub challenge: HeaderValue,
    /// The users; shown as how many there are.
    #[serde(rename = "users", serialize_with = "user_count")]
    pub table: Arc<super::basic_auth::Users>,
}

fn user_count<S: Serializer>(t: &Arc<super::basic_auth::Users>, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(t.len() as u64)
}

/// `custom-http-errors` and `default-backend` (INGRESS-NGINX.md §C6): which answers of the
/// pod are replaced by the error backend's, and which backend that is.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ErrorPages {
    /// The pod's responses with these statuses are replaced (sorted).
    pub codes: Vec<u16>,
    /// The Ingress's own `default-backend` Service: it also answers when the route's
    /// Service has no endpoint (or does not exist), with `X-Code: 503`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub own_backend: Option<String>,
    /// Where the pages come from, `namespace/service:port` (None: no error backend, the
    /// replaced answers are 404 as from ingress-nginx's built-in default backend).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(skip)]
    pub target: Option<super::table::Target>,
}

impl ErrorPages {
    /// Whether a response of the pod with `status` is replaced.
    pub fn replaces(&self, status: u16) -> bool {
        self.codes.binary_search(&status).is_ok()
    }

    /// Whether a route that cannot reach its Service goes to the error backend (the
    /// Ingress names its own, or 503 is listed).
    pub fn on_unavailable(&self) -> bool {
        self.own_backend.is_some() || self.replaces(503)
    }
}

/// `affinity: cookie` and `session-cookie-*`: a client is pinned to a pod by a cookie.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CookieAffinity {
    /// `session-cookie-name` (default `INGRESSCOOKIE`).
    pub name: String,
    /// `affinity-mode: persistent`: the cookie names its pod for as long as the pod serves;
    /// `balanced` (default): it is a hash key, and some sessions move when pods are added.
    pub persistent: bool,
    /// `session-cookie-path`; else the path of the route as written.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub domain: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub max_age: Option<u64>,
    /// `session-cookie-expires`: seconds from when the cookie is set.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub expires: Option<u64>,
    /// `session-cookie-secure` (HTTPS requests get `Secure` anyway).
    pub secure: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub same_site: Option<SameSite>,
    /// `session-cookie-conditional-samesite-none`: no `SameSite=None` for the browsers
    /// known to reject such cookies.
    pub conditional_same_site_none: bool,
    /// `session-cookie-change-on-failure`: a request that had to go to another pod moves
    /// the session there.
    pub change_on_failure: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
pub enum SameSite {
    Strict,
    Lax,
    None,
}

impl SameSite {
    pub fn as_str(self) -> &'static str {
        match self {
            SameSite::Strict => "Strict",
            SameSite::Lax => "Lax",
            SameSite::None => "None",
        }
    }
}

/// `upstream-hash-by`: the key, from request attributes, that picks the pod.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct HashBy {
    /// As written (`$request_uri`, `$http_x_user-$cookie_session`).
    pub key: String,
    #[serde(skip)]
    pub pieces: Vec<HashPiece>,
    /// `upstream-hash-by-subset`: the key picks a group of this many pods, then any one of
    /// them.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub subset: Option<usize>,
}

/// A piece of an `upstream-hash-by` key: text, or an nginx variable wicket evaluates.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HashPiece {
    Text(String),
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args`, `$query_string`.
    Args,
    /// `$remote_addr`, `$binary_remote_addr`: the client address.
    RemoteAddr,
    /// `$host`, `$server_name`, `$http_host`.
    Host,
    /// `$request_method`.
    Method,
    /// `$scheme`.
    Scheme,
    /// `$http_<name>`: a request header (name lowercase, `-` for `_`).
    Header(http::HeaderName),
    /// `$cookie_<name>`.
    Cookie(String),
    /// `$arg_<name>`: a query parameter.
    Arg(String),
}

impl Policy {
    /// Whether it asks for nothing (routes then carry no policy at all).
    pub fn is_default(&self) -> bool {
        *self == Policy::default()
    }

    /// The first annotation of a guard that checks HTTP requests (a password, an auth
    /// service, a request limit): what a connection relayed as bytes cannot honour.
    pub fn request_guard(&self) -> Option<&'static str> {
        [
            (self.basic_auth.is_some(), "auth-type"),
            (self.external_auth.is_some(), "auth-url"),
            (self.rate_limit.is_some(), "limit-*"),
        ]
        .into_iter()
        .find_map(|(set, name)| set.then_some(name))
    }
}

fn seconds<S: Serializer>(d: &Option<Duration>, s: S) -> Result<S::Ok, S::Error> {
    match d {
        Some(d) => s.serialize_some(&d.as_secs_f64()),
        None => s.serialize_none(),
    }
}

fn header_text<S: Serializer>(v: &HeaderValue, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&String::from_utf8_lossy(v.as_bytes()))
}

pub(super) fn opt_header_text<S: Serializer>(
    v: &Option<HeaderValue>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match v {
        Some(v) => header_text(v, s),
        None => s.serialize_none(),
    }
}

/// What wicket does with one annotation.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Outcome {
    /// Honoured as ingress-nginx does.
    Honoured,
    /// Honoured, with a difference the note states.
    Differs,
    /// Nothing to do: wicket already behaves as the annotation asks.
    NoEffectNeeded,
    /// Not supported: ignored.
    Unsupported,
    /// A snippet: never supported, ignored.
    Refused,
    /// Read, but its value cannot be used: the note says what happens instead.
    Invalid,
    /// Its value cannot be used and it guards access (or a redirect): the Ingress's routes
    /// answer 503 rather than serve without it.
    Blocks,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Honoured => "honoured",
            Outcome::Differs => "honoured, differs",
            Outcome::NoEffectNeeded => "no effect needed",
            Outcome::Unsupported => "not supported",
            Outcome::Refused => "refused",
            Outcome::Invalid => "invalid value",
            Outcome::Blocks => "invalid: routes answer 503",
        }
    }
}

impl fmt::Display for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One annotation of an Ingress and what became of it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct AnnotationOutcome {
    pub name: String,
    pub outcome: Outcome,
    /// What wicket does with it, or instead of it.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub note: String,
}

/// The annotations of one Ingress (those of ingress-nginx and wicket) and their outcomes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct IngressAnnotations {
    pub ingress: ObjectRef,
    pub annotations: Vec<AnnotationOutcome>,
    /// Why the Ingress is not served (a snippet) or its routes answer 503 (an access
    /// annotation wicket cannot use); None: served.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_status_set_holds_only_the_retryable_statuses() {
        let mut set = StatusSet::default();
        assert!(set.is_empty());
        assert!(set.insert(503));
        assert!(set.insert(429));
        assert!(!set.insert(418));
        assert!(set.contains(503) && set.contains(429));
        assert!(!set.contains(502) && !set.contains(418));
        assert_eq!(serde_json::to_string(&set).unwrap(), "[503,429]");
    }

    fn pattern(scheme: &str, host: &str, wildcard: bool, port: &str) -> OriginPattern {
        OriginPattern {
            scheme: scheme.into(),
            host: host.into(),
            wildcard,
            port: port.into(),
        }
    }

    #[test]
    fn origins_match_scheme_host_and_port_exactly_and_wildcards_one_label() {
        let p = pattern("https://", "origin.cors.com", false, ":8080");
        assert!(p.matches("https://origin.cors.com:8080"));
        assert!(p.matches("HTTPS://Origin.CORS.com:8080"));
        assert!(!p.matches("https://origin.cors.com"));
        assert!(!p.matches("http://origin.cors.com:8080"));
        assert!(!p.matches("https://origin.cors.com:8081"));
        let p = pattern("https://", "foo.bar.com", false, "");
        assert!(!p.matches("https://fooxbar.com"));
        assert!(!p.matches("https://foo.bar.com:443"));
        let w = pattern("http://", "origin.cors.com", true, "");
        assert!(w.matches("http://foo.origin.cors.com"));
        assert!(w.matches("http://bar-foo.origin.cors.com"));
        assert!(!w.matches("http://bar.foo.origin.cors.com"));
        assert!(!w.matches("http://origin.cors.com"));
        let w = pattern("http://", "origin.com", true, ":8080");
        assert!(w.matches("http://abc.origin.com:8080"));
        assert!(!w.matches("http://abc.origin.com"));
        let null = pattern("", "null", false, "");
        assert!(null.matches("null"));
        assert!(pattern("tauri://", "localhost", false, ":3000").matches("tauri://localhost:3000"));
    }

    #[test]
    fn the_default_policy_asks_for_nothing() {
        assert!(Policy::default().is_default());
        let p = Policy {
            force_ssl_redirect: true,
            ..Policy::default()
        };
        assert!(!p.is_default());
        assert_eq!(
            serde_json::to_value(&p).unwrap(),
            serde_json::json!({"forceSslRedirect": true})
        );
    }
}
