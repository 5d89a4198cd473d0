//! Passive health checks (outlier ejection): an endpoint that keeps failing is taken out of
//! rotation for a while, so one broken pod among three stops costing a third of all
//! requests.
//!
//! A gateway failure is a connection that could not be made, a connection reset or closed
//! before the response was complete (before its head, or cutting its body short), a
//! response that did not come in time, or a 502/503/504 from the pod. After
//! `consecutive_failures` of them in a row (5 by default, Envoy's and ingress-nginx's
//! `max_fails`-like default) the endpoint is ejected for `base_ejection` (30 s) times the
//! number of times it has been ejected, at most `max_ejection` (5 min). Then it gets one
//! trial request: success puts it back, failure ejects it again for longer. Never more than
//! `max_ejected_percent` (50 %) of a backend's endpoints are out at once, and if every
//! endpoint a request could use is out, they are used anyway (better a likely failure than
//! a certain 503).
//!
//! The state lives outside the snapshot, keyed by endpoint address, like the balancer's.
//! While no endpoint has failed, the request path only reads one counter.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};
use std::time::{Duration, Instant};

use serde::Serialize;
use tracing::{info, warn};

use crate::admin::metrics::Metrics;
use crate::model::Backend;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OutlierSettings {
    /// Gateway failures in a row that eject an endpoint; 0 turns ejection off.
    pub consecutive_failures: u32,
    /// The first ejection's length; the n-th lasts n times as long.
    pub base_ejection: Duration,
    /// The longest ejection.
    pub max_ejection: Duration,
    /// The most of a backend's endpoints ejected at once, in percent.
    pub max_ejected_percent: u8,
}

impl Default for OutlierSettings {
    fn default() -> Self {
        Self {
            consecutive_failures: 5,
            base_ejection: Duration::from_secs(30),
            max_ejection: Duration::from_secs(300),
            max_ejected_percent: 50,
        }
    }
}

/// Why a request to an endpoint failed, as far as ejection is concerned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase", tag = "kind", content = "status")]
pub enum Failure {
    /// The connection could not be made.
    Connect,
    /// The connection was reset or closed before the response was complete.
    Reset,
    /// No response (head, or more of the body) in time.
    Timeout,
    /// The pod answered 502, 503 or 504.
    Status(u16),
}

impl Failure {
    pub fn describe(self) -> String {
        match self {
            Failure::Connect => "connection failed".into(),
            Failure::Reset => "connection reset or closed mid-response".into(),
            Failure::Timeout => "timed out".into(),
            Failure::Status(s) => format!("answered {s}"),
        }
    }

    fn label(self) -> &'static str {
        match self {
            Failure::Connect => "connect",
            Failure::Reset => "reset",
            Failure::Timeout => "timeout",
            Failure::Status(502) => "502",
            Failure::Status(503) => "503",
            Failure::Status(_) => "504",
        }
    }
}

/// A response status that counts as a gateway failure.
pub fn is_gateway_failure(status: u16) -> bool {
    matches!(status, 502..=504)
}

#[derive(Debug)]
struct Health {
    consecutive: u32,
    /// Times ejected (the multiplier of the next ejection), forgotten after `max_ejection`
    /// of good health.
    ejections: u32,
    ejected_until: Option<Instant>,
    /// When the current trial request after an ejection started.
    trial: Option<Instant>,
    last_failure: Failure,
    last_failure_at: Instant,
    /// Since when the endpoint has not been ejected.
    healthy_since: Instant,
    /// The labels of the gauge that shows the ejection (backend, reason).
    gauge: Option<(Arc<str>, &'static str)>,
}

/// An ejected endpoint, for `/debug/routes` and `/debug/explain`.
#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Ejection {
    pub reason: Failure,
    /// Gateway failures in a row that led to it.
    pub failures: u32,
    pub times_ejected: u32,
    /// Seconds left; 0 once a trial request may go.
    pub seconds_left: u64,
}

