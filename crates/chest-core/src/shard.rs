//! One shard of the map: its key index, its resident values and their
//! eviction order.

use priority_queue::PriorityQueue;
use std::collections::HashMap;
use std::hash::Hash;

use crate::entry::{Resident, Slot};

pub(crate) type FastHash = foldhash::fast::RandomState;

/// Which resident values leave memory first when the budget is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// The least recently used value (inserted, read or updated) goes first.
    #[default]
    LeastRecentlyUsed,
    /// The heaviest value goes first, as Python's `chest` did: frees the most
    /// memory per write, keeps many small values resident.
    LargestFirst,
}

pub(crate) struct Shard<K, V> {
    pub map: HashMap<K, Slot<V>, FastHash>,
    /// Resident keys that are neither pinned nor evicting; the highest
    /// priority is evicted first.
    queue: PriorityQueue<K, u64, FastHash>,
    clock: u64,
    policy: EvictionPolicy,
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    pub fn new(policy: EvictionPolicy) -> Self {
        Self {
            map: HashMap::default(),
            queue: PriorityQueue::with_default_hasher(),
            clock: 0,
            policy,
        }
    }

    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    fn priority(&self, r: &Resident<V>) -> u64 {
        match self.policy {
            EvictionPolicy::LeastRecentlyUsed => u64::MAX - r.tick,
            EvictionPolicy::LargestFirst => r.weight as u64,
        }
    }

    /// Puts a resident key into the eviction order (or refreshes its place).
    pub fn enqueue(&mut self, key: &K) {
        let Some(Slot::Resident(r)) = self.map.get(key) else {
            return;
        };
        if r.pinned || r.evicting {
            self.queue.remove(key);
            return;
        }
        let p = self.priority(r);
        if self.queue.change_priority(key, p).is_none() {
            self.queue.push(key.clone(), p);
        }
    }

    /// [`enqueue`](Shard::enqueue) by a borrowed form of the key.
    pub fn enqueue_key<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
    {
        if let Some(k) = self.map.get_key_value(key).map(|(k, _)| k.clone()) {
            self.enqueue(&k);
        }
    }

    /// Whether `key` is in the eviction queue (for the invariant check).
    pub fn queued<Q: Hash + Eq + ?Sized>(&self, key: &Q) -> bool
    where
        K: std::borrow::Borrow<Q>,
    {
        self.queue.get(key).is_some()
    }

    /// Empties the eviction queue (the map is being emptied too).
    pub fn clear_queue(&mut self) {
        self.queue.clear();
    }

    /// Number of keys in the eviction queue.
    pub fn queue_len(&self) -> usize {
        self.queue.len()
    }

    pub fn dequeue<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
    {
        self.queue.remove(key);
    }

    /// The next key to evict. Under LRU, reads only stamp `tick`; a key whose
    /// queue priority is stale is moved to its true place and skipped.
    pub fn pop_coldest(&mut self) -> Option<K> {
        loop {
            let (key, &p) = self.queue.peek()?;
            let actual = match self.map.get(key) {
                Some(Slot::Resident(r)) if !r.pinned && !r.evicting => self.priority(r),
                _ => {
                    let key = key.clone();
                    self.queue.remove(&key);
                    continue;
                }
            };
            if actual == p {
                return self.queue.pop().map(|(k, _)| k);
            }
            let key = key.clone();
            self.queue.change_priority(&key, actual);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::Loc;
    use std::sync::Arc;

    #[test]
    fn a_spilled_key_costs_sixteen_bytes_of_slot() {
        // The index of a reopened chest is all `Slot::Spilled`: keep it small.
        assert_eq!(std::mem::size_of::<Loc>(), 12);
        assert!(std::mem::size_of::<Slot<Vec<u8>>>() <= 16);
    }

    #[test]
    fn lru_pops_the_least_recently_touched() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed);
        for k in 0..5u32 {
            let tick = s.tick();
            s.map.insert(
                k,
                Slot::Resident(Resident::new(Arc::new(k), 10 - k as usize, tick, None)),
            );
            s.enqueue(&k);
        }
        // touch 0 and 1 the way `get` does: stamp only
        for k in [0u32, 1] {
            let tick = s.tick();
            if let Some(Slot::Resident(r)) = s.map.get_mut(&k) {
                r.tick = tick;
            }
        }
        let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest()).collect();
        assert_eq!(order, vec![2, 3, 4, 0, 1]);
    }

    #[test]
    fn largest_first_pops_by_weight() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LargestFirst);
        for (k, w) in [(1u32, 5usize), (2, 50), (3, 7)] {
            s.map
                .insert(k, Slot::Resident(Resident::new(Arc::new(k), w, 0, None)));
            s.enqueue(&k);
        }
        let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest()).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }
}
