//! One shard of the map: its key index, its resident values and their
//! eviction order.

use priority_queue::PriorityQueue;
use std::collections::VecDeque;
use std::hash::Hash;

use crate::config::EvictionPolicy;
use crate::map::doorkeeper::{Recent, WAYS};
use crate::map::entry::{Resident, Slot};
use crate::map::frequency::{Freq, Sketch};
use crate::map::index::{FastHash, Index};

/// Picks a key's shard. Its bits are taken as a partition, which needs every
/// output bit to depend on every input bit: foldhash's fast variant does not
/// (its docs say so), and with some random seeds it sent runs of consecutive
/// integer keys to one shard (64 keys in one of 2 shards about once in 140
/// chests). The quality variant is the fast one with a final mix.
pub(crate) type ShardHash = foldhash::quality::RandomState;

/// A position hint that is never right (see [`Index::get_hinted`]).
pub(crate) const NO_HINT: u32 = u32::MAX;

/// A key's copy in the LRU queue: the key, its tick when queued, and its
/// position in the index then (a hint).
pub(crate) type Queued<K> = (K, u64, u32);

pub(crate) struct Shard<K, V> {
    pub map: Index<K, Slot<V>>,
    /// Keys loaded lately and not kept (allocated on first use; none for
    /// [`Admission::EveryRead`](crate::Admission::EveryRead)).
    recent: Option<Recent>,
    /// Slots of `recent` (a power of two), 0 to keep every load.
    recent_slots: usize,
    /// The eviction order of the resident keys that are neither pinned nor
    /// evicting.
    order: Order<K>,
    clock: u64,
    /// [`Admission::Frequency`](crate::Admission::Frequency): the counters
    /// per row of the sketch (0: counts are not kept).
    sketch_width: usize,
    /// Counts of the keys not in memory (allocated on first use).
    sketch: Option<Sketch>,
    /// The current epoch of the counts (see [`crate::map::frequency`]), and
    /// the clock at which the next begins (`u64::MAX`: counts not kept).
    epoch: u8,
    next_epoch: u64,
}

/// Keys eviction compares by count (the coldest by recency) under
/// [`Admission::Frequency`](crate::Admission::Frequency).
const SAMPLE: usize = 8;

/// The position in a sample of its least wanted key (the first of equals:
/// the least recently used).
fn least_wanted<K>(sample: &[(K, u64, u32, u8)]) -> Option<usize> {
    (0..sample.len()).min_by_key(|&i| (sample[i].3, i))
}

/// Accesses per counter of the sketch in an epoch (TinyLFU's sample of ten
/// times the cache's size).
const EPOCH_ACCESSES_PER_COUNTER: u64 = 10;

/// The eviction order, by policy.
enum Order<K> {
    /// Least recently used, CLOCK-style: keys in the order they were queued
    /// (inserted, loaded, updated), each with the tick it had then. A hit
    /// only stamps the entry's tick (no queue operation); a key whose tick
    /// is newer than its copy's when it reaches the front was used since:
    /// it gets a second chance at the back instead of leaving (and, with
    /// counts kept, one more to its count). Copies of
    /// keys that are no longer eligible (spilled, removed, pinned, evicting)
    /// are dropped when met. Every eligible key has a copy; stale copies are
    /// cleared by a rebuild when they outnumber the live ones. Every
    /// operation is O(1) amortized (the priority queue this replaces cost a
    /// heap operation per load and per stale pop). Each copy also holds the
    /// key's position in the index when queued (a hint: see
    /// [`Index::get_hinted`]), so that taking the coldest keys walks the
    /// dense entries instead of probing the hash table for each.
    Lru(VecDeque<Queued<K>>),
    /// Largest first: a priority queue by weight.
    Largest(PriorityQueue<K, u64, FastHash>),
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// A shard whose doorkeeper (see [`Admission`](crate::Admission)) remembers up to
    /// `recent_slots` keys (rounded up to a power of two; 0: every load is kept).
    pub fn new(policy: EvictionPolicy, recent_slots: usize) -> Self {
        Self {
            map: Index::default(),
            recent: None,
            recent_slots: if recent_slots == 0 {
                0
            } else {
                recent_slots.max(WAYS).next_power_of_two()
            },
            order: match policy {
                EvictionPolicy::LeastRecentlyUsed => Order::Lru(VecDeque::new()),
                EvictionPolicy::LargestFirst => {
                    Order::Largest(PriorityQueue::with_default_hasher())
                }
            },
            clock: 0,
            sketch_width: 0,
            sketch: None,
            epoch: 0,
            next_epoch: u64::MAX,
        }
    }

