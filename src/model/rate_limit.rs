//! Rate and connection limits per client address (`limit-rps`, `limit-rpm`,
//! `limit-connections`, `limit-burst-multiplier`, `limit-whitelist`; INGRESS-NGINX.md §C4).
//!
//! As in ingress-nginx, one zone per Ingress: every path and host of the Ingress shares the
//! budget of a client address, per replica. The zone's state outlives routing-table
//! rebuilds (an EndpointSlice change must not hand every client a fresh burst): translation
//! takes it from [`Zones`], which keeps each zone for as long as some table uses it.
//!
//! Rates are GCRA (governor) with ingress-nginx's burst: `limit × multiplier` requests
//! beyond the first pass back to back (nginx `limit_req ... burst=N nodelay`), then one per
//! `1/limit`. Memory per zone is bounded whatever the number of client addresses
//! ([`BoundedMap`]); connections are counted while requests are in flight.

use std::collections::HashMap;
use std::fmt;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::{Arc, Mutex, Weak};

use dashmap::DashMap;
use governor::clock::MonotonicClock;
use governor::middleware::NoOpMiddleware;
use governor::{Quota, RateLimiter};
use serde::Serialize;

use super::bounded::BoundedMap;
use super::ip_set::IpSet;

/// Client addresses whose rate state one zone keeps (about; see [`BoundedMap`]).
const CLIENTS_PER_ZONE: usize = 65_536;

/// What an Ingress's limit annotations ask for.
#[derive(Clone, Debug, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Limits {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rps: Option<NonZeroU32>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rpm: Option<NonZeroU32>,
    pub burst_multiplier: u32,
    /// Requests in flight per client address.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub connections: Option<NonZeroU32>,
}

/// The limits of one Ingress's routes, with the zone they count in.
#[derive(Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct RateLimit {
    #[serde(flatten)]
    pub limits: Limits,
    /// `limit-whitelist`: clients the limits do not apply to.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub exempt: Option<IpSet>,
    #[serde(skip)]
    pub zone: Arc<Zone>,
}

impl PartialEq for RateLimit {
    fn eq(&self, other: &Self) -> bool {
        self.limits == other.limits && self.exempt == other.exempt
    }
}

impl Eq for RateLimit {}

impl fmt::Debug for RateLimit {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RateLimit")
            .field("limits", &self.limits)
            .field("exempt", &self.exempt)
            .finish_non_exhaustive()
    }
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Refused {
    Connections,
    Rate,
}

type Gcra = RateLimiter<IpAddr, BoundedMap<IpAddr, u64>, MonotonicClock, NoOpMiddleware>;

/// The counting state of one zone.
pub struct Zone {
    rps: Option<Gcra>,
    rpm: Option<Gcra>,
    connections: Option<(u32, DashMap<IpAddr, u32, foldhash::fast::RandomState>)>,
}

impl fmt::Debug for Zone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Zone")
    }
}

/// A request counted in its client's connections until this is dropped.
pub struct InFlight {
    zone: Arc<Zone>,
    client: IpAddr,
}

impl fmt::Debug for InFlight {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "InFlight({})", self.client)
    }
}

impl Drop for InFlight {
    fn drop(&mut self) {
        if let Some((_, counts)) = &self.zone.connections {
            counts.remove_if_mut(&self.client, |_, n| {
                *n = n.saturating_sub(1);
                *n == 0
            });
        }
    }
}

impl Zone {
    fn new(limits: &Limits) -> Self {
        let gcra = |quota: Quota| {
            RateLimiter::new(quota, BoundedMap::new(CLIENTS_PER_ZONE), MonotonicClock)
        };
        let burst = |limit: NonZeroU32| {
            // nginx: `burst` excess requests beyond the first, with nodelay.
            limit
                .saturating_mul(NonZeroU32::new(limits.burst_multiplier).unwrap_or(NonZeroU32::MIN))
                .saturating_add(1)
        };
        Self {
            rps: limits
                .rps
                .map(|r| gcra(Quota::per_second(r).allow_burst(burst(r)))),
            rpm: limits
                .rpm
                .map(|r| gcra(Quota::per_minute(r).allow_burst(burst(r)))),
            connections: limits
                .connections
                .map(|c| (c.get(), DashMap::with_hasher(Default::default()))),
        }
    }

    /// Counts a request of `client`: connections first, then the rates (ingress-nginx's
    /// order). The returned guard holds the connection until the response is done.
    pub fn admit(self: &Arc<Self>, client: IpAddr) -> Result<Option<InFlight>, Refused> {
        let guard = match &self.connections {
            Some((max, counts)) => {
                let mut n = counts.entry(client).or_insert(0);
                if *n >= *max {
                    return Err(Refused::Connections);
                }
                *n += 1;
                drop(n);
                Some(InFlight {
                    zone: self.clone(),
                    client,
                })
            }
            None => None,
        };
        for limiter in [&self.rps, &self.rpm].into_iter().flatten() {
            if limiter.check_key(&client).is_err() {
                return Err(Refused::Rate);
            }
        }
        Ok(guard)
    }
}

