//! From a request to the routing key: the normalised host, and a path that is safe to match.
//!
//! Host: `:authority` (HTTP/2, or an absolute-form URI) else the `Host` header; strip the
//! port, lowercase, strip one trailing dot. Anything a DNS name or IP literal cannot hold is
//! a 400, so a hostile Host never reaches the lookup.
//!
//! Path: dot-segments (`/a/../b`, also percent-encoded) are refused with 400. Browsers and
//! HTTP clients remove them before sending; a request that still has them is trying to
//! match one rule and be served by another (path confusion), so it is not forwarded.

use std::borrow::Cow;

use http::header::HOST;
use http::{Request, Version};

use super::error::ProxyError;

/// Longest host we accept: 253 for the name, plus `:` and a port.
const MAX_HOST_LEN: usize = 253 + 6;

/// The host as the client sent it (with any port), for `X-Forwarded-Host` and logs.
pub fn raw_host<B>(req: &Request<B>) -> Result<Option<&str>, ProxyError> {
    if let Some(authority) = req.uri().authority() {
        return Ok(Some(authority.as_str()));
    }
    let mut hosts = req.headers().get_all(HOST).iter();
    let Some(host) = hosts.next() else {
        return Ok(None);
    };
    if hosts.next().is_some() {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    host.to_str()
        .map(Some)
        .map_err(|_| ProxyError::BadRequest("Host header is not ASCII"))
}

/// The routing host of a request: lowercase, no port, no trailing dot. HTTP/1.0 requests
/// without a host get `""`, which only the rules without a host match.
pub fn request_host<B>(req: &Request<B>) -> Result<Cow<'_, str>, ProxyError> {
    match raw_host(req)? {
        Some(raw) => normalize_host(raw).map_err(ProxyError::BadRequest),
        None if req.version() <= Version::HTTP_10 => Ok(Cow::Borrowed("")),
        None => Err(ProxyError::BadRequest("missing Host header")),
    }
}

