//! What every workload shares: the seeded PRNG, incompressible values, the
//! process's memory figures from `/proc/self/status`, and the report a child
//! run prints.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

/// The error type of a workload run.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// The result of a workload run.
pub type Result<T> = std::result::Result<T, BoxError>;

pub const KIB: usize = 1 << 10;
pub const MIB: usize = 1 << 20;

/// What a child run is told: the scale, where to work, which repetition, the seed.
#[derive(Debug, Clone)]
pub struct Ctx {
    pub scale: f64,
    pub dir: PathBuf,
    pub rep: u32,
    pub seed: u64,
}

impl Ctx {
    /// `base × scale`, rounded, at least `min`.
    pub fn count(&self, base: f64, min: u64) -> u64 {
        ((base * self.scale).round() as u64).max(min)
    }

    /// A fresh scratch directory `name` under the bench directory (removed first if left over).
    pub fn fresh_dir(&self, name: &str) -> Result<PathBuf> {
        let d = self.dir.join(name);
        remove_dir(&d);
        std::fs::create_dir_all(&d)?;
        Ok(d)
    }
}

/// Removes a directory tree, ignoring a missing one.
pub fn remove_dir(d: &Path) {
    let _ = std::fs::remove_dir_all(d);
}

/// `path` as a string for `Chest::open`.
pub fn location(path: &Path) -> Result<String> {
    Ok(path
        .to_str()
        .ok_or("the scratch directory is not valid UTF-8")?
        .to_string())
}

fn splitmix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// xorshift64*: tiny, seeded, fast enough to draw keys inside a timed loop.
#[derive(Debug, Clone)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(splitmix(seed) | 1)
    }

    #[inline]
    pub fn next_u64(&mut self) -> u64 {
        let mut x = self.0;
        x ^= x >> 12;
        x ^= x << 25;
        x ^= x >> 27;
        self.0 = x;
        x.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    /// Uniform in `0..n` (multiply-shift, no division).
    #[inline]
    pub fn below(&mut self, n: u64) -> u64 {
        ((u128::from(self.next_u64()) * u128::from(n)) >> 64) as u64
    }

    pub fn fill(&mut self, buf: &mut [u8]) {
        let mut chunks = buf.chunks_exact_mut(8);
        for c in &mut chunks {
            c.copy_from_slice(&self.next_u64().to_le_bytes());
        }
        let rest = chunks.into_remainder();
        let last = self.next_u64().to_le_bytes();
        rest.copy_from_slice(&last[..rest.len()]);
    }
}

/// The keys `0..n` in a seeded random order.
pub fn shuffled(n: u64, seed: u64) -> Vec<u64> {
    let mut keys: Vec<u64> = (0..n).collect();
    let mut rng = Rng::new(seed);
    for i in (1..keys.len()).rev() {
        let j = rng.below(i as u64 + 1) as usize;
        keys.swap(i, j);
    }
    keys
}

/// Incompressible values of one length: the value of key `k` is a slice of a
/// random pool at an offset drawn from `k`, with `k` stamped in its first 8
/// bytes. Every value is distinct, making one costs one `memcpy`, and a read
/// is checked against the pool without building the expected value.
pub struct Values {
    pool: Vec<u8>,
    len: usize,
}

impl Values {
    pub fn new(len: usize, seed: u64) -> Self {
        let mut pool = vec![0u8; (4 * len).max(MIB) + len];
        Rng::new(seed ^ 0x5EED_DA7A).fill(&mut pool);
        Self { pool, len }
    }

    /// Values that compress about 4:1 (zstd level 3): little-endian `u32`
    /// counters rising slowly, one word in eight with a noisy low byte.
    pub fn compressible(len: usize, seed: u64) -> Self {
        let words = ((4 * len).max(MIB) + len).div_ceil(4);
        let mut rng = Rng::new(seed ^ 0xC0DE);
        let mut pool = Vec::with_capacity(words * 4);
        for n in 0..words as u32 {
            let x = rng.next_u64();
            let noise = if x & 7 == 0 {
                (x >> 8) as u32 & 0xFF
            } else {
                0
            };
            pool.extend_from_slice(&(n / 4 + noise).to_le_bytes());
        }
        Self { pool, len }
    }

    fn offset(&self, key: u64) -> usize {
        (splitmix(key) % (self.pool.len() - self.len) as u64) as usize
    }

    /// The value of `key`.
    pub fn make(&self, key: u64) -> Vec<u8> {
        let off = self.offset(key);
        let mut v = self.pool[off..off + self.len].to_vec();
        let n = v.len().min(8);
        v[..n].copy_from_slice(&key.to_le_bytes()[..n]);
        v
    }

    /// `true` if `bytes` is the value of `key`.
    pub fn check(&self, key: u64, bytes: &[u8]) -> bool {
        let off = self.offset(key);
        let n = self.len.min(8);
        bytes.len() == self.len
            && bytes[..n] == key.to_le_bytes()[..n]
            && bytes[n..] == self.pool[off + n..off + self.len]
    }

