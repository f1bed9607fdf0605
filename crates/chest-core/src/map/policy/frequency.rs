//! How often keys are wanted, for [`Admission::Frequency`](crate::Admission::Frequency):
//! pure logic, no I/O, no locks (the shard owns these and calls them under
//! its lock).
//!
//! - [`Freq`]: the count of a value in memory, kept in its entry (two bytes
//!   beside its tick). A hit does not touch it (a hit only stamps the tick,
//!   under every policy): it goes up by one each time eviction's CLOCK
//!   finds the value used since it was queued, and gives it a second
//!   chance. So it counts the rounds of the queue in which the value was
//!   wanted, not each hit: a value read in every round climbs as one read
//!   in every round would, and the hit path costs nothing more. (Counting
//!   every hit cost W3 about 9 instructions a hit, 5-8% of its time; the
//!   loads on the traces of `tests/eviction_quality.rs` changed by -9% to
//!   +2%: a loop over more values than fit went from 1.13x to 1.03x
//!   Belady, Zipf 0.99 from 1.03-1.06x to 1.05-1.07x the oracle.)
//! - [`Sketch`]: the counts of keys not in memory, approximately (a
//!   count-min sketch of 4-bit counters, as TinyLFU keeps), bumped by their
//!   loads; a value leaving memory leaves its count there.
//!
//! What a loaded value must beat, and which of the coldest values leaves
//! first, goes by counts weighed by what a read costs per byte
//! ([`Worth`]): for values of one size, by counts alone.
//!
//! Both age together by *epochs*: every time a shard has seen ten accesses
//! per counter of its sketch, an epoch ends, the sketch halves every
//! counter, and every [`Freq`] counts as halved too (lazily: a count
//! remembers the epoch it was last written in, and is halved once per epoch
//! since, when read). Halving keeps the counts those of the recent past, so
//! a hot set that moves is followed within a few epochs.

use super::cost::Worth;

/// The worth of the values eviction takes (their counts weighed by what a
/// read costs per byte: see [`Worth`]), averaged over the last few dozen
/// (an exponential moving average): what a loaded value must beat to be
/// kept. One for the whole chest: eviction takes from every shard in turn,
/// so a value loaded into one shard pushes out a value of another, and
/// comparing it with its own shard's coldest compares it with the wrong
/// value. Updated without a lock (a lost update between two evictions is an
/// average slightly off, never a wrong state).
#[derive(Debug, Default)]
pub(crate) struct Evicted {
    /// The average, as `f32` bits.
    average: std::sync::atomic::AtomicU32,
    worth: Worth,
}

impl Evicted {
    /// The average of values weighed by `worth`.
    pub fn new(worth: Worth) -> Self {
        Self {
            average: Default::default(),
            worth,
        }
    }

    /// An average at `count`, by counts alone (for tests).
    #[cfg(test)]
    pub fn at(count: u8) -> Self {
        Self {
            average: (f32::from(count)).to_bits().into(),
            worth: Worth::default(),
        }
    }

    /// A value of `count`, `size` bytes, was evicted.
    pub fn note(&self, count: u8, size: u64) {
        use std::sync::atomic::Ordering::Relaxed;
        let old = f32::from_bits(self.average.load(Relaxed));
        let new = old + (self.worth.of(count, size) - old) / 8.0;
        self.average.store(new.to_bits(), Relaxed);
    }

    /// The count a value of `size` bytes must beat to be kept: the typical
    /// evicted value's worth, in counts of that size (rounded).
    pub fn typical(&self, size: u64) -> u8 {
        let average = f32::from_bits(self.average.load(std::sync::atomic::Ordering::Relaxed));
        self.worth.count_for(average, size)
    }
}

/// Largest count kept (4 bits, as the sketch's counters).
pub(crate) const MAX_COUNT: u8 = 15;

/// A value's count and the epoch it was written in (see the [module](self)).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Freq {
    count: u8,
    epoch: u8,
}

impl Freq {
    /// A count of `count` (at most [`MAX_COUNT`]) as of `epoch`.
    pub fn new(count: u8, epoch: u8) -> Self {
        Self {
            count: count.min(MAX_COUNT),
            epoch,
        }
    }

    /// The count as of `epoch`: halved once per epoch since it was written.
    /// (Epochs wrap at 256: a count untouched for 256 epochs or more may
    /// read as up to its value >> (age % 256) instead of 0, an error that
    /// fades as soon as the key is touched or four more epochs pass.)
    pub fn get(self, epoch: u8) -> u8 {
        let age = epoch.wrapping_sub(self.epoch);
        if age >= 8 {
            0
        } else {
            self.count >> age
        }
    }

