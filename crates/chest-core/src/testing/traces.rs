//! Access traces and the yardsticks an eviction policy is measured against
//! (WORKLOADS.md W7).
//!
//! A [`Trace`] is a sequence of gets over keys `0..keys`, each key with a
//! fixed size. Generators: [`Trace::zipf`], [`Trace::zipf_with_scans`],
//! [`Trace::cycle`], [`Trace::shifting`], [`Trace::one_hit_wonders`]; sizes
//! by [`Sizes`]. Recorded traces: [`Trace::recorded`], [`Trace::cache2k`]. Yardsticks, on the same trace and memory: [`belady`] (the
//! offline optimum: evict what is next used farthest in the future), an
//! exact [`lru`], and the [`oracle`] that keeps the keys requested most
//! (Aho, Denning & Ullman: under independent draws no online policy loads
//! less). [`replay`] runs a [`Chest`](crate::Chest) over the trace and
//! counts its loads through its stats.
//!
//! Every count leaves out the first `warmup` accesses of the trace and every
//! key's first access (a compulsory load for any policy).

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;

use crate::error::Result;
use crate::value::serializer::Raw;
use crate::ChestBuilder;

/// A small, fast, seeded generator (SplitMix64): traces are the same on
/// every machine for a seed.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    /// A generator whose draws follow from `seed`.
    pub fn new(seed: u64) -> Self {
        Self(seed)
    }

    /// The next 64 random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// Uniform in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        ((self.next_u64() as u128 * n as u128) >> 64) as u64
    }

    /// A random permutation of `0..n`.
    pub fn permutation(&mut self, n: usize) -> Vec<u32> {
        let mut p: Vec<u32> = (0..n as u32).collect();
        for i in (1..n).rev() {
            let j = self.below(i as u64 + 1) as usize;
            p.swap(i, j);
        }
        p
    }
}

/// Draws ranks `0..n` with probability proportional to `1 / (rank + 1)^alpha`.
#[derive(Debug, Clone)]
pub struct Zipf {
    cdf: Vec<f64>,
}

impl Zipf {
    /// Ranks `0..n` (`n > 0`) with exponent `alpha`.
    pub fn new(n: usize, alpha: f64) -> Self {
        let mut cdf = Vec::with_capacity(n);
        let mut sum = 0.0;
        for r in 0..n {
            sum += 1.0 / ((r + 1) as f64).powf(alpha);
            cdf.push(sum);
        }
        for c in &mut cdf {
            *c /= sum;
        }
        Self { cdf }
    }

    /// A rank.
    pub fn draw(&self, rng: &mut Rng) -> usize {
        let u = rng.unit();
        self.cdf
            .partition_point(|&c| c <= u)
            .min(self.cdf.len() - 1)
    }
}

/// How big each key's value is.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Sizes {
    /// Every value this many bytes.
    Uniform(u32),
    /// Each key's size drawn once, log-uniform in `[min, max]` (by a hash
    /// of the key: the same key always has the same size).
    LogUniform {
        /// The smallest size.
        min: u32,
        /// The largest size.
        max: u32,
    },
}

impl Sizes {
    /// The size of `key`'s value.
    pub fn of(self, key: u32) -> u32 {
        match self {
            Sizes::Uniform(n) => n,
            Sizes::LogUniform { min, max } => {
                let u = Rng::new(u64::from(key) ^ 0x005E_ED0F_517E).unit();
                let (lo, hi) = (f64::from(min).ln(), f64::from(max).ln());
                (lo + u * (hi - lo))
                    .exp()
                    .round()
                    .clamp(f64::from(min), f64::from(max)) as u32
            }
        }
    }
}

/// Sequential scans in a trace ([`Trace::zipf_with_scans`]): every `every`
/// gets, a scan of `len` keys taken in turn from `keys` keys of their own
/// (each read about once per `keys / len` scans; with `keys == len`, every
/// scan reads the same range, as a periodic batch job over a table).
#[derive(Debug, Clone, Copy)]
pub struct Scans {
    /// Gets between two scans.
    pub every: usize,
    /// Keys one scan reads.
    pub len: u32,
    /// Keys the scans read in turn.
    pub keys: u32,
}

