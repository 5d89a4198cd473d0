//! Header rewriting between client and pod.
//!
//! Requests reach the pod unchanged except: hop-by-hop headers go (`Connection` and what it
//! names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` unless
//! upgrading), and the `X-Forwarded-*` family, `X-Real-IP` and `X-Request-ID` are set.
//! Responses lose their hop-by-hop headers and get `Server: wicket` when the pod sent none.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, COOKIE, HOST, SERVER, TE, TRAILER,
    TRANSFER_ENCODING, UPGRADE,
};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// A client-supplied request id longer than this is replaced.
const MAX_REQUEST_ID_LEN: usize = 200;

/// Whether the request asks for an HTTP/1.1 protocol upgrade (WebSocket and the like).
pub fn is_upgrade_request(headers: &HeaderMap) -> bool {
    headers.contains_key(UPGRADE) && connection_has(headers, "upgrade")
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Hop-by-hop headers found in one pass over a header map.
#[derive(Default)]
struct HopByHop {
    connection: bool,
    keep_alive: bool,
    te: bool,
    trailer: bool,
    transfer_encoding: bool,
    upgrade: bool,
    /// `Proxy-*` and `Proxy` (httpoxy).
    proxy: bool,
}

impl HopByHop {
    fn scan(headers: &HeaderMap) -> Self {
        let mut found = Self::default();
        for name in headers.keys() {
            if name == CONNECTION {
                found.connection = true;
            } else if name == TE {
                found.te = true;
            } else if name == TRAILER {
                found.trailer = true;
            } else if name == TRANSFER_ENCODING {
                found.transfer_encoding = true;
            } else if name == UPGRADE {
                found.upgrade = true;
            } else if name == KEEP_ALIVE {
                found.keep_alive = true;
            } else if name.as_str().starts_with("proxy") {
                found.proxy |= name.as_str() == "proxy" || name.as_str().starts_with("proxy-");
            }
        }
        found
    }
}

/// Removes hop-by-hop headers. With `upgrade`, `Upgrade` and `Connection: upgrade` stay.
///
/// One pass over the names finds which are present; only those are removed. Most messages
/// have none, or only `Connection: keep-alive`, so this allocates nothing then.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    let found = HopByHop::scan(headers);
    // `Connection: keep-alive` (or `close`) alone names no further header: the usual case
    // for responses, decided without tokenising.
    let plain_connection = found.connection
        && headers.get_all(CONNECTION).iter().all(|v| {
            let v = v.as_bytes();
            v.eq_ignore_ascii_case(b"keep-alive") || v.eq_ignore_ascii_case(b"close")
        });
    if plain_connection {
        headers.remove(CONNECTION);
    } else if found.connection {
        // Headers named in Connection are hop-by-hop too; `keep-alive`, `close` and
        // `upgrade` are the usual tokens and name nothing removed below anyway.
        let named: Vec<HeaderName> = headers
            .get_all(CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .map(str::trim)
            .filter(|t| {
                !t.eq_ignore_ascii_case("keep-alive")
                    && !t.eq_ignore_ascii_case("close")
                    && !t.eq_ignore_ascii_case("upgrade")
            })
            .filter_map(|t| HeaderName::from_bytes(t.as_bytes()).ok())
            .collect();
        for name in named {
            headers.remove(name);
        }
        headers.remove(CONNECTION);
    }
    if found.keep_alive {
        headers.remove(&KEEP_ALIVE);
    }
    if found.te {
        headers.remove(TE);
    }
    if found.trailer {
        headers.remove(TRAILER);
    }
    if found.transfer_encoding {
        headers.remove(TRANSFER_ENCODING);
    }
    if found.upgrade && !upgrade {
        headers.remove(UPGRADE);
    }
    if found.proxy {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| k.as_str() == "proxy" || k.as_str().starts_with("proxy-"))
            .cloned()
            .collect();
        for name in proxy {
            headers.remove(name);
        }
    }
    if upgrade {
        headers.insert(CONNECTION, HeaderValue::from_static("upgrade"));
    }
}

/// What the `X-Forwarded-*` headers say about the downstream connection.
pub struct Forwarded<'a> {
    /// The client address as text ([`ip_value`]).
    pub client: &'a HeaderValue,
    pub proto: &'static str,
    /// The port the client connected to.
    pub port: &'a HeaderValue,
    /// The request's host as the client sent it (Host header or `:authority`).
    pub host: Option<HeaderValue>,
}

/// An IP address as a header value (made once per connection).
pub fn ip_value(ip: IpAddr) -> HeaderValue {
    let mut text = String::with_capacity(46);
    let _ = write!(text, "{ip}");
    HeaderValue::from_maybe_shared(bytes::Bytes::from(text))
        .unwrap_or_else(|_| HeaderValue::from_static("unknown"))
}

/// Sets the forwarding headers (and an `X-Request-ID` when the client sent no usable one).
pub fn set_forwarded(headers: &mut HeaderMap, fwd: Forwarded<'_>) {
    // Room for the six headers below, so the map does not grow (and rehash) one at a time.
    headers.reserve(6);
    // X-Forwarded-For: append the client to whatever chain came in, as one header.
    let xff = if headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = String::new();
        for value in headers.get_all(&X_FORWARDED_FOR).iter() {
            if let Ok(v) = value.to_str() {
                chain.push_str(v.trim());
                chain.push_str(", ");
            }
        }
        chain.push_str(fwd.client.to_str().unwrap_or_default());
        HeaderValue::try_from(chain).unwrap_or_else(|_| fwd.client.clone())
    } else {
        fwd.client.clone()
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), fwd.client.clone());
    headers.insert(
        X_FORWARDED_PROTO.clone(),
        HeaderValue::from_static(fwd.proto),
    );
    headers.insert(X_FORWARDED_PORT.clone(), fwd.port.clone());
    match fwd.host {
        Some(host) => {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
        None => {
            headers.remove(&X_FORWARDED_HOST);
        }
    }

    let keep = headers
        .get(&X_REQUEST_ID)
        .is_some_and(|v| valid_request_id(v.as_bytes()));
    if !keep {
        headers.insert(X_REQUEST_ID.clone(), new_request_id());
    }
}

