//! Consistent hashing over a backend's usable endpoints (cookie affinity in balanced mode,
//! `upstream-hash-by`): each endpoint owns [`POINTS`] points on a 64-bit ring, a key goes
//! to the first point at or after its hash. When an endpoint comes or goes, only the keys
//! of its points move (about 1/n of them), as with nginx's ketama-style `chash`.
//!
//! Built on first use, once per snapshot and backend (see [`Derived`]), never on the
//! request path of a backend that does not hash.

use std::fmt;
use std::hash::BuildHasher;
use std::net::SocketAddr;
use std::sync::OnceLock;

use foldhash::fast::FixedState;

use super::backend::Endpoint;

/// Points per endpoint: enough for an even spread (the standard deviation of the share of
/// keys is about 1/sqrt(POINTS) of the mean), small enough for thousands of endpoints.
const POINTS: u32 = 160;

/// The same seed in every wicket process, so replicas agree on where a key goes.
const SEED: u64 = 0x7769_636b_6574_2121;

/// Hashes anything with the ring's fixed seed (request keys, point names).
pub fn stable_hash<T: std::hash::Hash>(value: T) -> u64 {
    FixedState::with_seed(SEED).hash_one(value)
}

/// The ring of one backend: points sorted by hash, each naming an index into the
/// backend's `endpoints`.
pub struct Ring {
    points: Vec<(u64, u32)>,
}

impl Ring {
    /// The ring of `endpoints` at `indexes` (the usable ones). A point's place depends on
    /// the endpoint's address only, so the same pods make the same ring in every snapshot.
    pub fn new(endpoints: &[Endpoint], indexes: &[u32]) -> Self {
        let mut points = Vec::with_capacity(indexes.len() * POINTS as usize);
        for &i in indexes {
            if let Some(e) = endpoints.get(i as usize) {
                for p in 0..POINTS {
                    points.push((stable_hash((e.addr, p)), i));
                }
            }
        }
        points.sort_unstable();
        Self { points }
    }

    /// Endpoint indexes in ring order from `key`'s place: the first is where the key goes,
    /// the rest are where it goes when those before cannot take it. Repeats are possible;
    /// the walk ends after one turn.
    pub fn walk(&self, key: u64) -> impl Iterator<Item = u32> + '_ {
        let start = self.points.partition_point(|&(h, _)| h < key);
        let n = self.points.len();
        (0..n).map(move |k| self.points[(start + k) % n].1)
    }

    /// A key that goes to endpoint `index` (its first point), for moving a session there.
    pub fn key_of(&self, index: u32) -> Option<u64> {
        self.points
            .iter()
            .find(|&&(_, i)| i == index)
            .map(|&(h, _)| h)
    }
}

/// `upstream-hash-by-subset`: the usable endpoints in groups of `size`; a key picks a group
/// on a ring of groups, then any member (nginx's `chashsubset`).
#[derive(Clone)]
pub struct Subsets {
    pub size: usize,
    groups: Vec<Vec<u32>>,
    ring: Vec<(u64, u32)>,
}

impl Subsets {
    /// Groups in address order; the last is filled up from the start, so every group has
    /// `size` members (fewer only when there are fewer endpoints).
    pub fn new(endpoints: &[Endpoint], indexes: &[u32], size: usize) -> Self {
        let mut sorted: Vec<(SocketAddr, u32)> = indexes
            .iter()
            .filter_map(|&i| endpoints.get(i as usize).map(|e| (e.addr, i)))
            .collect();
        sorted.sort_unstable();
        let n = sorted.len();
        let size = size.clamp(1, n.max(1));
        let count = n.div_ceil(size);
        let groups: Vec<Vec<u32>> = (0..count)
            .map(|g| (0..size).map(|k| sorted[(g * size + k) % n].1).collect())
            .collect();
        let mut ring = Vec::with_capacity(count * POINTS as usize);
        for (g, members) in groups.iter().enumerate() {
            let first = members.first().and_then(|&i| endpoints.get(i as usize));
            for p in 0..POINTS {
                ring.push((stable_hash((first.map(|e| e.addr), g, p)), g as u32));
            }
        }
        ring.sort_unstable();
        Self { size, groups, ring }
    }

