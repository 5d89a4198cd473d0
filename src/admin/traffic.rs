//! The last minute of traffic per pod address, for the dashboard: requests by status class,
//! latency percentiles, connect errors. A backend's figures are the sum of its endpoints'.
//!
//! Fed by the same events as the `/metrics` counters (each answered request, each failed
//! connection), into a ring of [`SLOTS`] slots of [`SLOT`] each per address: one map
//! lookup and a few relaxed atomic additions per request, no lock held. Memory is bounded
//! whatever the number of routes: at most [`MAX_ADDRESSES`] addresses are followed (the
//! ones that get traffic; beyond that, new ones are not), and an address without traffic
//! for a whole window is dropped by [`Traffic::sweep`].
//!
//! Slots are recycled without a lock, so a request counted at the very moment its slot
//! turns over may be lost: these are dashboard figures, `/metrics` has the exact counts.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU32, AtomicU64, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use dashmap::DashMap;
use foldhash::fast::RandomState;
use http::StatusCode;
use serde::Serialize;

/// Slots in the window.
pub const SLOTS: usize = 6;
/// One slot's length: the window is the last `SLOTS × SLOT` (one minute).
pub const SLOT: Duration = Duration::from_secs(10);
/// Addresses followed at most (about 0.5 KiB each).
pub const MAX_ADDRESSES: usize = 8192;
/// Latency bucket upper bounds, milliseconds; one more bucket holds the rest.
const BOUNDS_MS: [u32; 13] = [1, 2, 5, 10, 25, 50, 100, 250, 500, 1000, 2500, 5000, 10000];
const BUCKETS: usize = BOUNDS_MS.len() + 1;

#[derive(Default)]
struct Slot {
    /// Which slot number (time since start / SLOT) the counts belong to.
    tick: AtomicU64,
    /// Answers by class: below 300, 3xx, 4xx, 5xx.
    statuses: [AtomicU32; 4],
    latency: [AtomicU32; BUCKETS],
    connect_errors: AtomicU32,
}

/// One address's window.
struct Window {
    slots: [Slot; SLOTS],
    /// When it was first seen (a window younger than a minute is averaged over its age).
    since: Instant,
}

impl Window {
    fn new(now: Instant) -> Self {
        Self {
            slots: Default::default(),
            since: now,
        }
    }

    /// The slot for `tick`, emptied first if it still holds an older slot's counts.
    fn slot(&self, tick: u64) -> &Slot {
        let slot = &self.slots[(tick % SLOTS as u64) as usize];
        let held = slot.tick.load(Relaxed);
        if held != tick
            && slot
                .tick
                .compare_exchange(held, tick, Relaxed, Relaxed)
                .is_ok()
        {
            for c in slot.statuses.iter().chain(&slot.latency) {
                c.store(0, Relaxed);
            }
            slot.connect_errors.store(0, Relaxed);
        }
        slot
    }

    fn add_into(&self, tick: u64, now: Instant, sum: &mut Figures) {
        for slot in &self.slots {
            let t = slot.tick.load(Relaxed);
            if t > tick || tick - t >= SLOTS as u64 {
                continue;
            }
            for (total, c) in sum.statuses.iter_mut().zip(&slot.statuses) {
                *total += u64::from(c.load(Relaxed));
            }
            for (total, c) in sum.latency.iter_mut().zip(&slot.latency) {
                *total += u64::from(c.load(Relaxed));
            }
            sum.connect_errors += u64::from(slot.connect_errors.load(Relaxed));
        }
        let age = now.saturating_duration_since(self.since);
        sum.span = sum.span.max(age.min(SLOT * SLOTS as u32));
    }

    /// Whether nothing was counted in the last window.
    fn idle(&self, tick: u64) -> bool {
        self.slots.iter().all(|s| {
            let t = s.tick.load(Relaxed);
            tick.saturating_sub(t) >= SLOTS as u64
                || (s.statuses.iter().all(|c| c.load(Relaxed) == 0)
                    && s.connect_errors.load(Relaxed) == 0)
        })
    }
}

/// The last minute of every followed pod address.
pub struct Traffic {
    origin: Instant,
    windows: DashMap<SocketAddr, Window, RandomState>,
    count: AtomicUsize,
}

impl std::fmt::Debug for Traffic {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Traffic")
            .field("followed", &self.followed())
            .finish_non_exhaustive()
    }
}

impl Default for Traffic {
    fn default() -> Self {
        Self::new()
    }
}