    /// Gets `key` from a chest and checks its value: an error if the key is
    /// missing or its value reads back wrong.
    pub fn verify_get(
        &self,
        chest: &chest::Chest<u64, Vec<u8>, chest::Raw>,
        key: u64,
    ) -> Result<()> {
        let v = chest
            .get(&key)?
            .ok_or_else(|| format!("chest: key {key} is missing"))?;
        self.verify(key, &v, "chest")
    }

    /// An error naming the key whose value read back wrong.
    pub fn verify(&self, key: u64, bytes: &[u8], who: &str) -> Result<()> {
        if self.check(key, bytes) {
            Ok(())
        } else {
            Err(format!(
                "{who}: the value of key {key} read back wrong ({} bytes)",
                bytes.len()
            )
            .into())
        }
    }
}

/// A field of `/proc/self/status` in bytes (`VmRSS`, `VmHWM`), if the system has it.
pub fn proc_status_bytes(field: &str) -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    let kb: u64 = line[field.len()..]
        .trim_start_matches(':')
        .split_whitespace()
        .next()?
        .parse()
        .ok()?;
    Some(kb * 1024)
}

/// Resident memory now.
pub fn rss() -> Option<u64> {
    proc_status_bytes("VmRSS")
}

/// Peak resident memory since the start or the last [`reset_peak`].
pub fn peak_rss() -> Option<u64> {
    proc_status_bytes("VmHWM")
}

/// Resets the peak resident memory (`VmHWM`) to the current one (Linux ≥ 4.0).
pub fn reset_peak() -> bool {
    std::fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// One measured phase of a child run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Phase {
    pub name: String,
    /// Wall time of the phase.
    pub seconds: f64,
    /// What was done: bytes for MB/s, operations for ops/s.
    pub amount: f64,
    pub unit: String,
    /// The figure: amount per second, or a value in `unit`.
    pub value: f64,
    /// Peak resident memory during the phase (bytes), if measured.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peak_rss: Option<u64>,
}

impl Phase {
    pub fn mb_per_s(name: &str, bytes: u64, seconds: f64) -> Self {
        Self::rate(name, bytes as f64, seconds, "MB/s", 1e-6)
    }

    pub fn ops_per_s(name: &str, ops: u64, seconds: f64) -> Self {
        Self::rate(name, ops as f64, seconds, "ops/s", 1.0)
    }

    fn rate(name: &str, amount: f64, seconds: f64, unit: &str, factor: f64) -> Self {
        Self {
            name: name.into(),
            seconds,
            amount,
            unit: unit.into(),
            value: amount * factor / seconds.max(1e-9),
            peak_rss: None,
        }
    }

    /// A figure that is not a rate (seconds, bytes per key, ...).
    pub fn figure(name: &str, value: f64, unit: &str) -> Self {
        Self {
            name: name.into(),
            seconds: 0.0,
            amount: 0.0,
            unit: unit.into(),
            value,
            peak_rss: None,
        }
    }

    pub fn with_peak(mut self, peak: Option<u64>) -> Self {
        self.peak_rss = peak;
        self
    }
}

/// What a child run prints, as one JSON line.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub workload: String,
    pub side: String,
    pub rep: u32,
    pub phases: Vec<Phase>,
    /// Anything else worth keeping (stats of the chest, sizes on disk, ...).
    #[serde(default)]
    pub info: Map<String, Value>,
    /// Set by the parent when the child failed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

impl Report {
    pub fn new(workload: &str, side: &str, ctx: &Ctx) -> Self {
        Self {
            workload: workload.into(),
            side: side.into(),
            rep: ctx.rep,
            phases: Vec::new(),
            info: Map::new(),
            error: None,
        }
    }

    pub fn info(&mut self, key: &str, value: impl Into<Value>) {
        self.info.insert(key.into(), value.into());
    }

    pub fn phase(&self, name: &str) -> Option<&Phase> {
        self.phases.iter().find(|p| p.name == name)
    }
}

/// The time of each call of a timed loop (an `insert`, a `std::fs::write`).
#[derive(Debug, Clone, Default)]
pub struct Latencies(Vec<u64>);

impl Latencies {
    pub fn with_capacity(n: usize) -> Self {
        Self(Vec::with_capacity(n))
    }

    pub fn push(&mut self, d: Duration) {
        self.0.push(u64::try_from(d.as_nanos()).unwrap_or(u64::MAX));
    }

    /// Percentiles (nearest rank) of the calls from the `skip`-th on, in
    /// microseconds; `None` if there are none.
    pub fn summary(&self, skip: usize) -> Option<LatencySummary> {
        let mut v: Vec<u64> = self.0.get(skip..)?.to_vec();
        if v.is_empty() {
            return None;
        }
        v.sort_unstable();
        let us = |ns: u64| ns as f64 / 1e3;
        let rank = |q: f64| {
            let i = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
            us(v[i - 1])
        };
        Some(LatencySummary {
            count: v.len() as u64,
            mean_us: us(v.iter().sum::<u64>()) / v.len() as f64,
            p50_us: rank(0.50),
            p90_us: rank(0.90),
            p99_us: rank(0.99),
            p999_us: rank(0.999),
            max_us: us(v[v.len() - 1]),
        })
    }
}

