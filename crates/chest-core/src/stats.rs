//! [`Stats`]: what a chest has done, for monitoring and tuning.

use std::fmt;
use std::sync::atomic::{AtomicU64, Ordering};

/// Values lost by chests of this process dropped while their flush failed
/// (see [`Stats::lost_on_drop`]).
static LOST_ON_DROP: AtomicU64 = AtomicU64::new(0);

/// Counts `n` values lost by a chest dropped while its flush failed.
pub(crate) fn count_lost_on_drop(n: u64) {
    LOST_ON_DROP.fetch_add(n, Ordering::Relaxed);
}

/// Counters kept by a chest.
#[derive(Debug, Default)]
pub(crate) struct Counters {
    pub hits: AtomicU64,
    pub misses: AtomicU64,
    pub loads: AtomicU64,
    pub spills: AtomicU64,
    pub evictions: AtomicU64,
    pub bytes_written: AtomicU64,
    pub bytes_read: AtomicU64,
    pub errors: AtomicU64,
}

impl Counters {
    pub fn add(counter: &AtomicU64, n: u64) {
        counter.fetch_add(n, Ordering::Relaxed);
    }
}

/// A snapshot of a chest's state and counters, from [`Chest::stats`](crate::Chest::stats).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Number of keys.
    pub len: usize,
    /// Number of values held in memory.
    pub resident: usize,
    /// Bytes of values held in memory (by their weight).
    pub memory_usage: usize,
    /// The memory budget in bytes.
    pub memory_budget: usize,
    /// `get`s served from memory.
    pub hits: u64,
    /// `get`s that had to load the value from the backend.
    pub misses: u64,
    /// Values read from the backend (by `get`, `update`, `prefetch`).
    pub loads: u64,
    /// Values written to the backend.
    pub spills: u64,
    /// Values dropped from memory (after a spill, or clean values with a stored copy).
    pub evictions: u64,
    /// Serialized value bytes written to the backend.
    pub bytes_written: u64,
    /// Serialized value bytes read from the backend.
    pub bytes_read: u64,
    /// Errors met while spilling (serialization or write failures).
    pub errors: u64,
    /// Value objects in the backend.
    pub objects: usize,
    /// Bytes of those objects (the records of values, with their
    /// checksums, and the garbage of values since changed until a
    /// compaction): what a [`max_spill`](crate::ChestBuilder::max_spill)
    /// cap counts.
    pub stored_bytes: u64,
    /// The backend's own counters (e.g. bytes after compression).
    pub backend: Vec<(String, u64)>,
    /// Values whose last change was lost because a chest **of this
    /// process** (any chest: a dropped chest has no stats of its own left
    /// to read) was dropped without [`close`](crate::Chest::close) while
    /// its flush on drop failed: each such drop also logs an error-level
    /// `tracing` event (target `chest_core`) naming the location, the
    /// first keys and the cause. 0 in a process where no loss happened.
    pub lost_on_drop: u64,
}

impl Stats {
    pub(crate) fn fill(&mut self, c: &Counters) {
        let get = |a: &AtomicU64| a.load(Ordering::Relaxed);
        self.hits = get(&c.hits);
        self.misses = get(&c.misses);
        self.loads = get(&c.loads);
        self.spills = get(&c.spills);
        self.evictions = get(&c.evictions);
        self.bytes_written = get(&c.bytes_written);
        self.bytes_read = get(&c.bytes_read);
        self.errors = get(&c.errors);
        self.lost_on_drop = LOST_ON_DROP.load(Ordering::Relaxed);
    }
}

fn mib(b: u64) -> f64 {
    b as f64 / (1 << 20) as f64
}

impl fmt::Display for Stats {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "keys {} ({} in memory), memory {:.1} of {:.1} MiB",
            self.len,
            self.resident,
            mib(self.memory_usage as u64),
            mib(self.memory_budget as u64)
        )?;
        writeln!(
            f,
            "gets: {} hits, {} misses; {} loads ({:.1} MiB read)",
            self.hits,
            self.misses,
            self.loads,
            mib(self.bytes_read)
        )?;
        write!(
            f,
            "spills: {} values ({:.1} MiB) in {} objects, {} evictions, {} errors",
            self.spills,
            mib(self.bytes_written),
            self.objects,
            self.evictions,
            self.errors
        )?;
        if self.lost_on_drop > 0 {
            write!(
                f,
                "\nvalues lost by chests dropped while their flush failed (this process): {}",
                self.lost_on_drop
            )?;
        }
        for (name, value) in &self.backend {
            write!(f, "\n{name}: {value}")?;
        }
        Ok(())
    }
}
