//! Largest first ([`EvictionPolicy::LargestFirst`](crate::EvictionPolicy::LargestFirst)):
//! a priority queue of the resident keys that may be evicted, by weight.

use priority_queue::PriorityQueue;
use std::hash::Hash;

use crate::map::entry::eligible;
use crate::map::entry::Slot;
use crate::map::index::{FastHash, Index};

/// A position hint that is never right (see [`Index::get_hinted`]).
pub(crate) const NO_HINT: u32 = u32::MAX;

/// The keys that may be evicted, heaviest first. Every such key is in it,
/// and nothing else (kept exact on every change, unlike the LRU queue).
pub(crate) struct Largest<K> {
    queue: PriorityQueue<K, u64, FastHash>,
}

impl<K: Hash + Eq + Clone> Largest<K> {
    pub fn new() -> Self {
        Self {
            queue: PriorityQueue::with_default_hasher(),
        }
    }

    /// Puts `key` in at its weight if it may be evicted, or takes it out.
    pub fn update<V>(&mut self, map: &Index<K, Slot<V>>, key: &K) {
        match eligible(map.get(key)) {
            Some(r) => {
                let p = r.weight as u64;
                if self.queue.change_priority(key, p).is_none() {
                    self.queue.push(key.clone(), p);
                }
            }
            None => {
                self.queue.remove(key);
            }
        }
    }

    /// Takes `key` out.
    pub fn remove<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
    {
        self.queue.remove(key);
    }

    /// The keys in it.
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.queue.iter().map(|(k, _)| k)
    }

    pub fn clear(&mut self) {
        self.queue.clear();
    }

    /// The heaviest key that may be evicted (taken out; it stays in the
    /// map), with [`NO_HINT`]. A key whose weight changed since it was put
    /// in moves to its place first.
    pub fn pop_coldest<V>(&mut self, map: &Index<K, Slot<V>>) -> Option<(K, u32)> {
        loop {
            let (key, &p) = self.queue.peek()?;
            let actual = match eligible(map.get(key)) {
                Some(r) => r.weight as u64,
                None => {
                    let key = key.clone();
                    self.queue.remove(&key);
                    continue;
                }
            };
            if actual == p {
                return self.queue.pop().map(|(k, _)| (k, NO_HINT));
            }
            let key = key.clone();
            self.queue.change_priority(&key, actual);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::entry::Resident;
    use std::sync::Arc;

    #[test]
    fn the_heaviest_goes_first_and_a_changed_weight_takes_its_place() {
        let mut map: Index<u32, Slot<u32>> = Index::default();
        let mut largest = Largest::new();
        for (k, w) in [(1u32, 5usize), (2, 50), (3, 7)] {
            map.insert(k, Slot::Resident(Resident::new(Arc::new(k), w, 0, None)));
            largest.update(&map, &k);
        }
        // Key 2 shrinks without being requeued: it moves when met.
        if let Some(Slot::Resident(r)) = map.get_mut(&2) {
            r.weight = 1;
        }
        let order: Vec<u32> =
            std::iter::from_fn(|| largest.pop_coldest(&map).map(|(k, _)| k)).collect();
        assert_eq!(order, vec![3, 1, 2]);
        // A key that may not be evicted is taken out.
        largest.update(&map, &1);
        if let Some(Slot::Resident(r)) = map.get_mut(&1) {
            r.pinned = true;
        }
        largest.update(&map, &1);
        assert_eq!(largest.keys().count(), 0);
    }
}
