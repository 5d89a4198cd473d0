//! External auth (`auth-url` and its companions, INGRESS-NGINX.md §C3): what the control
//! plane compiles from the annotations. The request path (proxy/external_auth.rs) asks the
//! auth service before each request of the route.
//!
//! URLs may use the nginx variables the oauth2-proxy recipes use (`$host`, `$scheme`,
//! `$request_uri`, `$escaped_request_uri`, ...): they are parsed into pieces once, and any
//! other variable is refused, so no annotation text is ever interpreted at request time.

use std::fmt;

use http::{HeaderName, HeaderValue, Method};
use serde::{Serialize, Serializer};

/// A piece of an `auth-url` or `auth-signin` value.
#[derive(Clone, Debug, PartialEq, Eq)]
enum Piece {
    Text(String),
    /// `$host`, `$http_host`, `$best_http_host`, `$server_name`: the request's host.
    Host,
    /// `$scheme`.
    Scheme,
    /// `$request_uri`: path and query as sent.
    RequestUri,
    /// `$escaped_request_uri`: the same, percent-encoded for a query parameter.
    EscapedRequestUri,
    /// `$uri`: the path.
    Uri,
    /// `$args`, `$query_string`.
    Args,
}

/// What a request supplies to a URL template.
#[derive(Clone, Copy, Debug)]
pub struct RequestVars<'a> {
    pub host: &'a str,
    pub scheme: &'a str,
    /// Path and query as sent.
    pub request_uri: &'a str,
}

/// An `http(s)://` URL with nginx variables, checked when the annotation is read.
#[derive(Clone, PartialEq, Eq)]
pub struct UrlTemplate {
    text: String,
    pieces: Vec<Piece>,
}

impl fmt::Debug for UrlTemplate {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.text)
    }
}

impl Serialize for UrlTemplate {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&self.text)
    }
}

/// Characters an auth URL may hold (ingress-nginx's URL validator, INGRESS-NGINX.md §A1,
/// plus `%` escapes, `@`, `+`, `[]` for IPv6 hosts, and `{}` around variable names).
fn allowed(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"-._~/:?&=,$%@+[]{}".contains(&b)
}

impl UrlTemplate {
    pub fn parse(text: &str) -> Result<Self, String> {
        if let Some(bad) = text.bytes().find(|&b| !allowed(b)) {
            return Err(format!(
                "has a character URLs here may not hold ({:?})",
                bad as char
            ));
        }
        let mut pieces = Vec::new();
        let mut rest = text;
        let mut literal = String::new();
        while let Some(at) = rest.find('$') {
            literal.push_str(&rest[..at]);
            rest = &rest[at + 1..];
            let (name, after) = if let Some(inner) = rest.strip_prefix('{') {
                let end = inner.find('}').ok_or("has an unclosed ${")?;
                (&inner[..end], &inner[end + 1..])
            } else {
                let end = rest
                    .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_'))
                    .unwrap_or(rest.len());
                (&rest[..end], &rest[end..])
            };
            let piece = match name {
                "host" | "http_host" | "best_http_host" | "server_name" => Piece::Host,
                "scheme" | "pass_access_scheme" => Piece::Scheme,
                "request_uri" => Piece::RequestUri,
                "escaped_request_uri" => Piece::EscapedRequestUri,
                "uri" => Piece::Uri,
                "args" | "query_string" => Piece::Args,
                "" => return Err("has a $ without a variable name".into()),
                other => {
                    return Err(format!(
                        "uses ${other}, which wicket does not expand ($host, $scheme, $request_uri, $escaped_request_uri, $uri and $args only)"
                    ))
                }
            };
            if !literal.is_empty() {
                pieces.push(Piece::Text(std::mem::take(&mut literal)));
            }
            pieces.push(piece);
            rest = after;
        }
        literal.push_str(rest);
        if !literal.is_empty() {
            pieces.push(Piece::Text(literal));
        }
        let template = Self {
            text: text.to_owned(),
            pieces,
        };
        // What it becomes for a plain request must be a usable http(s) URL.
        let sample = template.expand(RequestVars {
            host: "example.com",
            scheme: "https",
            request_uri: "/",
        });
        let uri: http::Uri = sample.parse().map_err(|_| "is not a URL".to_owned())?;
        if !matches!(uri.scheme_str(), Some("http" | "https")) {
            return Err("is not an http:// or https:// URL".into());
        }
        let host = uri.host().unwrap_or("");
        let labels_ok =
            host.starts_with('[') || (!host.is_empty() && host.split('.').all(|l| !l.is_empty()));
        if !labels_ok {
            return Err("has no valid host".into());
        }
        Ok(template)
    }

