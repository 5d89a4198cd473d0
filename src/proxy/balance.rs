//! Endpoint choice: round robin over a backend's usable endpoints that are not ejected
//! (`outlier.rs`), `sessionAffinity: ClientIP` pinning a client address to one endpoint
//! while it stays usable, and each backend's retry budget. Routes with annotations steer
//! the choice ([`Steer`]): a key on the backend's hash ring (cookie affinity in balanced
//! mode, `upstream-hash-by`), a group of the ring (`-subset`), the pod a persistent cookie
//! names, or peak EWMA of response time (`load-balance: ewma`).
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
use crate::model::{stable_hash, Backend, Endpoint, Snapshot};

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

/// How a request's endpoint is chosen, when its route asks for more than round robin.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Steer {
    /// Round robin, and the Service's `sessionAffinity: ClientIP`.
    Default,
    /// The endpoint this key goes to on the backend's ring, else the next along it.
    Hash(u64),
    /// Any endpoint of the group of `size` this key goes to.
    Subset(u64, usize),
    /// The endpoint a persistent session cookie names by its token (None: no cookie).
    Token(Option<u64>),
    /// The better of two random endpoints by peak EWMA of response time and load.
    Ewma,
}

/// Peak EWMA of an endpoint's response time (Finagle's and linkerd's load metric): a slow
/// response counts at once, fast ones pull the average down over [`EWMA_DECAY`].
struct Ewma {
    /// Nanoseconds.
    cost: f64,
    stamp: Instant,
    pending: u32,
}

/// How fast the response time average forgets.
const EWMA_DECAY: f64 = 10e9;

/// What an endpoint with no measure yet but requests in flight costs, per request: it is
/// tried, but not flooded before its first answer.
const EWMA_PENALTY: f64 = 1e9;

pub struct Balancer {
    backends: DashMap<Arc<str>, BackendState, RandomState>,
    pins: DashMap<(Arc<str>, IpAddr), Pin, RandomState>,
    warned_full: AtomicBool,
    outliers: Arc<Outliers>,
    ewma: DashMap<SocketAddr, Ewma, RandomState>,
    /// The key persistent session-cookie tokens are made with.
    cookie_key: aws_lc_rs::hmac::Key,
}

impl Balancer {
    pub fn new(outliers: Arc<Outliers>) -> Self {
        Self::with_cookie_key(outliers, None)
    }

    /// `key`: the secret persistent session-cookie tokens are made with, the same in every
    /// replica (None: a random one, good for this process only).
    pub fn with_cookie_key(outliers: Arc<Outliers>, key: Option<&[u8]>) -> Self {
        let random;
        let key = match key {
            Some(key) => key,
            None => {
                let mut bytes = [0u8; 32];
                // aws-lc's generator does not fail on the platforms it builds for; should
                // it, the key is still secret enough for tokens: the time and the address
                // of this value.
                if aws_lc_rs::rand::fill(&mut bytes).is_err() {
                    let fallback =
                        stable_hash((std::time::SystemTime::now(), &bytes as *const _ as usize));
                    bytes[..8].copy_from_slice(&fallback.to_le_bytes());
                }
                random = bytes;
                &random
            }
        };
        Self {
            backends: DashMap::default(),
            pins: DashMap::default(),
            warned_full: AtomicBool::new(false),
            outliers,
            ewma: DashMap::default(),
            cookie_key: aws_lc_rs::hmac::Key::new(aws_lc_rs::hmac::HMAC_SHA256, key),
        }
    }

    /// The token a persistent session cookie names `endpoint` of `backend` by: a keyed
    /// hash, so the cookie never reveals the pod's address.
    pub fn token(&self, backend: &Backend, endpoint: &Endpoint) -> u64 {
        let mut ctx = aws_lc_rs::hmac::Context::with_key(&self.cookie_key);
        ctx.update(backend.id.as_bytes());
        ctx.update(&[0]);
        ctx.update(endpoint.addr.to_string().as_bytes());
        let tag = ctx.sign();
        let mut first = [0u8; 8];
        first.copy_from_slice(&tag.as_ref()[..8]);
        u64::from_be_bytes(first)
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
        self.pick_steered(backend, client, tried, Steer::Default)
    }