/// A sequence of gets over keys `0..keys` (see the [module](self)).
#[derive(Debug, Clone)]
pub struct Trace {
    /// What the trace is, for reports.
    pub name: String,
    /// Keys are `0..keys`.
    pub keys: u32,
    /// The keys read, in order.
    pub gets: Vec<u32>,
    /// Each key's size.
    pub sizes: Sizes,
}

impl Trace {
    /// Independent draws from a Zipf distribution of `alpha` over `keys`
    /// keys (the popular ones spread over the key space).
    pub fn zipf(keys: u32, alpha: f64, len: usize, sizes: Sizes, seed: u64) -> Self {
        let mut rng = Rng::new(seed);
        let zipf = Zipf::new(keys as usize, alpha);
        let key_of = rng.permutation(keys as usize);
        let gets = (0..len).map(|_| key_of[zipf.draw(&mut rng)]).collect();
        Self {
            name: format!("zipf {alpha}"),
            keys,
            gets,
            sizes,
        }
    }

    /// [`Trace::zipf`] over `keys` keys, interrupted by [`Scans`].
    pub fn zipf_with_scans(
        keys: u32,
        alpha: f64,
        len: usize,
        scans: Scans,
        sizes: Sizes,
        seed: u64,
    ) -> Self {
        let Scans {
            every,
            len: scan,
            keys: scan_keys,
        } = scans;
        let mut rng = Rng::new(seed);
        let zipf = Zipf::new(keys as usize, alpha);
        let key_of = rng.permutation(keys as usize);
        let mut gets = Vec::with_capacity(len);
        let mut next_scan = 0u32;
        while gets.len() < len {
            for _ in 0..every.min(len - gets.len()) {
                gets.push(key_of[zipf.draw(&mut rng)]);
            }
            for _ in 0..scan {
                if gets.len() == len {
                    break;
                }
                gets.push(keys + next_scan);
                next_scan = (next_scan + 1) % scan_keys;
            }
        }
        Self {
            name: format!("zipf {alpha} + scans"),
            keys: keys + scan_keys,
            gets,
            sizes,
        }
    }

    /// The keys `0..keys` read in order, again and again.
    pub fn cycle(keys: u32, len: usize, sizes: Sizes) -> Self {
        Self {
            name: "loop".into(),
            keys,
            gets: (0..len).map(|i| (i % keys as usize) as u32).collect(),
            sizes,
        }
    }

    /// [`Trace::zipf`] whose popular keys change every `period` gets (the
    /// ranks are dealt to the keys anew).
    pub fn shifting(
        keys: u32,
        alpha: f64,
        len: usize,
        period: usize,
        sizes: Sizes,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let zipf = Zipf::new(keys as usize, alpha);
        let mut key_of = rng.permutation(keys as usize);
        let mut gets = Vec::with_capacity(len);
        for i in 0..len {
            if i > 0 && i % period == 0 {
                key_of = rng.permutation(keys as usize);
            }
            gets.push(key_of[zipf.draw(&mut rng)]);
        }
        Self {
            name: "shifting".into(),
            keys,
            gets,
            sizes,
        }
    }

    /// [`Trace::zipf`] where a share `once` of the gets are of keys read
    /// only that once.
    pub fn one_hit_wonders(
        keys: u32,
        alpha: f64,
        len: usize,
        once: f64,
        sizes: Sizes,
        seed: u64,
    ) -> Self {
        let mut rng = Rng::new(seed);
        let zipf = Zipf::new(keys as usize, alpha);
        let key_of = rng.permutation(keys as usize);
        let mut fresh = keys;
        let gets = (0..len)
            .map(|_| {
                if rng.unit() < once {
                    fresh += 1;
                    fresh - 1
                } else {
                    key_of[zipf.draw(&mut rng)]
                }
            })
            .collect();
        Self {
            name: "one-hit wonders".into(),
            keys: fresh,
            gets,
            sizes,
        }
    }