    /// The members of the group `key` goes to.
    pub fn group(&self, key: u64) -> &[u32] {
        if self.ring.is_empty() {
            return &[];
        }
        let at = self.ring.partition_point(|&(h, _)| h < key) % self.ring.len();
        &self.groups[self.ring[at].1 as usize]
    }
}

/// Lookups derived from a backend's endpoints, built on first use and kept with the
/// backend for the life of its snapshot. Never compared or shown: equal endpoints derive
/// equal lookups.
#[derive(Default)]
pub struct Derived {
    pub ring: OnceLock<Ring>,
    pub subsets: OnceLock<Subsets>,
    /// Persistent cookie affinity: an endpoint's token → its index.
    pub tokens: OnceLock<std::collections::HashMap<u64, u32, foldhash::fast::RandomState>>,
}

impl Clone for Derived {
    fn clone(&self) -> Self {
        Self::default()
    }
}

impl PartialEq for Derived {
    fn eq(&self, _: &Self) -> bool {
        true
    }
}

impl Eq for Derived {}

impl fmt::Debug for Derived {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Derived")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn endpoints(n: u8) -> Vec<Endpoint> {
        (0..n)
            .map(|i| Endpoint::new(SocketAddr::from(([10, 0, 0, i], 8080)), true, true, false))
            .collect()
    }

    fn owner(ring: &Ring, key: u64) -> u32 {
        ring.walk(key).next().unwrap()
    }

    #[test]
    fn keys_spread_evenly_and_adding_a_pod_moves_about_its_share() {
        let eps = endpoints(10);
        let all: Vec<u32> = (0..10).collect();
        let ring = Ring::new(&eps, &all[..9]);
        let mut counts = [0u32; 10];
        let keys: Vec<u64> = (0..20_000u64).map(stable_hash).collect();
        for &k in &keys {
            counts[owner(&ring, k) as usize] += 1;
        }
        // 9 pods, 20000 keys: each near 2222.
        for &c in &counts[..9] {
            assert!((1500..3000).contains(&c), "{counts:?}");
        }
        let grown = Ring::new(&eps, &all);
        let moved = keys
            .iter()
            .filter(|&&k| owner(&ring, k) != owner(&grown, k))
            .count();
        // Ideally 1/10 of the keys (2000), all to the new pod.
        assert!((1200..3000).contains(&moved), "{moved}");
        assert!(keys
            .iter()
            .filter(|&&k| owner(&ring, k) != owner(&grown, k))
            .all(|&k| owner(&grown, k) == 9));
    }

    #[test]
    fn the_walk_visits_every_endpoint_and_key_of_leads_back() {
        let eps = endpoints(4);
        let ring = Ring::new(&eps, &[0, 1, 2, 3]);
        let mut seen: Vec<u32> = ring.walk(42).collect();
        seen.sort_unstable();
        seen.dedup();
        assert_eq!(seen, vec![0, 1, 2, 3]);
        for i in 0..4 {
            assert_eq!(owner(&ring, ring.key_of(i).unwrap()), i);
        }
    }

    #[test]
    fn subsets_have_the_asked_size_and_a_key_keeps_its_group() {
        let eps = endpoints(7);
        let all: Vec<u32> = (0..7).collect();
        let s = Subsets::new(&eps, &all, 3);
        for k in 0..100u64 {
            let g = s.group(stable_hash(k));
            assert_eq!(g.len(), 3);
            assert_eq!(g, s.group(stable_hash(k)));
        }
        let small = Subsets::new(&eps, &all[..2], 3);
        assert_eq!(small.group(1).len(), 2);
    }
}
