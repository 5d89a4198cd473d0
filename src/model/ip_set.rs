//! Sets of client addresses for allow and deny lists (`allowlist-source-range`,
//! `denylist-source-range`, `--allowlist-source-range`, `--denylist-source-range`): CIDR
//! ranges merged into sorted, disjoint intervals per family, so a lookup is one binary
//! search however many ranges are listed.

use std::fmt;
use std::net::IpAddr;
use std::str::FromStr;

use ipnet::IpNet;
use serde::{Serialize, Serializer};

#[derive(Clone, Default, PartialEq, Eq)]
pub struct IpSet {
    v4: Vec<(u32, u32)>,
    v6: Vec<(u128, u128)>,
    /// The ranges as listed (normalised), for `/debug/routes` and explain.
    listed: Vec<IpNet>,
}

impl fmt::Debug for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_list().entries(&self.listed).finish()
    }
}

impl fmt::Display for IpSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (i, net) in self.listed.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(f, "{net}")?;
        }
        Ok(())
    }
}

impl Serialize for IpSet {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.listed.iter().map(ToString::to_string))
    }
}

impl IpSet {
    pub fn new(nets: impl IntoIterator<Item = IpNet>) -> Self {
        let mut v4 = Vec::new();
        let mut v6 = Vec::new();
        let mut listed = Vec::new();
        for net in nets {
            let net = net.trunc();
            match net {
                IpNet::V4(n) => v4.push((u32::from(n.network()), u32::from(n.broadcast()))),
                IpNet::V6(n) => v6.push((u128::from(n.network()), u128::from(n.broadcast()))),
            }
            listed.push(net);
        }
        Self {
            v4: merge(v4),
            v6: merge(v6),
            listed,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.listed.is_empty()
    }

    /// Whether `ip` is in one of the ranges. An IPv4-mapped IPv6 address (what a
    /// dual-stack socket reports) is looked up as the IPv4 address it carries.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match ip {
            IpAddr::V4(ip) => within(&self.v4, u32::from(ip)),
            IpAddr::V6(ip) => match ip.to_ipv4_mapped() {
                Some(v4) => within(&self.v4, u32::from(v4)),
                None => within(&self.v6, u128::from(ip)),
            },
        }
    }
}

impl FromStr for IpSet {
    type Err = String;

    /// `10.0.0.0/8, 192.0.2.7, 2001:db8::/32`: CIDR ranges or single addresses,
    /// comma-separated; one entry that is neither makes the whole list invalid.
    fn from_str(s: &str) -> Result<Self, String> {
        let mut nets = Vec::new();
        for part in s.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = match part.parse::<IpNet>() {
                Ok(net) => net,
                Err(_) => match part.parse::<IpAddr>() {
                    Ok(ip) => IpNet::from(ip),
                    Err(_) => return Err(format!("{part:?} is not a CIDR range or an IP address")),
                },
            };
            nets.push(net);
        }
        Ok(Self::new(nets))
    }
}

/// Sorted, overlapping or adjacent intervals joined.
fn merge<T: Copy + Ord + num_like::One>(mut ranges: Vec<(T, T)>) -> Vec<(T, T)> {
    ranges.sort_unstable();
    let mut out: Vec<(T, T)> = Vec::with_capacity(ranges.len());
    for (start, end) in ranges {
        match out.last_mut() {
            Some(last) if start <= last.1.saturating_inc() => {
                if end > last.1 {
                    last.1 = end;
                }
            }
            _ => out.push((start, end)),
        }
    }
    out
}

fn within<T: Copy + Ord>(ranges: &[(T, T)], x: T) -> bool {
    // The last interval starting at or before x.
    let i = ranges.partition_point(|&(start, _)| start <= x);
    i > 0 && x <= ranges[i - 1].1
}

mod num_like {
    pub trait One {
        fn saturating_inc(self) -> Self;
    }
    impl One for u32 {
        fn saturating_inc(self) -> Self {
            self.saturating_add(1)
        }
    }
    impl One for u128 {
        fn saturating_inc(self) -> Self {
            self.saturating_add(1)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(s: &str) -> IpSet {
        s.parse().unwrap()
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    #[test]
    fn ranges_and_single_addresses_of_both_families() {
        let s = set("18.0.0.0/8, 56.0.0.1, 2001:db8::/32");
        assert!(s.contains(ip("18.0.0.1")));
        assert!(s.contains(ip("18.255.255.255")));
        assert!(!s.contains(ip("19.0.0.0")));
        assert!(s.contains(ip("56.0.0.1")));
        assert!(!s.contains(ip("56.0.0.2")));
        assert!(s.contains(ip("2001:db8::1")));
        assert!(!s.contains(ip("2001:db9::1")));
        assert!(s.contains(ip("::ffff:18.1.2.3")), "IPv4-mapped is IPv4");
        assert!(set("0.0.0.0/0").contains(ip("203.0.113.9")));
        assert!(!set("0.0.0.0/0").contains(ip("::1")));
    }

    #[test]
    fn host_bits_and_overlaps_are_normalised() {
        let s = set("10.1.2.3/8, 10.0.0.0/16, 11.0.0.0/8");
        assert_eq!(s.v4, vec![(0x0a00_0000, 0x0bff_ffff)]);
        assert_eq!(s.to_string(), "10.0.0.0/8, 10.0.0.0/16, 11.0.0.0/8");
    }

    #[test]
    fn one_bad_entry_refuses_the_list() {
        assert!("10.0.0.0/8, nonsense".parse::<IpSet>().is_err());
        assert!("10.0.0.0/33".parse::<IpSet>().is_err());
        assert!("".parse::<IpSet>().unwrap().is_empty());
    }

    #[test]
    fn agrees_with_a_linear_scan_on_generated_lists() {
        fastrand::seed(0x69_70_73_65_74);
        for _ in 0..200 {
            let nets: Vec<IpNet> = (0..fastrand::usize(1..40))
                .map(|_| {
                    let addr = std::net::Ipv4Addr::from(fastrand::u32(..) & 0xff0f_0f0f);
                    IpNet::new(IpAddr::V4(addr), fastrand::u8(4..=32)).unwrap()
                })
                .collect();
            let s = IpSet::new(nets.clone());
            for _ in 0..200 {
                let probe = IpAddr::V4(std::net::Ipv4Addr::from(fastrand::u32(..) & 0xff0f_0f0f));
                let linear = nets.iter().any(|n| n.trunc().contains(&probe));
                assert_eq!(s.contains(probe), linear, "{probe} in {nets:?}");
            }
        }
    }
}