    /// A recorded trace: `keys` are opaque (any `u64`), renamed `0..n` in
    /// the order they first appear.
    pub fn recorded(name: &str, keys: impl IntoIterator<Item = u64>, sizes: Sizes) -> Self {
        let mut names: HashMap<u64, u32> = HashMap::new();
        let gets = keys
            .into_iter()
            .map(|k| {
                let next = names.len() as u32;
                *names.entry(k).or_insert(next)
            })
            .collect();
        Self {
            name: name.into(),
            keys: names.len() as u32,
            gets,
            sizes,
        }
    }

    /// A trace of the cache2k project's format (`../shared/traces/`, once
    /// decompressed): one key per access, 4-byte big-endian signed
    /// integers. A trailing partial key is an error.
    pub fn cache2k(name: &str, bytes: &[u8], sizes: Sizes) -> std::result::Result<Self, String> {
        if !bytes.len().is_multiple_of(4) {
            return Err(format!(
                "{name}: {} bytes is not a whole number of 4-byte keys",
                bytes.len()
            ));
        }
        let keys = bytes
            .chunks_exact(4)
            .map(|c| i32::from_be_bytes([c[0], c[1], c[2], c[3]]) as u32 as u64);
        Ok(Self::recorded(name, keys, sizes))
    }

    /// Bytes of every key's value together.
    pub fn data_bytes(&self) -> u64 {
        (0..self.keys).map(|k| u64::from(self.sizes.of(k))).sum()
    }

    /// Which gets are counted: past `warmup` and not a key's first.
    pub fn counted(&self, warmup: usize) -> Vec<bool> {
        let mut seen = vec![false; self.keys as usize];
        self.gets
            .iter()
            .enumerate()
            .map(|(i, &k)| {
                let first = !std::mem::replace(&mut seen[k as usize], true);
                i >= warmup && !first
            })
            .collect()
    }
}

/// Loads a policy made on the counted gets of a trace.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Loads {
    /// Values loaded.
    pub count: u64,
    /// Bytes loaded.
    pub bytes: u64,
}

impl Loads {
    fn add(&mut self, bytes: u32) {
        self.count += 1;
        self.bytes += u64::from(bytes);
    }

    /// `self / base` in values and in bytes (`inf` if `base` loaded none).
    pub fn ratio(self, base: Loads) -> (f64, f64) {
        let r = |a: u64, b: u64| {
            if b == 0 {
                f64::INFINITY
            } else {
                a as f64 / b as f64
            }
        };
        (r(self.count, base.count), r(self.bytes, base.bytes))
    }
}

/// An exact LRU of `capacity` bytes (a value heavier than it is not kept).
pub fn lru(trace: &Trace, capacity: u64, warmup: usize) -> Loads {
    let counted = trace.counted(warmup);
    let mut last: HashMap<u32, u64> = HashMap::new();
    let mut order: BTreeSet<(u64, u32)> = BTreeSet::new();
    let mut used = 0u64;
    let mut loads = Loads::default();
    for (t, (&k, &c)) in trace.gets.iter().zip(&counted).enumerate() {
        let t = t as u64;
        let size = trace.sizes.of(k);
        if let Some(old) = last.insert(k, t) {
            order.remove(&(old, k));
            order.insert((t, k));
            continue;
        }
        if c {
            loads.add(size);
        }
        if u64::from(size) > capacity {
            last.remove(&k);
            continue;
        }
        order.insert((t, k));
        used += u64::from(size);
        while used > capacity {
            let (old, victim) = order.pop_first().expect("over capacity with nothing kept");
            debug_assert_ne!(old, t);
            last.remove(&victim);
            used -= u64::from(trace.sizes.of(victim));
        }
    }
    loads
}

