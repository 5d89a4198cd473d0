//! Which pod a request of a route with traffic annotations goes to: cookie affinity
//! (`affinity: cookie`, `session-cookie-*`), `upstream-hash-by`, `load-balance: ewma`
//! (INGRESS-NGINX.md §C4), turned into a [`Steer`] for the balancer, and the session cookie
//! set on the response.
//!
//! The cookie's value never names a pod's address: in balanced mode it is a random key
//! hashed onto the pods, in persistent mode a keyed hash of the pod (`Balancer::token`).

use std::hash::{BuildHasher, Hasher};
use std::net::{IpAddr, SocketAddr};
use std::sync::LazyLock;
use std::time::Duration;

use http::header::{COOKIE, HOST, USER_AGENT};
use http::{HeaderMap, HeaderValue, Method, Uri};
use k8s_openapi::jiff::Timestamp;

use super::balance::{Balancer, Steer};
use crate::model::{Backend, CookieAffinity, HashBy, HashPiece, Policy, SameSite};

/// The session of a request on a cookie-affinity route, to finish once a pod answered.
#[derive(Debug)]
pub struct Session {
    /// Balanced mode: the key the request went by, and whether it is new (no usable
    /// cookie came with the request).
    key: Option<(u64, bool)>,
    /// Persistent mode: the token the request's cookie carried.
    token: Option<u64>,
    /// The cookie's `Path` when the annotation sets none: the route's path as written.
    path: Option<String>,
    /// The request came over HTTPS (the cookie is `Secure`).
    tls: bool,
    /// The client's `User-Agent` (`session-cookie-conditional-samesite-none`).
    agent: Option<HeaderValue>,
    /// The request went to a canary backend: its cookie says so.
    canary: bool,
}

/// How the route's policy steers this request, and the session to finish if it has cookie
/// affinity. `route_path`: the matched route's path (the cookie's default `Path`);
/// `canary`: the request goes to the route's canary backend, whose cookies are told apart
/// from the main backend's.
#[allow(clippy::too_many_arguments)]
pub fn steer(
    policy: &Policy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    client: IpAddr,
    tls: bool,
    route_path: Option<&str>,
    canary: bool,
) -> (Steer, Option<Session>) {
    if let Some(affinity) = &policy.affinity {
        let value = cookie(headers, &affinity.name)
            .and_then(parse_value)
            .filter(|&(_, side)| side == canary)
            .map(|(value, _)| value);
        let path = match affinity.path {
            Some(_) => None,
            None => Some(route_path.unwrap_or("/").to_owned()),
        };
        let agent = headers.get(USER_AGENT).cloned();
        if affinity.persistent {
            return (
                Steer::Token(value),
                Some(Session {
                    key: None,
                    token: value,
                    path,
                    tls,
                    agent,
                    canary,
                }),
            );
        }
        let (key, fresh) = match value {
            Some(key) => (key, false),
            None => (fastrand::u64(..), true),
        };
        return (
            Steer::Hash(key),
            Some(Session {
                key: Some((key, fresh)),
                token: None,
                path,
                tls,
                agent,
                canary,
            }),
        );
    }
    if let Some(hash) = &policy.hash_by {
        let key = hash_key(hash, method, uri, headers, client, tls);
        return match hash.subset {
            Some(size) => (Steer::Subset(key, size), None),
            None => (Steer::Hash(key), None),
        };
    }
    if policy.ewma {
        return (Steer::Ewma, None);
    }
    (Steer::Default, None)
}

