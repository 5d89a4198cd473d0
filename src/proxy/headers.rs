//! Header rewriting between client and pod.
//!
//! Requests reach the pod unchanged except: hop-by-hop headers go (`Connection` and what it
//! names, `Keep-Alive`, `Proxy-*`, `TE`, `Trailer`, `Transfer-Encoding`, `HTTP2-Settings`,
//! `Upgrade` unless it is a WebSocket upgrade), header names with `_` go (nginx's default:
//! `X_Forwarded_For` would otherwise pass for `X-Forwarded-For` in many frameworks), and the
//! forwarding headers (`X-Forwarded-*`, `X-Real-IP`, `Forwarded`) are wicket's own unless
//! the peer is a trusted proxy. `X-Request-ID` is kept when sane, else made. Responses lose
//! their hop-by-hop headers and get `Server: wicket` when the pod sent none.
//!
//! One pass over the request head ([`scan`]) finds everything the limits and the rewrite
//! need, so a request without anything to fix costs one walk over its headers.

use std::fmt::Write as _;
use std::net::IpAddr;

use http::header::{
    HeaderMap, HeaderName, HeaderValue, CONNECTION, CONTENT_LENGTH, COOKIE, FORWARDED, HOST,
    SERVER, TE, TRAILER, TRANSFER_ENCODING, UPGRADE,
};

pub static X_FORWARDED_FOR: HeaderName = HeaderName::from_static("x-forwarded-for");
pub static X_FORWARDED_PROTO: HeaderName = HeaderName::from_static("x-forwarded-proto");
pub static X_FORWARDED_HOST: HeaderName = HeaderName::from_static("x-forwarded-host");
pub static X_FORWARDED_PORT: HeaderName = HeaderName::from_static("x-forwarded-port");
pub static X_FORWARDED_PREFIX: HeaderName = HeaderName::from_static("x-forwarded-prefix");
pub static X_REAL_IP: HeaderName = HeaderName::from_static("x-real-ip");
pub static X_REQUEST_ID: HeaderName = HeaderName::from_static("x-request-id");
static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");
static HTTP2_SETTINGS: HeaderName = HeaderName::from_static("http2-settings");

/// A client-supplied request id longer than this is replaced.
const MAX_REQUEST_ID_LEN: usize = 200;

/// The one protocol a client may upgrade to through wicket.
const WEBSOCKET: &[u8] = b"websocket";

/// What one pass over a request head found.
#[derive(Clone, Copy, Debug, Default)]
pub struct Scan {
    hop: HopByHop,
    /// `Host` fields.
    pub hosts: u8,
    /// `Transfer-Encoding` fields.
    pub transfer_encodings: u8,
    pub content_length: bool,
    /// A header name with `_`.
    pub underscore: bool,
    /// A `Forwarded` field (RFC 7239).
    pub forwarded: bool,
    /// The longest field, name and value.
    pub largest_field: usize,
    /// All fields, names and values.
    pub total: usize,
}

/// Hop-by-hop headers found in one pass over a header map.
#[derive(Clone, Copy, Debug, Default)]
struct HopByHop {
    connection: bool,
    keep_alive: bool,
    te: bool,
    trailer: bool,
    transfer_encoding: bool,
    upgrade: bool,
    http2_settings: bool,
    /// `Proxy-*` and `Proxy` (httpoxy).
    proxy: bool,
}

impl HopByHop {
    /// Notes `name` if it is hop-by-hop; true if it was.
    fn note(&mut self, name: &HeaderName) -> bool {
        if name == CONNECTION {
            self.connection = true;
        } else if name == TE {
            self.te = true;
        } else if name == TRAILER {
            self.trailer = true;
        } else if name == TRANSFER_ENCODING {
            self.transfer_encoding = true;
        } else if name == UPGRADE {
            self.upgrade = true;
        } else if name == KEEP_ALIVE {
            self.keep_alive = true;
        } else if name == HTTP2_SETTINGS {
            self.http2_settings = true;
        } else if is_proxy_header(name) {
            self.proxy = true;
        } else {
            return false;
        }
        true
    }