/// An online LFU with exact counts and no aging, of `capacity` bytes: every
/// get counts (the whole past, exactly, as no cache can afford); a value
/// loaded stays if every value it pushes out was read fewer times than it,
/// and those of fewest reads leave first. On a trace of independent draws
/// it converges to the popularity oracle, and what it loads more than the
/// oracle is the price of learning the counts: a yardstick for how near an
/// online policy can come to the oracle on that trace.
pub fn lfu(trace: &Trace, capacity: u64, warmup: usize) -> Loads {
    let counted = trace.counted(warmup);
    let mut reads: HashMap<u32, u64> = HashMap::new();
    // The resident keys by (reads, key), and whether a key is resident.
    let mut order: BTreeSet<(u64, u32)> = BTreeSet::new();
    let mut resident: HashMap<u32, u64> = HashMap::new();
    let mut used = 0u64;
    let mut loads = Loads::default();
    for (&k, &c) in trace.gets.iter().zip(&counted) {
        let n = {
            let n = reads.entry(k).or_default();
            *n += 1;
            *n
        };
        if let Some(old) = resident.get_mut(&k) {
            order.remove(&(*old, k));
            *old = n;
            order.insert((n, k));
            continue;
        }
        let size = trace.sizes.of(k);
        if c {
            loads.add(size);
        }
        let size = u64::from(size);
        if size > capacity {
            continue;
        }
        // Push out the least read while they are read fewer times than k.
        let mut freed = capacity - used;
        let mut out = Vec::new();
        for &(m, v) in &order {
            if freed >= size || m >= n {
                break;
            }
            freed += u64::from(trace.sizes.of(v));
            out.push((m, v));
        }
        if freed < size {
            continue;
        }
        for (m, v) in out {
            order.remove(&(m, v));
            resident.remove(&v);
            used -= u64::from(trace.sizes.of(v));
        }
        order.insert((n, k));
        resident.insert(k, n);
        used += size;
    }
    loads
}

/// Belady's offline optimum for `capacity` bytes: on a miss, the value
/// whose next use is farthest (the one loaded included: it may be passed
/// over) leaves first. Optimal for uniform sizes; with sizes, the standard
/// yardstick (not the exact optimum, which is NP-hard).
pub fn belady(trace: &Trace, capacity: u64, warmup: usize) -> Loads {
    let counted = trace.counted(warmup);
    let n = trace.gets.len();
    let never = u64::MAX;
    // next[i]: where gets[i]'s key is read next.
    let mut next = vec![never; n];
    let mut after: HashMap<u32, u64> = HashMap::new();
    for i in (0..n).rev() {
        let k = trace.gets[i];
        next[i] = after.get(&k).copied().unwrap_or(never);
        after.insert(k, i as u64);
    }
    let mut kept: HashMap<u32, u64> = HashMap::new(); // key -> its next use
    let mut by_next: BTreeSet<(u64, u32)> = BTreeSet::new();
    let mut used = 0u64;
    let mut loads = Loads::default();
    for i in 0..n {
        let k = trace.gets[i];
        let size = trace.sizes.of(k);
        if let Some(at) = kept.insert(k, next[i]) {
            by_next.remove(&(at, k));
            by_next.insert((next[i], k));
            continue;
        }
        if counted[i] {
            loads.add(size);
        }
        by_next.insert((next[i], k));
        used += u64::from(size);
        while used > capacity {
            let (_, victim) = by_next.pop_last().expect("over capacity with nothing kept");
            kept.remove(&victim);
            used -= u64::from(trace.sizes.of(victim));
        }
    }
    loads
}