    /// [`Balancer::pick`], steered as the route asks.
    pub fn pick_steered<'b>(
        &self,
        backend: &'b Backend,
        client: IpAddr,
        tried: &[SocketAddr],
        steer: Steer,
    ) -> Option<&'b Endpoint> {
        if backend.usable_count() == 0 {
            return None;
        }
        let state = self.state(backend);
        if tried.is_empty() && state.retry_tokens.load(Ordering::Relaxed) < RETRY_CAP {
            state.retry_tokens.fetch_add(1, Ordering::Relaxed);
        }
        match steer {
            Steer::Default => {}
            Steer::Hash(key) => {
                return self
                    .first_admitted(backend, backend.ring().walk(key), tried)
                    .or_else(|| self.round_robin(backend, &state, tried));
            }
            Steer::Subset(key, size) => {
                let subsets = backend.subsets(size);
                let group = subsets.group(key);
                let start = fastrand::usize(..group.len().max(1));
                let members = (0..group.len()).map(|k| group[(start + k) % group.len()]);
                if let Some(e) = self.first_admitted(backend, members, tried) {
                    return Some(e);
                }
                return self.round_robin(backend, &state, tried);
            }
            Steer::Token(token) => {
                if let Some(e) = token.and_then(|t| self.by_token(backend, t)) {
                    if !tried.contains(&e.addr) && self.outliers.admit(e.addr) {
                        return Some(e);
                    }
                }
                return self.round_robin(backend, &state, tried);
            }
            Steer::Ewma => return self.ewma_pick(backend, tried),
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

    /// The usable endpoint a persistent cookie's token names.
    pub fn by_token<'b>(&self, backend: &'b Backend, token: u64) -> Option<&'b Endpoint> {
        let tokens = backend.derived.tokens.get_or_init(|| {
            backend
                .usable_indexes()
                .iter()
                .filter_map(|&i| backend.endpoint(i).map(|e| (self.token(backend, e), i)))
                .collect()
        });
        tokens.get(&token).and_then(|&i| backend.endpoint(i))
    }

    /// The first endpoint of `candidates` (indexes, repeats allowed) not tried and not
    /// ejected; else the first not tried. Stops once every usable endpoint was seen.
    fn first_admitted<'b>(
        &self,
        backend: &'b Backend,
        candidates: impl Iterator<Item = u32>,
        tried: &[SocketAddr],
    ) -> Option<&'b Endpoint> {
        let mut fallback = None;
        let mut seen: Vec<bool> = Vec::new();
        let mut distinct = 0;
        for i in candidates {
            let Some(e) = backend.endpoint(i) else {
                continue;
            };
            if seen.is_empty() {
                // The first candidate is almost always taken: no bookkeeping before it.
                if !tried.contains(&e.addr) && self.outliers.admit(e.addr) {
                    return Some(e);
                }
                seen = vec![false; backend.endpoint_count()];
            }
            match seen.get_mut(i as usize) {
                Some(s) if !*s => *s = true,
                _ => continue,
            }
            distinct += 1;
            if !tried.contains(&e.addr) {
                if self.outliers.admit(e.addr) {
                    return Some(e);
                }
                fallback = fallback.or(Some(e));
            }
            if distinct >= backend.usable_count() {
                break;
            }
        }
        fallback
    }

    /// Power of two choices by peak EWMA × (requests in flight + 1); the chosen one's
    /// in-flight count goes up until [`Balancer::ewma_observe`].
    fn ewma_pick<'b>(&self, backend: &'b Backend, tried: &[SocketAddr]) -> Option<&'b Endpoint> {
        let untried: Vec<&Endpoint> = backend
            .usable()
            .filter(|e| !tried.contains(&e.addr))
            .collect();
        let admitted: Vec<&Endpoint> = untried
            .iter()
            .copied()
            .filter(|e| self.outliers.admit(e.addr))
            .collect();
        let pool = if admitted.is_empty() {
            &untried
        } else {
            &admitted
        };
        let chosen = match pool.len() {
            0 => return None,
            1 => pool[0],
            n => {
                let a = fastrand::usize(..n);
                let mut b = fastrand::usize(..n - 1);
                if b >= a {
                    b += 1;
                }
                let now = Instant::now();
                if self.ewma_score(pool[a].addr, now) <= self.ewma_score(pool[b].addr, now) {
                    pool[a]
                } else {
                    pool[b]
                }
            }
        };
        self.ewma
            .entry(chosen.addr)
            .or_insert_with(|| Ewma {
                cost: 0.0,
                stamp: Instant::now(),
                pending: 0,
            })
            .pending += 1;
        Some(chosen)
    }

    fn ewma_score(&self, addr: SocketAddr, now: Instant) -> f64 {
        let Some(e) = self.ewma.get(&addr) else {
            return 0.0;
        };
        let elapsed = now.saturating_duration_since(e.stamp).as_nanos() as f64;
        let cost = e.cost * (-elapsed / EWMA_DECAY).exp();
        if cost == 0.0 {
            return f64::from(e.pending) * EWMA_PENALTY;
        }
        cost * f64::from(e.pending + 1)
    }

    /// An attempt picked by [`Steer::Ewma`] ended: its response time (a failure counts as
    /// at least a second, so a pod that fails fast does not draw traffic).
    pub fn ewma_observe(&self, addr: SocketAddr, took: std::time::Duration, failed: bool) {
        let Some(mut e) = self.ewma.get_mut(&addr) else {
            return;
        };
        let now = Instant::now();
        let mut rtt = took.as_nanos() as f64;
        if failed {
            rtt = rtt.max(1e9);
        }
        let elapsed = now.saturating_duration_since(e.stamp).as_nanos() as f64;
        let w = (-elapsed / EWMA_DECAY).exp();
        e.cost = if rtt > e.cost {
            rtt
        } else {
            e.cost * w + rtt * (1.0 - w)
        };
        e.stamp = now;
        e.pending = e.pending.saturating_sub(1);
    }

    /// An attempt picked by [`Steer::Ewma`] ended without a response to measure.
    pub fn ewma_cancel(&self, addr: SocketAddr) {
        if let Some(mut e) = self.ewma.get_mut(&addr) {
            e.pending = e.pending.saturating_sub(1);
        }
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
        if !self.ewma.is_empty() {
            let addrs: std::collections::HashSet<SocketAddr> = live
                .values()
                .flat_map(|b| b.usable().map(|e| e.addr))
                .collect();
            self.ewma
                .retain(|addr, e| e.pending > 0 || addrs.contains(addr));
        }
        self.outliers.sweep();
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;
    use crate::admin::metrics::Metrics;
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
                selection: Default::default(),
            },
            derived: Default::default(),
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

    #[test]
    fn a_hash_key_keeps_its_endpoint_across_snapshots_and_skips_a_tried_one() {
        let lb = balancer();
        let b = backend("b", &[(1, true), (2, true), (3, true)], None);
        let rebuilt = backend("b", &[(1, true), (2, true), (3, true)], None);
        for key in 0..50u64 {
            let key = stable_hash(key);
            let first = lb
                .pick_steered(&b, client(1), &[], Steer::Hash(key))
                .unwrap()
                .addr;
            assert_eq!(
                lb.pick_steered(&rebuilt, client(2), &[], Steer::Hash(key))
                    .unwrap()
                    .addr,
                first
            );
            let next = lb
                .pick_steered(&b, client(1), &[first], Steer::Hash(key))
                .unwrap()
                .addr;
            assert_ne!(next, first);
        }
    }

    #[test]
    fn a_token_names_its_endpoint_and_an_unknown_one_falls_back() {
        let lb = balancer();
        let b = backend("b", &[(1, true), (2, true), (3, true)], None);
        let Destination::Endpoints { endpoints, .. } = &b.destination else {
            unreachable!()
        };
        for e in endpoints {
            let t = lb.token(&b, e);
            for _ in 0..3 {
                assert_eq!(
                    lb.pick_steered(&b, client(1), &[], Steer::Token(Some(t)))
                        .unwrap()
                        .addr,
                    e.addr
                );
            }
        }
        // Another key, other tokens: cookies of one deployment mean nothing to another.
        let other = Balancer::with_cookie_key(lb.outliers().clone(), Some(b"another secret"));
        assert_ne!(other.token(&b, &endpoints[0]), lb.token(&b, &endpoints[0]));
        assert!(lb
            .pick_steered(&b, client(1), &[], Steer::Token(Some(42)))
            .is_some());
    }

    #[test]
    fn ewma_prefers_the_endpoint_that_answers_faster() {
        let lb = balancer();
        let b = backend("b", &[(1, true), (2, true)], None);
        let slow = SocketAddr::from(([10, 0, 0, 1], 80));
        let fast = SocketAddr::from(([10, 0, 0, 2], 80));
        for addr in [slow, fast] {
            // One measured answer each.
            loop {
                let e = lb
                    .pick_steered(&b, client(1), &[], Steer::Ewma)
                    .unwrap()
                    .addr;
                let took = if e == slow { 200 } else { 2 };
                lb.ewma_observe(e, Duration::from_millis(took), false);
                if e == addr {
                    break;
                }
            }
        }
        for _ in 0..50 {
            let e = lb
                .pick_steered(&b, client(1), &[], Steer::Ewma)
                .unwrap()
                .addr;
            assert_eq!(e, fast);
            lb.ewma_observe(e, Duration::from_millis(2), false);
        }
        // In flight counts too: a pile-up on the fast one sends the next elsewhere.
        for _ in 0..200 {
            lb.pick_steered(&b, client(1), &[slow], Steer::Ewma);
        }
        assert_eq!(
            lb.pick_steered(&b, client(1), &[], Steer::Ewma)
                .unwrap()
                .addr,
            slow
        );
    }
}
