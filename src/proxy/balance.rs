//! Endpoint choice: round robin over a backend's usable endpoints that are not ejected
//! (`outlier.rs`), `sessionAffinity: ClientIP` pinning a client address to one endpoint
//! while it stays usable, and each backend's retry budget.
//!
//! The state (a cursor and a retry budget per backend, a pin per client and backend) lives
//! here, outside the snapshot, keyed by the backend's stable id and the endpoint address, so
//! publishing a new snapshot neither resets round robin nor moves pinned clients.

use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::Instant;

use dashmap::DashMap;
use foldhash::fast::RandomState;
use tracing::warn;

use super::outlier::Outliers;
use crate::model::{Backend, Endpoint, Snapshot};

/// Most client pins kept at once; beyond it new clients are balanced without a pin rather
/// than letting a flood of source addresses (IPv6 makes that cheap) grow memory unbounded.
pub const MAX_AFFINITY_PINS: usize = 262_144;

/// The retry budget, in tokens: every request deposits one, a retry after the request
/// reached a pod costs [`RETRY_COST`], so retries add at most ~20 % to a backend's load
/// (tower's and linkerd's budget, without a clock read per request). A new backend starts
/// with [`RETRY_RESERVE`]; at most [`RETRY_CAP`] are banked, so a long quiet spell does not
/// pay for a retry storm.
const RETRY_COST: u32 = 5;
const RETRY_RESERVE: u32 = 10 * RETRY_COST;
const RETRY_CAP: u32 = 100 * RETRY_COST;

struct Pin {
    addr: SocketAddr,
    last_used: Instant,
}

struct BackendState {
    cursor: AtomicUsize,
    retry_tokens: AtomicU32,
}

impl Default for BackendState {
    fn default() -> Self {
        Self {
            cursor: AtomicUsize::new(0),
            retry_tokens: AtomicU32::new(RETRY_RESERVE),
        }
    }
}

pub struct Balancer {
    backends: DashMap<Arc<str>, BackendState, RandomState>,
    pins: DashMap<(Arc<str>, IpAddr), Pin, RandomState>,
    warned_full: AtomicBool,
    outliers: Arc<Outliers>,
}

impl Balancer {
    pub fn new(outliers: Arc<Outliers>) -> Self {
        Self {
            backends: DashMap::default(),
            pins: DashMap::default(),
            warned_full: AtomicBool::new(false),
            outliers,
        }
    }

    /// Passive health of the endpoints this balancer picks from.
    pub fn outliers(&self) -> &Arc<Outliers> {
        &self.outliers
    }