    fn of(headers: &HeaderMap) -> Self {
        let mut found = Self::default();
        for name in headers.keys() {
            found.note(name);
        }
        found
    }
}

fn is_proxy_header(name: &HeaderName) -> bool {
    let name = name.as_str();
    name.starts_with("proxy") && (name.len() == 5 || name.as_bytes()[5] == b'-')
}

/// One pass over a request's headers: hop-by-hop names, framing fields, sizes, and the
/// names the rewrite must look at.
pub fn scan(headers: &HeaderMap) -> Scan {
    let mut scan = Scan::default();
    for (name, value) in headers {
        let size = name.as_str().len() + value.len();
        scan.total += size;
        scan.largest_field = scan.largest_field.max(size);
        if scan.hop.note(name) {
            if name == TRANSFER_ENCODING {
                scan.transfer_encodings = scan.transfer_encodings.saturating_add(1);
            }
        } else if name == HOST {
            scan.hosts = scan.hosts.saturating_add(1);
        } else if name == CONTENT_LENGTH {
            scan.content_length = true;
        } else if name == FORWARDED {
            scan.forwarded = true;
        } else if name.as_str().as_bytes().contains(&b'_') {
            scan.underscore = true;
        }
    }
    scan
}

/// Whether the request asks for a WebSocket upgrade (`Connection: upgrade`, `Upgrade:
/// websocket`), the only protocol upgrade wicket relays. Anything else (`h2c` above all,
/// which would turn the connection into a tunnel wicket no longer routes) is stripped and
/// the request forwarded as a plain one.
pub fn is_websocket_upgrade(headers: &HeaderMap) -> bool {
    let mut upgrades = headers.get_all(UPGRADE).iter();
    let (Some(upgrade), None) = (upgrades.next(), upgrades.next()) else {
        return false;
    };
    upgrade
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(WEBSOCKET)
        && connection_has(headers, "upgrade")
}

/// Whether a 101 response switches to the protocol the client asked for (WebSocket).
pub fn switches_to_websocket(headers: &HeaderMap) -> bool {
    headers
        .get(UPGRADE)
        .is_some_and(|v| v.as_bytes().trim_ascii().eq_ignore_ascii_case(WEBSOCKET))
}

fn connection_has(headers: &HeaderMap, token: &str) -> bool {
    headers
        .get_all(CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|t| t.trim().eq_ignore_ascii_case(token))
}

/// Whether a `Transfer-Encoding` field is exactly `chunked` (what HTTP/1.1 requests may
/// carry; hyper has already decoded it).
pub fn is_plain_chunked(value: &HeaderValue) -> bool {
    value
        .as_bytes()
        .trim_ascii()
        .eq_ignore_ascii_case(b"chunked")
}

/// Removes a request's hop-by-hop headers (found by [`scan`]). With `upgrade` (a WebSocket
/// upgrade), `Upgrade` and `Connection: upgrade` stay.
pub fn remove_request_hop_by_hop(headers: &mut HeaderMap, scan: &Scan, upgrade: bool) {
    remove_found(headers, scan.hop, upgrade);
}

/// Removes hop-by-hop headers. With `upgrade`, `Upgrade` and `Connection: upgrade` stay.
///
/// One pass over the names finds which are present; only those are removed. Most messages
/// have none, or only `Connection: keep-alive`, so this allocates nothing then.
pub fn remove_hop_by_hop(headers: &mut HeaderMap, upgrade: bool) {
    remove_found(headers, HopByHop::of(headers), upgrade);
}

