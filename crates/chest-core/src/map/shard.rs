//! One shard of the map: its key index, its resident values, and the state
//! of its [`policy`](crate::map::policy) (the eviction order and the
//! admission of loaded values), which the shard's methods call.

use std::hash::Hash;

use crate::config::EvictionPolicy;
use crate::map::entry::eligible;
use crate::map::entry::Slot;
use crate::map::index::Index;
use crate::map::policy::cost::Worth;
use crate::map::policy::doorkeeper::{Recent, WAYS};
use crate::map::policy::frequency::{Counts, Evicted, Freq, Keep};
use crate::map::policy::largest::Largest;
use crate::map::policy::lru::Lru;

#[cfg(doc)]
use crate::map::policy::largest::NO_HINT;

/// Picks a key's shard. Its bits are taken as a partition, which needs every
/// output bit to depend on every input bit: foldhash's fast variant does not
/// (its docs say so), and with some random seeds it sent runs of consecutive
/// integer keys to one shard (64 keys in one of 2 shards about once in 140
/// chests). The quality variant is the fast one with a final mix.
pub(crate) type ShardHash = foldhash::quality::RandomState;

pub(crate) struct Shard<K, V> {
    pub map: Index<K, Slot<V>>,
    /// The eviction order of the resident keys that are neither pinned nor
    /// evicting.
    order: Order<K>,
    /// Which loads stay in memory.
    admission: Admit,
    /// [`Admission::Frequency`](crate::Admission::Frequency): the newest
    /// loads kept on probation ([`Keep::Window`]), outside the eviction
    /// order, oldest first; at most `window_cap` of them.
    window: Lru<K>,
    window_cap: usize,
    /// Whether the window earns its keep (see [`WindowUse`]).
    window_use: WindowUse,
    clock: u64,
    /// Hits not yet added to the chest's counter (see [`Shard::count_hit`]).
    hits: u32,
}

/// Hits a shard counts before adding them to the chest's counter.
const HITS_BATCH: u32 = 64;

/// How much the window is used, and so how many of the loads that do not
/// win their place go into it: every one while the values it pushes out
/// were used there often enough (one in [`WindowUse::CHECK`] / `RARE`, at
/// least), else one in [`WindowUse::SAMPLE`] — enough to see when that
/// changes. On uniform random reads nothing in the window is read again,
/// and each load kept there costs an allocation and a drop for nothing.
#[derive(Debug, Default)]
struct WindowUse {
    /// Values pushed out of the window since the last check, and how many
    /// of them were used there.
    out: u32,
    used: u32,
    /// Whether the window is rarely used (loads go into it one in
    /// `SAMPLE`), and the loads skipped since the last one taken.
    rare: bool,
    skipped: u32,
}

impl WindowUse {
    /// Values pushed out between two checks.
    const CHECK: u32 = 256;
    /// Below one use in this many values pushed out, the window is rarely used.
    const RARE: u32 = 128;
    /// While it is, one load in this many goes into it.
    const SAMPLE: u32 = 16;

    /// Whether this load (one that did not win its place) goes into the window.
    fn take(&mut self) -> bool {
        if !self.rare {
            return true;
        }
        self.skipped += 1;
        if self.skipped >= Self::SAMPLE {
            self.skipped = 0;
            true
        } else {
            false
        }
    }

    /// A value was pushed out of the window, `used` there or not.
    fn out(&mut self, used: bool) {
        self.out += 1;
        self.used += u32::from(used);
        if self.out >= Self::CHECK {
            self.rare = self.used * Self::RARE < self.out;
            self.out = 0;
            self.used = 0;
        }
    }
}

/// The eviction order, by [`EvictionPolicy`].
enum Order<K> {
    Lru(Lru<K>),
    Largest(Largest<K>),
}

/// The admission's state, by [`Admission`](crate::Admission).
enum Admit {
    /// Every load stays.
    Every,
    /// [`Admission::SecondRead`](crate::Admission::SecondRead): keys loaded
    /// lately and not kept (allocated on first use), in `slots` slots.
    SecondRead {
        recent: Option<Recent>,
        slots: usize,
    },
    /// [`Admission::Frequency`](crate::Admission::Frequency).
    Frequency(Counts),
}

