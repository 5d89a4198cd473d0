//! The Ingress annotations wicket reads, parsed into typed values; nothing in an
//! annotation ever becomes configuration text.
//!
//! Each setting has an ingress-nginx name (`nginx.ingress.kubernetes.io/<name>`) and a
//! `wicket.dev/<name>` one; the `wicket.dev/` one wins when both are set. Every annotation of
//! either prefix ends with one outcome ([`Outcome`]), listed per Ingress in `/debug/routes`
//! and `wicket check`; what is not honoured as asked is also a Problem. Values follow
//! ingress-nginx's rules (INGRESS-NGINX.md §A1–A2): an invalid tuning value is ignored and
//! the default used; a value that would change where a request goes (a redirect) makes the
//! Ingress's routes answer 503 rather than quietly do something else; an access guard wicket
//! does not support yet blocks the routes (fail closed).

mod table;

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use http::HeaderValue;
use k8s_openapi::api::networking::v1::Ingress;

pub use table::{support, Support, ANNOTATIONS};

use crate::model::{
    AnnotationOutcome, BodyLimit, CanaryRule, CookieAffinity, Cors, CorsOrigins, ErrorPages,
    ExternalAuth, HashBy, HashPiece, HeaderPattern, IngressAnnotations, NextUpstream, ObjectRef,
    OriginPattern, Outcome, Policy, Problem, Reason, Redirect, SameSite, UpstreamProtocol,
    UrlTemplate,
};
use crate::model::{AuthCache, IpSet, Limits, SourceRanges};

pub const NGINX_PREFIX: &str = "nginx.ingress.kubernetes.io/";
pub const WICKET_PREFIX: &str = "wicket.dev/";

/// What an Ingress's annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Options {
    /// Plain-HTTP requests to its TLS hosts are redirected (default: yes).
    pub ssl_redirect: bool,
    /// The upstream protocol for all its backends, winning over `appProtocol`.
    pub protocol: Option<UpstreamProtocol>,
    /// The policy of its routes (None: nothing beyond the defaults).
    pub policy: Option<Arc<Policy>>,
    /// Why its routes answer 503 instead of being served (an access guard wicket does not
    /// support yet, a redirect it cannot make).
    pub blocked: Option<String>,
    /// A canary Ingress (`canary: "true"`): which requests its backends take from the main
    /// Ingress's routes. Its other annotations are ignored but for the traffic ones in
    /// `policy` (INGRESS-NGINX.md §A5).
    pub canary: Option<CanaryRule>,
    /// Its annotations and their outcomes (None: it has none of ours).
    pub report: Option<IngressAnnotations>,
    /// What it asks of its hosts as a whole.
    pub hosts: HostOptions,
    /// `use-regex`: its paths are regular expressions, and their hosts in regex mode.
    pub use_regex: bool,
    /// `rewrite-target`, checked for ingress-nginx's characters and nginx variables.
    pub rewrite_target: Option<String>,
    /// `service-upstream`: its backends are their Services' cluster IPs.
    pub service_upstream: bool,
    /// `custom-headers`: the ConfigMap (`name` or `namespace/name`) whose data are response
    /// headers; the translation reads and checks it.
    pub custom_headers: Option<String>,
    /// `ssl-passthrough`: TLS for its hosts is relayed to the `/` rule's pods.
    pub ssl_passthrough: bool,
    /// The snippet annotations it carries (full names): never supported.
    pub snippets: Vec<String>,
    /// `auth-type: basic`: the Secret the translation reads the users from.
    pub basic_auth: Option<BasicAuthSpec>,
    /// `limit-*`: the limits, and the clients exempt; translation gives them their zone.
    pub limits: Option<(Limits, Option<IpSet>)>,
    /// `auth-tls-*`: client certificates for its hosts; translation reads the CA Secret.
    pub client_auth: Option<ClientAuthSpec>,
    /// `auth-proxy-set-headers`: the ConfigMap (`name` or `namespace/name`) of headers for
    /// the auth request; translation reads it.
    pub auth_proxy_headers: Option<String>,
}

/// `auth-tls-*` as annotated.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientAuthSpec {
    /// `auth-tls-secret`: `namespace/name` (or `name`).
    pub secret: String,
    pub verify: crate::model::VerifyClient,
    pub depth: u32,
    pub pass_certificate: bool,
    pub match_cn: Option<String>,
    pub error_page: Option<String>,
}

/// `auth-type: basic` as annotated; the translation reads the Secret.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BasicAuthSpec {
    /// `auth-secret`: `name` or `namespace/name`.
    pub secret: String,
    /// `auth-secret-type: auth-map`: one key per user (else the `auth` key holds htpasswd
    /// lines).
    pub map: bool,
    /// `auth-realm`.
    pub realm: String,
}

impl Default for Options {
    /// An Ingress without annotations of ours.
    fn default() -> Self {
        Self {
            ssl_redirect: true,
            protocol: None,
            policy: None,
            blocked: None,
            canary: None,
            report: None,
            hosts: HostOptions::default(),
            use_regex: false,
            rewrite_target: None,
            service_upstream: false,
            custom_headers: None,
            ssl_passthrough: false,
            snippets: Vec::new(),
            basic_auth: None,
            limits: None,
            client_auth: None,
            auth_proxy_headers: None,
        }
    }
}

/// Host-wide settings of an Ingress: they apply to every rule host it has.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct HostOptions {
    /// `app-root`: the path, and whether the query string is kept (`$is_args$args`).
    pub app_root: Option<(String, bool)>,
    /// `server-alias`: more names served like the Ingress's hosts.
    pub aliases: Vec<String>,
    /// `from-to-www-redirect`.
    pub from_to_www: bool,
}

pub fn read(ingress: &Ingress, source: &ObjectRef, problems: &mut Vec<Problem>) -> Options {
    let empty = BTreeMap::new();
    let map = ingress.metadata.annotations.as_ref().unwrap_or(&empty);
    let mut ours: BTreeMap<&str, Pairs<'_>> = BTreeMap::new();
    for (k, v) in map {
        if let Some(name) = k.strip_prefix(WICKET_PREFIX) {
            ours.entry(name).or_default().0 = Some((k.as_str(), v.as_str()));
        } else if let Some(name) = k.strip_prefix(NGINX_PREFIX) {
            ours.entry(name).or_default().1 = Some((k.as_str(), v.as_str()));
        }
    }
    if ours.is_empty() {
        // Most Ingresses: none of ours, nothing to read.
        return Options::default();
    }
    let mut r = Reader {
        map,
        ours,
        source,
        outcomes: BTreeMap::new(),
        problems,
        blocked: None,
        canary: false,
    };
    let canary_on = r.bool("canary") == Some(true);
    r.canary = canary_on;
    let mut policy = Policy::default();
    let ssl_redirect = r.bool("ssl-redirect").unwrap_or(true);
    let protocol = backend_protocol(&mut r);
    limits(&mut r, &mut policy);
    next_upstream(&mut r, &mut policy);
    redirects(&mut r, &mut policy);
    upstream(&mut r, &mut policy);
    if let Some(false) = r.bool("enable-access-log") {
        policy.no_access_log = true;
    }
    policy.cors = cors(&mut r);
    policy.errors = error_pages(&mut r);
    policy.source = source_ranges(&mut r);
    let basic_auth = basic_auth(&mut r);
    policy.external_auth = external_auth(&mut r).map(Arc::new);
    let limits = rate_limits(&mut r);
    let client_auth = client_auth(&mut r);
    let auth_proxy_headers = match (&policy.external_auth, r.get("auth-proxy-set-headers")) {
        (Some(_), Some(v)) => Some(v.value.to_owned()),
        (None, Some(v)) => {
            r.record(
                v.full,
                Outcome::NoEffectNeeded,
                "not used without auth-url".into(),
            );
            None
        }
        (_, None) => None,
    };
    traffic(&mut r, &mut policy);
    let hosts = host_options(&mut r);
    let mut use_regex = r.bool("use-regex") == Some(true);
    let (rewrite_target, refused_target) = rewrite(&mut r, &mut policy);
    // A target refused for an nginx variable still made the paths patterns in
    // ingress-nginx; they answer 503 where it would have rewritten.
    use_regex |= refused_target;
    let service_upstream = r.bool("service-upstream") == Some(true);
    let custom_headers = r.get("custom-headers").map(|v| v.value.to_owned());
    let ssl_passthrough = r.bool("ssl-passthrough") == Some(true);
    let canary = canary(&mut r, canary_on);
    let snippets = map
        .keys()
        .filter(|k| {
            let name = k
                .strip_prefix(WICKET_PREFIX)
                .or_else(|| k.strip_prefix(NGINX_PREFIX));
            name.is_some_and(|n| support(n) == Some(Support::Refused))
        })
        .cloned()
        .collect();
    let report = r.finish();
    Options {
        ssl_redirect,
        protocol,
        policy: (!policy.is_default()).then(|| Arc::new(policy)),
        blocked: report.1,
        canary,
        report: report.0,
        hosts,
        use_regex,
        rewrite_target,
        service_upstream,
        custom_headers,
        ssl_passthrough,
        snippets,
        basic_auth,
        limits,
        client_auth,
        auth_proxy_headers,
    }
}

