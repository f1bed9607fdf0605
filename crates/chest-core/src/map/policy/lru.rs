//! Least recently used, CLOCK-style ([`EvictionPolicy::LeastRecentlyUsed`](crate::EvictionPolicy::LeastRecentlyUsed),
//! the default): keys in the order they were queued (inserted, loaded,
//! updated), each with the tick it had then. A hit only stamps the entry's
//! tick (no queue operation); a key whose tick is newer than its copy's when
//! it reaches the front was used since: it gets a second chance at the back
//! instead of leaving (and, when counts are kept, one more to its count:
//! see [`frequency`](super::frequency)). Copies of keys that are no longer
//! eligible (spilled, removed, pinned, evicting) are dropped when met. Every
//! eligible key has a copy; stale copies are cleared by a rebuild when they
//! outnumber the live ones. Every operation is O(1) amortized (the priority
//! queue this replaced cost a heap operation per load and per stale pop).
//! Each copy also holds the key's position in the index when queued (a
//! hint: see [`Index::get_hinted`]), so that taking the coldest keys walks
//! the dense entries instead of probing the hash table for each.
//!
//! With counts ([`Admission::Frequency`](crate::Admission::Frequency), once
//! values are loaded), eviction takes the least wanted of the [`SAMPLE`]
//! coldest ([`Lru::pop_least_wanted`]).

use std::collections::VecDeque;
use std::hash::Hash;

use crate::map::entry::Slot;
use crate::map::entry::{eligible, eligible_mut};
use crate::map::index::Index;
use crate::map::policy::cost::Worth;

/// A key's copy in the queue: the key, its tick when queued, and its
/// position in the index then (a hint).
pub(crate) type Queued<K> = (K, u64, u32);

/// Keys eviction compares by count (the coldest by recency).
pub(crate) const SAMPLE: usize = 8;

/// The CLOCK queue (see the [module](self)).
pub(crate) struct Lru<K> {
    fifo: VecDeque<Queued<K>>,
}

/// The position in a sample of its least worth (the first of equals: the
/// least recently used).
fn least_wanted(worths: &[f32]) -> Option<usize> {
    (0..worths.len()).min_by(|&i, &j| worths[i].total_cmp(&worths[j]).then(i.cmp(&j)))
}

impl<K: Hash + Eq + Clone> Lru<K> {
    pub fn new() -> Self {
        Self {
            fifo: VecDeque::new(),
        }
    }

    /// Queues `key` at the back with its tick, if it may be evicted; clears
    /// stale copies when they outnumber the keys of `map`.
    pub fn push<V>(&mut self, map: &Index<K, Slot<V>>, key: &K) {
        if let Some((at, slot)) = map.get_positioned(key) {
            if let Some(r) = eligible(Some(slot)) {
                self.fifo.push_back((key.clone(), r.tick, at));
            }
        }
        if self.fifo.len() > 2 * map.len() + 64 {
            self.rebuild(map);
        }
    }

    /// Rebuilds the queue from the map, dropping stale copies.
    fn rebuild<V>(&mut self, map: &Index<K, Slot<V>>) {
        let mut live: Vec<Queued<K>> = map
            .iter()
            .enumerate()
            .filter_map(|(at, (k, slot))| {
                eligible(Some(slot)).map(|r| (k.clone(), r.tick, at as u32))
            })
            .collect();
        live.sort_unstable_by_key(|&(_, tick, _)| tick);
        self.fifo = live.into();
    }