impl<K: Hash + Eq + Clone, V> Shard<K, V> {
    /// A shard whose doorkeeper (see [`Admission`](crate::Admission))
    /// remembers up to `recent_slots` keys (rounded up to a power of two;
    /// 0: every load is kept).
    pub fn new(policy: EvictionPolicy, recent_slots: usize) -> Self {
        Self {
            map: Index::default(),
            order: match policy {
                EvictionPolicy::LeastRecentlyUsed => Order::Lru(Lru::new()),
                EvictionPolicy::LargestFirst => Order::Largest(Largest::new()),
            },
            admission: if recent_slots == 0 {
                Admit::Every
            } else {
                Admit::SecondRead {
                    recent: None,
                    slots: recent_slots.max(WAYS).next_power_of_two(),
                }
            },
            window: Lru::new(),
            window_cap: 0,
            window_use: WindowUse::default(),
            clock: 0,
            hits: 0,
        }
    }

    /// Keeps the counts [`Admission::Frequency`](crate::Admission::Frequency)
    /// decides by, in a sketch of `width` counters per row, weighed by
    /// `worth`.
    pub fn counting_frequencies(mut self, width: usize, worth: Worth) -> Self {
        self.admission = Admit::Frequency(Counts::new(width, self.clock, worth));
        self
    }

    /// The epoch, if this shard keeps counts
    /// ([`Admission::Frequency`](crate::Admission::Frequency)); `None`
    /// otherwise, and a load or an eviction has no count to keep.
    #[inline]
    pub fn counting(&self) -> Option<u8> {
        match &self.admission {
            Admit::Frequency(counts) => Some(counts.epoch()),
            _ => None,
        }
    }

    /// The count a value loaded now starts with in memory.
    pub fn loaded_freq(&self, h: u64) -> Freq {
        match &self.admission {
            Admit::Frequency(counts) => counts.loaded_freq(h),
            _ => Freq::default(),
        }
    }

    /// A value of hash `h` leaves memory with `freq`: its count stays in
    /// the sketch, so a load of it later knows it.
    pub fn remember(&mut self, h: u64, freq: Freq) {
        let keys = self.map.len();
        if let Admit::Frequency(counts) = &mut self.admission {
            counts.remember(h, freq, self.clock, keys);
        }
    }

    /// Whether, and where, a value loaded now for the key of hash `h`
    /// should stay in memory (see [`Admission`](crate::Admission)); `room`:
    /// whether the budget has room for it without evicting anything;
    /// `evicted`: the count a value of this one's size needs to be worth
    /// what eviction typically takes;
    /// `window`: how many values the window may hold (at least one), and
    /// `window_least`: how many while it is rarely used (what is not read
    /// again there gains nothing from a larger one, and takes memory from
    /// the values that won their place).
    pub fn keep_load(
        &mut self,
        h: u64,
        room: bool,
        evicted: u8,
        window: usize,
        window_least: usize,
    ) -> Keep {
        let keys = self.map.len();
        let kept = |keep: bool| if keep { Keep::Main } else { Keep::No };
        match &mut self.admission {
            Admit::Every => Keep::Main,
            Admit::SecondRead { recent, slots } => {
                let slots = *slots;
                kept(
                    recent
                        .get_or_insert_with(|| Recent::new(slots))
                        .seen_again(h),
                )
            }
            Admit::Frequency(counts) => {
                self.window_cap = if self.window_use.rare {
                    window.min(window_least)
                } else {
                    window
                }
                .max(1);
                match counts.keep_load(h, room, evicted, self.clock, keys) {
                    Keep::Window if !self.window_use.take() => Keep::No,
                    keep => keep,
                }
            }
        }
    }

    /// Puts a resident key loaded on probation into the window.
    pub fn enqueue_window(&mut self, key: &K) {
        self.window.push(&self.map, key);
    }

    /// While the window holds more than its share: its oldest value not
    /// used since it was queued there (one used goes to the back of the
    /// window, one more to its count: the window is a CLOCK of its own, so
    /// what is read again soon stays while it is), if it is not wanted more
    /// often than what eviction takes (`evicted`: the typical evicted
    /// value's worth, in counts of this value's size), to leave memory
    /// (the caller drops it, or queues it for eviction if it cannot be
    /// dropped); one wanted more moves into the eviction order (W-TinyLFU's
    /// window and its admission). `None` once the window is within its
    /// share.
    pub fn window_overflow(&mut self, evicted: &Evicted) -> Option<(K, u32)> {
        while self.window.len() > self.window_cap {
            let epoch = self.counting();
            let use_ = &mut self.window_use;
            let (key, at) = self
                .window
                .pop_unused(&mut self.map, epoch, |_| use_.out(true))?;
            self.window_use.out(false);
            let (wanted, bar) = match self.map.get_hinted(&key, at) {
                Some(Slot::Resident(r)) => {
                    (r.freq.get(epoch.unwrap_or(0)), evicted.typical(r.size()))
                }
                _ => (0, 0),
            };
            if wanted <= bar.max(1) {
                return Some((key, at));
            }
            self.enqueue(&key);
        }
        None
    }