impl Ejection {
    pub fn describe(&self) -> String {
        let left = if self.seconds_left == 0 {
            "on trial: the next request tests it".to_owned()
        } else {
            format!("{} s left", self.seconds_left)
        };
        format!(
            "ejected after {} gateway failures in a row (last: {}); ejection #{}, {left}",
            self.failures,
            self.reason.describe(),
            self.times_ejected
        )
    }
}

type Map = HashMap<SocketAddr, Health, foldhash::fast::RandomState>;

pub struct Outliers {
    settings: OutlierSettings,
    endpoints: RwLock<Map>,
    /// Endpoints with any state: zero means nothing failed, and nothing is looked up.
    tracked: AtomicUsize,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Outliers {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Outliers")
            .field("settings", &self.settings)
            .field("tracked", &self.tracked)
            .finish_non_exhaustive()
    }
}

impl Outliers {
    pub fn new(settings: OutlierSettings, metrics: Arc<Metrics>) -> Self {
        Self {
            settings,
            endpoints: RwLock::new(HashMap::default()),
            tracked: AtomicUsize::new(0),
            metrics,
        }
    }

    fn enabled(&self) -> bool {
        self.settings.consecutive_failures > 0
    }

    fn active(&self) -> bool {
        self.tracked.load(Ordering::Relaxed) > 0
    }