fn remove_found(headers: &mut HeaderMap, found: HopByHop, upgrade: bool) {
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
    if found.http2_settings {
        headers.remove(&HTTP2_SETTINGS);
    }
    if found.upgrade && !upgrade {
        headers.remove(UPGRADE);
    }
    if found.proxy {
        let proxy: Vec<HeaderName> = headers
            .keys()
            .filter(|k| is_proxy_header(k))
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

/// Drops every header whose name has an underscore.
pub fn remove_underscored(headers: &mut HeaderMap) {
    let names: Vec<HeaderName> = headers
        .keys()
        .filter(|k| k.as_str().as_bytes().contains(&b'_'))
        .cloned()
        .collect();
    for name in names {
        headers.remove(name);
    }
}

/// Writes `Content-Length` in its canonical form (`010` becomes `10`): the pod must read the
/// length wicket framed the body by, whatever digits the client used.
pub fn canonical_content_length(headers: &mut HeaderMap, length: Option<u64>) {
    match length {
        Some(length) => {
            headers.insert(CONTENT_LENGTH, HeaderValue::from(length));
        }
        None => {
            headers.remove(CONTENT_LENGTH);
        }
    }
}

/// What the forwarding headers say about the downstream connection.
pub struct Forwarded<'a> {
    /// The TCP (or PROXY protocol) peer as text ([`ip_value`]).
    pub peer: &'a HeaderValue,
    /// The client: the peer, or whom a trusted peer forwarded for.
    pub client: &'a HeaderValue,
    /// Whether the peer is a trusted proxy: its forwarding headers are kept and extended.
    pub trusted: bool,
    pub proto: &'static str,
    /// The port the client connected to.
    pub port: &'a HeaderValue,
    /// The request's host: the one it was routed by.
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
///
/// From an untrusted peer every forwarding header is wicket's own: `X-Forwarded-For` is the
/// peer alone, `Forwarded` is dropped. From a trusted proxy the `X-Forwarded-For` chain is
/// extended with the peer, and `X-Forwarded-Proto/-Host/-Port` and `Forwarded` are kept
/// when it sent them (it saw the client's connection; wicket saw only the proxy's).
pub fn set_forwarded(headers: &mut HeaderMap, fwd: Forwarded<'_>, scan: &Scan) {
    // Room for the six headers below, so the map does not grow (and rehash) one at a time.
    headers.reserve(6);
    let xff = if fwd.trusted && headers.contains_key(&X_FORWARDED_FOR) {
        let mut chain = String::new();
        for value in headers.get_all(&X_FORWARDED_FOR).iter() {
            if let Ok(v) = value.to_str() {
                chain.push_str(v.trim());
                chain.push_str(", ");
            }
        }
        chain.push_str(fwd.peer.to_str().unwrap_or_default());
        HeaderValue::try_from(chain).unwrap_or_else(|_| fwd.peer.clone())
    } else {
        fwd.peer.clone()
    };
    headers.insert(X_FORWARDED_FOR.clone(), xff);
    headers.insert(X_REAL_IP.clone(), fwd.client.clone());
    if fwd.trusted {
        if !headers.contains_key(&X_FORWARDED_PROTO) {
            headers.insert(
                X_FORWARDED_PROTO.clone(),
                HeaderValue::from_static(fwd.proto),
            );
        }
        if !headers.contains_key(&X_FORWARDED_PORT) {
            headers.insert(X_FORWARDED_PORT.clone(), fwd.port.clone());
        }
        if let (false, Some(host)) = (headers.contains_key(&X_FORWARDED_HOST), fwd.host) {
            headers.insert(X_FORWARDED_HOST.clone(), host);
        }
    } else {
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
        if scan.forwarded {
            headers.remove(FORWARDED);
        }
    }

    ensure_request_id(headers);
}

/// Keeps a valid `X-Request-ID` of the client's, else sets a new one.
pub fn ensure_request_id(headers: &mut HeaderMap) {
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

/// The `Host` the pod gets: the authority the request was routed by (an absolute-form
/// HTTP/1.1 target's, or HTTP/2's `:authority`), replacing any `Host` field, so the pod
/// never sees another host than the one wicket routed and logged.
pub fn set_host(headers: &mut HeaderMap, authority: &str) {
    if let Ok(v) = HeaderValue::from_str(authority) {
        headers.insert(HOST, v);
    }
}

/// Response headers towards the client.
pub fn prepare_response(headers: &mut HeaderMap, upgrade: bool) {
    let found = HopByHop::of(headers);
    if found.transfer_encoding {
        // The pod framed its body with Transfer-Encoding: a Content-Length beside it is
        // wrong, and a proxy must not pass it on (RFC 9112 §6.3); the client gets the body
        // re-framed, chunked.
        headers.remove(CONTENT_LENGTH);
    }
    remove_found(headers, found, upgrade);
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
            ("http2-settings", "AAMAAABkAARAAAAAAAIAAAAA"),
            ("proxy-authorization", "Basic abc"),
            ("proxy-connection", "keep-alive"),
            ("proxy", "http://evil:3128"),
            ("proxyish", "kept: not a proxy header"),
            ("x-kept", "yes"),
            ("authorization", "Bearer t"),
        ]);
        let found = scan(&h);
        remove_request_hop_by_hop(&mut h, &found, false);
        let mut left: Vec<&str> = h.keys().map(|k| k.as_str()).collect();
        left.sort_unstable();
        assert_eq!(left, vec!["authorization", "proxyish", "x-kept"]);
    }

    #[test]
    fn only_a_websocket_upgrade_is_relayed() {
        let mut h = map(&[
            ("connection", "Upgrade, x-hop"),
            ("upgrade", "websocket"),
            ("x-hop", "1"),
        ]);
        assert!(is_websocket_upgrade(&h));
        let found = scan(&h);
        remove_request_hop_by_hop(&mut h, &found, true);
        assert_eq!(h["upgrade"], "websocket");
        assert_eq!(h["connection"], "upgrade");
        assert!(!h.contains_key("x-hop"));

        for refused in [
            map(&[
                ("connection", "Upgrade, HTTP2-Settings"),
                ("upgrade", "h2c"),
            ]),
            map(&[("connection", "upgrade"), ("upgrade", "websocket, h2c")]),
            map(&[
                ("connection", "upgrade"),
                ("upgrade", "websocket"),
                ("upgrade", "h2c"),
            ]),
            map(&[("upgrade", "websocket")]),
        ] {
            assert!(!is_websocket_upgrade(&refused), "{refused:?}");
        }
    }

    #[test]
    fn scan_finds_framing_fields_sizes_and_underscores() {
        let h = map(&[
            ("host", "a.test"),
            ("transfer-encoding", "chunked"),
            ("transfer-encoding", "chunked"),
            ("content-length", "010"),
            ("x_forwarded_for", "1.2.3.4"),
            ("forwarded", "for=1.2.3.4"),
            ("x-big", &"b".repeat(100)),
        ]);
        let s = scan(&h);
        assert_eq!(s.hosts, 1);
        assert_eq!(s.transfer_encodings, 2);
        assert!(s.content_length && s.underscore && s.forwarded);
        assert_eq!(s.largest_field, 105);
        assert!(s.total > 105);
        let clean = scan(&map(&[("host", "a.test"), ("accept", "*/*")]));
        assert!(!clean.underscore && !clean.forwarded && !clean.content_length);
    }

    #[test]
    fn underscored_names_are_dropped() {
        let mut h = map(&[("x_forwarded_for", "1.2.3.4"), ("x-ok", "1"), ("a_b", "2")]);
        remove_underscored(&mut h);
        assert_eq!(
            h.keys().map(|k| k.as_str()).collect::<Vec<_>>(),
            vec!["x-ok"]
        );
    }

    fn spoofed() -> HeaderMap {
        map(&[
            ("x-forwarded-for", "203.0.113.7"),
            ("x-forwarded-for", "10.1.1.1"),
            ("x-forwarded-proto", "https"),
            ("x-forwarded-host", "spoofed"),
            ("x-forwarded-port", "1"),
            ("x-real-ip", "1.1.1.1"),
            ("forwarded", "for=1.1.1.1"),
        ])
    }

    #[test]
    fn an_untrusted_peer_gets_every_forwarding_header_replaced() {
        let mut h = spoofed();
        let found = scan(&h);
        let client = ip_value("192.0.2.9".parse().unwrap());
        let port = HeaderValue::from(8080u16);
        set_forwarded(
            &mut h,
            Forwarded {
                peer: &client,
                client: &client,
                trusted: false,
                proto: "http",
                port: &port,
                host: Some(HeaderValue::from_static("shop.example.com")),
            },
            &found,
        );
        assert_eq!(h["x-forwarded-for"], "192.0.2.9");
        assert_eq!(h.get_all("x-forwarded-for").iter().count(), 1);
        assert_eq!(h["x-forwarded-proto"], "http");
        assert_eq!(h["x-forwarded-host"], "shop.example.com");
        assert_eq!(h["x-forwarded-port"], "8080");
        assert_eq!(h["x-real-ip"], "192.0.2.9");
        assert!(!h.contains_key("forwarded"));
    }

    #[test]
    fn a_trusted_proxy_has_its_chain_extended_and_its_headers_kept() {
        let mut h = spoofed();
        let found = scan(&h);
        let peer = ip_value("10.0.0.2".parse().unwrap());
        let client = ip_value("10.1.1.1".parse().unwrap());
        let port = HeaderValue::from(8080u16);
        set_forwarded(
            &mut h,
            Forwarded {
                peer: &peer,
                client: &client,
                trusted: true,
                proto: "http",
                port: &port,
                host: Some(HeaderValue::from_static("shop.example.com")),
            },
            &found,
        );
        assert_eq!(h["x-forwarded-for"], "203.0.113.7, 10.1.1.1, 10.0.0.2");
        assert_eq!(h["x-real-ip"], "10.1.1.1");
        assert_eq!(h["x-forwarded-proto"], "https");
        assert_eq!(h["x-forwarded-host"], "spoofed");
        assert_eq!(h["x-forwarded-port"], "1");
        assert_eq!(h["forwarded"], "for=1.1.1.1");
    }

    #[test]
    fn a_valid_request_id_is_kept_and_a_bad_one_replaced() {
        let client = ip_value("::1".parse().unwrap());
        let port = HeaderValue::from(80u16);
        let fwd = || Forwarded {
            peer: &client,
            client: &client,
            trusted: false,
            proto: "http",
            port: &port,
            host: None,
        };
        let none = Scan::default();
        let mut h = map(&[("x-request-id", "abc-123")]);
        set_forwarded(&mut h, fwd(), &none);
        assert_eq!(h["x-request-id"], "abc-123");
        let mut h = map(&[("x-request-id", &"x".repeat(500))]);
        set_forwarded(&mut h, fwd(), &none);
        let id = h["x-request-id"].clone();
        assert_eq!(id.len(), 32);
        assert!(id.to_str().unwrap().bytes().all(|b| b.is_ascii_hexdigit()));
        let mut a = HeaderMap::new();
        set_forwarded(&mut a, fwd(), &none);
        let mut b = HeaderMap::new();
        set_forwarded(&mut b, fwd(), &none);
        assert_ne!(a["x-request-id"], b["x-request-id"]);
    }

    #[test]
    fn content_length_is_rewritten_canonically() {
        let mut h = map(&[("content-length", "010")]);
        canonical_content_length(&mut h, Some(10));
        assert_eq!(h["content-length"], "10");
        canonical_content_length(&mut h, None);
        assert!(!h.contains_key("content-length"));
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