    /// One more hit. The chest's counter of hits is one cache line that
    /// every thread's hits would write (two threads hitting at once took
    /// it from each other on every hit); a shard counts under its lock and
    /// hands over a batch of [`HITS_BATCH`]: `Some(n)`, the hits to add.
    #[inline]
    pub fn count_hit(&mut self) -> Option<u64> {
        self.hits += 1;
        if self.hits < HITS_BATCH {
            return None;
        }
        self.hits = 0;
        Some(u64::from(HITS_BATCH))
    }

    /// Hits counted here and not yet handed over.
    pub fn pending_hits(&self) -> u64 {
        u64::from(self.hits)
    }

    /// The clock, advanced by one access.
    #[inline]
    pub fn tick(&mut self) -> u64 {
        self.clock += 1;
        self.clock
    }

    /// Puts a resident key into the eviction order (or refreshes its place).
    pub fn enqueue(&mut self, key: &K) {
        match &mut self.order {
            Order::Lru(lru) => lru.push(&self.map, key),
            Order::Largest(largest) => largest.update(&self.map, key),
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

    /// Checks the eviction order against the map (for the invariant check):
    /// every eligible key is in it, and (largest first) nothing else.
    pub fn check_order(&self) -> std::result::Result<(), String>
    where
        K: std::fmt::Debug,
    {
        let mut queued: std::collections::HashSet<&K> = match &self.order {
            Order::Lru(lru) => lru.keys().collect(),
            Order::Largest(largest) => largest.keys().collect(),
        };
        queued.extend(self.window.keys());
        let exact = matches!(self.order, Order::Largest(_));
        for (key, slot) in self.map.iter() {
            let eligible = eligible(Some(slot)).is_some();
            if eligible && !queued.contains(key) {
                return Err(format!(
                    "key {key:?}: evictable but not in the eviction order"
                ));
            }
            if exact && !eligible && queued.contains(key) {
                return Err(format!(
                    "key {key:?}: not evictable but in the eviction order"
                ));
            }
        }
        if exact {
            for key in queued {
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
        self.window.clear();
        match &mut self.order {
            Order::Lru(lru) => lru.clear(),
            Order::Largest(largest) => largest.clear(),
        }
    }

    /// Takes `key` out of the eviction order (it is pinned, evicting or
    /// gone). Under LRU its copy is dropped lazily, when met.
    pub fn dequeue<Q: Hash + Eq + ?Sized>(&mut self, key: &Q)
    where
        K: std::borrow::Borrow<Q>,
    {
        if let Order::Largest(largest) = &mut self.order {
            largest.remove(key);
        }
    }

    /// Puts back a key [`pop_coldest`](Shard::pop_coldest) gave and the
    /// caller did not take, where it was: first in line.
    pub fn unpop(&mut self, key: K, at: u32) {
        match &mut self.order {
            Order::Lru(lru) => lru.unpop(&self.map, key, at),
            Order::Largest(largest) => largest.update(&self.map, &key),
        }
    }

    /// The next key to evict (it stays in the map; the caller marks it),
    /// with a hint of its position in the index ([`NO_HINT`] if none).
    pub fn pop_coldest(&mut self) -> Option<(K, u32)> {
        let counts = match &self.admission {
            Admit::Frequency(counts) => Some(counts),
            _ => None,
        };
        let coldest = match &mut self.order {
            // Of the few coldest by recency, the least wanted, once values
            // are loaded (before, every value was inserted and its count
            // says little, and a run of inserts evicts at the cost of one
            // look per victim).
            Order::Lru(lru) => match counts {
                Some(c) if c.deciding() => {
                    lru.pop_least_wanted(&mut self.map, c.epoch(), c.worth())
                }
                c => lru.pop_coldest(&mut self.map, c.map(Counts::epoch)),
            },
            Order::Largest(largest) => largest.pop_coldest(&self.map),
        };
        // Nothing else left: the window's oldest (the budget holds even
        // when the windows hold all of it, as with a few large values).
        coldest.or_else(|| self.window.pop_front(&self.map).map(|(k, at, _)| (k, at)))
    }

    /// Copies in the LRU queue, stale ones included (for tests).
    #[cfg(test)]
    fn queued(&self) -> usize {
        match &self.order {
            Order::Lru(lru) => lru.len(),
            Order::Largest(largest) => largest.keys().count(),
        }
    }

    /// The counts (for tests).
    #[cfg(test)]
    fn counts(&self) -> &Counts {
        match &self.admission {
            Admit::Frequency(counts) => counts,
            _ => panic!("no counts kept"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::map::entry::Resident;
    use crate::store::Loc;
    use std::sync::Arc;

    #[test]
    fn hits_are_handed_over_in_batches_and_none_is_lost() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0);
        let mut handed = 0;
        for _ in 0..1000 {
            handed += s.count_hit().unwrap_or(0);
        }
        assert_eq!(handed, 960, "15 batches of 64");
        assert_eq!(handed + s.pending_hits(), 1000);
    }

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
        assert!(
            (s.keep_load(h(1), false, 0, 0, 0) == Keep::No),
            "first load"
        );
        assert!(
            s.keep_load(h(1), false, 0, 0, 0) == Keep::Main,
            "second load"
        );
        assert!(
            (s.keep_load(h(1), false, 0, 0, 0) == Keep::No),
            "kept, so forgotten: a third load starts over"
        );
        // A bucket remembers its last WAYS keys; the oldest is forgotten.
        for i in 10..10 + WAYS as u64 + 1 {
            assert!((s.keep_load(h(i), false, 0, 0, 0) == Keep::No));
        }
        assert!(
            (s.keep_load(h(10), false, 0, 0, 0) == Keep::No),
            "the oldest was forgotten"
        );
        for i in 12..10 + WAYS as u64 + 1 {
            assert!(
                s.keep_load(h(i), false, 0, 0, 0) == Keep::Main,
                "key {i} was remembered"
            );
        }
        // Other buckets are independent; with no doorkeeper every load is kept.
        assert!(s.keep_load(6u64 << 40, false, 0, 0, 0) == Keep::No);
        let mut every: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0);
        assert!(every.keep_load(h(1), false, 0, 0, 0) == Keep::Main);
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
        let mut counting = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0)
            .counting_frequencies(16, Worth::default());
        counting.keep_load(12345, false, 0, 0, 0);
        order_stays_whole(counting);
    }

    /// A resident of `key` whose count is `count`, queued.
    fn resident_with_count(s: &mut Shard<u32, u32>, key: u32, count: u8) {
        let tick = s.tick();
        let mut r = Resident::new(Arc::new(key), 1, tick, None);
        r.freq = Freq::new(count, s.counting().unwrap());
        s.map.insert(key, Slot::Resident(r));
        s.enqueue(&key);
    }

    #[test]
    fn frequency_admission_keeps_with_room_or_when_wanted_more_than_what_goes() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0)
            .counting_frequencies(1024, Worth::default());
        let h = |i: u64| i.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        assert!(
            s.keep_load(h(1), true, 9, 0, 0) == Keep::Main,
            "room: kept whatever the counts"
        );
        assert!(
            (s.keep_load(h(2), false, 0, 0, 0) == Keep::Window),
            "a first load never pushes a value out"
        );
        assert!(
            (s.keep_load(h(2), false, 0, 0, 0) == Keep::Main),
            "a second one does, over values read once"
        );
        assert!((s.keep_load(h(3), false, 3, 0, 0) == Keep::Window));
        assert!((s.keep_load(h(3), false, 3, 0, 0) == Keep::Window));
        assert!(
            (s.keep_load(h(3), false, 3, 0, 0) == Keep::Window),
            "3 is not more than 3"
        );
        assert!(s.keep_load(h(3), false, 3, 0, 0) == Keep::Main);
        // What leaves memory leaves its count behind.
        s.remember(h(4), Freq::new(6, s.counting().unwrap()));
        assert_eq!(s.loaded_freq(h(4)).get(s.counting().unwrap()), 6);
        assert!(
            s.keep_load(h(4), false, 6, 0, 0) == Keep::Main,
            "6 + this load is more than 6"
        );
    }