    /// Keeps the counts [`Admission::Frequency`](crate::Admission::Frequency)
    /// decides by, in a sketch of `width` counters per row.
    pub fn counting_frequencies(mut self, width: usize) -> Self {
        self.sketch_width = width.max(16).next_power_of_two();
        self.recent_slots = 0;
        self.next_epoch = self.clock + self.epoch_length();
        self
    }

    /// The epoch counts are aged to (see [`crate::map::frequency`]).
    pub fn epoch(&self) -> u8 {
        self.epoch
    }

    /// The epoch, if this shard keeps counts
    /// ([`Admission::Frequency`](crate::Admission::Frequency)); `None`
    /// otherwise, and a load or an eviction has no count to keep.
    #[inline]
    pub fn counting(&self) -> Option<u8> {
        (self.sketch_width > 0).then_some(self.epoch)
    }

    /// The count a value loaded now starts with in memory: its sketch's.
    pub fn loaded_freq(&self, h: u64) -> Freq {
        let count = self.sketch.as_ref().map_or(1, |s| s.estimate(h).max(1));
        Freq::new(count, self.epoch)
    }

    /// A value of hash `h` leaves memory with `freq`: its count stays in
    /// the sketch, so a load of it later knows it.
    pub fn remember(&mut self, h: u64, freq: Freq) {
        self.age();
        if let Some(sketch) = &mut self.sketch {
            let count = freq.get(self.epoch);
            let known = sketch.estimate(h);
            if count > known {
                sketch.add(h, count - known);
            }
        }
    }

    /// Takes the first [`SAMPLE`] keys eviction would consider, in order,
    /// with their counts (passing over stale copies and giving touched keys
    /// their second chance on the way, as taking them would).
    fn sample_coldest(&mut self) -> Vec<(K, u64, u32, u8)> {
        let epoch = self.epoch;
        let mut sample = Vec::with_capacity(SAMPLE);
        let Order::Lru(fifo) = &mut self.order else {
            return sample;
        };
        while sample.len() < SAMPLE {
            let Some((key, queued, at)) = fifo.pop_front() else {
                break;
            };
            match Self::eligible_mut(self.map.get_mut_hinted(&key, at)) {
                None => {} // a stale copy
                Some(r) if r.tick > queued => {
                    r.freq.touch(epoch);
                    let tick = r.tick;
                    fifo.push_back((key, tick, at));
                }
                Some(r) => {
                    let count = r.freq.get(epoch);
                    sample.push((key, queued, at, count));
                }
            }
        }
        sample
    }

    /// Puts a sample back at the front, in its order.
    fn unsample(&mut self, sample: Vec<(K, u64, u32, u8)>) {
        if let Order::Lru(fifo) = &mut self.order {
            for (key, queued, at, _) in sample.into_iter().rev() {
                fifo.push_front((key, queued, at));
            }
        }
    }

    /// Whether a value loaded now for the key of hash `h` should stay in
    /// memory (see [`Admission`](crate::Admission)); `room`: whether the
    /// budget has room for it without evicting anything; `evicted`: the
    /// typical count of the values eviction takes.
    pub fn keep_load(&mut self, h: u64, room: bool, evicted: u8) -> bool {
        if self.sketch_width > 0 {
            self.age();
            let width = self.sketch_size();
            let wanted = self
                .sketch
                .get_or_insert_with(|| Sketch::new(width))
                .add(h, 1);
            // Kept when it is wanted more often than what it would push
            // out, and not for the first time (as TinyLFU's doorkeeper: a
            // value read once never pushes out one that was read before).
            return room || wanted > evicted.max(1);
        }
        if self.recent_slots == 0 {
            return true;
        }
        let slots = self.recent_slots;
        self.recent
            .get_or_insert_with(|| Recent::new(slots))
            .seen_again(h)
    }