/// An annotation under its `wicket.dev/` and its ingress-nginx name: (full name, value).
type Pairs<'a> = (Option<(&'a str, &'a str)>, Option<(&'a str, &'a str)>);

/// One annotation value, with the name it was found under.
struct Value<'a> {
    full: &'a str,
    value: &'a str,
}

struct Reader<'a> {
    map: &'a BTreeMap<String, String>,
    /// Our annotations by name without prefix: (the `wicket.dev/` one, the ingress-nginx
    /// one), each as (full name, value).
    ours: BTreeMap<&'a str, Pairs<'a>>,
    source: &'a ObjectRef,
    outcomes: BTreeMap<String, AnnotationOutcome>,
    problems: &'a mut Vec<Problem>,
    blocked: Option<String>,
    /// A canary Ingress: only the canary and traffic annotations are read.
    canary: bool,
}

/// What a canary Ingress's other annotations come to (INGRESS-NGINX.md §A5).
const CANARY_IGNORES: &str = "ignored on a canary Ingress, as in ingress-nginx: requests sent to the canary follow the main Ingress's annotations";

/// The annotations a canary Ingress reads: the canary's own and the traffic ones.
fn canary_reads(name: &str) -> bool {
    name.starts_with("canary")
        || name.starts_with("session-cookie-")
        || name.starts_with("upstream-hash-by")
        || matches!(
            name,
            "affinity" | "affinity-mode" | "affinity-canary-behavior" | "load-balance"
        )
}