/// The popularity oracle for `capacity` bytes: keeps, from the start, the
/// keys read most often in the counted gets (per byte, when `by_bytes` is
/// false: most loads saved per byte of memory; per key when true: most
/// bytes saved), and loads every other key at each counted get.
pub fn oracle(trace: &Trace, capacity: u64, warmup: usize, by_bytes: bool) -> Loads {
    let counted = trace.counted(warmup);
    let mut reads: HashMap<u32, u64> = HashMap::new();
    for (&k, &c) in trace.gets.iter().zip(&counted) {
        if c {
            *reads.entry(k).or_default() += 1;
        }
    }
    let mut keys: Vec<(u32, u64)> = reads.into_iter().collect();
    let density = |&(k, n): &(u32, u64)| {
        let size = f64::from(trace.sizes.of(k));
        if by_bytes {
            n as f64
        } else {
            n as f64 / size
        }
    };
    keys.sort_by(|a, b| density(b).total_cmp(&density(a)).then(a.0.cmp(&b.0)));
    let mut used = 0u64;
    let mut loads = Loads::default();
    for (k, n) in keys {
        let size = u64::from(trace.sizes.of(k));
        if used + size <= capacity {
            used += size;
        } else {
            loads.count += n;
            loads.bytes += n * size;
        }
    }
    loads
}