/// The `Set-Cookie` the response needs, if any: a new session, a session whose pod is
/// gone, or (`session-cookie-change-on-failure`) one that had to move to another pod.
pub fn finish(
    session: &Session,
    affinity: &CookieAffinity,
    balancer: &Balancer,
    backend: &Backend,
    served: Option<SocketAddr>,
    attempts: usize,
) -> Option<HeaderValue> {
    let served = served.and_then(|addr| {
        backend
            .usable_indexes()
            .iter()
            .copied()
            .find(|&i| backend.endpoint(i).is_some_and(|e| e.addr == addr))
    })?;
    let moved = attempts > 1 && affinity.change_on_failure;
    let value = if let Some((key, fresh)) = session.key {
        if fresh {
            key
        } else if moved {
            backend.ring().key_of(served)?
        } else {
            return None;
        }
    } else {
        let endpoint = backend.endpoint(served)?;
        let token = balancer.token(backend, endpoint);
        let keep = match session.token {
            // The cookie names a pod that still serves: kept, unless the session moves.
            Some(t) if t == token => true,
            Some(t) => !moved && balancer.by_token(backend, t).is_some(),
            None => false,
        };
        if keep {
            return None;
        }
        token
    };
    let path = affinity
        .path
        .as_deref()
        .or(session.path.as_deref())
        .unwrap_or("/");
    let agent = session.agent.as_ref().and_then(|v| v.to_str().ok());
    set_cookie(
        affinity,
        value,
        session.canary,
        path,
        session.tls,
        agent,
        Timestamp::now(),
    )
}

/// `NAME=VALUE; Expires=…; Max-Age=…; Domain=…; Path=…; Secure; HttpOnly; SameSite=…`, in
/// ingress-nginx's order, the optional parts left out when not asked for.
pub fn set_cookie(
    affinity: &CookieAffinity,
    value: u64,
    canary: bool,
    path: &str,
    tls: bool,
    agent: Option<&str>,
    now: Timestamp,
) -> Option<HeaderValue> {
    use std::fmt::Write as _;
    let mut c = format!("{}={value:016x}", affinity.name);
    if canary {
        c.push_str(CANARY_SUFFIX);
    }
    if let Some(expires) = affinity.expires {
        let at = now
            .checked_add(Duration::from_secs(expires.min(100 * 365 * 86_400)))
            .unwrap_or(now);
        let _ = write!(c, "; Expires={}", at.strftime("%a, %d-%b-%y %H:%M:%S GMT"));
    }
    if let Some(max_age) = affinity.max_age {
        let _ = write!(c, "; Max-Age={max_age}");
    }
    if let Some(domain) = &affinity.domain {
        let _ = write!(c, "; Domain={domain}");
    }
    // A path that cannot be an attribute (a regex with `;`): the cookie covers the host.
    let path = if path.bytes().all(|b| (0x21..0x7f).contains(&b) && b != b';') {
        path
    } else {
        "/"
    };
    let _ = write!(c, "; Path={path}");
    if affinity.secure || tls {
        c.push_str("; Secure");
    }
    c.push_str("; HttpOnly");
    if let Some(same_site) = affinity.same_site {
        let skip = same_site == SameSite::None
            && affinity.conditional_same_site_none
            && agent.is_some_and(same_site_none_incompatible);
        if !skip {
            let _ = write!(c, "; SameSite={}", same_site.as_str());
        }
    }
    HeaderValue::try_from(c).ok()
}

/// What a canary backend's session cookie value ends with.
const CANARY_SUFFIX: &str = ".canary";

/// A session cookie's value: 16 hex digits, then [`CANARY_SUFFIX`] for a canary's; and
/// whether it is a canary's.
fn parse_value(v: &str) -> Option<(u64, bool)> {
    let (v, canary) = match v.strip_suffix(CANARY_SUFFIX) {
        Some(v) => (v, true),
        None => (v, false),
    };
    if v.len() != 16 {
        return None;
    }
    u64::from_str_radix(v, 16).ok().map(|n| (n, canary))
}

/// Which backend of a route with a canary the request's session cookie belongs to (true:
/// the canary), when it carries one: the main backend's cookie is looked at first, as
/// ingress-nginx does (`route_to_alternative_balancer`).
pub fn canary_side(
    main: Option<&Policy>,
    canary: Option<&Policy>,
    headers: &HeaderMap,
) -> Option<bool> {
    let side = |policy: Option<&Policy>| {
        let a = policy?.affinity.as_ref()?;
        cookie(headers, &a.name)
            .and_then(parse_value)
            .map(|(_, side)| side)
    };
    if side(main) == Some(false) {
        return Some(false);
    }
    (side(canary) == Some(true)).then_some(true)
}

/// The first value of cookie `name` in the request's `Cookie` headers.
pub fn cookie<'h>(headers: &'h HeaderMap, name: &str) -> Option<&'h str> {
    headers
        .get_all(COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, v)| v.trim_matches('"'))
}