impl Traffic {
    pub fn new() -> Self {
        Self {
            origin: Instant::now(),
            windows: DashMap::default(),
            count: AtomicUsize::new(0),
        }
    }

    fn tick(&self, now: Instant) -> u64 {
        // Slot numbers start at 1: 0 marks a slot never used.
        now.saturating_duration_since(self.origin).as_secs() / SLOT.as_secs() + 1
    }

    /// Runs `f` on the window of `addr` (made on first sight, while fewer than
    /// [`MAX_ADDRESSES`] are followed). The map's read guard is held only for `f`.
    fn with_window(&self, addr: SocketAddr, now: Instant, f: impl FnOnce(&Window)) {
        if let Some(w) = self.windows.get(&addr) {
            return f(&w);
        }
        if self.count.load(Relaxed) >= MAX_ADDRESSES {
            return;
        }
        let w = self.windows.entry(addr).or_insert_with(|| {
            self.count.fetch_add(1, Relaxed);
            Window::new(now)
        });
        f(&w)
    }

    /// A pod at `addr` answered with `status` after `took` (the whole request).
    pub fn answered(&self, addr: SocketAddr, status: StatusCode, took: Duration, now: Instant) {
        let tick = self.tick(now);
        let class = match status.as_u16() {
            0..=299 => 0,
            300..=399 => 1,
            400..=499 => 2,
            _ => 3,
        };
        let ms = took.as_millis();
        let bucket = BOUNDS_MS
            .iter()
            .position(|&b| ms <= u128::from(b))
            .unwrap_or(BOUNDS_MS.len());
        self.with_window(addr, now, |w| {
            let slot = w.slot(tick);
            slot.statuses[class].fetch_add(1, Relaxed);
            slot.latency[bucket].fetch_add(1, Relaxed);
        });
    }

    /// A connection to the pod at `addr` could not be made.
    pub fn connect_error(&self, addr: SocketAddr) {
        let now = Instant::now();
        let tick = self.tick(now);
        self.with_window(addr, now, |w| {
            w.slot(tick).connect_errors.fetch_add(1, Relaxed);
        });
    }

    /// The last minute of these addresses, summed (one address: its own figures).
    pub fn figures(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Figures {
        self.figures_at(addrs, Instant::now())
    }

    fn figures_at(&self, addrs: impl IntoIterator<Item = SocketAddr>, now: Instant) -> Figures {
        let tick = self.tick(now);
        let mut sum = Figures::default();
        for addr in addrs {
            if let Some(w) = self.windows.get(&addr) {
                w.add_into(tick, now, &mut sum);
            }
        }
        sum
    }

    /// Forgets addresses that had no traffic for a whole window.
    pub fn sweep(&self) {
        self.sweep_at(Instant::now());
    }

    fn sweep_at(&self, now: Instant) {
        let tick = self.tick(now);
        self.windows.retain(|_, w| {
            let keep = !w.idle(tick);
            if !keep {
                self.count.fetch_sub(1, Relaxed);
            }
            keep
        });
    }

    /// Addresses followed now.
    pub fn followed(&self) -> usize {
        self.count.load(Relaxed)
    }
}

/// Requests of the last minute (or since first seen, if less).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Figures {
    statuses: [u64; 4],
    latency: [u64; BUCKETS],
    connect_errors: u64,
    span: Duration,
}

/// [`Figures`] as the dashboard shows them.
#[derive(Clone, Debug, Default, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Summary {
    pub requests: u64,
    pub per_second: f64,
    /// Answers below 300 (2xx, and the rare 1xx), 3xx, 4xx, 5xx.
    pub ok: u64,
    pub redirects: u64,
    pub client_errors: u64,
    pub server_errors: u64,
    /// Upper bounds of the latency buckets the median and the 99th percentile fall in,
    /// milliseconds; None without requests, or above the last bound (10 s).
    pub p50_ms: Option<u32>,
    pub p99_ms: Option<u32>,
    pub connect_errors: u64,
}

impl Figures {
    pub fn requests(&self) -> u64 {
        self.statuses.iter().sum()
    }