/// A chest over a trace: builds it with `configure` (from a `memory://`
/// chest of `capacity` bytes of values, weighed by their length, no
/// entry overhead counted, writes on the calling thread), stores every
/// key's value and moves them all out of memory, then reads the trace.
/// Returns the loads of the counted gets (a get of a key not in memory).
pub fn replay(
    trace: &Trace,
    capacity: u64,
    warmup: usize,
    configure: impl FnOnce(ChestBuilder<u32, Bytes, Raw>) -> ChestBuilder<u32, Bytes, Raw>,
) -> Result<Loads> {
    let builder = ChestBuilder::<u32, Bytes>::new()
        .serializer(Raw)
        .memory_budget(usize::try_from(capacity).unwrap_or(usize::MAX))
        .weigher(|v: &Bytes| v.len())
        .count_entry_overhead(false)
        .writer_threads(0);
    let chest = configure(builder).open("memory://")?;
    let largest = (0..trace.keys)
        .map(|k| trace.sizes.of(k))
        .max()
        .unwrap_or(0);
    let zeros = Bytes::from(vec![0u8; largest as usize]);
    for k in 0..trace.keys {
        chest.insert(k, zeros.slice(..trace.sizes.of(k) as usize))?;
    }
    chest.flush()?;
    chest.evict(usize::MAX)?;
    let counted = trace.counted(warmup);
    let mut loads = Loads::default();
    let before = chest.stats().loads;
    let mut misses = 0;
    for (&k, &c) in trace.gets.iter().zip(&counted) {
        let miss = !chest.is_in_memory(&k);
        misses += u64::from(miss);
        if miss && c {
            loads.add(trace.sizes.of(k));
        }
        let got = chest.get(&k)?.expect("every key was stored");
        debug_assert_eq!(got.len(), trace.sizes.of(k) as usize);
    }
    debug_assert_eq!(
        chest.stats().loads - before,
        misses,
        "a get not in memory is a load"
    );
    Ok(loads)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tiny(gets: &[u32]) -> Trace {
        Trace {
            name: "tiny".into(),
            keys: 10,
            gets: gets.to_vec(),
            sizes: Sizes::Uniform(1),
        }
    }

    #[test]
    fn the_yardsticks_on_a_trace_worked_by_hand() {
        // Memory for two values. First reads (compulsory) are not counted.
        let t = tiny(&[0, 1, 2, 0, 1, 3, 0, 1, 2, 0]);
        // LRU: 0 1 2(-0) 0(-1)* 1(-2)* 3(-0) 0(-1)* 1(-3)* 2(-0)* 0(-1)*:
        // six counted loads (*).
        assert_eq!(lru(&t, 2, 0).count, 6);
        // Belady: 0 1 | 2 passed over (0 and 1 come back first) | 0 1 hit |
        // 3 passed over | 0 1 hit | 2: keep 0 (next), pass 1... = 1 counted load (2).
        assert_eq!(belady(&t, 2, 0).count, 1);
        // Oracle: 0 (4 reads, 3 counted) and 1 (3, 2 counted) kept; 2 loaded
        // once counted, 3 never counted.
        assert_eq!(oracle(&t, 2, 0, false).count, 1);
    }

    #[test]
    fn a_cache2k_trace_is_read_as_big_endian_keys_renamed_in_order() {
        let bytes = [0, 0, 0, 7, 0xff, 0xff, 0xff, 0xfe, 0, 0, 0, 7, 0, 0, 1, 0];
        let t = Trace::cache2k("t", &bytes, Sizes::Uniform(1)).unwrap();
        assert_eq!((t.keys, t.gets), (3, vec![0, 1, 0, 2]));
        assert!(Trace::cache2k("t", &bytes[..5], Sizes::Uniform(1))
            .unwrap_err()
            .contains("5 bytes"));
    }

    #[test]
    fn belady_never_loads_more_than_lru_or_the_oracle() {
        for seed in 0..5 {
            let t = Trace::zipf(1000, 0.99, 20_000, Sizes::Uniform(1), seed);
            for cap in [10, 50, 100, 300] {
                // Each starts the counted part from its own memory: Belady
                // may have to load up to `cap` values another kept.
                let b = belady(&t, cap, 2000).count;
                assert!(b <= lru(&t, cap, 2000).count + cap, "seed {seed} cap {cap}");
                assert!(
                    b <= oracle(&t, cap, 2000, false).count + cap,
                    "seed {seed} cap {cap}"
                );
            }
        }
    }

    #[test]
    fn lru_loads_every_get_of_a_loop_larger_than_memory() {
        let t = Trace::cycle(100, 1000, Sizes::Uniform(1));
        assert_eq!(lru(&t, 80, 0).count, 900, "every get after the first pass");
        // Belady keeps 79 of the 100 and loads about 21 per pass.
        let b = belady(&t, 80, 0).count;
        assert!((9 * 19..=9 * 22).contains(&b), "{b}");
    }

    #[test]
    fn lfu_keeps_a_load_only_when_read_more_than_what_it_pushes_out() {
        let t = Trace {
            name: "lfu".into(),
            keys: 2,
            gets: vec![0, 0, 1, 0, 1, 1, 1, 0],
            sizes: Sizes::Uniform(10),
        };
        // One value fits. 0 read twice; 1 loaded (not counted: its first),
        // kept out (0 has 2); 0 again (3); 1 loaded at 2 and 3 reads, kept
        // out (ties stay out), kept at 4; 0 then loaded (3 < 4: kept out).
        assert_eq!(lfu(&t, 10, 0).count, 4);
        // On a loop larger than memory, LFU keeps what it has.
        let t = Trace::cycle(100, 1000, Sizes::Uniform(1));
        let l = lfu(&t, 80, 0).count;
        assert!(l <= 9 * 21, "{l}");
    }

    #[test]
    fn zipf_draws_follow_the_distribution() {
        let z = Zipf::new(100, 1.0);
        let mut rng = Rng::new(7);
        let mut counts = [0u32; 100];
        for _ in 0..100_000 {
            counts[z.draw(&mut rng)] += 1;
        }
        // P(rank 0) = 1 / H(100) ~ 0.193; P(rank 1) is half of it.
        assert!((18_500..20_100).contains(&counts[0]), "{}", counts[0]);
        assert!((9_000..10_400).contains(&counts[1]), "{}", counts[1]);
    }

    #[test]
    fn sizes_are_fixed_per_key_and_within_their_range() {
        let s = Sizes::LogUniform {
            min: 1024,
            max: 65536,
        };
        for k in 0..1000 {
            assert!((1024..=65536).contains(&s.of(k)));
            assert_eq!(s.of(k), s.of(k));
        }
        let mean = (0..1000).map(|k| f64::from(s.of(k))).sum::<f64>() / 1000.0;
        // Log-uniform on [1, 64] KiB: mean (64 - 1) / ln 64 KiB ~ 15.5 KiB.
        assert!((13_000.0..19_000.0).contains(&mean), "{mean}");
    }
}