impl<'a> Reader<'a> {
    /// The value of `name`: `wicket.dev/<name>` if set, else the ingress-nginx one. A
    /// whitespace-only value counts as not set (ingress-nginx). Marks both names as read.
    fn get(&mut self, name: &'static str) -> Option<Value<'a>> {
        // Most Ingresses carry few annotations: a lookup by name, nothing formatted.
        let &(wicket, nginx) = self.ours.get(name)?;
        let found = |e: Option<(&'a str, &'a str)>| {
            e.map(|(k, v)| (k, v.trim())).filter(|(_, v)| !v.is_empty())
        };
        let (full, value) = found(wicket).or_else(|| found(nginx))?;
        if self.canary && !canary_reads(name) {
            for (full, _) in [wicket, nginx].into_iter().flatten() {
                self.record(full, Outcome::NoEffectNeeded, CANARY_IGNORES.into());
            }
            return None;
        }
        if let (Some((w, _)), Some((n, _))) = (wicket, nginx) {
            if full == w {
                self.record(n, Outcome::NoEffectNeeded, format!("{w} is set and wins"));
            }
        }
        // Honoured unless a parser says otherwise.
        let (outcome, note) = match support(name) {
            Some(Support::Differs(why)) => (Outcome::Differs, why.to_owned()),
            _ => (Outcome::Honoured, String::new()),
        };
        self.record(full, outcome, note);
        Some(Value { full, value })
    }

    /// Settings of a feature that is off: each one set has no effect, for this reason.
    fn unused(&mut self, names: &[&'static str], why: &str) {
        for &name in names {
            if let Some(v) = self.get(name) {
                self.record(v.full, Outcome::NoEffectNeeded, why.into());
            }
        }
    }

    fn record(&mut self, full: &str, outcome: Outcome, note: String) {
        self.outcomes.insert(
            full.to_owned(),
            AnnotationOutcome {
                name: full.to_owned(),
                outcome,
                note,
            },
        );
    }

    /// `v` cannot be used: `instead` says what happens.
    fn invalid(&mut self, v: &Value<'_>, why: &str, instead: &str) {
        let note = format!("{:?} {why}; {instead}", v.value);
        self.problems.push(Problem::new(
            self.source.clone(),
            Reason::InvalidAnnotation,
            format!("{}: {note}", v.full),
        ));
        self.record(v.full, Outcome::Invalid, note);
    }

    /// Every route of the Ingress answers 503, for this reason, because of annotation
    /// `full` (whose outcome says so).
    fn block(&mut self, full: &str, why: String) {
        if let Some(o) = self.outcomes.get_mut(full) {
            o.outcome = Outcome::Blocks;
        }
        if self.blocked.is_none() {
            self.blocked = Some(why);
        }
    }

    /// A boolean, as Go's `strconv.ParseBool` reads it (ingress-nginx); invalid: None.
    fn bool(&mut self, name: &'static str) -> Option<bool> {
        let v = self.get(name)?;
        match parse_bool(v.value) {
            Some(b) => Some(b),
            None => {
                self.invalid(&v, "is not true or false", "the default is used");
                None
            }
        }
    }

    /// Whether a boolean annotation is true, without marking it read (its outcome comes
    /// from the table).
    fn peek_bool(&self, name: &str) -> bool {
        [WICKET_PREFIX, NGINX_PREFIX].iter().any(|prefix| {
            self.map
                .get(&format!("{prefix}{name}"))
                .and_then(|v| parse_bool(v.trim()))
                .unwrap_or(false)
        })
    }

    /// Whole seconds, as ingress-nginx's timeouts are written (`"120"`); invalid: None.
    fn seconds(&mut self, name: &'static str) -> Option<Duration> {
        let v = self.get(name)?;
        match v.value.parse::<u64>() {
            Ok(s) if s > 0 => Some(Duration::from_secs(s)),
            _ => {
                self.invalid(&v, "is not a number of seconds", "the default is used");
                None
            }
        }
    }

    /// Every annotation of ours not read by a parser gets the table's outcome; returns the
    /// report and why the routes are blocked, if they are.
    fn finish(mut self) -> (Option<IngressAnnotations>, Option<String>) {
        let map = self.map;
        for full in map.keys() {
            if self.outcomes.contains_key(full) {
                continue;
            }
            let (name, wicket) = match (
                full.strip_prefix(NGINX_PREFIX),
                full.strip_prefix(WICKET_PREFIX),
            ) {
                (Some(name), _) => (name, false),
                (_, Some(name)) => (name, true),
                _ => continue,
            };
            let Some(how) = support(name) else {
                let (outcome, reason, note) = if wicket {
                    (
                        Outcome::Invalid,
                        Reason::InvalidAnnotation,
                        "is not a wicket.dev annotation (a typo?); it has no effect".to_owned(),
                    )
                } else {
                    (
                        Outcome::Unsupported,
                        Reason::UnsupportedAnnotation,
                        "is not an ingress-nginx annotation wicket knows; it has no effect"
                            .to_owned(),
                    )
                };
                self.problems.push(Problem::new(
                    self.source.clone(),
                    reason,
                    format!("{full} {note}"),
                ));
                self.record(full, outcome, note);
                continue;
            };
            let note = table::explain(how);
            if self.canary && !canary_reads(name) && how != Support::Refused {
                self.record(full, Outcome::NoEffectNeeded, CANARY_IGNORES.into());
                continue;
            }
            let (outcome, reason) = match how {
                Support::Honoured | Support::Differs(_) => {
                    // A companion value its parser did not need (a redirect code without
                    // the redirect): nothing to do.
                    self.record(
                        full,
                        Outcome::NoEffectNeeded,
                        "not used without the setting it qualifies".into(),
                    );
                    continue;
                }
                Support::NoEffectNeeded(_) => {
                    self.record(full, Outcome::NoEffectNeeded, note);
                    continue;
                }
                Support::Unsupported(_) => (Outcome::Unsupported, Reason::UnsupportedAnnotation),
                Support::Refused => (Outcome::Refused, Reason::UnsupportedAnnotation),
            };
            self.problems.push(Problem::new(
                self.source.clone(),
                reason,
                format!("{full}: {note}"),
            ));
            self.record(full, outcome, note);
        }
        let report = (!self.outcomes.is_empty()).then(|| IngressAnnotations {
            ingress: self.source.clone(),
            annotations: self.outcomes.into_values().collect(),
            refused: None,
        });
        (report, self.blocked)
    }
}

fn parse_bool(v: &str) -> Option<bool> {
    match v {
        "1" | "t" | "T" | "TRUE" | "true" | "True" => Some(true),
        "0" | "f" | "F" | "FALSE" | "false" | "False" => Some(false),
        _ => None,
    }
}

fn backend_protocol(r: &mut Reader<'_>) -> Option<UpstreamProtocol> {
    let v = r.get("backend-protocol")?;
    match v.value.to_ascii_uppercase().as_str() {
        "HTTP" => Some(UpstreamProtocol::Http1),
        "HTTPS" => Some(UpstreamProtocol::Https),
        "GRPC" => Some(UpstreamProtocol::H2c),
        "GRPCS" => Some(UpstreamProtocol::H2),
        _ => {
            r.invalid(
                &v,
                "is not supported (HTTP, HTTPS, GRPC or GRPCS)",
                "the Service's appProtocol is used",
            );
            None
        }
    }
}

/// A size as nginx writes it: `8`, `8k`, `8m`, `8g` (case-insensitive).
pub fn parse_size(v: &str) -> Option<u64> {
    let (digits, factor) = match v.char_indices().last()? {
        (i, 'k' | 'K') => (&v[..i], 1u64 << 10),
        (i, 'm' | 'M') => (&v[..i], 1 << 20),
        (i, 'g' | 'G') => (&v[..i], 1 << 30),
        _ => (v, 1),
    };
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse::<u64>().ok()?.checked_mul(factor)
}

/// `proxy-body-size`, `proxy-connect-timeout`, `proxy-read-timeout`, `proxy-send-timeout`.
fn limits(r: &mut Reader<'_>, policy: &mut Policy) {
    if let Some(v) = r.get("proxy-body-size") {
        match parse_size(v.value) {
            Some(0) => policy.body_limit = Some(BodyLimit::Unlimited),
            Some(n) => policy.body_limit = Some(BodyLimit::Bytes(n)),
            None => r.invalid(
                &v,
                "is not a size (like 8m, 512k or 1048576)",
                "--max-request-body applies",
            ),
        }
    }
    policy.connect_timeout = r.seconds("proxy-connect-timeout");
    policy.read_timeout = r.seconds("proxy-read-timeout");
    policy.send_timeout = r.seconds("proxy-send-timeout");
}

/// `proxy-next-upstream` (+ `-tries`, `-timeout`).
fn next_upstream(r: &mut Reader<'_>, policy: &mut Policy) {
    let mut next = NextUpstream::default();
    let mut set = false;
    if let Some(v) = r.get("proxy-next-upstream") {
        match parse_next_upstream(v.value) {
            Some(parsed) => {
                next = NextUpstream {
                    tries: next.tries,
                    within: next.within,
                    ..parsed
                };
                set = true;
            }
            None => r.invalid(
                &v,
                "is not a list of error, timeout, invalid_header, http_500, http_502, http_503, http_504, http_403, http_404, http_429, non_idempotent or off",
                "the default (error timeout) applies",
            ),
        }
    }
    if let Some(v) = r.get("proxy-next-upstream-tries") {
        match v.value.parse::<u32>() {
            Ok(tries) => {
                next.tries = tries;
                set = true;
            }
            Err(_) => r.invalid(&v, "is not a number", "3 tries apply"),
        }
    }
    if let Some(v) = r.get("proxy-next-upstream-timeout") {
        match v.value.parse::<u64>() {
            Ok(0) => set = true,
            Ok(s) => {
                next.within = Some(Duration::from_secs(s));
                set = true;
            }
            Err(_) => r.invalid(&v, "is not a number of seconds", "retries are not timed"),
        }
    }
    if set {
        policy.next_upstream = Some(next);
    }
}

/// `error timeout http_503 ...`; `off` alone turns retries off. None when a token is
/// unknown.
fn parse_next_upstream(v: &str) -> Option<NextUpstream> {
    let mut next = NextUpstream {
        error: false,
        timeout: false,
        ..NextUpstream::default()
    };
    for token in v.split_ascii_whitespace() {
        match token {
            // No condition at all: nothing is ever sent to another endpoint.
            "off" => {
                return Some(NextUpstream {
                    error: false,
                    timeout: false,
                    ..NextUpstream::default()
                })
            }
            // A response wicket cannot read is a failed connection as far as retrying goes.
            "error" | "invalid_header" => next.error = true,
            "timeout" => next.timeout = true,
            "non_idempotent" => next.non_idempotent = true,
            status => {
                let code: u16 = status.strip_prefix("http_")?.parse().ok()?;
                if !next.statuses.insert(code) {
                    return None;
                }
            }
        }
    }
    Some(next)
}

/// The characters ingress-nginx accepts in a redirect URL (§C1): anything else, `$` above
/// all, is refused.
fn redirect_chars_ok(v: &str) -> bool {
    v.bytes().all(|b| {
        b.is_ascii_alphanumeric()
            || matches!(
                b,
                b'-' | b'.' | b'_' | b'~' | b'/' | b':' | b',' | b'?' | b'&' | b'='
            )
    })
}

/// `permanent-redirect`, `temporal-redirect` (+ codes), `force-ssl-redirect`,
/// `preserve-trailing-slash`.
fn redirects(r: &mut Reader<'_>, policy: &mut Policy) {
    let permanent_code = redirect_code(r, "permanent-redirect-code", 301, 308);
    let temporal_code = redirect_code(r, "temporal-redirect-code", 302, 307);
    let permanent = r.get("permanent-redirect");
    let temporal = r.get("temporal-redirect");
    let relative = r.bool("relative-redirects") == Some(true);
    // temporal wins over permanent (ingress-nginx).
    if let Some(v) = temporal {
        policy.redirect = redirect_to(r, &v, temporal_code, relative, true);
        if let Some(p) = permanent {
            r.record(p.full, Outcome::NoEffectNeeded, format!("{} wins", v.full));
        }
    } else if let Some(v) = permanent {
        policy.redirect = redirect_to(r, &v, permanent_code, relative, false);
    }
    if let Some(true) = r.bool("force-ssl-redirect") {
        policy.force_ssl_redirect = true;
    }
    if let Some(true) = r.bool("preserve-trailing-slash") {
        policy.preserve_trailing_slash = true;
    }
}

/// The redirect `v` asks for; a URL wicket cannot redirect to blocks the routes (503)
/// rather than serve what should have been redirected. `absolute`: only http(s) URLs.
fn redirect_to(
    r: &mut Reader<'_>,
    v: &Value<'_>,
    code: u16,
    relative: bool,
    absolute: bool,
) -> Option<Redirect> {
    let is_url = v.value.starts_with("http://") || v.value.starts_with("https://");
    if (absolute && !is_url) || !redirect_chars_ok(v.value) {
        let why = if absolute {
            "is not an http(s) URL of the characters ingress-nginx allows"
        } else {
            "has characters ingress-nginx refuses in a redirect URL"
        };
        r.invalid(v, why, "the redirect is not made and the routes answer 503");
        r.block(
            v.full,
            format!(
                "{} {:?} is not a URL wicket can redirect to",
                v.full, v.value
            ),
        );
        return None;
    }
    HeaderValue::from_str(v.value)
        .ok()
        .map(|location| Redirect {
            code,
            location,
            relative,
        })
}

/// A redirect status between 300 and `max`, else `default` (ingress-nginx).
fn redirect_code(r: &mut Reader<'_>, name: &'static str, default: u16, max: u16) -> u16 {
    let Some(v) = r.get(name) else {
        return default;
    };
    match v.value.parse::<u16>() {
        Ok(code) if (300..=max).contains(&code) => code,
        _ => {
            r.invalid(
                &v,
                &format!("is not a redirect status from 300 to {max}"),
                &format!("{default} is used"),
            );
            default
        }
    }
}

/// ingress-nginx's CORS defaults.
const CORS_METHODS: &str = "GET, PUT, POST, DELETE, PATCH, OPTIONS";
const CORS_HEADERS: &str =
    "DNT,Keep-Alive,User-Agent,X-Requested-With,If-Modified-Since,Cache-Control,Content-Type,Range,Authorization";
const CORS_MAX_AGE: u64 = 1_728_000;

/// `enable-cors` and `cors-*`: None unless CORS is enabled.
fn cors(r: &mut Reader<'_>) -> Option<Cors> {
    let enabled = r.bool("enable-cors") == Some(true);
    let names = [
        "cors-allow-origin",
        "cors-allow-methods",
        "cors-allow-headers",
        "cors-expose-headers",
        "cors-allow-credentials",
        "cors-max-age",
    ];
    if !enabled {
        r.unused(&names, "only used with enable-cors");
        return None;
    }
    let origins = match r.get("cors-allow-origin") {
        None => CorsOrigins::Any,
        Some(v) => {
            let (origins, skipped) = parse_origins(v.value);
            if !skipped.is_empty() {
                r.problems.push(Problem::new(
                    r.source.clone(),
                    Reason::InvalidAnnotation,
                    format!(
                        "{}: {skipped:?} are not origins (scheme://host[:port]); they are skipped",
                        v.full
                    ),
                ));
            }
            origins
        }
    };
    let list = |r: &mut Reader<'_>,
                name: &'static str,
                default: &'static str,
                ok: fn(u8) -> bool| match r.get(name) {
        None => Some(HeaderValue::from_static(default)).filter(|_| !default.is_empty()),
        Some(v) if v.value.bytes().all(|b| ok(b) || b == b',' || b == b' ') => {
            HeaderValue::from_str(v.value).ok()
        }
        Some(v) => {
            r.invalid(
                &v,
                "has characters a header list cannot have",
                "the default is used",
            );
            Some(HeaderValue::from_static(default)).filter(|_| !default.is_empty())
        }
    };
    let methods = list(r, "cors-allow-methods", CORS_METHODS, |b| {
        b.is_ascii_alphabetic()
    })?;
    let headers = list(r, "cors-allow-headers", CORS_HEADERS, |b| {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_'
    })?;
    let expose = list(r, "cors-expose-headers", "", |b| {
        b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'*'
    });
    let credentials = r.bool("cors-allow-credentials").unwrap_or(true);
    let max_age = match r.get("cors-max-age") {
        None => CORS_MAX_AGE,
        Some(v) => match v.value.parse::<u64>() {
            Ok(n) => n,
            Err(_) => {
                r.invalid(&v, "is not a number of seconds", "1728000 is used");
                CORS_MAX_AGE
            }
        },
    };
    Some(Cors {
        origins,
        methods,
        headers,
        expose,
        credentials,
        max_age: HeaderValue::from(max_age),
    })
}

/// `cors-allow-origin`: `*` anywhere means any origin; otherwise the patterns, and the
/// entries that are not origins.
fn parse_origins(v: &str) -> (CorsOrigins, Vec<String>) {
    let mut patterns = Vec::new();
    let mut skipped = Vec::new();
    for entry in v.split(',').map(str::trim).filter(|e| !e.is_empty()) {
        if entry == "*" {
            return (CorsOrigins::Any, Vec::new());
        }
        match parse_origin(entry) {
            Some(p) => patterns.push(p),
            None => skipped.push(entry.to_owned()),
        }
    }
    if patterns.is_empty() && skipped.is_empty() {
        return (CorsOrigins::Any, skipped);
    }
    (CorsOrigins::List(patterns), skipped)
}

fn parse_origin(entry: &str) -> Option<OriginPattern> {
    let lower = entry.to_ascii_lowercase();
    if lower == "null" {
        return Some(OriginPattern {
            scheme: String::new(),
            host: lower,
            wildcard: false,
            port: String::new(),
        });
    }
    let (scheme, rest) = lower.split_once("://")?;
    if scheme.is_empty()
        || !scheme
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'+' || b == b'-' || b == b'.')
    {
        return None;
    }
    let (host, port) = match rest.rsplit_once(':') {
        Some((host, port)) if !port.is_empty() && port.bytes().all(|b| b.is_ascii_digit()) => {
            (host, format!(":{port}"))
        }
        Some(_) => return None,
        None => (rest, String::new()),
    };
    let (host, wildcard) = match host.strip_prefix("*.") {
        Some(h) => (h, true),
        None => (host, false),
    };
    let valid = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    valid.then(|| OriginPattern {
        scheme: format!("{scheme}://"),
        host: host.to_owned(),
        wildcard,
        port,
    })
}

/// `app-root`, `server-alias`, `from-to-www-redirect`.
fn host_options(r: &mut Reader<'_>) -> HostOptions {
    let mut hosts = HostOptions::default();
    if let Some(v) = r.get("app-root") {
        let (path, keep_query) = match v.value.strip_suffix("$is_args$args") {
            Some(path) => (path, true),
            None => (v.value, false),
        };
        let ok = path.starts_with('/')
            && path.bytes().all(|b| {
                b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':')
            });
        if ok {
            hosts.app_root = Some((path.to_owned(), keep_query));
        } else {
            r.invalid(
                &v,
                "is not a path (nginx variables other than $is_args$args are not expanded)",
                "the request for / is served as it is",
            );
        }
    }
    if let Some(v) = r.get("server-alias") {
        let mut skipped = Vec::new();
        for alias in v.value.split(',').map(str::trim).filter(|a| !a.is_empty()) {
            match super::validate::host(alias) {
                Ok(crate::model::HostMatch::Exact(name)) => hosts.aliases.push(name),
                _ => skipped.push(alias.to_owned()),
            }
        }
        if !skipped.is_empty() {
            r.problems.push(Problem::new(
                r.source.clone(),
                Reason::InvalidAnnotation,
                format!("{}: {skipped:?} are not host names (wildcards and regular expressions are not supported); they are skipped", v.full),
            ));
        }
    }
    hosts.from_to_www = r.bool("from-to-www-redirect") == Some(true);
    hosts
}

