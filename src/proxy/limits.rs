//! The request-limits phase: what a request head and body may be before anything of them
//! is sent to a pod.
//!
//! * The request target: at most [`MAX_URI`] bytes (414, as nginx's 8 KiB request-line
//!   buffer). hyper refuses heads that do not fit its buffer with 431 before this runs.
//! * Each header field at most [`MAX_FIELD`] bytes, the whole head at most [`MAX_HEAD`]
//!   (431; nginx: 8 KiB per field, 32 KiB in all, answering 400).
//! * Framing: one `Transfer-Encoding: chunked` at most (two are a smuggling attempt: 400;
//!   another coding: 501, as nginx); exactly one `Host` in HTTP/1.1 (RFC 9112 §3.2), and in
//!   HTTP/2 a `host` field that agrees with `:authority` (RFC 9113 §8.3.1).
//! * The body: at most `--max-request-body` bytes. A `Content-Length` above it is refused
//!   with 413 before anything is sent; a chunked body is counted as it streams
//!   (`body.rs`).

use http::header::{HOST, TRANSFER_ENCODING};
use http::{Request, Version};
use http_body::Body;

use super::error::ProxyError;
use super::headers::{self, Scan};

/// Longest request target (path and query), as nginx's request-line buffer.
pub const MAX_URI: usize = 8 * 1024;
/// Longest header field, name and value.
pub const MAX_FIELD: usize = 8 * 1024;
/// All header fields together.
pub const MAX_HEAD: usize = 64 * 1024;
/// `--max-request-body` default: ingress-nginx's `proxy-body-size`.
pub const DEFAULT_MAX_BODY: u64 = 1024 * 1024;

/// Checks a request head; `scan` is [`headers::scan`] of it.
pub fn check_head<B>(req: &Request<B>, scan: &Scan) -> Result<(), ProxyError> {
    let target = req.uri().path_and_query().map_or(0, |p| p.as_str().len());
    if target > MAX_URI {
        return Err(ProxyError::UriTooLong);
    }
    if scan.largest_field > MAX_FIELD {
        return Err(ProxyError::HeadTooLarge(
            "a header field is larger than 8 KiB",
        ));
    }
    if scan.total > MAX_HEAD {
        return Err(ProxyError::HeadTooLarge(
            "the request headers are larger than 64 KiB",
        ));
    }
    if scan.transfer_encodings > 0 {
        check_transfer_encoding(req, scan)?;
    }
    check_host(req, scan)
}

fn check_transfer_encoding<B>(req: &Request<B>, scan: &Scan) -> Result<(), ProxyError> {
    if scan.transfer_encodings > 1 {
        return Err(ProxyError::BadRequest(
            "more than one Transfer-Encoding header",
        ));
    }
    let Some(value) = req.headers().get(TRANSFER_ENCODING) else {
        return Ok(());
    };
    if headers::is_plain_chunked(value) {
        return Ok(());
    }
    let chunked = value
        .as_bytes()
        .split(|&b| b == b',')
        .filter(|c| c.trim_ascii().eq_ignore_ascii_case(b"chunked"))
        .count();
    if chunked > 1 {
        Err(ProxyError::BadRequest("chunked applied more than once"))
    } else {
        Err(ProxyError::NotImplemented("unsupported Transfer-Encoding"))
    }
}

fn check_host<B>(req: &Request<B>, scan: &Scan) -> Result<(), ProxyError> {
    if scan.hosts > 1 {
        return Err(ProxyError::BadRequest("more than one Host header"));
    }
    match req.version() {
        Version::HTTP_11 if scan.hosts == 0 => Err(ProxyError::BadRequest("missing Host header")),
        Version::HTTP_2 if scan.hosts == 1 => {
            let authority = req.uri().authority().map(|a| a.as_str().as_bytes());
            let host = req.headers().get(HOST).map(|h| h.as_bytes());
            match (authority, host) {
                (Some(a), Some(h)) if !a.eq_ignore_ascii_case(h) => {
                    Err(ProxyError::BadRequest(":authority and host disagree"))
                }
                _ => Ok(()),
            }
        }
        _ => Ok(()),
    }
}

/// Refuses a body whose declared length is over `max` (413) before anything is sent.
pub fn check_declared_body<B: Body>(body: &B, max: Option<u64>) -> Result<(), ProxyError> {
    match max {
        Some(max) if body.size_hint().lower() > max => Err(ProxyError::BodyTooLarge),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http_body_util::Full;

    fn check(req: Request<()>) -> Result<(), u16> {
        let scan = headers::scan(req.headers());
        check_head(&req, &scan).map_err(|e| e.status().as_u16())
    }

    fn get(uri: &str) -> http::request::Builder {
        Request::get(uri).header("host", "a.test")
    }

    #[test]
    fn a_long_target_gets_414_and_a_long_field_431() {
        assert_eq!(check(get("/ok").body(()).unwrap()), Ok(()));
        let long = format!("/{}", "a".repeat(MAX_URI));
        assert_eq!(check(get(&long).body(()).unwrap()), Err(414));
        let big = "b".repeat(MAX_FIELD);
        assert_eq!(
            check(get("/").header("x-big", &big).body(()).unwrap()),
            Err(431)
        );
        let mut many = get("/");
        for i in 0..10 {
            many = many.header(format!("x-{i}"), "c".repeat(7 * 1024));
        }
        assert_eq!(check(many.body(()).unwrap()), Err(431));
    }

    #[test]
    fn transfer_encoding_other_than_one_chunked_is_refused() {
        let te = |values: &[&str]| {
            let mut b = get("/");
            for v in values {
                b = b.header("transfer-encoding", *v);
            }
            check(b.body(()).unwrap())
        };
        assert_eq!(te(&["chunked"]), Ok(()));
        assert_eq!(te(&["Chunked "]), Ok(()));
        assert_eq!(te(&["chunked", "chunked"]), Err(400));
        assert_eq!(te(&["chunked, chunked"]), Err(400));
        assert_eq!(te(&["gzip, chunked"]), Err(501));
    }

    #[test]
    fn http11_needs_exactly_one_host_and_http2_an_agreeing_one() {
        assert_eq!(check(Request::get("/").body(()).unwrap()), Err(400));
        let two = get("/").header("host", "b.test").body(()).unwrap();
        assert_eq!(check(two), Err(400));
        // HTTP/1.0 may omit it.
        let old = Request::get("/")
            .version(Version::HTTP_10)
            .body(())
            .unwrap();
        assert_eq!(check(old), Ok(()));
        let h2 = |host: Option<&str>| {
            let mut b = Request::get("https://app.example/x").version(Version::HTTP_2);
            if let Some(h) = host {
                b = b.header("host", h);
            }
            check(b.body(()).unwrap())
        };
        assert_eq!(h2(None), Ok(()));
        assert_eq!(h2(Some("APP.example")), Ok(()));
        assert_eq!(h2(Some("evil.example")), Err(400));
    }

    #[test]
    fn a_declared_body_over_the_limit_is_refused() {
        let body = Full::new(bytes::Bytes::from(vec![0u8; 2048]));
        assert!(check_declared_body(&body, Some(4096)).is_ok());
        assert!(check_declared_body(&body, None).is_ok());
        let err = check_declared_body(&body, Some(1024)).unwrap_err();
        assert_eq!(err.status().as_u16(), 413);
    }
}