    /// One more round in which it was wanted, in `epoch`.
    #[inline]
    pub fn touch(&mut self, epoch: u8) {
        if self.epoch == epoch {
            self.count += u8::from(self.count < MAX_COUNT);
        } else {
            *self = Self::new(self.get(epoch).saturating_add(1), epoch);
        }
    }
}

/// Approximate counts of keys by hash (see the [module](self)): four rows
/// of 4-bit counters; a key's count is the least of its four counters,
/// never below its true (aged) count, above it only when keys collide.
pub(crate) struct Sketch {
    /// 16 counters of 4 bits per word.
    words: Box<[u64]>,
    /// Counters per row, a power of two.
    width: usize,
}

const ROWS: usize = 4;

impl Sketch {
    /// A sketch of `width` counters per row (rounded up to a power of two,
    /// at least 16), all zero.
    pub fn new(width: usize) -> Self {
        let width = width.max(16).next_power_of_two();
        Self {
            words: vec![0; ROWS * width / 16].into_boxed_slice(),
            width,
        }
    }

    /// Counters per row.
    pub fn width(&self) -> usize {
        self.width
    }

    /// The counter positions (word, shift) of the key of hash `h`.
    fn positions(&self, h: u64) -> [(usize, u32); ROWS] {
        // Mixed first: the shard chose this key by some bits of `h`, the
        // same for every key here. Then four indices from the 64 bits
        // (double hashing).
        let mut h = h.wrapping_mul(0x9E37_79B9_7F4A_7C15);
        h ^= h >> 29;
        h = h.wrapping_mul(0xBF58_476D_1CE4_E5B9);
        h ^= h >> 32;
        let a = h as u32 as usize;
        let b = ((h >> 32) as u32 as usize) | 1;
        std::array::from_fn(|row| {
            let i = a.wrapping_add(row.wrapping_mul(b)) & (self.width - 1);
            let at = row * self.width + i;
            (at / 16, (at % 16) as u32 * 4)
        })
    }

    /// The key's count: the least of its counters.
    pub fn estimate(&self, h: u64) -> u8 {
        self.least(&self.positions(h))
    }

    /// The least of the counters at `positions`.
    fn least(&self, positions: &[(usize, u32); ROWS]) -> u8 {
        positions
            .iter()
            .map(|&(w, s)| ((self.words[w] >> s) & 0xF) as u8)
            .min()
            .unwrap_or(0)
    }

    /// Adds `n` to the key's count (each of its counters that is at the
    /// current minimum is raised, the rest stay: "conservative update",
    /// which keeps collisions from inflating counts), saturating at
    /// [`MAX_COUNT`]. Returns the new estimate.
    pub fn add(&mut self, h: u64, n: u8) -> u8 {
        let positions = self.positions(h);
        let target = self.least(&positions).saturating_add(n).min(MAX_COUNT);
        self.raise(&positions, target);
        target
    }

    /// Raises the key's count to `count` if it is below (conservative
    /// update, as [`add`](Sketch::add)), saturating at [`MAX_COUNT`].
    pub fn raise_to(&mut self, h: u64, count: u8) {
        let positions = self.positions(h);
        if self.least(&positions) < count {
            self.raise(&positions, count.min(MAX_COUNT));
        }
    }

    /// Sets each counter at `positions` below `target` to it.
    fn raise(&mut self, positions: &[(usize, u32); ROWS], target: u8) {
        for &(w, s) in positions {
            let c = ((self.words[w] >> s) & 0xF) as u8;
            if c < target {
                self.words[w] = (self.words[w] & !(0xF << s)) | (u64::from(target) << s);
            }
        }
    }

    /// Halves every counter (an epoch ends).
    pub fn halve(&mut self) {
        // Each 4-bit counter shifted right by one: the bit shifted in from
        // the next counter is masked off.
        for w in self.words.iter_mut() {
            *w = (*w >> 1) & 0x7777_7777_7777_7777;
        }
    }
}

/// Where a value `get` loads goes ([`Counts::keep_load`], the shard's
/// `keep_load`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Keep {
    /// Handed to the caller only; the stored copy stays.
    No,
    /// Into memory, in the eviction order.
    Main,
    /// Into memory on probation, in the window: the newest loads that did
    /// not win their place by count (W-TinyLFU's window). One used again
    /// while there moves into the eviction order when the window pushes it
    /// out; one not used leaves memory then.
    Window,
}