/// `rewrite-target` and `x-forwarded-prefix` (sent only with a rewrite, as ingress-nginx).
/// Also says whether a target was refused for its nginx variables (the routes are blocked).
fn rewrite(r: &mut Reader<'_>, policy: &mut Policy) -> (Option<String>, bool) {
    let mut refused = false;
    let target = r.get("rewrite-target").and_then(|v| {
        // ingress-nginx's own check (a URI path with captures); anything else is ignored.
        let chars_ok = v.value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b'$' | b':')
        });
        let shape_ok = v.value.starts_with('/')
            || v.value.starts_with("http://")
            || v.value.starts_with("https://");
        if !chars_ok || !shape_ok {
            r.invalid(
                &v,
                "is not a path or an http(s) URL of the characters ingress-nginx allows (letters, digits, - . _ ~ / : $)",
                "the path is forwarded unchanged",
            );
            return None;
        }
        let mut rest = v.value;
        while let Some(at) = rest.find('$') {
            rest = &rest[at + 1..];
            if !rest.starts_with(|c: char| c.is_ascii_digit()) {
                r.invalid(
                    &v,
                    "uses an nginx variable; only capture groups ($1 to $9) are filled in",
                    "the routes answer 503 rather than send requests to the wrong path",
                );
                r.block(v.full, format!("{} {:?} uses an nginx variable wicket does not expand", v.full, v.value));
                refused = true;
                return None;
            }
        }
        Some(v.value.to_owned())
    });
    if let Some(v) = r.get("x-forwarded-prefix") {
        let ok = v.value.bytes().all(|b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/' | b':')
        });
        match (ok, target.is_some(), HeaderValue::from_str(v.value)) {
            (true, true, Ok(prefix)) => policy.x_forwarded_prefix = Some(prefix),
            (true, false, _) => r.record(
                v.full,
                Outcome::NoEffectNeeded,
                "only sent with rewrite-target (as ingress-nginx)".into(),
            ),
            _ => r.invalid(&v, "is not a path", "no X-Forwarded-Prefix is sent"),
        }
    }
    (target, refused)
}