    /// The keys of the copies in the queue (stale ones included).
    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.fifo.iter().map(|(k, _, _)| k)
    }

    /// Copies in the queue (stale ones included).
    pub fn len(&self) -> usize {
        self.fifo.len()
    }

    pub fn clear(&mut self) {
        self.fifo.clear();
    }

    /// Puts back first in line a key a pop gave and the caller did not take.
    pub fn unpop<V>(&mut self, map: &Index<K, Slot<V>>, key: K, at: u32) {
        if let Some(r) = eligible(map.get_hinted(&key, at)) {
            let tick = r.tick;
            self.fifo.push_front((key, tick, at));
        }
    }

    /// The first key in line that may be evicted (taken out; it stays in
    /// the map), with a hint of its position and whether it was used since
    /// it was queued (stale copies are passed over).
    pub fn pop_front<V>(&mut self, map: &Index<K, Slot<V>>) -> Option<(K, u32, bool)> {
        loop {
            let (key, queued, at) = self.fifo.pop_front()?;
            if let Some(r) = eligible(map.get_hinted(&key, at)) {
                let used = r.tick > queued;
                return Some((key, at, used));
            }
        }
    }

    /// The next key to evict (taken out; it stays in the map), with a hint
    /// of its position: the first in line not used since it was queued.
    /// A key used since goes to the back, one more to its count if
    /// `counting` (the epoch of the counts).
    pub fn pop_coldest<V>(
        &mut self,
        map: &mut Index<K, Slot<V>>,
        counting: Option<u8>,
    ) -> Option<(K, u32)> {
        self.pop_unused(map, counting, |_| {})
    }

    /// [`pop_coldest`](Lru::pop_coldest), telling `second_chance` of each
    /// key sent to the back because it was used.
    pub fn pop_unused<V>(
        &mut self,
        map: &mut Index<K, Slot<V>>,
        counting: Option<u8>,
        mut second_chance: impl FnMut(&K),
    ) -> Option<(K, u32)> {
        loop {
            let (key, queued, at) = self.fifo.pop_front()?;
            let Some(r) = eligible_mut(map.get_mut_hinted(&key, at)) else {
                continue; // a stale copy
            };
            if r.tick <= queued {
                return Some((key, at));
            }
            // Touched since it was queued: its place is at the back.
            if let Some(epoch) = counting {
                r.freq.touch(epoch);
            }
            let tick = r.tick;
            second_chance(&key);
            self.fifo.push_back((key, tick, at));
        }
    }

    /// Of the first [`SAMPLE`] keys [`pop_coldest`](Lru::pop_coldest) would
    /// consider, in order, the least wanted: of least [`Worth`] by count as
    /// of `epoch` and size (by count alone, for values of one size; the
    /// first of equals); the others stay first in line, in their order.
    pub fn pop_least_wanted<V>(
        &mut self,
        map: &mut Index<K, Slot<V>>,
        epoch: u8,
        worth: Worth,
    ) -> Option<(K, u32)> {
        // The candidates stay in the queue, first in line (no allocation:
        // this runs for every value eviction takes); what is met before
        // them is dealt with where it is, as a pop would.
        let mut worths = [0f32; SAMPLE];
        let mut n = 0;
        while n < SAMPLE && n < self.fifo.len() {
            let (queued, at) = (self.fifo[n].1, self.fifo[n].2);
            let met = match eligible_mut(map.get_mut_hinted(&self.fifo[n].0, at)) {
                None => None, // a stale copy
                Some(r) if r.tick > queued => {
                    r.freq.touch(epoch);
                    Some(Err(r.tick))
                }
                Some(r) => Some(Ok(worth.of(r.freq.get(epoch), r.size()))),
            };
            match met {
                None => {
                    self.fifo.remove(n);
                }
                Some(Err(tick)) => {
                    // Used since it was queued: to the back.
                    if let Some((key, _, at)) = self.fifo.remove(n) {
                        self.fifo.push_back((key, tick, at));
                    }
                }
                Some(Ok(w)) => {
                    worths[n] = w;
                    n += 1;
                }
            }
        }
        let i = least_wanted(&worths[..n])?;
        let (key, _, at) = self.fifo.remove(i)?;
        Some((key, at))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::entry::Resident;
    use crate::map::policy::frequency::Freq;
    use std::sync::Arc;

    /// Keys 0..n resident with ticks 1..=n and the given counts, all queued.
    fn queued(counts: &[u8]) -> (Index<u32, Slot<u32>>, Lru<u32>) {
        let mut map = Index::default();
        let mut lru = Lru::new();
        for (k, &count) in counts.iter().enumerate() {
            let k = k as u32;
            let mut r = Resident::new(Arc::new(k), 1, u64::from(k) + 1, None);
            r.freq = Freq::new(count, 0);
            map.insert(k, Slot::Resident(r));
            lru.push(&map, &k);
        }
        (map, lru)
    }

    fn stamp(map: &mut Index<u32, Slot<u32>>, k: u32, tick: u64) {
        if let Some(Slot::Resident(r)) = map.get_mut(&k) {
            r.tick = tick;
        }
    }

    fn count(map: &Index<u32, Slot<u32>>, k: u32) -> u8 {
        match map.get(&k) {
            Some(Slot::Resident(r)) => r.freq.get(0),
            _ => unreachable!(),
        }
    }

    #[test]
    fn a_key_used_since_it_was_queued_goes_to_the_back_one_more_to_its_count() {
        let (mut map, mut lru) = queued(&[0, 0, 0]);
        stamp(&mut map, 0, 10);
        assert_eq!(lru.pop_coldest(&mut map, Some(0)).map(|(k, _)| k), Some(1));
        assert_eq!(count(&map, 0), 1, "its second chance counted");
        assert_eq!(lru.pop_coldest(&mut map, None).map(|(k, _)| k), Some(2));
        assert_eq!(lru.pop_coldest(&mut map, None).map(|(k, _)| k), Some(0));
        assert_eq!(lru.pop_coldest(&mut map, None), None);
    }

    #[test]
    fn the_least_wanted_of_the_coldest_goes_and_the_rest_keep_their_place() {
        // Ten keys: the sample is the first eight; key 9 (count 0) is
        // beyond it.
        let (mut map, mut lru) = queued(&[3, 1, 2, 1, 5, 4, 6, 7, 8, 0]);
        let take = |lru: &mut Lru<u32>, map: &mut Index<u32, Slot<u32>>| {
            lru.pop_least_wanted(map, 0, Worth::default())
                .map(|(k, _)| k)
        };
        assert_eq!(
            take(&mut lru, &mut map),
            Some(1),
            "least wanted, first of equals"
        );
        assert_eq!(take(&mut lru, &mut map), Some(3));
        // Now 0, 2, 4, 5, 6, 7, 8, 9 are the first eight: 9 is sampled.
        assert_eq!(take(&mut lru, &mut map), Some(9));
        let rest: Vec<u32> =
            std::iter::from_fn(|| lru.pop_coldest(&mut map, None).map(|(k, _)| k)).collect();
        assert_eq!(rest, vec![0, 2, 4, 5, 6, 7, 8], "in their order");
    }

    #[test]
    fn a_key_put_back_is_first_in_line_and_stale_copies_are_passed_over() {
        let (mut map, mut lru) = queued(&[0, 0, 0]);
        let (k, at) = lru.pop_coldest(&mut map, None).unwrap();
        lru.unpop(&map, k, at);
        map.remove(&1);
        let order: Vec<u32> =
            std::iter::from_fn(|| lru.pop_coldest(&mut map, None).map(|(k, _)| k)).collect();
        assert_eq!(order, vec![0, 2]);
    }
}