/// Accesses per counter of the sketch in an epoch (TinyLFU's sample of ten
/// times the cache's size).
const EPOCH_ACCESSES_PER_COUNTER: u64 = 10;

/// What a shard keeps under [`Admission::Frequency`](crate::Admission::Frequency)
/// besides the counts in its entries: the sketch of the keys not in memory,
/// the epoch all counts are aged to, and the admission rule. The shard
/// passes its clock (accesses so far) and its number of keys.
pub(crate) struct Counts {
    /// Counters a row of the sketch, at least (a power of two).
    width: usize,
    /// Counts of the keys not in memory, allocated at the first load:
    /// until then every value was inserted, their counts say little, and
    /// eviction goes by recency alone ([`Counts::deciding`]).
    sketch: Option<Sketch>,
    /// The epoch of the counts (see the [module](self)).
    epoch: u8,
    /// The shard clock at which the next epoch begins.
    next_epoch: u64,
    /// How counts are weighed by size.
    worth: Worth,
}

impl Counts {
    /// Counts with a sketch of at least `width` counters a row, from the
    /// shard clock `clock` on, weighed by `worth`.
    pub fn new(width: usize, clock: u64, worth: Worth) -> Self {
        let width = width.max(16).next_power_of_two();
        let mut counts = Self {
            width,
            sketch: None,
            epoch: 0,
            next_epoch: 0,
            worth,
        };
        counts.next_epoch = clock + counts.epoch_length();
        counts
    }

    /// How counts are weighed by size.
    pub fn worth(&self) -> Worth {
        self.worth
    }

    /// The epoch counts are aged to.
    pub fn epoch(&self) -> u8 {
        self.epoch
    }

    /// Whether loads have happened, so the counts decide what is evicted.
    pub fn deciding(&self) -> bool {
        self.sketch.is_some()
    }

    /// The count a value loaded now starts with in memory: its sketch's.
    pub fn loaded_freq(&self, h: u64) -> Freq {
        let count = self.sketch.as_ref().map_or(1, |s| s.estimate(h).max(1));
        Freq::new(count, self.epoch)
    }

    /// A value of hash `h` leaves memory with `freq`: its count stays in
    /// the sketch, so a load of it later knows it.
    pub fn remember(&mut self, h: u64, freq: Freq, clock: u64, keys: usize) {
        self.age(clock, keys);
        if let Some(sketch) = &mut self.sketch {
            sketch.raise_to(h, freq.get(self.epoch));
        }
    }

    /// Whether a value loaded now for the key of hash `h` stays in memory:
    /// when there is `room` for it, or when it is wanted more often than
    /// what eviction takes (`evicted`, the typical count of evicted values)
    /// and not for the first time (as TinyLFU's doorkeeper: a value read
    /// once never pushes out one that was read before). Counts the load.
    pub fn keep_load(&mut self, h: u64, room: bool, evicted: u8, clock: u64, keys: usize) -> Keep {
        self.age(clock, keys);
        let width = self.sketch_size(keys);
        let wanted = self
            .sketch
            .get_or_insert_with(|| Sketch::new(width))
            .add(h, 1);
        if room || wanted > evicted.max(1) {
            Keep::Main
        } else {
            Keep::Window
        }
    }

    /// Begins the next epoch if enough accesses passed since this one
    /// began. Called where counts are compared or kept (a load, an
    /// eviction), not on a hit: while only hits happen no count is
    /// compared, and the counts age when the next comparison comes.
    fn age(&mut self, clock: u64, keys: usize) {
        if clock >= self.next_epoch {
            self.next_epoch_begins(clock, keys);
        }
    }

    /// Counters a row of the sketch should have: at least one per key of
    /// the shard (a sketch narrower than the keys it counts gives most of
    /// them the counts of others: with small values, many more keys than
    /// KiB of budget), at least the width set.
    fn sketch_size(&self, keys: usize) -> usize {
        self.width.max(keys.next_power_of_two())
    }

    /// Accesses in an epoch.
    pub fn epoch_length(&self) -> u64 {
        EPOCH_ACCESSES_PER_COUNTER * self.width as u64
    }