/// The zones of every table in use, so a rebuilt table counts on where the last one was.
/// A zone lives while some table's policy holds it.
#[derive(Clone, Default)]
pub struct Zones(Arc<Mutex<ZoneMap>>);

/// Zones by owning Ingress (`namespace/name/uid`) and limits.
type ZoneMap = HashMap<(String, Limits), Weak<Zone>>;

impl Zones {
    /// The zone of Ingress `owner` (its namespace, name and uid) with these limits.
    pub fn zone(&self, owner: &str, limits: &Limits) -> Arc<Zone> {
        let mut map = self
            .0
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let key = (owner.to_owned(), limits.clone());
        if let Some(zone) = map.get(&key).and_then(Weak::upgrade) {
            return zone;
        }
        map.retain(|_, z| z.strong_count() > 0);
        let zone = Arc::new(Zone::new(limits));
        map.insert(key, Arc::downgrade(&zone));
        zone
    }
}

impl PartialEq for Zones {
    /// Settings compare equal whatever zones exist.
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Zones {}

impl fmt::Debug for Zones {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Zones")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(rps: u32, rpm: u32, connections: u32) -> Limits {
        Limits {
            rps: NonZeroU32::new(rps),
            rpm: NonZeroU32::new(rpm),
            burst_multiplier: 5,
            connections: NonZeroU32::new(connections),
        }
    }

    const A: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 1));
    const B: IpAddr = IpAddr::V4(std::net::Ipv4Addr::new(192, 0, 2, 2));

    #[test]
    fn a_rate_lets_the_burst_through_then_refuses() {
        // limit-rps 1, multiplier 5: 6 back to back (nginx burst=5 nodelay), then no more.
        let zone = Arc::new(Zone::new(&limits(1, 0, 0)));
        let passed = (0..20).filter(|_| zone.admit(A).is_ok()).count();
        assert_eq!(passed, 6);
        assert_eq!(zone.admit(A).err(), Some(Refused::Rate));
        // Per client address.
        assert!(zone.admit(B).is_ok());
        let zone = Arc::new(Zone::new(&limits(0, 60, 0)));
        assert_eq!((0..1000).filter(|_| zone.admit(A).is_ok()).count(), 301);
    }

    #[test]
    fn connections_count_requests_in_flight() {
        let zone = Arc::new(Zone::new(&limits(0, 0, 2)));
        let one = zone.admit(A).unwrap();
        let two = zone.admit(A).unwrap();
        assert_eq!(zone.admit(A).err(), Some(Refused::Connections));
        assert!(zone.admit(B).is_ok());
        drop(one);
        let three = zone.admit(A).unwrap();
        drop((two, three));
        // Nothing left behind for a client with nothing in flight.
        assert!(zone.connections.as_ref().unwrap().1.is_empty());
    }

    #[test]
    fn a_rebuilt_table_gets_the_same_zone_while_one_is_in_use() {
        let zones = Zones::default();
        let l = limits(1, 0, 0);
        let first = zones.zone("ns/web/uid", &l);
        let again = zones.zone("ns/web/uid", &l);
        assert!(Arc::ptr_eq(&first, &again));
        // Other limits or another Ingress: another zone.
        assert!(!Arc::ptr_eq(
            &first,
            &zones.zone("ns/web/uid", &limits(2, 0, 0))
        ));
        assert!(!Arc::ptr_eq(&first, &zones.zone("ns/api/uid", &l)));
        drop((first, again));
        // Unused: forgotten, and the next one starts afresh.
        let fresh = zones.zone("ns/web/uid", &l);
        assert_eq!(Arc::strong_count(&fresh), 1);
    }

    #[test]
    fn a_flood_of_client_addresses_does_not_reset_a_limited_client() {
        // Per minute: nothing refills while the test runs, however slow the build.
        let zone = Arc::new(Zone::new(&limits(0, 1, 0)));
        // A client uses its burst (1 + 1 × 5) and is refused...
        assert_eq!((0..10).filter(|_| zone.admit(A).is_ok()).count(), 6);
        // ...then 100,000 other addresses each make a request, the limited one among them
        // (its store is a BoundedMap: what stays in use is kept, the bound is tested there).
        for i in 0..100_000u32 {
            let _ = zone.admit(IpAddr::V4(i.into()));
            if i % 1_000 == 0 {
                assert!(zone.admit(A).is_err(), "refilled or forgotten at {i}");
            }
        }
        assert!(zone.admit(A).is_err());
    }
}