/// `Foo.Example.COM.:8080` → `foo.example.com`; `[::1]:80` → `[::1]`.
///
/// One pass over the bytes for the common case (a name), since this runs on every request.
pub fn normalize_host(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    if raw.is_empty() {
        return Err("empty Host header");
    }
    if raw.len() > MAX_HOST_LEN {
        return Err("Host header too long");
    }
    if raw.as_bytes()[0] == b'[' {
        return normalize_ip_literal(raw);
    }
    let bytes = raw.as_bytes();
    let mut end = bytes.len();
    let mut uppercase = false;
    let mut previous_dot = true; // a leading dot is an empty label
    for (i, &b) in bytes.iter().enumerate() {
        match b {
            b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' => previous_dot = false,
            b'A'..=b'Z' => {
                uppercase = true;
                previous_dot = false;
            }
            b'.' => {
                if previous_dot {
                    // `..`, or a leading dot; a lone trailing dot is checked below.
                    return Err("empty label in Host");
                }
                previous_dot = true;
            }
            b':' => {
                end = i;
                let port = &bytes[i + 1..];
                if port.is_empty() || port.len() > 5 || !port.iter().all(u8::is_ascii_digit) {
                    return Err("invalid port in Host");
                }
                break;
            }
            b'@' => return Err("userinfo is not allowed in Host"),
            _ => return Err("invalid characters in Host"),
        }
    }
    // One trailing dot is stripped (`example.com.`); the name before it must remain.
    let mut host = &raw[..end];
    if let Some(stripped) = host.strip_suffix('.') {
        host = stripped;
    }
    if host.is_empty() || host.ends_with('.') {
        return Err("empty Host header");
    }
    if uppercase {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

/// `[fd00::1]:8080` → `[fd00::1]`.
fn normalize_ip_literal(raw: &str) -> Result<Cow<'_, str>, &'static str> {
    let end = raw.find(']').ok_or("unterminated IPv6 literal in Host")?;
    let (host, rest) = raw.split_at(end + 1);
    let inner = &host[1..host.len() - 1];
    if inner.is_empty()
        || !inner
            .bytes()
            .all(|b| b.is_ascii_hexdigit() || b == b':' || b == b'.')
    {
        return Err("invalid IPv6 literal in Host");
    }
    if !rest.is_empty() {
        let port = rest.strip_prefix(':').ok_or("invalid Host")?;
        if port.is_empty() || port.len() > 5 || !port.bytes().all(|b| b.is_ascii_digit()) {
            return Err("invalid port in Host");
        }
    }
    if host.bytes().any(|b| b.is_ascii_uppercase()) {
        Ok(Cow::Owned(host.to_ascii_lowercase()))
    } else {
        Ok(Cow::Borrowed(host))
    }
}

/// Refuses paths with dot-segments (`.` or `..`, literal or percent-encoded).
pub fn check_path(path: &str) -> Result<(), ProxyError> {
    // Fast path: nothing that could spell a dot.
    if !path.contains('.') && !path.contains('%') {
        return Ok(());
    }
    let dotted = path.split('/').any(|segment| {
        let decoded = segment.replace("%2e", ".").replace("%2E", ".");
        decoded == "." || decoded == ".."
    });
    if dotted {
        return Err(ProxyError::BadRequest("path contains dot-segments"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_are_lowercased_and_lose_port_and_trailing_dot() {
        assert_eq!(
            normalize_host("Foo.Example.COM.:8080").unwrap(),
            "foo.example.com"
        );
        assert_eq!(normalize_host("foo.com").unwrap(), "foo.com");
        assert!(matches!(
            normalize_host("foo.com").unwrap(),
            Cow::Borrowed(_)
        ));
        assert_eq!(normalize_host("[::1]:80").unwrap(), "[::1]");
        assert_eq!(normalize_host("[fd00::1]").unwrap(), "[fd00::1]");
        assert_eq!(normalize_host("10.0.0.1:8080").unwrap(), "10.0.0.1");
    }

    #[test]
    fn hostile_hosts_are_refused() {
        for bad in [
            "",
            "user:pass@example.com",
            "exa mple.com",
            "example.com:http",
            "example.com:",
            "example.com:123456",
            "[::1",
            "[::1]x",
            "[zz::1]",
            "exa/mple.com",
            ".",
            "a\\b",
            "a..",
            "a..b.com",
            ".a.com",
        ] {
            assert!(normalize_host(bad).is_err(), "{bad:?}");
        }
        assert!(normalize_host(&"a".repeat(300)).is_err());
    }

    #[test]
    fn missing_and_duplicate_hosts_are_bad_requests_on_http11() {
        let req = Request::builder().uri("/").body(()).unwrap();
        assert!(request_host(&req).is_err());
        let req = Request::builder()
            .uri("/")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).unwrap(), "");
        let req = Request::builder()
            .uri("/")
            .header("host", "a.com")
            .header("host", "b.com")
            .body(())
            .unwrap();
        assert!(request_host(&req).is_err());
    }

    #[test]
    fn the_authority_wins_over_the_host_header() {
        let req = Request::builder()
            .uri("http://Real.Example/x")
            .header("host", "other.example")
            .body(())
            .unwrap();
        assert_eq!(request_host(&req).unwrap(), "real.example");
    }

    #[test]
    fn dot_segments_are_refused_in_any_spelling() {
        for bad in ["/a/../b", "/..", "/a/.", "/a/%2e%2E/b", "/%2e/x", "/a/.%2e"] {
            assert!(check_path(bad).is_err(), "{bad}");
        }
        for good in [
            "/",
            "/a.b/c",
            "/.well-known/acme",
            "/a/...",
            "/%2f",
            "/v1.2/x",
        ] {
            assert!(check_path(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn random_bytes_never_panic_the_host_and_path_checks() {
        let mut rng = fastrand::Rng::with_seed(7);
        let alphabet = b"aZ09.-_:[]@%/\\ \t\x00\xff.:";
        for _ in 0..50_000 {
            let len = rng.usize(0..40);
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    if rng.bool() {
                        alphabet[rng.usize(0..alphabet.len())]
                    } else {
                        rng.u8(..)
                    }
                })
                .collect();
            let text = String::from_utf8_lossy(&bytes);
            if let Ok(host) = normalize_host(&text) {
                // Whatever is accepted is normalised: no uppercase, no trailing dot.
                assert!(!host.bytes().any(|b| b.is_ascii_uppercase()));
                assert!(!host.ends_with('.'));
            }
            let _ = check_path(&text);
        }
    }
}