    /// Picks a usable endpoint of `backend` for `client`, skipping `tried` ones (none
    /// tried: a new request, which pays into the backend's retry budget).
    pub fn pick<'b>(
        &self,
        backend: &'b Backend,
        client: IpAddr,
        tried: &[SocketAddr],
    ) -> Option<&'b Endpoint> {
        if backend.usable_count() == 0 {
            return None;
        }
        let state = self.state(backend);
        if tried.is_empty() && state.retry_tokens.load(Ordering::Relaxed) < RETRY_CAP {
            state.retry_tokens.fetch_add(1, Ordering::Relaxed);
        }
        let Some(timeout) = backend.affinity else {
            return self.round_robin(backend, &state, tried);
        };
        let now = Instant::now();
        let key = (backend.id.clone(), client);
        if let Some(mut pin) = self.pins.get_mut(&key) {
            if now.duration_since(pin.last_used) < timeout && !tried.contains(&pin.addr) {
                if let Some(endpoint) = backend.usable().find(|e| e.addr == pin.addr) {
                    if self.outliers.admit(endpoint.addr) {
                        pin.last_used = now;
                        return Some(endpoint);
                    }
                }
            }
        }
        let endpoint = self.round_robin(backend, &state, tried)?;
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

    /// Takes a retry from `backend`'s budget; false when it is spent.
    pub fn try_retry(&self, backend: &Backend) -> bool {
        let state = self.state(backend);
        state
            .retry_tokens
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |t| {
                t.checked_sub(RETRY_COST)
            })
            .is_ok()
    }

    fn state<'a>(
        &'a self,
        backend: &Backend,
    ) -> dashmap::mapref::one::Ref<'a, Arc<str>, BackendState> {
        match self.backends.get(backend.id.as_ref()) {
            Some(state) => state,
            None => self
                .backends
                .entry(backend.id.clone())
                .or_default()
                .downgrade(),
        }
    }

    /// The next endpoint in turn that was not tried and is not ejected; if every untried
    /// one is ejected, the next untried one anyway.
    fn round_robin<'b>(
        &self,
        backend: &'b Backend,
        state: &BackendState,
        tried: &[SocketAddr],
    ) -> Option<&'b Endpoint> {
        let start = state.cursor.fetch_add(1, Ordering::Relaxed);
        let count = backend.usable_count();
        let mut untried = (0..count)
            .filter_map(|i| backend.usable_nth(start.wrapping_add(i)))
            .filter(|e| !tried.contains(&e.addr));
        let first = untried.next()?;
        if self.outliers.admit(first.addr) {
            return Some(first);
        }
        untried
            .find(|e| self.outliers.admit(e.addr))
            .or(Some(first))
    }

    /// Drops state of backends the snapshot no longer has, and pins that have expired.
    pub fn retain(&self, snapshot: &Snapshot) {
        let live: std::collections::HashMap<&str, &Backend> = snapshot
            .table
            .backends()
            .map(|b| (b.id.as_ref(), b.as_ref()))
            .collect();
        self.backends.retain(|id, _| live.contains_key(id.as_ref()));
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
        self.outliers.sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::metrics::Metrics;
    use crate::model::{select_usable, Destination, PortRef, UpstreamProtocol};
    use crate::proxy::outlier::{Failure, OutlierSettings};

    fn balancer() -> Balancer {
        Balancer::new(Arc::new(Outliers::new(
            OutlierSettings::default(),
            Arc::new(Metrics::new()),
        )))
    }

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
        let lb = balancer();
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
        let lb = balancer();
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
        let lb = balancer();
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
        let lb = balancer();
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
        let lb = balancer();
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
        let lb = balancer();
        let b = backend("b", &[(1, true), (2, true)], Some(Duration::from_millis(1)));
        let first = lb.pick(&b, client(1), &[]).unwrap().addr;
        std::thread::sleep(Duration::from_millis(5));
        // Round robin moved on, so an expired pin lands elsewhere.
        assert_ne!(lb.pick(&b, client(1), &[]).unwrap().addr, first);
    }

    #[test]
    fn ejected_endpoints_are_skipped_unless_nothing_else_is_left() {
        let b = backend("b", &[(1, true), (2, true), (3, true)], None);
        let lb = balancer();
        let bad = SocketAddr::from(([10, 0, 0, 2], 80));
        for _ in 0..5 {
            lb.outliers().failure(bad, &b, Failure::Status(503));
        }
        for _ in 0..12 {
            assert_ne!(lb.pick(&b, client(1), &[]).unwrap().addr, bad);
        }
        let others = [
            SocketAddr::from(([10, 0, 0, 1], 80)),
            SocketAddr::from(([10, 0, 0, 3], 80)),
        ];
        assert_eq!(lb.pick(&b, client(1), &others).unwrap().addr, bad);
    }

    #[test]
    fn the_retry_budget_is_a_fifth_of_the_requests_plus_a_reserve() {
        let b = backend("b", &[(1, true)], None);
        let lb = balancer();
        lb.pick(&b, client(1), &[]);
        let mut reserve = 0;
        while lb.try_retry(&b) {
            reserve += 1;
        }
        assert_eq!(reserve, 10);
        for _ in 0..100 {
            lb.pick(&b, client(1), &[]);
        }
        let mut earned = 0;
        while lb.try_retry(&b) {
            earned += 1;
        }
        assert_eq!(earned, 20);
    }
}