fn valid_request_id(id: &[u8]) -> bool {
    !id.is_empty() && id.len() <= MAX_REQUEST_ID_LEN && id.iter().all(|b| b.is_ascii_graphic())
}

/// 128 random bits as 32 hex digits (fastrand: no syscall per request).
fn new_request_id() -> HeaderValue {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let mut bits = fastrand::u128(..);
    let mut id = [0u8; 32];
    for digit in id.iter_mut().rev() {
        *digit = HEX[(bits & 0xf) as usize];
        bits >>= 4;
    }
    HeaderValue::from_bytes(&id).unwrap_or_else(|_| HeaderValue::from_static("0"))
}

/// HTTP/2 may split `Cookie` into several fields; HTTP/1.1 wants one, joined with "; "
/// (RFC 9113 §8.2.3).
pub fn join_cookies(headers: &mut HeaderMap) {
    let mut cookies = headers.get_all(COOKIE).iter();
    let (Some(first), Some(_)) = (cookies.next(), cookies.next()) else {
        return;
    };
    let mut joined = first.as_bytes().to_vec();
    for value in headers.get_all(COOKIE).iter().skip(1) {
        joined.extend_from_slice(b"; ");
        joined.extend_from_slice(value.as_bytes());
    }
    if let Ok(v) = HeaderValue::from_bytes(&joined) {
        headers.insert(COOKIE, v);
    }
}

/// An HTTP/2 request has `:authority` and maybe no `Host`; HTTP/1.1 needs `Host`.
pub fn ensure_host(headers: &mut HeaderMap, authority: Option<&str>) {
    if headers.contains_key(HOST) {
        return;
    }
    if let Some(v) = authority.and_then(|a| HeaderValue::from_str(a).ok()) {
        headers.insert(HOST, v);
    }
}

/// Response headers towards the client.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: bool) {
    remove_hop_by_hop(headers, upgrade);
    if !headers.contains_key(SERVER) {
        headers.insert(SERVER, HeaderValue::from_static("wicket"));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                HeaderValue::from_str(v).unwrap(),
            );
        }
        h
    }

    #[test]
    fn hop_by_hop_headers_and_those_named_in_connection_are_removed() {
        let mut h = map(&[
            ("connection", "keep-alive, x-secret-hop"),
            ("x-secret-hop", "1"),
            ("keep-alive", "timeout=5"),
            ("te", "trailers"),
            ("trailer", "x-checksum"),
            ("transfer-encoding", "chunked"),
            ("upgrade", "websocket"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("proxy", "http://evil:3128"),
            ("x-kept", "yes"),
            ("authorization", "Bearer t"),
        ]);
        remove_hop_by_hop(&mut h, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["authorization", "x-kept"]);
    }

    #[test]
    fn an_upgrade_keeps_upgrade_and_connection_upgrade() {
        let mut h = map(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
        ]);
        assert!(is_upgrade_request(&h));
        remove_hop_by_hop(&mut h, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("x-hop"));
    }

    #[test]
    fn forwarded_headers_append_the_client_and_overwrite_the_rest() {
        let mut h = map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed"),
            ("x-real-ip", "1.1.1.1"),
        ]);
        let client = ip_value("192.0.2.9".parse().unwrap());
        let port = HeaderValue::from(8080u16);
        set_forwarded(
            &mut h,
            Forwarded {
                client: &client,
                proto: "http",
                port: &port,
                host: Some(HeaderValue::from_static("shop.example.com")),
            },
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.1.1, 192.0.2.9");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-real-ip"], "192.0.2.9");
    }

    #[test]
    fn a_valid_request_id_is_kept_and_a_bad_one_replaced() {
        let client = ip_value("::1".parse().unwrap());
        let port = HeaderValue::from(80u16);
        let fwd = || Forwarded {
            client: &client,
            proto: "http",
            port: &port,
            host: None,
        };
        let mut h = map(&[("x-request-id", "abc-123")]);
        set_forwarded(&mut h, fwd());
        assert_eq!(h["x-request-id"], "abc-123");
        let mut h = map(&[("x-request-id", &"x".repeat(500))]);
        set_forwarded(&mut h, fwd());
        let id = h["x-request-id"].clone();
        assert_eq!(id.len(), 32);
        assert!(id.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut a = HeaderMap::new();
        set_forwarded(&mut a, fwd());
        let mut b = HeaderMap::new();
        set_forwarded(&mut b, fwd());
        assert_ne!(a["x-request-id"], b["x-request-id"]);
    }

    #[test]
    fn split_cookies_are_joined_for_http1() {
        let mut h = map(&[("cookie", "a=1"), ("cookie", "b=2")]);
        join_cookies(&mut h);
        assert_eq!(h.get_all("cookie").iter().count(), 1);
        assert_eq!(h["cookie"], "a=1; b=2");
    }

    #[test]
    fn server_header_is_added_only_when_missing() {
        let mut h = HeaderMap::new();
        prepare_response(&mut h, false);
        assert_eq!(h["server"], "wicket");
        let mut h = map(&[("server", "gunicorn"), ("connection", "close")]);
        prepare_response(&mut h, false);
        assert_eq!(h["server"], "gunicorn");
        assert!(!h.contains_key("connection"));
    }
}