    fn read(&self) -> RwLockReadGuard<'_, Map> {
        self.endpoints.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Map> {
        self.endpoints.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a request may go to `addr` now. An endpoint whose ejection ran out is
    /// admitted for one trial request at a time.
    pub fn admit(&self, addr: SocketAddr) -> bool {
        if !self.active() {
            return true;
        }
        let now = Instant::now();
        // Most endpoints are not ejected: decided under the shared lock.
        match self.read().get(&addr).and_then(|h| h.ejected_until) {
            None => return true,
            Some(until) if now < until => return false,
            Some(_) => {}
        }
        let mut endpoints = self.write();
        let Some(health) = endpoints.get_mut(&addr) else {
            return true;
        };
        if health.ejected_until.is_none_or(|until| now < until) {
            return health.ejected_until.is_none();
        }
        match health.trial {
            // A trial that never reported back (its client went away) does not block
            // the endpoint for ever.
            Some(started) if now.duration_since(started) < self.settings.base_ejection => false,
            _ => {
                health.trial = Some(now);
                true
            }
        }
    }

    /// A request to `addr` got a good response.
    pub fn success(&self, addr: SocketAddr) {
        if !self.active() {
            return;
        }
        let clean = self
            .read()
            .get(&addr)
            .is_none_or(|h| h.consecutive == 0 && h.ejected_until.is_none());
        if clean {
            return;
        }
        let mut endpoints = self.write();
        let Some(health) = endpoints.get_mut(&addr) else {
            return;
        };
        health.consecutive = 0;
        if health.ejected_until.take().is_some() {
            health.trial = None;
            health.healthy_since = Instant::now();
            info!(endpoint = %addr, "endpoint passed its trial request; back in rotation");
            if let Some((backend, reason)) = health.gauge.take() {
                self.metrics.endpoint_restored(&backend, addr, reason);
            }
        }
    }

    /// A request to `addr`, an endpoint of `backend`, failed. Returns whether this ejected it.
    pub fn failure(&self, addr: SocketAddr, backend: &Backend, failure: Failure) -> bool {
        if !self.enabled() {
            return false;
        }
        let now = Instant::now();
        let mut endpoints = self.write();
        let health = endpoints.entry(addr).or_insert_with(|| {
            self.tracked.fetch_add(1, Ordering::Relaxed);
            Health {
                consecutive: 0,
                ejections: 0,
                ejected_until: None,
                trial: None,
                last_failure: failure,
                last_failure_at: now,
                healthy_since: now,
                gauge: None,
            }
        });
        health.consecutive = health.consecutive.saturating_add(1);
        health.last_failure = failure;
        health.last_failure_at = now;
        let on_trial = health.ejected_until.is_some_and(|until| now >= until);
        let eject = if health.ejected_until.is_some() {
            // Already out; only a failed trial sends it back out (for longer).
            on_trial
        } else {
            health.consecutive >= self.settings.consecutive_failures
        };
        if !eject {
            return false;
        }
        if !on_trial && !self.room_to_eject(&endpoints, backend) {
            return false;
        }
        let Some(health) = endpoints.get_mut(&addr) else {
            return false;
        };
        health.ejections = health.ejections.saturating_add(1);
        let length = self
            .settings
            .base_ejection
            .saturating_mul(health.ejections)
            .min(self.settings.max_ejection);
        health.ejected_until = Some(now + length);
        health.trial = None;
        warn!(endpoint = %addr, backend = %backend.id, failures = health.consecutive,
            last = %failure.describe(), ejected_for = ?length, times = health.ejections,
            "endpoint ejected after consecutive gateway failures");
        if health.gauge.is_none() {
            self.metrics
                .endpoint_ejected(&backend.id, addr, failure.label());
            health.gauge = Some((backend.id.clone(), failure.label()));
        }
        true
    }

    /// Whether one more of `backend`'s endpoints may be ejected.
    fn room_to_eject(&self, endpoints: &Map, backend: &Backend) -> bool {
        let total = backend.usable_count();
        let allowed = total * usize::from(self.settings.max_ejected_percent.min(100)) / 100;
        let out = backend
            .usable()
            .filter(|e| {
                endpoints
                    .get(&e.addr)
                    .is_some_and(|h| h.ejected_until.is_some())
            })
            .count();
        out < allowed
    }

    /// The ejection of `addr`, if it is out of rotation (or on trial).
    pub fn ejection(&self, addr: SocketAddr) -> Option<Ejection> {
        if !self.active() {
            return None;
        }
        let endpoints = self.read();
        let health = endpoints.get(&addr)?;
        let until = health.ejected_until?;
        Some(Ejection {
            reason: health.last_failure,
            failures: health.consecutive,
            times_ejected: health.ejections,
            seconds_left: until
                .saturating_duration_since(Instant::now())
                .as_secs_f64()
                .ceil() as u64,
        })
    }

    /// Forgets endpoints that recovered (healthy for `max_ejection`, so their next
    /// ejection starts short again), and those nobody has sent a request to for that long
    /// (gone from the table).
    pub fn sweep(&self) {
        if !self.active() {
            return;
        }
        let now = Instant::now();
        let forget = self.settings.max_ejection;
        let mut endpoints = self.write();
        endpoints.retain(|addr, h| {
            let keep = match h.ejected_until {
                Some(until) => now < until + forget,
                None => {
                    (h.consecutive > 0 && now.duration_since(h.last_failure_at) < forget)
                        || (h.ejections > 0 && now.duration_since(h.healthy_since) < forget)
                }
            };
            if !keep {
                if let Some((backend, reason)) = h.gauge.take() {
                    self.metrics.endpoint_restored(&backend, *addr, reason);
                }
            }
            keep
        });
        self.tracked.store(endpoints.len(), Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::{select_usable, Destination, Endpoint, PortRef, UpstreamProtocol};

    fn backend(n: u8) -> Backend {
        let mut endpoints: Vec<Endpoint> = (1..=n)
            .map(|i| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 80)), true, true, false))
            .collect();
        let (usable, fallback) = select_usable(&mut endpoints);
        Backend {
            id: Arc::from("default/web:80"),
            namespace: "default".into(),
            service: "web".into(),
            port: PortRef::Number(80),
            service_port: 80,
            protocol: UpstreamProtocol::Http1,
            affinity: None,
            destination: Destination::Endpoints {
                endpoints,
                usable,
                fallback,
                selection: Default::default(),
            },
            derived: Default::default(),
        }
    }