    /// The URL for one request.
    pub fn expand(&self, vars: RequestVars<'_>) -> String {
        let mut out = String::with_capacity(self.text.len() + vars.request_uri.len());
        for piece in &self.pieces {
            match piece {
                Piece::Text(t) => out.push_str(t),
                Piece::Host => out.push_str(vars.host),
                Piece::Scheme => out.push_str(vars.scheme),
                Piece::RequestUri => out.push_str(vars.request_uri),
                Piece::EscapedRequestUri => escape_into(&mut out, vars.request_uri),
                Piece::Uri => out.push_str(
                    vars.request_uri
                        .split_once('?')
                        .map_or(vars.request_uri, |(p, _)| p),
                ),
                Piece::Args => {
                    out.push_str(vars.request_uri.split_once('?').map_or("", |(_, q)| q))
                }
            }
        }
        out
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }
}

/// Percent-encodes everything but the unreserved characters (RFC 3986 §2.3), as nginx's
/// `$escaped_request_uri` and ingress-nginx's `rd` parameter do (`/` too).
pub fn escape_into(out: &mut String, text: &str) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for b in text.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
            out.push(b as char);
        } else {
            out.push('%');
            out.push(HEX[usize::from(b >> 4)] as char);
            out.push(HEX[usize::from(b & 0xf)] as char);
        }
    }
}

/// The annotations of one Ingress's external auth.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ExternalAuth {
    /// `auth-url`.
    pub url: UrlTemplate,
    /// `auth-method` (GET when not set, as an nginx subrequest).
    #[serde(serialize_with = "method_text")]
    pub method: Method,
    /// `auth-method` was set: the auth request also carries `X-Original-URI` and
    /// `X-Scheme` (ingress-nginx).
    #[serde(skip)]
    pub method_set: bool,
    /// `auth-signin`: where a client the auth service answers 401 for is sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub signin: Option<UrlTemplate>,
    /// `auth-signin-redirect-param` (default `rd`).
    pub redirect_param: String,
    /// `auth-response-headers`: copied from the auth response onto the request to the pod.
    #[serde(skip_serializing_if = "Vec::is_empty", serialize_with = "header_names")]
    pub response_headers: Vec<HeaderName>,
    /// `auth-request-redirect`: the `X-Auth-Request-Redirect` value (else the request URI).
    #[serde(
        skip_serializing_if = "Option::is_none",
        serialize_with = "super::policy::opt_header_text"
    )]
    pub request_redirect: Option<HeaderValue>,
    /// `auth-always-set-cookie`: the auth response's cookies on every answer, not only
    /// successful ones.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub always_set_cookie: bool,
    /// `auth-cache-key` and `auth-cache-duration`: answers remembered per key.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache: Option<AuthCache>,
    /// `auth-proxy-set-headers`: more headers for the auth request, from a ConfigMap.
    #[serde(
        skip_serializing_if = "Vec::is_empty",
        serialize_with = "super::policy::header_pairs"
    )]
    pub extra_headers: Vec<(HeaderName, HeaderValue)>,
}

/// Which answers of the auth service are remembered, for how long, under which key.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct AuthCache {
    /// As written (`$cookie__oauth2_proxy`).
    pub key: String,
    #[serde(skip)]
    pub pieces: Vec<super::policy::HashPiece>,
    /// The statuses remembered (`auth-cache-duration`, default `200 202 401`).
    pub statuses: Vec<u16>,
    #[serde(serialize_with = "secs")]
    pub duration: std::time::Duration,
}