    /// Ages every count by as many epochs as passed.
    #[cold]
    fn next_epoch_begins(&mut self, clock: u64, keys: usize) {
        // As many epochs as passed since the last look (a run of hits does
        // not look).
        let len = self.epoch_length();
        let passed = (clock - self.next_epoch) / len + 1;
        self.epoch = self.epoch.wrapping_add(passed.min(255) as u8);
        self.next_epoch = clock + len;
        let size = self.sketch_size(keys);
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

    /// The sketch's count of the key of hash `h` (for tests).
    #[cfg(test)]
    pub fn estimate(&self, h: u64) -> u8 {
        self.sketch.as_ref().map_or(0, |s| s.estimate(h))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Random 64-bit hashes (SplitMix64).
    fn rng(seed: u64) -> impl FnMut() -> u64 {
        let mut state = seed;
        move || {
            state = state.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = state;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
    }

    #[test]
    fn a_count_halves_once_per_epoch_since_it_was_written() {
        let mut f = Freq::default();
        for _ in 0..12 {
            f.touch(3);
        }
        assert_eq!(f.get(3), 12);
        assert_eq!(f.get(4), 6);
        assert_eq!(f.get(6), 1);
        assert_eq!(f.get(7), 0);
        assert_eq!(f.get(200), 0, "long untouched: nothing");
        f.touch(5); // 12 >> 2 = 3, plus this access
        assert_eq!(f.get(5), 4);
        let mut top = Freq::default();
        for _ in 0..100 {
            top.touch(0);
        }
        assert_eq!(top.get(0), MAX_COUNT, "saturates");
        // Epochs wrap: 255 -> 0 is one epoch.
        let f = Freq::new(8, 255);
        assert_eq!(f.get(0), 4);
    }

    #[test]
    fn the_bar_is_what_eviction_takes_in_counts_of_the_loaded_size() {
        // By bytes alone: the average count, whatever the sizes.
        let e = Evicted::new(Worth::default());
        for _ in 0..64 {
            e.note(3, 4096);
        }
        assert_eq!(e.typical(1024), 3);
        assert_eq!(e.typical(1 << 20), 3);
        // With a latency of 100 KB: 64 KiB values of count 3 evicted; a
        // 1 KiB value beats them with a lower count, a 1 MiB one needs more.
        let e = Evicted::new(Worth::new(100_000));
        for _ in 0..64 {
            e.note(3, 64 << 10);
        }
        assert_eq!(e.typical(64 << 10), 3);
        assert!(e.typical(1024) < 1, "{}", e.typical(1024));
        assert!(e.typical(1 << 20) > 3, "{}", e.typical(1 << 20));
    }

    #[test]
    fn the_sketch_counts_a_key_and_never_undercounts() {
        let mut s = Sketch::new(1024);
        assert_eq!(s.estimate(42), 0);
        for i in 1..=5 {
            assert_eq!(s.add(42, 1), i);
        }
        assert_eq!(s.estimate(42), 5);
        // Many other keys: 42's count stays at least its own.
        let mut rng = rng(7);
        for _ in 0..2000 {
            s.add(rng(), 1);
        }
        assert!(s.estimate(42) >= 5);
        assert_eq!(s.add(42, 100), MAX_COUNT, "saturates");
    }

    #[test]
    fn raising_a_count_never_lowers_one() {
        let mut s = Sketch::new(1024);
        s.raise_to(42, 5);
        assert_eq!(s.estimate(42), 5);
        s.raise_to(42, 3);
        assert_eq!(s.estimate(42), 5, "never lowered");
        s.raise_to(42, 200);
        assert_eq!(s.estimate(42), MAX_COUNT, "saturates");
    }

    #[test]
    fn halving_halves_every_counter_without_touching_its_neighbours() {
        let mut s = Sketch::new(16);
        // Keys whose counters share words: 16 counters per word.
        for h in 0..64u64 {
            let h = h | (h << 32);
            s.add(h, (h % 16) as u8);
        }
        let before: Vec<u8> = (0..64u64).map(|h| s.estimate(h | (h << 32))).collect();
        s.halve();
        for (h, &b) in (0..64u64).zip(&before) {
            assert_eq!(s.estimate(h | (h << 32)), b / 2, "key {h}");
        }
    }

    #[test]
    fn collisions_are_rare_at_the_width_used() {
        // A key read 3 times among 4,096 keys read once, 4,096 counters a
        // row: the keys read once rarely look like more.
        let mut s = Sketch::new(4096);
        let mut rng = rng(11);
        let keys: Vec<u64> = (0..4096).map(|_| rng()).collect();
        for &k in &keys {
            s.add(k, 1);
        }
        let inflated = keys.iter().filter(|&&k| s.estimate(k) > 1).count();
        // About 3.5% (each of a key's four counters shared with another
        // key whose count went there first).
        assert!(inflated < 4096 / 20, "{inflated} of 4096 keys over-counted");
    }
}