/// Latency percentiles of a timed loop, in microseconds.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct LatencySummary {
    pub count: u64,
    pub mean_us: f64,
    pub p50_us: f64,
    pub p90_us: f64,
    pub p99_us: f64,
    pub p999_us: f64,
    pub max_us: f64,
}

impl LatencySummary {
    /// The phases `<what> p50`, `<what> p99` and `<what> max`, in µs.
    pub fn phases(&self, what: &str) -> [Phase; 3] {
        [
            Phase::figure(&format!("{what} p50"), self.p50_us, "µs"),
            Phase::figure(&format!("{what} p99"), self.p99_us, "µs"),
            Phase::figure(&format!("{what} max"), self.max_us, "µs"),
        ]
    }

    pub fn json(&self) -> Value {
        serde_json::to_value(self).unwrap_or(Value::Null)
    }
}

/// Records the latencies of one timed loop in a report: the phases
/// `<what> p50/p99/max` over the calls from the `skip`-th on (those made
/// while values spill), and in `info` those figures and the ones over every
/// call.
pub fn report_latencies(report: &mut Report, what: &str, lat: &Latencies, skip: usize) {
    let key = what.replace(' ', "_");
    if let Some(s) = lat.summary(skip) {
        report.phases.extend(s.phases(what));
        report.info(&format!("{key}_latency_while_spilling"), s.json());
    }
    if let Some(s) = lat.summary(0) {
        report.info(&format!("{key}_latency_all"), s.json());
    }
    report.info(&format!("{key}_latency_skipped"), skip as u64);
}

/// Times `f`, returning its result and the seconds it took.
pub fn timed<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64)> {
    let t = Instant::now();
    let out = f()?;
    Ok((out, t.elapsed().as_secs_f64()))
}

/// Measures a phase: resets the peak RSS, times `f`, reads the peak.
pub fn measured<T>(f: impl FnOnce() -> Result<T>) -> Result<(T, f64, Option<u64>)> {
    reset_peak();
    let (out, secs) = timed(f)?;
    Ok((out, secs, peak_rss()))
}

/// The chest's stats as JSON (for the report's `info`).
pub fn stats_json(s: &chest::Stats) -> Value {
    let mut m = Map::new();
    m.insert("len".into(), s.len.into());
    m.insert("resident".into(), s.resident.into());
    m.insert("memory_usage".into(), s.memory_usage.into());
    m.insert("hits".into(), s.hits.into());
    m.insert("misses".into(), s.misses.into());
    m.insert("loads".into(), s.loads.into());
    m.insert("spills".into(), s.spills.into());
    m.insert("evictions".into(), s.evictions.into());
    m.insert("bytes_written".into(), s.bytes_written.into());
    m.insert("bytes_read".into(), s.bytes_read.into());
    m.insert("errors".into(), s.errors.into());
    m.insert("objects".into(), s.objects.into());
    for (k, v) in &s.backend {
        m.insert(k.clone(), (*v).into());
    }
    Value::Object(m)
}

/// Total size of the files under `dir`.
pub fn dir_size(dir: &Path) -> u64 {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return 0;
    };
    entries
        .filter_map(|e| e.ok())
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => dir_size(&e.path()),
            _ => e.metadata().map(|m| m.len()).unwrap_or(0),
        })
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn values_check_what_they_make() {
        for len in [3, 8, 100, 4096] {
            let v = Values::new(len, 7);
            for k in [0u64, 1, 99, u64::MAX] {
                let bytes = v.make(k);
                assert_eq!(bytes.len(), len);
                assert!(v.check(k, &bytes));
                assert!(!v.check(k.wrapping_add(1), &bytes) || len < 8);
            }
        }
    }

    #[test]
    fn latency_percentiles() {
        let mut l = Latencies::default();
        for us in 1..=100u64 {
            l.push(Duration::from_micros(us));
        }
        let s = l.summary(0).unwrap();
        assert_eq!(
            (s.count, s.p50_us, s.p99_us, s.max_us),
            (100, 50.0, 99.0, 100.0)
        );
        let s = l.summary(90).unwrap();
        assert_eq!((s.count, s.p50_us, s.max_us), (10, 95.0, 100.0));
        assert!(l.summary(100).is_none());
    }

    #[test]
    fn shuffle_is_a_permutation() {
        let mut s = shuffled(1000, 3);
        assert_ne!(s, (0..1000).collect::<Vec<_>>());
        s.sort_unstable();
        assert_eq!(s, (0..1000).collect::<Vec<_>>());
    }
}