    #[test]
    fn the_window_keeps_what_is_used_in_it_and_promotes_what_is_wanted_more() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0)
            .counting_frequencies(16, Worth::default());
        let epoch = s.counting().unwrap();
        // A window of one value (at least one, whatever is asked).
        assert_eq!(s.keep_load(7, false, 0, 0, 0), Keep::Window);
        let load = |s: &mut Shard<u32, u32>, k: u32| {
            let tick = s.tick();
            let mut r = Resident::new(Arc::new(k), 1, tick, None);
            r.freq = Freq::new(1, epoch);
            s.map.insert(k, Slot::Resident(r));
            s.enqueue_window(&k);
        };
        let used = |s: &mut Shard<u32, u32>, k: u32| {
            let tick = s.tick();
            if let Some(Slot::Resident(r)) = s.map.get_mut(&k) {
                r.tick = tick;
            }
        };
        for k in 0..3 {
            load(&mut s, k);
        }
        // Key 0 is used while on probation: a second chance in the window
        // (one more to its count); the oldest unused go, each no more
        // wanted than what eviction takes (a count of 1).
        used(&mut s, 0);
        let (out, _) = s
            .window_overflow(&Evicted::at(1))
            .expect("the oldest unused");
        assert_eq!(out, 1);
        s.map.remove(&1); // the caller drops it
        assert_eq!(s.window_overflow(&Evicted::at(1)).map(|(k, _)| k), Some(2));
        s.map.remove(&2);
        assert_eq!(s.window_overflow(&Evicted::at(1)), None, "key 0 fits");
        assert_eq!(s.queued(), 0, "nothing in the eviction order");
        s.check_order().unwrap();
        // Pushed out unused now, 0 is wanted more than what eviction takes
        // (2 > 1): into the eviction order.
        load(&mut s, 3);
        assert_eq!(
            s.window_overflow(&Evicted::at(1)),
            None,
            "0 moved on, 3 fits"
        );
        s.check_order().unwrap();
        assert_eq!(
            s.pop_coldest().map(|(k, _)| k),
            Some(0),
            "0 is in the order"
        );
        s.map.remove(&0); // evicted
                          // Nothing else left, eviction takes the window's oldest (the budget
                          // holds); put back, it is first in line.
        let (k, at) = s.pop_coldest().expect("the window's oldest");
        assert_eq!(k, 3);
        s.unpop(k, at);
        s.check_order().unwrap();
        // Against a higher bar, a value used in the window leaves too, once
        // it goes a round of the window unused.
        load(&mut s, 4);
        used(&mut s, 4);
        load(&mut s, 5);
        assert_eq!(s.window_overflow(&Evicted::at(9)).map(|(k, _)| k), Some(5));
        assert_eq!(s.window_overflow(&Evicted::at(9)), None);
        load(&mut s, 6);
        assert_eq!(s.window_overflow(&Evicted::at(9)).map(|(k, _)| k), Some(4));
    }

    #[test]
    fn a_window_rarely_used_takes_one_load_in_sixteen_until_it_is_used_again() {
        let mut w = WindowUse::default();
        assert!((0..100).all(|_| w.take()), "used until shown otherwise");
        for _ in 0..WindowUse::CHECK {
            w.out(false);
        }
        let taken = (0..160).filter(|_| w.take()).count();
        assert_eq!(taken, 10, "one in sixteen");
        // Used again (one in eight pushed out): every load again.
        for i in 0..WindowUse::CHECK {
            w.out(i % 8 == 0);
        }
        assert!((0..100).all(|_| w.take()));
    }

    #[test]
    fn frequency_eviction_takes_the_least_wanted_of_the_coldest() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0)
            .counting_frequencies(16, Worth::default());
        // Counts decide once values are loaded (the sketch exists).
        s.keep_load(12345, false, 0, 0, 0);
        for (key, count) in [(0, 5), (1, 1), (2, 4), (3, 1), (4, 2)] {
            resident_with_count(&mut s, key, count);
        }
        // Equal counts go least recently used first.
        let order: Vec<u32> = std::iter::from_fn(|| s.pop_coldest().map(|(k, _)| k)).collect();
        assert_eq!(order, vec![1, 3, 4, 2, 0]);
    }

    #[test]
    fn counts_halve_once_per_epoch_of_accesses() {
        let mut s: Shard<u32, u32> = Shard::new(EvictionPolicy::LeastRecentlyUsed, 0)
            .counting_frequencies(16, Worth::default());
        let len = s.counts().epoch_length();
        resident_with_count(&mut s, 7, 12);
        s.keep_load(99, false, 0, 0, 0);
        s.keep_load(99, false, 0, 0, 0);
        let counted = |s: &Shard<u32, u32>| match s.map.get(&7) {
            Some(Slot::Resident(r)) => r.freq.get(s.counting().unwrap()),
            _ => unreachable!(),
        };
        // Hits alone do not age the counts; the next comparison does, by
        // as many epochs as passed.
        for _ in 0..2 * len {
            s.tick();
        }
        assert_eq!(counted(&s), 12);
        s.keep_load(1234, false, 0, 0, 0);
        assert_eq!(counted(&s), 3, "two epochs: 12 / 4");
        assert_eq!(s.counts().estimate(99), 0, "2 / 4");
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
        assert!(
            s.queued() <= 2 * s.map.len() + 64,
            "stale copies are cleared"
        );
    }
}