/// `denylist-source-range` and `allowlist-source-range` (or, when that is not set, the
/// older `whitelist-source-range`). A list wicket cannot read makes the routes answer 503:
/// an access guard never fails open (INGRESS-NGINX.md §C3).
fn source_ranges(r: &mut Reader<'_>) -> Option<SourceRanges> {
    fn list(r: &mut Reader<'_>, v: Option<Value<'_>>) -> Option<IpSet> {
        let v = v?;
        let why = match v.value.parse::<IpSet>() {
            Ok(set) if !set.is_empty() => return Some(set),
            Ok(_) => "lists no address".to_owned(),
            Err(why) => why,
        };
        r.invalid(
            &v,
            &why,
            "the routes answer 503 rather than serve without the list",
        );
        r.block(
            v.full,
            format!(
            "{} {:?} cannot be used ({why}); the route answers 503 rather than serve without it",
            v.full, v.value
        ),
        );
        None
    }
    let deny = r.get("denylist-source-range");
    let deny = list(r, deny);
    let allow = match (
        r.get("allowlist-source-range"),
        r.get("whitelist-source-range"),
    ) {
        (Some(a), Some(w)) => {
            r.record(
                w.full,
                Outcome::NoEffectNeeded,
                "allowlist-source-range is set and wins (as ingress-nginx)".into(),
            );
            Some(a)
        }
        (a, w) => a.or(w),
    };
    let allow = list(r, allow);
    (deny.is_some() || allow.is_some()).then_some(SourceRanges { deny, allow })
}

/// `auth-tls-secret` and its companions (INGRESS-NGINX.md §C2). `auth-tls-verify-client:
/// off` turns it off; any value wicket cannot use blocks the routes.
fn client_auth(r: &mut Reader<'_>) -> Option<ClientAuthSpec> {
    const BLOCKS: &str = "the routes answer 503 rather than serve without the certificate check";
    const COMPANIONS: [&str; 5] = [
        "auth-tls-verify-client",
        "auth-tls-verify-depth",
        "auth-tls-pass-certificate-to-upstream",
        "auth-tls-match-cn",
        "auth-tls-error-page",
    ];
    let Some(secret) = r.get("auth-tls-secret") else {
        r.unused(&COMPANIONS, "not used without auth-tls-secret");
        return None;
    };
    let mut ok = true;
    let mut refuse = |r: &mut Reader<'_>, v: &Value<'_>, why: &str| {
        r.invalid(v, why, BLOCKS);
        r.block(v.full, format!(
            "{} {:?} cannot be used ({why}); the route answers 503 rather than serve without the certificate check",
            v.full, v.value
        ));
        ok = false;
    };
    use crate::model::VerifyClient;
    let verify = match r.get("auth-tls-verify-client") {
        None => VerifyClient::On,
        Some(v) => match v.value {
            "off" => {
                r.unused(&COMPANIONS[1..], "auth-tls-verify-client is off");
                return None;
            }
            "optional" => VerifyClient::Optional,
            "optional_no_ca" => VerifyClient::OptionalNoCa,
            "on" => VerifyClient::On,
            _ => {
                // ingress-nginx: any other value is `on`.
                r.record(
                    v.full,
                    Outcome::Honoured,
                    "not on, off, optional or optional_no_ca: on, as ingress-nginx".into(),
                );
                VerifyClient::On
            }
        },
    };
    let depth = match r.get("auth-tls-verify-depth") {
        None => 1,
        Some(v) => match v.value.parse::<u32>() {
            Ok(d) if d >= 1 => d,
            _ => {
                refuse(r, &v, "is not a whole number of 1 or more");
                1
            }
        },
    };
    let pass_certificate = r.bool("auth-tls-pass-certificate-to-upstream") == Some(true);
    let match_cn = match r.get("auth-tls-match-cn") {
        None => None,
        Some(v) if !v.value.starts_with("CN=") => {
            refuse(r, &v, "does not start with CN=");
            None
        }
        Some(v) => match regex::Regex::new(v.value) {
            Ok(_) => Some(v.value.to_owned()),
            Err(_) => {
                refuse(r, &v, "is not a regular expression wicket can compile");
                None
            }
        },
    };
    let error_page = match r.get("auth-tls-error-page") {
        None => None,
        Some(v) => match UrlTemplate::parse(v.value) {
            Ok(_) if !v.value.contains('$') => Some(v.value.to_owned()),
            _ => {
                refuse(r, &v, "is not an http(s) URL");
                None
            }
        },
    };
    ok.then(|| ClientAuthSpec {
        secret: secret.value.to_owned(),
        verify,
        depth,
        pass_certificate,
        match_cn,
        error_page,
    })
}

/// `limit-rps`, `limit-rpm`, `limit-connections`, `limit-burst-multiplier`,
/// `limit-allowlist` (or the older `limit-whitelist`), INGRESS-NGINX.md §C4. Limits guard
/// the pods: a value wicket cannot read blocks the routes (ingress-nginx drops the whole
/// Ingress) rather than serve them unlimited. `0` is no limit, as in ingress-nginx.
fn rate_limits(r: &mut Reader<'_>) -> Option<(Limits, Option<IpSet>)> {
    const BLOCKS: &str = "the routes answer 503 rather than serve without the limit";
    let mut ok = true;
    let mut number = |r: &mut Reader<'_>, name: &'static str| -> Option<u32> {
        let v = r.get(name)?;
        match v.value.parse::<u32>() {
            Ok(n) => Some(n),
            Err(_) => {
                r.invalid(&v, "is not a whole number", BLOCKS);
                r.block(v.full, format!(
                    "{} {:?} is not a whole number; the route answers 503 rather than serve without the limit",
                    v.full, v.value
                ));
                ok = false;
                None
            }
        }
    };
    let rps = number(r, "limit-rps").and_then(std::num::NonZeroU32::new);
    let rpm = number(r, "limit-rpm").and_then(std::num::NonZeroU32::new);
    let connections = number(r, "limit-connections").and_then(std::num::NonZeroU32::new);
    let multiplier = number(r, "limit-burst-multiplier");
    let exempt = match (r.get("limit-allowlist"), r.get("limit-whitelist")) {
        (Some(a), Some(w)) => {
            r.record(
                w.full,
                Outcome::NoEffectNeeded,
                "limit-allowlist is set and wins".into(),
            );
            Some(a)
        }
        (a, w) => a.or(w),
    };
    let exempt = match exempt {
        None => None,
        Some(v) => match v.value.parse::<IpSet>() {
            Ok(set) => Some(set),
            Err(why) => {
                r.invalid(&v, &why, BLOCKS);
                r.block(v.full, format!(
                    "{} {:?} cannot be used ({why}); the route answers 503 rather than serve without the limit",
                    v.full, v.value
                ));
                ok = false;
                None
            }
        },
    };
    if !ok {
        return None;
    }
    if rps.is_none() && rpm.is_none() && connections.is_none() {
        r.unused(
            &[
                "limit-burst-multiplier",
                "limit-allowlist",
                "limit-whitelist",
            ],
            "not used without limit-rps, limit-rpm or limit-connections",
        );
        return None;
    }
    Some((
        Limits {
            rps,
            rpm,
            burst_multiplier: multiplier.filter(|&m| m > 0).unwrap_or(5),
            connections,
        },
        exempt,
    ))
}

