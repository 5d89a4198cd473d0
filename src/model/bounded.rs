//! A map whose memory is bounded whatever the keys clients make it hold: per-client rate
//! limit state and the cache of successful password checks.
//!
//! Two generations per shard: new and touched keys go into the current one; when it is full
//! it becomes the previous one (the one before is dropped whole). A key unused for a whole
//! generation is forgotten, which for the state kept here is harmless: a forgotten rate
//! bucket is a full one again (the client gets its burst once more), a forgotten password
//! check is made again. O(1) per operation; at most `2 × capacity` entries.

use std::collections::HashMap;
use std::hash::{BuildHasher, Hash};
use std::sync::Mutex;

const SHARDS: usize = 16;

pub struct BoundedMap<K, V> {
    shards: Box<[Mutex<Generations<K, V>>]>,
    hasher: foldhash::fast::RandomState,
    /// Entries per generation per shard.
    per_shard: usize,
}

struct Generations<K, V> {
    current: HashMap<K, V, foldhash::fast::RandomState>,
    previous: HashMap<K, V, foldhash::fast::RandomState>,
}

impl<K: Hash + Eq + Clone, V: Clone> BoundedMap<K, V> {
    /// Holds about `capacity` recently used keys (at most twice that).
    pub fn new(capacity: usize) -> Self {
        let per_shard = capacity.div_ceil(SHARDS).max(1);
        Self {
            shards: (0..SHARDS)
                .map(|_| {
                    Mutex::new(Generations {
                        current: HashMap::default(),
                        previous: HashMap::default(),
                    })
                })
                .collect(),
            hasher: foldhash::fast::RandomState::default(),
            per_shard,
        }
    }

    fn shard(&self, key: &K) -> &Mutex<Generations<K, V>> {
        let i = (self.hasher.hash_one(key) as usize) % SHARDS;
        &self.shards[i]
    }

    /// Runs `f` on the key's value (None: absent) and stores what it returns (None: removes
    /// it), as one step.
    pub fn update<T>(&self, key: &K, f: impl FnOnce(Option<V>) -> (Option<V>, T)) -> T {
        let mut g = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let old = match g.current.get(key) {
            Some(v) => Some(v.clone()),
            None => g.previous.remove(key),
        };
        let (new, out) = f(old);
        match new {
            Some(v) => {
                if !g.current.contains_key(key) && g.current.len() >= self.per_shard {
                    g.previous = std::mem::take(&mut g.current);
                }
                g.current.insert(key.clone(), v);
            }
            None => {
                g.current.remove(key);
            }
        }
        out
    }

    pub fn get(&self, key: &K) -> Option<V> {
        let g = self
            .shard(key)
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        g.current.get(key).or_else(|| g.previous.get(key)).cloned()
    }

    pub fn insert(&self, key: K, value: V) {
        self.update(&key, |_| (Some(value), ()));
    }

    /// How many entries it holds now.
    pub fn len(&self) -> usize {
        self.shards
            .iter()
            .map(|s| {
                let g = s.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
                g.current.len() + g.previous.len()
            })
            .sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The store of governor's keyed limiters: one GCRA state (a theoretical arrival time) per
/// client address, bounded.
impl<K: Hash + Eq + Clone> governor::state::StateStore for BoundedMap<K, u64> {
    type Key = K;

    fn measure_and_replace<T, F, E>(&self, key: &K, f: F) -> Result<T, E>
    where
        F: Fn(Option<governor::nanos::Nanos>) -> Result<(T, governor::nanos::Nanos), E>,
    {
        self.update(key, |old| match f(old.map(governor::nanos::Nanos::from)) {
            Ok((t, new)) => (Some(new.as_u64()), Ok(t)),
            Err(e) => (old, Err(e)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_of_keys_never_holds_more_than_twice_the_capacity() {
        let map = BoundedMap::new(1_000);
        for i in 0..1_000_000u32 {
            map.insert(i, i);
        }
        assert!(map.len() <= 2 * 1_008, "{}", map.len());
        // The newest are there.
        assert_eq!(map.get(&999_999), Some(999_999));
    }

    #[test]
    fn a_key_in_use_survives_the_flood() {
        let map = BoundedMap::new(1_000);
        map.insert(u32::MAX, 0);
        for i in 0..100_000u32 {
            map.insert(i, i);
            if i % 100 == 0 {
                // Touching moves it into the current generation.
                map.update(&u32::MAX, |v| (v.map(|v| v + 1), ()));
            }
        }
        assert_eq!(map.get(&u32::MAX), Some(1_000));
    }

    #[test]
    fn update_can_remove() {
        let map = BoundedMap::new(10);
        map.insert("a", 1);
        let old = map.update(&"a", |v| (None, v));
        assert_eq!(old, Some(1));
        assert_eq!(map.get(&"a"), None);
        assert!(map.is_empty());
    }
}