    /// The clock, advanced by one access.
    #[inline]
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Begins the next epoch of the counts if enough accesses passed since
    /// this one began. Called where counts are compared or kept (a load,
    /// an eviction), not on a hit: while only hits happen no count is
    /// compared, and the counts age when the next comparison comes.
    fn age(&mut self) {
        if self.clock >= self.next_epoch {
            self.next_epoch_begins();
        }
    }

    /// Counters a row of the sketch should have: at least one per key of
    /// the shard (a sketch narrower than the keys it counts gives most of
    /// them the counts of others: with small values, many more keys than
    /// KiB of budget), at least the width set.
    fn sketch_size(&self) -> usize {
        self.sketch_width.max(self.map.len().next_power_of_two())
    }

    /// Accesses in an epoch.
    fn epoch_length(&self) -> u64 {
        EPOCH_ACCESSES_PER_COUNTER * self.sketch_width as u64
    }

    /// Ages every count by one epoch.
    #[cold]
    fn next_epoch_begins(&mut self) {
        // As many epochs as passed since the last look (a run of hits does
        // not look).
        let len = self.epoch_length();
        let passed = (self.clock - self.next_epoch) / len + 1;
        self.epoch = self.epoch.wrapping_add(passed.min(255) as u8);
        self.next_epoch = self.clock + len;
        let size = self.sketch_size();
        if let Some(sketch) = &mut self.sketch {
            if sketch.width() * 2 <= size {
                // The shard outgrew it: a wider one (the counts start over).
                *sketch = Sketch::new(size);
            } else {
                // Four halvings empty a 4-bit counter.
                for _ in 0..passed.min(4) {
                    sketch.halve();
                }
            }
        }
    }

    /// Whether a resident value may be chosen for eviction.
    fn eligible(slot: Option<&Slot<V>>) -> Option<&Resident<V>> {
        match slot {
            Some(Slot::Resident(r)) if !r.pinned && !r.evicting => Some(r),
            _ => None,
        }
    }

    fn eligible_mut(slot: Option<&mut Slot<V>>) -> Option<&mut Resident<V>> {
        match slot {
            Some(Slot::Resident(r)) if !r.pinned && !r.evicting => Some(r),
            _ => None,
        }
    }

    /// Puts a resident key into the eviction order (or refreshes its place).
    pub fn enqueue(&mut self, key: &K) {
        match &mut self.order {
            Order::Lru(fifo) => {
                if let Some((at, slot)) = self.map.get_positioned(key) {
                    if let Some(r) = Self::eligible(Some(slot)) {
                        fifo.push_back((key.clone(), r.tick, at));
                    }
                }
                let live = self.map.len();
                if fifo.len() > 2 * live + 64 {
                    self.rebuild();
                }
            }
            Order::Largest(queue) => match Self::eligible(self.map.get(key)) {
                Some(r) => {
                    let p = r.weight as u64;
                    if queue.change_priority(key, p).is_none() {
                        queue.push(key.clone(), p);
                    }
                }
                None => {
                    queue.remove(key);
                }
            },
        }
    }