/// `auth-url` and its companions (INGRESS-NGINX.md §C3). A value wicket cannot use blocks
/// the routes: a request is never let through unchecked.
fn external_auth(r: &mut Reader<'_>) -> Option<ExternalAuth> {
    const BLOCKS: &str = "the routes answer 503 rather than serve without the auth check";
    const COMPANIONS: [&str; 6] = [
        "auth-method",
        "auth-signin",
        "auth-signin-redirect-param",
        "auth-response-headers",
        "auth-request-redirect",
        "auth-always-set-cookie",
    ];
    let Some(url) = r.get("auth-url") else {
        r.unused(&COMPANIONS, "not used without auth-url");
        return None;
    };
    let mut ok = true;
    let mut refuse = |r: &mut Reader<'_>, v: &Value<'_>, why: &str| {
        r.invalid(v, why, BLOCKS);
        r.block(v.full, format!(
            "{} {:?} cannot be used ({why}); the route answers 503 rather than serve without the auth check",
            v.full, v.value
        ));
        ok = false;
    };
    let template = match UrlTemplate::parse(url.value) {
        Ok(t) => Some(t),
        Err(why) => {
            refuse(r, &url, &why);
            None
        }
    };
    let (method, method_set) = match r.get("auth-method") {
        None => (http::Method::GET, false),
        Some(v) => {
            match v.value.to_ascii_uppercase().as_str() {
                m
                @ ("GET" | "HEAD" | "POST" | "PUT" | "PATCH" | "DELETE" | "OPTIONS" | "TRACE") => (
                    http::Method::from_bytes(m.as_bytes()).unwrap_or(http::Method::GET),
                    true,
                ),
                _ => {
                    refuse(r, &v, "is not an HTTP method (GET, HEAD, POST, PUT, PATCH, DELETE, OPTIONS, TRACE)");
                    (http::Method::GET, false)
                }
            }
        }
    };
    let signin = match r.get("auth-signin") {
        None => None,
        Some(v) => match UrlTemplate::parse(v.value) {
            Ok(t) => Some(t),
            Err(why) => {
                refuse(r, &v, &why);
                None
            }
        },
    };
    let redirect_param = match r.get("auth-signin-redirect-param") {
        None => "rd".to_owned(),
        Some(v)
            if v.value
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-') =>
        {
            v.value.to_owned()
        }
        Some(v) => {
            refuse(r, &v, "is not a query parameter name");
            "rd".to_owned()
        }
    };
    let mut response_headers = Vec::new();
    if let Some(v) = r.get("auth-response-headers") {
        for name in v.value.split(',').map(str::trim).filter(|n| !n.is_empty()) {
            match http::HeaderName::from_bytes(name.as_bytes()) {
                Ok(h) if !h.as_str().starts_with(':') => response_headers.push(h),
                _ => {
                    refuse(r, &v, &format!("{name:?} is not a header name"));
                    break;
                }
            }
        }
    }
    let request_redirect = match r.get("auth-request-redirect") {
        None => None,
        Some(v) => match UrlTemplate::parse(v.value)
            .ok()
            .map(|_| ())
            .or_else(|| v.value.starts_with('/').then_some(()))
            .and_then(|()| HeaderValue::from_str(v.value).ok())
        {
            Some(h) => Some(h),
            None => {
                refuse(r, &v, "is not a URL or a path");
                None
            }
        },
    };
    let always_set_cookie = r.bool("auth-always-set-cookie") == Some(true);
    let cache = match (r.get("auth-cache-key"), r.get("auth-cache-duration")) {
        (None, None) => None,
        (None, Some(d)) => {
            r.record(
                d.full,
                Outcome::NoEffectNeeded,
                "not used without auth-cache-key".into(),
            );
            None
        }
        (Some(key), duration) => {
            let pieces = match parse_hash_key(key.value) {
                Ok(p) => Some(p),
                Err(why) => {
                    refuse(r, &key, &why);
                    None
                }
            };
            let duration = match duration {
                None => AuthCache::parse_duration("200 202 401 5m").ok(),
                Some(d) => match AuthCache::parse_duration(d.value) {
                    Ok(parsed) => Some(parsed),
                    Err(why) => {
                        refuse(r, &d, &why);
                        None
                    }
                },
            };
            match (pieces, duration) {
                (Some(pieces), Some((statuses, duration))) => Some(AuthCache {
                    key: key.value.to_owned(),
                    pieces,
                    statuses,
                    duration,
                }),
                _ => None,
            }
        }
    };
    let url = template?;
    ok.then_some(ExternalAuth {
        url,
        method,
        method_set,
        signin,
        redirect_param,
        response_headers,
        request_redirect,
        always_set_cookie,
        cache,
        extra_headers: Vec::new(),
    })
}

/// `auth-type`, `auth-secret`, `auth-secret-type`, `auth-realm` (INGRESS-NGINX.md §C3).
/// Anything wicket cannot honour blocks the routes: never served without the password.
fn basic_auth(r: &mut Reader<'_>) -> Option<BasicAuthSpec> {
    const BLOCKS: &str = "the routes answer 503 rather than serve without the password check";
    let Some(kind) = r.get("auth-type") else {
        r.unused(
            &["auth-secret", "auth-secret-type", "auth-realm"],
            "not used without auth-type",
        );
        return None;
    };
    let mut ok = true;
    match kind.value {
        "basic" => {}
        "digest" => {
            r.invalid(&kind, "is not supported (basic only)", BLOCKS);
            r.block(kind.full, format!(
                "{}: digest is not supported; the route answers 503 rather than serve without the password check",
                kind.full
            ));
            ok = false;
        }
        _ => {
            r.invalid(&kind, "is not basic or digest", BLOCKS);
            r.block(kind.full, format!(
                "{} {:?} is not basic; the route answers 503 rather than serve without the password check",
                kind.full, kind.value
            ));
            ok = false;
        }
    }
    let secret = r.get("auth-secret");
    let map = match r.get("auth-secret-type") {
        None => false,
        Some(v) if v.value == "auth-file" => false,
        Some(v) if v.value == "auth-map" => true,
        Some(v) => {
            r.invalid(&v, "is not auth-file or auth-map", BLOCKS);
            r.block(
                v.full,
                format!(
                    "{} {:?} is not auth-file or auth-map; the route answers 503",
                    v.full, v.value
                ),
            );
            ok = false;
            false
        }
    };
    let realm = match r.get("auth-realm") {
        None => String::new(),
        Some(v)
            if v.value
                .bytes()
                .all(|b| (0x20..0x7f).contains(&b) && b != b'"' && b != b'\\') =>
        {
            v.value.to_owned()
        }
        Some(v) => {
            r.invalid(&v, "has characters a realm cannot carry", BLOCKS);
            r.block(
                v.full,
                format!("{} cannot be used; the route answers 503", v.full),
            );
            ok = false;
            String::new()
        }
    };
    let Some(secret) = secret else {
        r.invalid(&kind, "is set without auth-secret", BLOCKS);
        r.block(kind.full, format!(
            "{} is set without auth-secret; the route answers 503 rather than serve without the password check",
            kind.full
        ));
        return None;
    };
    ok.then(|| BasicAuthSpec {
        secret: secret.value.to_owned(),
        map,
        realm,
    })
}