    /// The latency bucket bound the `q` quantile falls in (ms); None above the last.
    fn quantile(&self, q: f64) -> Option<u32> {
        let total = self.requests();
        if total == 0 {
            return None;
        }
        let rank = ((q * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, n) in self.latency.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return BOUNDS_MS.get(i).copied();
            }
        }
        None
    }

    pub fn summary(&self) -> Summary {
        let requests = self.requests();
        let secs = self.span.as_secs_f64().max(1.0);
        Summary {
            requests,
            per_second: (requests as f64 / secs * 10.0).round() / 10.0,
            ok: self.statuses[0],
            redirects: self.statuses[1],
            client_errors: self.statuses[2],
            server_errors: self.statuses[3],
            p50_ms: self.quantile(0.5),
            p99_ms: self.quantile(0.99),
            connect_errors: self.connect_errors,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addr(last: u8) -> SocketAddr {
        SocketAddr::from(([10, 0, 0, last], 80))
    }

    #[test]
    fn answers_are_counted_by_class_and_latency() {
        let t = Traffic::new();
        let now = t.origin + Duration::from_secs(30);
        for _ in 0..98 {
            t.answered(addr(1), StatusCode::OK, Duration::from_millis(3), now);
        }
        t.answered(
            addr(1),
            StatusCode::NOT_FOUND,
            Duration::from_millis(40),
            now,
        );
        t.answered(
            addr(1),
            StatusCode::BAD_GATEWAY,
            Duration::from_millis(900),
            now,
        );
        t.windows
            .get(&addr(1))
            .unwrap()
            .slot(t.tick(now))
            .connect_errors
            .fetch_add(1, Relaxed);
        let s = t.figures_at([addr(1)], now).summary();
        assert_eq!(s.requests, 100);
        assert_eq!((s.ok, s.client_errors, s.server_errors), (98, 1, 1));
        assert_eq!(s.p50_ms, Some(5));
        assert_eq!(s.p99_ms, Some(50));
        assert_eq!(s.connect_errors, 1);
        // Another address is its own; a backend is the sum of its addresses.
        t.answered(addr(2), StatusCode::OK, Duration::from_millis(1), now);
        assert_eq!(t.figures_at([addr(2)], now).summary().requests, 1);
        assert_eq!(
            t.figures_at([addr(1), addr(2)], now).summary().requests,
            101
        );
    }

    #[test]
    fn counts_older_than_the_window_fall_out() {
        let t = Traffic::new();
        let early = t.origin + Duration::from_secs(1);
        t.answered(addr(1), StatusCode::OK, Duration::from_millis(1), early);
        let later = t.origin + SLOT * (SLOTS as u32 + 1);
        assert_eq!(t.figures_at([addr(1)], later).requests(), 0);
        // The slot is reused for the new tick, emptied first.
        t.answered(addr(1), StatusCode::OK, Duration::from_millis(1), later);
        assert_eq!(t.figures_at([addr(1)], later).requests(), 1);
        let w = t.windows.get(&addr(1)).unwrap();
        assert!(w.idle(t.tick(later) + SLOTS as u64));
    }

    #[test]
    fn the_number_of_followed_addresses_is_bounded_and_idle_ones_are_dropped() {
        let t = Traffic::new();
        let now = Instant::now();
        for i in 0..(MAX_ADDRESSES + 10) {
            let a = SocketAddr::from(([10, (i >> 16) as u8, (i >> 8) as u8, i as u8], 80));
            t.answered(a, StatusCode::OK, Duration::from_millis(1), now);
        }
        assert_eq!(t.followed(), MAX_ADDRESSES);
        assert_eq!(t.windows.len(), MAX_ADDRESSES);
        // Nothing is idle yet; an address never seen has no figures.
        t.sweep_at(now);
        assert_eq!(t.followed(), MAX_ADDRESSES);
        let unseen = SocketAddr::from(([10, 200, 0, 1], 80));
        assert_eq!(t.figures_at([unseen], now).summary().requests, 0);
        // A window later, all of them are idle and forgotten; new ones are followed again.
        let later = now + SLOT * (SLOTS as u32 + 1);
        t.sweep_at(later);
        assert_eq!((t.followed(), t.windows.len()), (0, 0));
        t.answered(unseen, StatusCode::OK, Duration::from_millis(1), later);
        assert_eq!(t.followed(), 1);
    }

    #[test]
    fn rates_are_averaged_over_the_window_or_the_time_since_first_seen() {
        let t = Traffic::new();
        let now = Instant::now();
        for _ in 0..120 {
            t.answered(addr(1), StatusCode::OK, Duration::from_millis(1), now);
        }
        let s = t.figures([addr(1)]).summary();
        // Seen for (much) less than a second: averaged over one second.
        assert_eq!(s.per_second, 120.0);
    }
}
