//! Endpoint choice: round robin over a backend's usable endpoints, and `sessionAffinity:
//! ClientIP` pinning a client address to one endpoint while it stays usable.
//!
//! The state (a cursor per backend, a pin per client and backend) lives here, outside the
//! snapshot, keyed by the backend's stable id and the endpoint address, so publishing a new
//! snapshot neither resets round robin nor moves pinned clients.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use tracing::warn;

use crate::model::{Backend, Endpoint, Snapshot};

/// Most client pins kept at once; beyond it new clients are balanced without a pin rather
/// than letting a flood of source addresses (IPv6 makes that cheap) grow memory unbounded.
pub const MAX_AFFINITY_PINS: usize = 262_144;

struct Pin {
    addr: SocketAddr,
    last_used: Instant,
}

#[derive(Default)]
pub struct Balancer {
    cursors: DashMap<Arc<str>, AtomicUsize, RandomState>,
    pins: DashMap<(Arc<str>, IpAddr), Pin, RandomState>,
    warned_full: AtomicBool,
}

impl Balancer {
    pub fn new() -> Self {
        Self::default()
    }

    /// Picks a usable endpoint of `backend` for `client`, skipping `tried` ones.
    pub fn pick<'b>(
        &self,
        backend: &'b Backend,
        client: IpAddr,
        tried: &[SocketAddr],
    ) -> Option<&'b Endpoint> {
        if backend.usable_count() == 0 {
            return None;
        }
        let Some(timeout) = backend.affinity else {
            return self.round_robin(backend, tried);
        };
        let now = Instant::now();
        let key = (backend.id.clone(), client);
        if let Some(mut pin) = self.pins.get_mut(&key) {
            if now.duration_since(pin.last_used) < timeout && !tried.contains(&pin.addr) {
                if let Some(endpoint) = backend.usable().find(|e| e.addr == pin.addr) {
                    pin.last_used = now;
                    return Some(endpoint);
                }
            }
        }
        let endpoint = self.round_robin(backend, tried)?;
        if self.pins.len() < MAX_AFFINITY_PINS || self.pins.contains_key(&key) {
            self.pins.insert(
                key,
                Pin {
                    addr: endpoint.addr,
                    last_used: now,
                },
            );
        } else if !self.warned_full.swap(true, Ordering::Relaxed) {
            warn!(
                limit = MAX_AFFINITY_PINS,
                "client-IP affinity table is full; new clients are balanced without a pin"
            );
        }
        Some(endpoint)
    }

    fn round_robin<'b>(&self, backend: &'b Backend, tried: &[SocketAddr]) -> Option<&'b Endpoint> {
        let start = match self.cursors.get(backend.id.as_ref()) {
            Some(cursor) => cursor.fetch_add(1, Ordering::Relaxed),
            None => self
                .cursors
                .entry(backend.id.clone())
                .or_default()
                .fetch_add(1, Ordering::Relaxed),
        };
        let count = backend.usable_count();
        (0..count)
            .filter_map(|i| backend.usable_nth(start.wrapping_add(i)))
            .find(|e| !tried.contains(&e.addr))
    }

    /// Drops state of backends the snapshot no longer has, and pins that have expired.
    pub fn retain(&self, snapshot: &Snapshot) {
        let live: std::collections::HashMap<&str, &Backend> = snapshot
            .table
            .backends()
            .map(|b| (b.id.as_ref(), b.as_ref()))
            .collect();
        self.cursors.retain(|id, _| live.contains_key(id.as_ref()));
        let now = Instant::now();
        self.pins
            .retain(|(id, _), pin| match live.get(id.as_ref()) {
                Some(backend) => backend
                    .affinity
                    .is_some_and(|timeout| now.duration_since(pin.last_used) < timeout),
                None => false,
            });
        if self.pins.len() < MAX_AFFINITY_PINS {
            self.warned_full.store(false, Ordering::Relaxed);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::model::{select_usable, Destination, PortRef, UpstreamProtocol};

    fn backend(id: &str, ips: &[(u8, bool)], affinity: Option<Duration>) -> Backend {
        let mut endpoints: Vec<Endpoint> = ips
            .iter()
            .map(|(last, ready)| {
                Endpoint::new(
                    SocketAddr::from(([10, 0, 0, *last], 80)),
                    *ready,
                    *ready,
                    false,
                )
            })
            .collect();
        let (usable, fallback) = select_usable(&mut endpoints);
        Backend {
            id: Arc::from(id),
            namespace: "default".into(),
            service: "web".into(),
            port: PortRef::Number(80),
            service_port: 80,
            protocol: UpstreamProtocol::Http1,
            affinity,
            destination: Destination::Endpoints {
                endpoints,
                usable,
                fallback,
            },
        }
    }

    fn client(last: u8) -> IpAddr {
        IpAddr::from([192, 0, 2, last])
    }

    #[test]
    fn round_robin_visits_every_usable_endpoint_in_turn() {
        let b = backend("b", &[(1, true), (2, false), (3, true), (4, true)], None);
        let lb = Balancer::new();
        let picks: Vec<u8> = (0..6)
            .map(|_| match lb.pick(&b, client(1), &[]).unwrap().addr.ip() {
                IpAddr::V4(ip) => ip.octets()[3],
                IpAddr::V6(_) => 0,
            })
            .collect();
        assert_eq!(picks, vec![1, 3, 4, 1, 3, 4]);
    }

    #[test]
    fn tried_endpoints_are_skipped_and_none_left_means_none() {
        let b = backend("b", &[(1, true), (2, true)], None);
        let lb = Balancer::new();
        let first = lb.pick(&b, client(1), &[]).unwrap().addr;
        let second = lb.pick(&b, client(1), &[first]).unwrap().addr;
        assert_ne!(first, second);
        assert!(lb.pick(&b, client(1), &[first, second]).is_none());
        let empty = backend("e", &[(1, false)], None);
        assert!(lb.pick(&empty, client(1), &[]).is_none());
    }

    #[test]
    fn client_ip_affinity_keeps_each_client_on_one_endpoint() {
        let b = backend(
            "b",
            &[(1, true), (2, true), (3, true)],
            Some(Duration::from_secs(60)),
        );
        let lb = Balancer::new();
        for c in 1..=6 {
            let first = lb.pick(&b, client(c), &[]).unwrap().addr;
            for _ in 0..10 {
                assert_eq!(lb.pick(&b, client(c), &[]).unwrap().addr, first);
            }
        }
        // Different clients still spread over the endpoints.
        let distinct: std::collections::HashSet<SocketAddr> = (1..=6)
            .map(|c| lb.pick(&b, client(c), &[]).unwrap().addr)
            .collect();
        assert_eq!(distinct.len(), 3);
    }

    #[test]
    fn a_pinned_endpoint_that_stops_being_usable_is_replaced() {
        let lb = Balancer::new();
        let b = backend("b", &[(1, true), (2, true)], Some(Duration::from_secs(60)));
        let pinned = lb.pick(&b, client(9), &[]).unwrap().addr;
        let last = match pinned.ip() {
            IpAddr::V4(ip) => ip.octets()[3],
            IpAddr::V6(_) => 0,
        };
        // Same backend id in a new snapshot, the pinned pod no longer ready.
        let other = if last == 1 { 2 } else { 1 };
        let b2 = backend(
            "b",
            &[(last, false), (other, true)],
            Some(Duration::from_secs(60)),
        );
        let moved = lb.pick(&b2, client(9), &[]).unwrap().addr;
        assert_ne!(moved, pinned);
        // ...and the client stays on its new endpoint.
        assert_eq!(lb.pick(&b2, client(9), &[]).unwrap().addr, moved);
    }

    #[test]
    fn affinity_survives_a_snapshot_swap_with_the_same_backend() {
        let lb = Balancer::new();
        let b = backend(
            "b",
            &[(1, true), (2, true), (3, true)],
            Some(Duration::from_secs(60)),
        );
        let pinned = lb.pick(&b, client(5), &[]).unwrap().addr;
        let rebuilt = backend(
            "b",
            &[(1, true), (2, true), (3, true), (4, true)],
            Some(Duration::from_secs(60)),
        );
        assert_eq!(lb.pick(&rebuilt, client(5), &[]).unwrap().addr, pinned);
    }

    #[test]
    fn an_expired_pin_is_not_honoured() {
        let lb = Balancer::new();
        let b = backend("b", &[(1, true), (2, true)], Some(Duration::from_millis(1)));
        let first = lb.pick(&b, client(1), &[]).unwrap().addr;
        std::thread::sleep(Duration::from_millis(5));
        // Round robin moved on, so an expired pin lands elsewhere.
        assert_ne!(lb.pick(&b, client(1), &[]).unwrap().addr, first);
    }
}