/// `custom-http-errors`, `disable-proxy-intercept-errors` and `default-backend`; the
/// translation resolves the backend.
fn error_pages(r: &mut Reader<'_>) -> Option<ErrorPages> {
    let mut pages = ErrorPages::default();
    if let Some(v) = r.get("custom-http-errors") {
        let codes: Result<Vec<u16>, _> = v
            .value
            .split(',')
            .map(|c| match c.trim().parse::<u16>() {
                Ok(code) if (100..=599).contains(&code) => Ok(code),
                _ => Err(c.trim()),
            })
            .collect();
        match codes {
            Ok(mut codes) => {
                codes.sort_unstable();
                codes.dedup();
                pages.codes = codes;
            }
            Err(bad) => {
                let why = format!("has {bad:?}, which is not an HTTP status code");
                r.invalid(&v, &why, "no response of the pod is replaced");
            }
        }
    }
    if r.bool("disable-proxy-intercept-errors") == Some(true) && !pages.codes.is_empty() {
        pages.codes.clear();
        for prefix in [WICKET_PREFIX, NGINX_PREFIX] {
            let full = format!("{prefix}custom-http-errors");
            if r.outcomes.contains_key(&full) {
                r.record(
                    &full,
                    Outcome::NoEffectNeeded,
                    "disable-proxy-intercept-errors is true: the pod's answers pass through".into(),
                );
            }
        }
    }
    if let Some(v) = r.get("default-backend") {
        if !v.value.contains('.') && super::validate::dns_subdomain(v.value).is_ok() {
            pages.own_backend = Some(v.value.to_owned());
        } else {
            r.invalid(&v, "is not a Service name", "it is not used");
        }
    }
    (!pages.codes.is_empty() || pages.own_backend.is_some()).then_some(pages)
}

/// `affinity` + `session-cookie-*`, `upstream-hash-by`, `load-balance`, in ingress-nginx's
/// precedence: cookie affinity, then the hash, then the algorithm.
fn traffic(r: &mut Reader<'_>, policy: &mut Policy) {
    policy.affinity = affinity(r);
    let hash = hash_by(r);
    let mut ewma = None;
    if let Some(v) = r.get("load-balance") {
        match v.value {
            "round_robin" => ewma = Some((false, v.full)),
            "ewma" => ewma = Some((true, v.full)),
            _ => r.invalid(&v, "is not round_robin or ewma", "round robin is used"),
        }
    }
    let winner = if policy.affinity.is_some() {
        Some("affinity: cookie")
    } else {
        hash.as_ref().map(|_| "upstream-hash-by")
    };
    if let (Some(winner), Some((_, full))) = (winner, ewma) {
        r.record(
            full,
            Outcome::NoEffectNeeded,
            format!("{winner} wins (as ingress-nginx)"),
        );
        ewma = None;
    }
    match (policy.affinity.is_some(), hash) {
        (true, Some((_, full))) => r.record(
            full,
            Outcome::NoEffectNeeded,
            "affinity: cookie wins (as ingress-nginx)".into(),
        ),
        (false, Some((hash, _))) => policy.hash_by = Some(hash),
        _ => {}
    }
    policy.ewma = ewma.is_some_and(|(on, _)| on);
}

/// The `canary-*` annotations and `affinity-canary-behavior`. Without `canary: "true"`
/// they do nothing (ingress-nginx ignores the canary settings then), which is reported.
fn canary(r: &mut Reader<'_>, on: bool) -> Option<CanaryRule> {
    const PARTS: [&str; 7] = [
        "canary-by-header",
        "canary-by-header-value",
        "canary-by-header-pattern",
        "canary-by-cookie",
        "canary-weight",
        "canary-weight-total",
        "affinity-canary-behavior",
    ];
    if !on {
        for name in PARTS {
            if let Some(v) = r.get(name) {
                r.invalid(&v, "is set but canary is not \"true\"", "it has no effect");
            }
        }
        return None;
    }
    let mut rule = CanaryRule {
        weight_total: 100,
        sticky: true,
        ..CanaryRule::default()
    };
    if let Some(v) = r.get("canary-by-header") {
        match http::HeaderName::from_bytes(v.value.as_bytes()) {
            Ok(name) => rule.header = Some(name),
            Err(_) => r.invalid(
                &v,
                "is not a header name",
                "no request goes to the canary by a header",
            ),
        }
    }
    let value = r.get("canary-by-header-value");
    let pattern = r.get("canary-by-header-pattern");
    if let Some(v) = &value {
        rule.header_value = Some(v.value.to_owned());
    }
    if let Some(v) = pattern {
        if value.is_some() {
            r.record(
                v.full,
                Outcome::NoEffectNeeded,
                "canary-by-header-value is set and wins (as ingress-nginx)".into(),
            );
        } else {
            let compiled = regex::RegexBuilder::new(v.value)
                .size_limit(1 << 20)
                .build();
            rule.header_pattern = Some(match compiled {
                Ok(re) => HeaderPattern::Valid(re),
                Err(e) => {
                    let why = format!("is not a regular expression wicket can use ({e})");
                    r.invalid(
                        &v,
                        &why,
                        "a request with the header goes to the main backend, and no cookie or weight is consulted (as ingress-nginx)",
                    );
                    HeaderPattern::Invalid(v.value.to_owned())
                }
            });
        }
    }
    if rule.header.is_none() {
        for name in ["canary-by-header-value", "canary-by-header-pattern"] {
            for prefix in [WICKET_PREFIX, NGINX_PREFIX] {
                let full = format!("{prefix}{name}");
                if r.outcomes
                    .get(&full)
                    .is_some_and(|o| o.outcome != Outcome::Invalid)
                {
                    r.record(
                        &full,
                        Outcome::NoEffectNeeded,
                        "not used without canary-by-header".into(),
                    );
                }
            }
        }
        rule.header_value = None;
        rule.header_pattern = None;
    }
    if let Some(v) = r.get("canary-by-cookie") {
        if cookie_token_ok(v.value) {
            rule.cookie = Some(v.value.to_owned());
        } else {
            r.invalid(
                &v,
                "is not a cookie name",
                "no request goes to the canary by a cookie",
            );
        }
    }
    if let Some(v) = r.get("canary-weight") {
        match v.value.parse::<u32>() {
            Ok(w) => rule.weight = w,
            Err(_) => r.invalid(
                &v,
                "is not a whole number",
                "weight 0 is used: no request goes to the canary by weight",
            ),
        }
    }
    if let Some(v) = r.get("canary-weight-total") {
        match v.value.parse::<u32>() {
            Ok(total) if total > 100 => rule.weight_total = total,
            Ok(_) => r.record(
                v.full,
                Outcome::Honoured,
                "a total of 100 or less is taken as 100 (as ingress-nginx)".into(),
            ),
            Err(_) => r.invalid(&v, "is not a whole number", "100 is used"),
        }
    }
    if let Some(v) = r.get("affinity-canary-behavior") {
        match v.value {
            "sticky" => {}
            "legacy" => rule.sticky = false,
            _ => r.invalid(&v, "is not sticky or legacy", "sticky is used"),
        }
    }
    Some(rule)
}

/// A cookie name: an RFC 6265 token.
fn cookie_token_ok(v: &str) -> bool {
    !v.is_empty()
        && v.bytes().all(|b| {
            b.is_ascii_alphanumeric()
                || matches!(
                    b,
                    b'!' | b'#'
                        | b'$'
                        | b'%'
                        | b'&'
                        | b'\''
                        | b'*'
                        | b'+'
                        | b'-'
                        | b'.'
                        | b'^'
                        | b'_'
                        | b'`'
                        | b'|'
                        | b'~'
                )
        })
}