/// The `upstream-hash-by` key of a request, hashed as the ring hashes (the same request
/// gives the same key in every replica).
pub fn hash_key(
    hash: &HashBy,
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    client: IpAddr,
    tls: bool,
) -> u64 {
    let mut h = foldhash::fast::FixedState::with_seed(0x6861_7368_2d62_7921).build_hasher();
    key_bytes(&hash.pieces, method, uri, headers, client, tls, &mut h);
    h.finish()
}

/// The bytes of a key made of request attributes (`upstream-hash-by`, `auth-cache-key`),
/// piece by piece, each followed by a separator ("ab"+"c" ≠ "a"+"bc").
pub fn key_bytes(
    pieces: &[HashPiece],
    method: &Method,
    uri: &Uri,
    headers: &HeaderMap,
    client: IpAddr,
    tls: bool,
    h: &mut impl Hasher,
) {
    for piece in pieces {
        match piece {
            HashPiece::Text(t) => h.write(t.as_bytes()),
            HashPiece::RequestUri => {
                h.write(uri.path_and_query().map_or("/", |p| p.as_str()).as_bytes())
            }
            HashPiece::Uri => h.write(uri.path().as_bytes()),
            HashPiece::Args => h.write(uri.query().unwrap_or("").as_bytes()),
            HashPiece::RemoteAddr => match client {
                IpAddr::V4(ip) => h.write(&ip.octets()),
                IpAddr::V6(ip) => h.write(&ip.octets()),
            },
            HashPiece::Host => {
                let host = uri
                    .authority()
                    .map(|a| a.as_str().as_bytes())
                    .or_else(|| headers.get(HOST).map(HeaderValue::as_bytes))
                    .unwrap_or(b"");
                h.write(host);
            }
            HashPiece::Method => h.write(method.as_str().as_bytes()),
            HashPiece::Scheme => h.write(if tls { b"https" } else { b"http" }),
            HashPiece::Header(name) => {
                h.write(headers.get(name).map_or(&b""[..], HeaderValue::as_bytes))
            }
            HashPiece::Cookie(name) => h.write(cookie(headers, name).unwrap_or("").as_bytes()),
            HashPiece::Arg(name) => {
                let value = uri
                    .query()
                    .unwrap_or("")
                    .split('&')
                    .filter_map(|kv| kv.split_once('=').or(Some((kv, ""))))
                    .find(|(k, _)| k == name)
                    .map_or("", |(_, v)| v);
                h.write(value.as_bytes());
            }
        }
        h.write_u8(0xff);
    }
}