    /// Rebuilds the LRU order from the map, dropping stale copies.
    fn rebuild(&mut self) {
        let Order::Lru(fifo) = &mut self.order else {
            return;
        };
        let mut live: Vec<Queued<K>> = self
            .map
            .iter()
            .enumerate()
            .filter_map(|(at, (k, slot))| {
                Self::eligible(Some(slot)).map(|r| (k.clone(), r.tick, at as u32))
            })
            .collect();
        live.sort_unstable_by_key(|&(_, tick, _)| tick);
        *fifo = live.into();
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

    /// Checks the eviction order against the map (for the invariant check):
    /// every eligible key is in it, and (largest first) nothing else.
    pub fn check_order(&self) -> std::result::Result<(), String>
    where
        K: std::fmt::Debug,
    {
        let queued: std::collections::HashSet<&K> = match &self.order {
            Order::Lru(fifo) => fifo.iter().map(|(k, _, _)| k).collect(),
            Order::Largest(queue) => queue.iter().map(|(k, _)| k).collect(),
        };
        for (key, slot) in self.map.iter() {
            let eligible = Self::eligible(Some(slot)).is_some();
            if eligible && !queued.contains(key) {
                return Err(format!(
                    "key {key:?}: evictable but not in the eviction order"
                ));
            }
            if let (Order::Largest(_), false, true) = (&self.order, eligible, queued.contains(key))
            {
                return Err(format!(
                    "key {key:?}: not evictable but in the eviction order"
                ));
            }
        }
        if let Order::Largest(queue) = &self.order {
            for (key, _) in queue.iter() {
                if !self.map.contains_key(key) {
                    return Err(format!(
                        "key {key:?}: in the eviction order, not in the map"
                    ));
                }
            }
        }
        Ok(())
    }

    /// Empties the eviction order (the map is being emptied too).
    pub fn clear_queue(&mut self) {
        match &mut self.order {
            Order::Lru(fifo) => fifo.clear(),
            Order::Largest(queue) => queue.clear(),
        }
    }

    /// Takes `key` out of the eviction order (it is pinned, evicting or
    /// gone). Under LRU its copy is dropped lazily, when met.
    pub fn dequeue<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
    {
        if let Order::Largest(queue) = &mut self.order {
            queue.remove(key);
        }
    }

    /// Puts back a key [`pop_coldest`](Shard::pop_coldest) gave and the
    /// caller did not take, where it was: first in line.
    pub fn unpop(&mut self, key: K, at: u32) {
        match &mut self.order {
            Order::Lru(fifo) => {
                if let Some(r) = Self::eligible(self.map.get_hinted(&key, at)) {
                    let tick = r.tick;
                    fifo.push_front((key, tick, at));
                }
            }
            Order::Largest(_) => self.enqueue(&key),
        }
    }

    /// The next key to evict (it stays in the map; the caller marks it),
    /// with a hint of its position in the index ([`NO_HINT`] if none).
    pub fn pop_coldest(&mut self) -> Option<(K, u32)> {
        if self.sketch.is_some() && matches!(self.order, Order::Lru(_)) {
            // Of the few coldest by recency, the least wanted. (Only once
            // values are loaded: before, every value was inserted and its
            // count says little, and a run of inserts evicts at the cost
            // of one look per victim.)
            let mut sample = self.sample_coldest();
            let i = least_wanted(&sample)?;
            let (key, _, at, _) = sample.remove(i);
            self.unsample(sample);
            return Some((key, at));
        }
        match &mut self.order {
            Order::Lru(fifo) => loop {
                let (key, queued, at) = fifo.pop_front()?;
                let Some(r) = Self::eligible_mut(self.map.get_mut_hinted(&key, at)) else {
                    continue; // a stale copy
                };
                if r.tick <= queued {
                    return Some((key, at));
                }
                // Touched since it was queued: its place is at the back.
                if self.sketch_width > 0 {
                    r.freq.touch(self.epoch);
                }
                let tick = r.tick;
                fifo.push_back((key, tick, at));
            },
            Order::Largest(queue) => loop {
                let (key, &p) = queue.peek()?;
                let actual = match Self::eligible(self.map.get(key)) {
                    Some(r) => r.weight as u64,
                    None => {
                        let key = key.clone();
                        queue.remove(&key);
                        continue;
                    }
                };
                if actual == p {
                    return queue.pop().map(|(k, _)| (k, NO_HINT));
                }
                let key = key.clone();
                queue.change_priority(&key, actual);
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::frequency::Freq;
    use crate::store::Loc;
    use std::sync::Arc;

    #[test]
    fn a_spilled_key_costs_sixteen_bytes_of_slot() {
        // The index of a reopened chest is all `Slot::Spilled`: keep it small.
        assert_eq!(std::mem::size_of::<Loc>(), 12);
        assert!(std::mem::size_of::<Slot<Vec<u8>>>() <= 16);
    }

    #[test]
    fn a_load_is_kept_the_second_time() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 64);
        // Hashes of one bucket (bits 40.. equal), different fingerprints.
        let h = |i: u64| (5u64 << 40) | (i << 1);
        assert!(!s.keep_load(h(1), false, 0), "first load");
        assert!(s.keep_load(h(1), false, 0), "second load");
        assert!(
            !s.keep_load(h(1), false, 0),
            "kept, so forgotten: a third load starts over"
        );
        // A bucket remembers its last WAYS keys; the oldest is forgotten.
        for i in 10..10 + WAYS as u64 + 1 {
            assert!(!s.keep_load(h(i), false, 0));
        }
        assert!(!s.keep_load(h(10), false, 0), "the oldest was forgotten");
        for i in 12..10 + WAYS as u64 + 1 {
            assert!(s.keep_load(h(i), false, 0), "key {i} was remembered");
        }
        // Other buckets are independent; with no doorkeeper every load is kept.
        assert!(!s.keep_load(6u64 << 40, false, 0));
        let mut every: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0);
        assert!(every.keep_load(h(1), false, 0));
    }

    #[test]
    fn lru_pops_the_least_recently_touched() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0);
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
        let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest().map(|(k, _)| k)).collect();
        assert_eq!(order, vec![2, 3, 4, 0, 1]);
    }

    #[test]
    fn a_key_popped_and_put_back_is_first_in_line_again() {
        for policy in [
            EvictionPolicy::LeastRecentlyUsed,
            EvictionPolicy::LargestFirst,
        ] {
            let mut s: Shard<u32, u32> = Shard::new(policy, 0);
            for k in 0..4u32 {
                let tick = s.tick();
                s.map.insert(
                    k,
                    Slot::Resident(Resident::new(Arc::new(k), 10 - k as usize, tick, None)),
                );
                s.enqueue(&k);
            }
            let (first, at) = s.pop_coldest().unwrap();
            s.unpop(first, at);
            s.check_order().unwrap();
            let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest().map(|(k, _)| k)).collect();
            assert_eq!(order, vec![0, 1, 2, 3], "{policy:?}");
        }
    }

    #[test]
    fn largest_first_pops_by_weight() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LargestFirst, 0);
        for (k, w) in [(1u32, 5usize), (2, 50), (3, 7)] {
            s.map
                .insert(k, Slot::Resident(Resident::new(Arc::new(k), w, 0, None)));
            s.enqueue(&k);
        }
        let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest().map(|(k, _)| k)).collect();
        assert_eq!(order, vec![2, 3, 1]);
    }

    #[test]
    fn lru_order_stays_whole_through_touches_pins_and_reinserts() {
        order_stays_whole(Shard::new(EvictionPolicy::LeastRecentlyUsed, 0));
        // With counts, eviction samples the front and puts the rest back.
        let mut counting =
            Shard::new(EvictionPolicy::LeastRecentlyUsed, 0).counting_frequencies(16);
        counting.keep_load(12345, false, 0);
        order_stays_whole(counting);
    }

    /// A resident of `key` whose count is `count`, queued.
    fn resident_with_count(s: &mut Shard<u32, u32>, key: u32, count: u8) {
        let tick = s.tick();
        let mut r = Resident::new(Arc::new(key), 1, tick, None);
        r.freq = Freq::new(count, s.epoch());
        s.map.insert(key, Slot::Resident(r));
        s.enqueue(&key);
    }

    #[test]
    fn frequency_admission_keeps_with_room_or_when_wanted_more_than_what_goes() {
        let mut s: Shard<u32, u32> =
            Shard::new(EvictionPolicy::LeastRecentlyUsed, 0).counting_frequencies(1024);
        let h = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert!(s.keep_load(h(1), true, 9), "room: kept whatever the counts");
        assert!(
            !s.keep_load(h(2), false, 0),
            "a first load never pushes a value out"
        );
        assert!(
            s.keep_load(h(2), false, 0),
            "a second one does, over values read once"
        );
        assert!(!s.keep_load(h(3), false, 3));
        assert!(!s.keep_load(h(3), false, 3));
        assert!(!s.keep_load(h(3), false, 3), "3 is not more than 3");
        assert!(s.keep_load(h(3), false, 3));
        // What leaves memory leaves its count behind.
        s.remember(h(4), Freq::new(6, s.epoch()));
        assert_eq!(s.loaded_freq(h(4)).get(s.epoch()), 6);
        assert!(s.keep_load(h(4), false, 6), "6 + this load is more than 6");
    }

    #[test]
    fn frequency_eviction_takes_the_least_wanted_of_the_coldest() {
        let mut s: Shard<u32, u32> =
            Shard::new(EvictionPolicy::LeastRecentlyUsed, 0).counting_frequencies(16);
        // Counts decide once values are loaded (the sketch exists).
        s.keep_load(12345, false, 0);
        for (key, count) in [(0, 5), (1, 1), (2, 4), (3, 1), (4, 2)] {
            resident_with_count(&mut s, key, count);
        }
        // Equal counts go least recently used first.
        let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest().map(|(k, _)| k)).collect();
        assert_eq!(order, vec![1, 3, 4, 2, 0]);
    }

    #[test]
    fn counts_halve_once_per_epoch_of_accesses() {
        let mut s: Shard<u32, u32> =
            Shard::new(EvictionPolicy::LeastRecentlyUsed, 0).counting_frequencies(16);
        let len = s.epoch_length();
        resident_with_count(&mut s, 7, 12);
        s.keep_load(99, false, 0);
        s.keep_load(99, false, 0);
        let counted = |s: &Shard<u32, u32>| match s.map.get(&7) {
            Some(Slot::Resident(r)) => r.freq.get(s.epoch()),
            _ => unreachable!(),
        };
        // Hits alone do not age the counts; the next comparison does, by
        // as many epochs as passed.
        for _ in 0..2 * len {
            s.tick();
        }
        assert_eq!(counted(&s), 12);
        s.keep_load(1234, false, 0);
        assert_eq!(counted(&s), 3, "two epochs: 12 / 4");
        assert_eq!(s.sketch.as_ref().unwrap().estimate(99), 0, "2 / 4");
    }

    fn order_stays_whole(mut s: Shard<u32, u32>) {
        let mut x: u64 = 0x2545_f491_4f6c_dd1d;
        let mut rand = |n: u64| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x % n
        };
        for _ in 0..20_000 {
            let k = rand(64) as u32;
            match rand(6) {
                0 | 1 => {
                    // insert or overwrite
                    let tick = s.tick();
                    s.map
                        .insert(k, Slot::Resident(Resident::new(Arc::new(k), 1, tick, None)));
                    s.enqueue(&k);
                }
                2 => {
                    // a hit: stamp only
                    let tick = s.tick();
                    if let Some(Slot::Resident(r)) = s.map.get_mut(&k) {
                        r.tick = tick;
                    }
                }
                3 => {
                    // pin, or unpin and enqueue again
                    if let Some(Slot::Resident(r)) = s.map.get_mut(&k) {
                        r.pinned = !r.pinned;
                        let pinned = r.pinned;
                        if pinned {
                            s.dequeue(&k);
                        } else {
                            s.enqueue(&k);
                        }
                    }
                }
                4 => {
                    s.map.remove(&k);
                    s.dequeue(&k);
                }
                _ => {
                    // The victim is evictable, and was not touched since it
                    // was last queued or passed over (a second chance).
                    let got = s.pop_coldest();
                    let evictable = s
                        .map
                        .iter()
                        .map(|(_, v)| v)
                        .filter(|slot| matches!(slot, Slot::Resident(r) if !r.pinned))
                        .count();
                    assert_eq!(got.is_none(), evictable == 0);
                    if let Some((k, at)) = got {
                        assert!(matches!(s.map.get(&k), Some(Slot::Resident(r)) if !r.pinned));
                        // The hint is where the key is, or stale: never another key.
                        assert!(
                            matches!(s.map.get_hinted(&k, at), Some(Slot::Resident(r)) if !r.pinned)
                        );
                        s.map.remove(&k);
                    }
                }
            }
            s.check_order().unwrap();
        }
        let Order::Lru(fifo) = &s.order else {
            unreachable!()
        };
        assert!(
            fifo.len() <= 2 * s.map.len() + 64,
            "stale copies are cleared"
        );
    }
}