const SESSION_COOKIE: [&str; 10] = [
    "affinity-mode",
    "session-cookie-name",
    "session-cookie-path",
    "session-cookie-domain",
    "session-cookie-max-age",
    "session-cookie-expires",
    "session-cookie-secure",
    "session-cookie-samesite",
    "session-cookie-conditional-samesite-none",
    "session-cookie-change-on-failure",
];

fn affinity(r: &mut Reader<'_>) -> Option<CookieAffinity> {
    let enabled = match r.get("affinity") {
        Some(v) if v.value == "cookie" => true,
        Some(v) => {
            r.invalid(
                &v,
                "is not cookie (the only affinity ingress-nginx has)",
                "requests are balanced without affinity",
            );
            false
        }
        None => false,
    };
    if !enabled {
        r.unused(&SESSION_COOKIE, "only used with affinity: cookie");
        return None;
    }
    let persistent = match r.get("affinity-mode") {
        None => false,
        Some(v) if v.value == "balanced" => false,
        Some(v) if v.value == "persistent" => true,
        Some(v) => {
            r.invalid(&v, "is not balanced or persistent", "balanced is used");
            false
        }
    };
    let name = match r.get("session-cookie-name") {
        None => "INGRESSCOOKIE".to_owned(),
        Some(v) if cookie_token_ok(v.value) => v.value.to_owned(),
        Some(v) => {
            r.invalid(&v, "is not a cookie name", "INGRESSCOOKIE is used");
            "INGRESSCOOKIE".to_owned()
        }
    };
    // Attribute values: visible characters without `;` (RFC 6265 §4.1.1).
    let attribute_ok = |v: &str| {
        v.bytes()
            .all(|b| (0x21..0x7f).contains(&b) && b != b';' && b != b',')
    };
    let path = match r.get("session-cookie-path") {
        None => None,
        Some(v) if v.value.starts_with('/') && attribute_ok(v.value) => Some(v.value.to_owned()),
        Some(v) => {
            r.invalid(&v, "is not a cookie path", "the route's path is used");
            None
        }
    };
    let domain = match r.get("session-cookie-domain") {
        None => None,
        Some(v)
            if attribute_ok(v.value)
                && v.value
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-') =>
        {
            Some(v.value.to_owned())
        }
        Some(v) => {
            r.invalid(&v, "is not a domain", "the cookie has no Domain");
            None
        }
    };
    let number = |r: &mut Reader<'_>, name: &'static str| match r.get(name) {
        None => None,
        Some(v) => match v.value.parse::<u64>() {
            Ok(n) => Some(n),
            Err(_) => {
                r.invalid(
                    &v,
                    "is not a number of seconds",
                    "the attribute is left out",
                );
                None
            }
        },
    };
    let max_age = number(r, "session-cookie-max-age");
    let expires = number(r, "session-cookie-expires");
    let secure = r.bool("session-cookie-secure").unwrap_or(false);
    let same_site = match r.get("session-cookie-samesite") {
        None => None,
        Some(v) => match v.value.to_ascii_lowercase().as_str() {
            "strict" => Some(SameSite::Strict),
            "lax" => Some(SameSite::Lax),
            "none" => Some(SameSite::None),
            _ => {
                r.invalid(
                    &v,
                    "is not None, Lax or Strict",
                    "the cookie has no SameSite",
                );
                None
            }
        },
    };
    let conditional_same_site_none = r
        .bool("session-cookie-conditional-samesite-none")
        .unwrap_or(false);
    let change_on_failure = r.bool("session-cookie-change-on-failure").unwrap_or(false);
    if path.is_none() && r.peek_bool("use-regex") {
        r.problems.push(Problem::new(
            r.source.clone(),
            Reason::InvalidAnnotation,
            String::from("session-cookie-path should be set when use-regex is true: the cookie's Path is the path pattern as written"),
        ));
    }
    Some(CookieAffinity {
        name,
        persistent,
        path,
        domain,
        max_age,
        expires,
        secure,
        same_site,
        conditional_same_site_none,
        change_on_failure,
    })
}

/// `upstream-hash-by` (+ `-subset`, `-subset-size`), and the name it was found under.
fn hash_by<'a>(r: &mut Reader<'a>) -> Option<(HashBy, &'a str)> {
    let subset = r.bool("upstream-hash-by-subset") == Some(true);
    let size = match r.get("upstream-hash-by-subset-size") {
        None => 3,
        Some(v) => match v.value.parse::<usize>() {
            Ok(n) if n > 0 => n,
            _ => {
                r.invalid(&v, "is not a positive number", "3 is used");
                3
            }
        },
    };
    let v = r.get("upstream-hash-by")?;
    match parse_hash_key(v.value) {
        Ok(pieces) => Some((
            HashBy {
                key: v.value.to_owned(),
                pieces,
                subset: subset.then_some(size),
            },
            v.full,
        )),
        Err(why) => {
            r.invalid(&v, &why, "requests are balanced without it");
            None
        }
    }
}

/// An nginx expression of text and variables (`$request_uri`, `${cookie_id}-x`); only
/// the variables a request carries are understood.
pub fn parse_hash_key(v: &str) -> Result<Vec<HashPiece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = v;
    while let Some(at) = rest.find('$') {
        text.push_str(&rest[..at]);
        rest = &rest[at + 1..];
        let (name, after) = match rest.strip_prefix('{') {
            Some(braced) => match braced.split_once('}') {
                Some((name, after)) => (name, after),
                None => return Err("has a ${ without its }".into()),
            },
            None => {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            }
        };
        let piece = match name {
            "request_uri" => HashPiece::RequestUri,
            "uri" | "document_uri" => HashPiece::Uri,
            "args" | "query_string" => HashPiece::Args,
            "remote_addr" | "binary_remote_addr" => HashPiece::RemoteAddr,
            "host" | "server_name" | "http_host" => HashPiece::Host,
            "request_method" => HashPiece::Method,
            "scheme" => HashPiece::Scheme,
            _ => {
                if let Some(h) = name.strip_prefix("http_").filter(|h| !h.is_empty()) {
                    let header = h.to_ascii_lowercase().replace('_', "-");
                    HashPiece::Header(
                        http::HeaderName::try_from(header)
                            .map_err(|_| format!("${name} is not a header"))?,
                    )
                } else if let Some(c) = name.strip_prefix("cookie_").filter(|c| !c.is_empty()) {
                    HashPiece::Cookie(c.to_owned())
                } else if let Some(a) = name.strip_prefix("arg_").filter(|a| !a.is_empty()) {
                    HashPiece::Arg(a.to_owned())
                } else {
                    return Err(format!(
                        "uses ${name}, which wicket does not know (request_uri, uri, args, remote_addr, host, request_method, scheme, http_*, cookie_*, arg_*)"
                    ));
                }
            }
        };
        if !text.is_empty() {
            pieces.push(HashPiece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = after;
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(HashPiece::Text(text));
    }
    if !pieces.iter().any(|p| !matches!(p, HashPiece::Text(_))) {
        return Err("has no variable: every request would go to the same pod".into());
    }
    Ok(pieces)
}

/// `upstream-vhost`.
fn upstream(r: &mut Reader<'_>, policy: &mut Policy) {
    if let Some(v) = r.get("upstream-vhost") {
        let plain = !v.value.contains('$') && crate::proxy::route::normalize_host(v.value).is_ok();
        match (plain, HeaderValue::from_str(v.value)) {
            (true, Ok(host)) => policy.upstream_vhost = Some(host),
            _ => r.invalid(
                &v,
                "is not a host name (nginx variables are not expanded)",
                "the client's Host is sent",
            ),
        }
    }
}

#[cfg(test)]
mod tests;