/// The browsers known to reject or mishandle `SameSite=None` (Chromium's published list,
/// as ingress-nginx checks it for `session-cookie-conditional-samesite-none`).
pub fn same_site_none_incompatible(agent: &str) -> bool {
    static PATTERNS: LazyLock<Vec<regex::Regex>> = LazyLock::new(|| {
        [
            // iOS 12: every browser (WebKit).
            r"\(iP.+; CPU .*OS 12[_\d]*.*\) AppleWebKit/",
            // Safari and embedded browsers on macOS 10.14.
            r"\(Macintosh;.*Mac OS X 10_14[_\d]*.*\) AppleWebKit/.*(Version/.* Safari/|\(KHTML, like Gecko\)$)",
            // Chrome and Chromium 51 to 66.
            r"Chrom(e|ium)/(5[1-9]|6[0-6])\.",
            // UC Browser before 12.13.2.
            r"UCBrowser/([0-9]|1[01])\.|UCBrowser/12\.([0-9]|1[0-2])\.|UCBrowser/12\.13\.[01]\b",
        ]
        .iter()
        .filter_map(|p| regex::Regex::new(p).ok())
        .collect()
    });
    PATTERNS.iter().any(|p| p.is_match(agent))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn affinity() -> CookieAffinity {
        CookieAffinity {
            name: "INGRESSCOOKIE".into(),
            persistent: false,
            path: None,
            domain: None,
            max_age: None,
            expires: None,
            secure: false,
            same_site: None,
            conditional_same_site_none: false,
            change_on_failure: false,
        }
    }

    fn at() -> Timestamp {
        "2026-11-30T10:00:00Z".parse().unwrap()
    }

    #[test]
    fn the_default_cookie_is_name_value_path_httponly() {
        let c = set_cookie(&affinity(), 0xabc, false, "/", false, None, at()).unwrap();
        assert_eq!(c, "INGRESSCOOKIE=0000000000000abc; Path=/; HttpOnly");
    }

    #[test]
    fn every_attribute_in_ingress_nginx_order() {
        let a = CookieAffinity {
            name: "SERVERID".into(),
            path: Some("/app".into()),
            domain: Some(".example.com".into()),
            max_age: Some(259_200),
            expires: Some(172_800),
            secure: true,
            same_site: Some(SameSite::Strict),
            ..affinity()
        };
        let c = set_cookie(&a, 1, false, "/app", false, None, at()).unwrap();
        assert_eq!(
            c,
            "SERVERID=0000000000000001; Expires=Wed, 02-Dec-26 10:00:00 GMT; Max-Age=259200; Domain=.example.com; Path=/app; Secure; HttpOnly; SameSite=Strict"
        );
    }

    #[test]
    fn https_is_always_secure_and_samesite_none_can_spare_old_browsers() {
        let a = CookieAffinity {
            same_site: Some(SameSite::None),
            conditional_same_site_none: true,
            ..affinity()
        };
        let modern = "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/120.0.0.0 Safari/537.36";
        let old = "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/65.0.3325.181 Safari/537.36";
        let ios12 = "Mozilla/5.0 (iPhone; CPU iPhone OS 12_1 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) Version/12.0 Mobile/15E148 Safari/604.1";
        let c = set_cookie(&a, 1, false, "/", true, Some(modern), at()).unwrap();
        assert_eq!(
            c,
            "INGRESSCOOKIE=0000000000000001; Path=/; Secure; HttpOnly; SameSite=None"
        );
        for agent in [old, ios12] {
            let c = set_cookie(&a, 1, false, "/", true, Some(agent), at()).unwrap();
            assert!(!c.to_str().unwrap().contains("SameSite"), "{agent}");
        }
    }

    #[test]
    fn the_cookie_is_read_among_others_and_must_be_ours() {
        let mut h = HeaderMap::new();
        h.append(
            COOKIE,
            HeaderValue::from_static("a=1; INGRESSCOOKIE=00000000000000ff"),
        );
        assert_eq!(cookie(&h, "INGRESSCOOKIE"), Some("00000000000000ff"));
        assert_eq!(cookie(&h, "INGRESS"), None);
        assert_eq!(parse_value("00000000000000ff"), Some((255, false)));
        assert_eq!(parse_value("00000000000000ff.canary"), Some((255, true)));
        assert_eq!(parse_value("00000000000000ff.other"), None);
        assert_eq!(parse_value("10.0.0.1:8080"), None);
        assert_eq!(parse_value("zz00000000000000"), None);
    }

    #[test]
    fn hash_keys_depend_on_the_named_attribute_only() {
        let hash = HashBy {
            key: "$http_x_user".into(),
            pieces: crate::controller::translate::annotations::parse_hash_key("$http_x_user")
                .unwrap(),
            subset: None,
        };
        let uri: Uri = "/a?b=1".parse().unwrap();
        let key = |user: &str, path: &str, client: u8| {
            let mut h = HeaderMap::new();
            h.insert("x-user", HeaderValue::from_str(user).unwrap());
            let uri: Uri = path.parse().unwrap();
            hash_key(
                &hash,
                &Method::GET,
                &uri,
                &h,
                IpAddr::from([10, 0, 0, client]),
                false,
            )
        };
        assert_eq!(key("ann", "/a", 1), key("ann", "/b", 2));
        assert_ne!(key("ann", "/a", 1), key("bob", "/a", 1));
        let _ = uri;
        let by_arg = HashBy {
            key: "$arg_id".into(),
            pieces: crate::controller::translate::annotations::parse_hash_key("$arg_id").unwrap(),
            subset: None,
        };
        let k = |q: &str| {
            let uri: Uri = q.parse().unwrap();
            hash_key(
                &by_arg,
                &Method::GET,
                &uri,
                &HeaderMap::new(),
                IpAddr::from([1, 1, 1, 1]),
                false,
            )
        };
        assert_eq!(k("/x?id=7&z=1"), k("/y?z=2&id=7"));
        assert_ne!(k("/x?id=7"), k("/x?id=8"));
    }
}