fn secs<S: Serializer>(d: &std::time::Duration, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_u64(d.as_secs())
}

impl AuthCache {
    /// `auth-cache-duration` as nginx's `proxy_cache_valid`: status codes, then a time
    /// (`30s`, `5m`, `1h`, `1d`); codes left out mean 200, 301 and 302.
    pub fn parse_duration(text: &str) -> Result<(Vec<u16>, std::time::Duration), String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (time, codes) = words.split_last().ok_or("is empty")?;
        let (number, unit) = time.split_at(
            time.find(|c: char| !c.is_ascii_digit())
                .unwrap_or(time.len()),
        );
        let n: u64 = number
            .parse()
            .map_err(|_| format!("{time:?} is not a time"))?;
        let seconds = match unit {
            "" | "s" => n,
            "m" => n * 60,
            "h" => n * 3600,
            "d" => n * 86_400,
            _ => return Err(format!("{time:?} is not a time (s, m, h, d)")),
        };
        let mut statuses = Vec::new();
        for code in codes {
            match code.parse::<u16>() {
                Ok(c) if (100..=599).contains(&c) => statuses.push(c),
                _ => return Err(format!("{code:?} is not a status code")),
            }
        }
        if statuses.is_empty() {
            statuses = vec![200, 301, 302];
        }
        Ok((statuses, std::time::Duration::from_secs(seconds)))
    }
}

fn method_text<S: Serializer>(m: &Method, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(m.as_str())
}

fn header_names<S: Serializer>(v: &[HeaderName], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(v.iter().map(HeaderName::as_str))
}

#[cfg(test)]
mod tests {
    use super::*;

    const VARS: RequestVars<'static> = RequestVars {
        host: "app.example",
        scheme: "https",
        request_uri: "/a b/?x=1&y=2",
    };

    #[test]
    fn the_oauth2_proxy_recipes_expand() {
        let url = UrlTemplate::parse("https://$host/oauth2/auth").unwrap();
        assert_eq!(url.expand(VARS), "https://app.example/oauth2/auth");
        let signin =
            UrlTemplate::parse("https://$host/oauth2/start?rd=$escaped_request_uri").unwrap();
        assert_eq!(
            signin.expand(VARS),
            "https://app.example/oauth2/start?rd=%2Fa%20b%2F%3Fx%3D1%26y%3D2"
        );
        let braces = UrlTemplate::parse("http://${host}:4180/auth?u=$uri&q=$args").unwrap();
        assert_eq!(
            braces.expand(VARS),
            "http://app.example:4180/auth?u=/a b/&q=x=1&y=2"
        );
        let plain =
            UrlTemplate::parse("http://oauth2-proxy.auth.svc.cluster.local:4180/oauth2/auth")
                .unwrap();
        assert_eq!(plain.pieces.len(), 1);
    }

    #[test]
    fn cache_durations_read_as_nginx_proxy_cache_valid() {
        let (codes, d) = AuthCache::parse_duration("200 202 401 5m").unwrap();
        assert_eq!((codes, d.as_secs()), (vec![200, 202, 401], 300));
        let (codes, d) = AuthCache::parse_duration("30s").unwrap();
        assert_eq!((codes, d.as_secs()), (vec![200, 301, 302], 30));
        assert_eq!(
            AuthCache::parse_duration("200 1h").unwrap().1.as_secs(),
            3600
        );
        for bad in ["", "200 soon", "2000 5m", "200 5w"] {
            assert!(AuthCache::parse_duration(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn what_cannot_be_a_safe_url_is_refused() {
        for (text, why) in [
            ("https://invalid..auth.url", "no valid host"),
            ("ftp://auth.example/", "http:// or https://"),
            ("https://auth.example/$remote_user", "$remote_user"),
            ("https://auth.example/;proxy_pass", "character"),
            ("https://auth.example/\"x", "character"),
            ("https://auth.example/ x", "character"),
            ("https://auth.example/${host", "unclosed"),
            ("/just/a/path", "http:// or https://"),
        ] {
            let err = UrlTemplate::parse(text).unwrap_err();
            assert!(err.contains(why), "{text}: {err}");
        }
    }
}