    fn addr(i: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, i], 80))
    }

    fn outliers(base: Duration) -> Outliers {
        Outliers::new(
            OutlierSettings {
                base_ejection: base,
                ..OutlierSettings::default()
            },
            Arc::new(Metrics::new()),
        )
    }

    #[test]
    fn five_failures_in_a_row_eject_and_a_success_in_between_resets() {
        let o = outliers(Duration::from_secs(30));
        let b = backend(3);
        for _ in 0..4 {
            assert!(!o.failure(addr(1), &b, Failure::Status(503)));
        }
        o.success(addr(1));
        for _ in 0..4 {
            assert!(!o.failure(addr(1), &b, Failure::Status(503)));
        }
        assert!(o.admit(addr(1)));
        assert!(o.failure(addr(1), &b, Failure::Status(503)));
        assert!(!o.admit(addr(1)));
        assert!(o.admit(addr(2)));
        let e = o.ejection(addr(1)).unwrap();
        assert_eq!(e.reason, Failure::Status(503));
        assert_eq!(e.times_ejected, 1);
        assert!(e.seconds_left > 25 && e.seconds_left <= 30, "{e:?}");
    }

    #[test]
    fn at_most_half_of_a_backends_endpoints_are_ejected() {
        let o = outliers(Duration::from_secs(30));
        let b = backend(3);
        for i in 1..=3 {
            for _ in 0..5 {
                o.failure(addr(i), &b, Failure::Reset);
            }
        }
        let out = (1..=3).filter(|&i| !o.admit(addr(i))).count();
        assert_eq!(out, 1, "one of three (50 % rounded down)");
        let single = backend(1);
        let o = outliers(Duration::from_secs(30));
        for _ in 0..10 {
            o.failure(addr(1), &single, Failure::Connect);
        }
        assert!(o.admit(addr(1)), "the only endpoint is never ejected");
    }

    #[test]
    fn after_the_ejection_one_trial_decides() {
        let o = outliers(Duration::from_millis(30));
        let b = backend(2);
        for _ in 0..5 {
            o.failure(addr(1), &b, Failure::Status(502));
        }
        assert!(!o.admit(addr(1)));
        std::thread::sleep(Duration::from_millis(40));
        assert!(o.admit(addr(1)), "the trial request");
        assert!(!o.admit(addr(1)), "one trial at a time");
        // The trial fails: out again, twice as long.
        assert!(o.failure(addr(1), &b, Failure::Status(502)));
        let e = o.ejection(addr(1)).unwrap();
        assert_eq!(e.times_ejected, 2);
        std::thread::sleep(Duration::from_millis(70));
        assert!(o.admit(addr(1)));
        o.success(addr(1));
        assert!(o.ejection(addr(1)).is_none());
        assert!(o.admit(addr(1)) && o.admit(addr(1)));
    }

    #[test]
    fn nothing_is_tracked_until_something_fails_and_recovered_endpoints_are_forgotten() {
        let o = Outliers::new(
            OutlierSettings {
                base_ejection: Duration::from_millis(1),
                max_ejection: Duration::from_millis(1),
                ..OutlierSettings::default()
            },
            Arc::new(Metrics::new()),
        );
        assert!(!o.active());
        let b = backend(2);
        o.failure(addr(1), &b, Failure::Timeout);
        assert!(o.active());
        o.success(addr(1));
        for _ in 0..5 {
            o.failure(addr(2), &b, Failure::Timeout);
        }
        std::thread::sleep(Duration::from_millis(5));
        assert!(o.admit(addr(2)));
        o.success(addr(2));
        std::thread::sleep(Duration::from_millis(5));
        o.sweep();
        assert!(!o.active());
    }

    #[test]
    fn ejection_can_be_turned_off() {
        let o = Outliers::new(
            OutlierSettings {
                consecutive_failures: 0,
                ..OutlierSettings::default()
            },
            Arc::new(Metrics::new()),
        );
        let b = backend(3);
        for _ in 0..20 {
            assert!(!o.failure(addr(1), &b, Failure::Connect));
        }
        assert!(o.admit(addr(1)));
    }
}
