//! Who the client is: the connection's peer, unless that peer is a trusted proxy (a load
//! balancer or CDN named by `--trusted-proxies`), in which case the client is the
//! right-most address in its `X-Forwarded-For` chain that is not itself trusted — what
//! nginx's `real_ip_recursive on` does. Addresses from untrusted peers' headers are never
//! believed: anyone can write `X-Forwarded-For: 1.2.3.4`.
//!
//! The client address decided here is the one ClientIP affinity, the access log and (later)
//! the allow lists see.

use std::net::{IpAddr, SocketAddr};
use std::str::FromStr;

use http::header::HeaderMap;

use super::headers::X_FORWARDED_FOR;
use crate::model::IpSet;

/// `--trusted-proxies`: CIDR ranges (or single addresses) of proxies in front of wicket.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct TrustedProxies(IpSet);

impl TrustedProxies {
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// IPv4-mapped IPv6 peers match IPv4 ranges.
    pub fn contains(&self, ip: IpAddr) -> bool {
        self.0.contains(ip)
    }

    /// The client behind a trusted `peer`: walk `X-Forwarded-For` from the right, skipping
    /// trusted hops; the first untrusted address is the client. A malformed entry stops
    /// the walk (nothing left of it can be believed): the last address passed is used.
    pub fn client(&self, peer: IpAddr, headers: &HeaderMap) -> IpAddr {
        let mut client = peer;
        // Entries right to left, across all the fields.
        for field in headers.get_all(&X_FORWARDED_FOR).iter().rev() {
            for entry in field.as_bytes().rsplit(|&b| b == b',') {
                let Some(ip) = parse_entry(entry) else {
                    return client;
                };
                client = ip;
                if !self.contains(ip) {
                    return client;
                }
            }
        }
        client
    }
}

impl FromStr for TrustedProxies {
    type Err = String;

    /// `10.0.0.0/8, 192.0.2.7, fd00::/8`: CIDRs or single addresses, comma-separated.
    fn from_str(s: &str) -> Result<Self, String> {
        s.parse().map(Self)
    }
}

/// IPv4-mapped IPv6 addresses (`::ffff:10.0.0.1`, what a dual-stack socket reports) are
/// the IPv4 address they carry.
pub fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
        v4 => v4,
    }
}

/// One `X-Forwarded-For` entry: `1.2.3.4`, `1.2.3.4:5678`, `2001:db8::1`, `[2001:db8::1]`
/// or `[2001:db8::1]:5678`, with optional spaces around it.
fn parse_entry(entry: &[u8]) -> Option<IpAddr> {
    let text = std::str::from_utf8(entry).ok()?.trim();
    if let Ok(ip) = text.parse::<IpAddr>() {
        return Some(canonical(ip));
    }
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Some(canonical(addr.ip()));
    }
    let inner = text.strip_prefix('[')?.strip_suffix(']')?;
    inner.parse::<IpAddr>().ok().map(canonical)
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    fn trusted(s: &str) -> TrustedProxies {
        s.parse().unwrap()
    }

    fn xff(values: &[&str]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for v in values {
            h.append(X_FORWARDED_FOR.clone(), HeaderValue::from_str(v).unwrap());
        }
        h
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn cidrs_and_single_addresses_parse_and_garbage_is_refused() {
        let t = trusted("10.0.0.0/8, 192.0.2.7,fd00::/8");
        assert!(t.contains(ip("10.9.9.9")));
        assert!(t.contains(ip("192.0.2.7")));
        assert!(!t.contains(ip("192.0.2.8")));
        assert!(t.contains(ip("fd00::1")));
        assert!(
            t.contains(ip("::ffff:10.1.2.3")),
            "IPv4-mapped peers match IPv4 ranges"
        );
        assert!("10.0.0.0/33".parse::<TrustedProxies>().is_err());
        assert!("lb.example.com".parse::<TrustedProxies>().is_err());
        assert!(trusted("").is_empty());
    }

    #[test]
    fn the_client_is_the_rightmost_untrusted_hop() {
        let t = trusted("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        // client, then a trusted internal hop
        let h = xff(&["203.0.113.9, 10.2.3.4"]);
        assert_eq!(t.client(peer, &h), ip("203.0.113.9"));
        // a spoofed entry left of the real client is ignored
        let h = xff(&["1.1.1.1, 198.51.100.7", "10.2.3.4"]);
        assert_eq!(t.client(peer, &h), ip("198.51.100.7"));
        // ports and brackets
        let h = xff(&["[2001:db8::5]:4711"]);
        assert_eq!(t.client(peer, &h), ip("2001:db8::5"));
        let h = xff(&["198.51.100.7:5555"]);
        assert_eq!(t.client(peer, &h), ip("198.51.100.7"));
    }

    #[test]
    fn no_chain_or_a_malformed_one_stops_at_the_last_believable_hop() {
        let t = trusted("10.0.0.0/8");
        let peer = ip("10.0.0.1");
        assert_eq!(t.client(peer, &HeaderMap::new()), peer);
        let h = xff(&["unknown"]);
        assert_eq!(t.client(peer, &h), peer);
        let h = xff(&["garbage, 10.3.3.3"]);
        assert_eq!(t.client(peer, &h), ip("10.3.3.3"));
        // every hop trusted: the left-most one
        let h = xff(&["10.4.4.4, 10.3.3.3"]);
        assert_eq!(t.client(peer, &h), ip("10.4.4.4"));
    }
}
