//! What a store says about itself: how it is best written and read
//! ([`Capabilities`], with what a read costs, [`ReadCost`]), and how it
//! keeps a chest to one writer ([`SingleWriter`]).

/// What a store does natively, as [`Backend::capabilities`](super::Backend::capabilities)
/// reports it: hints a chest lays out its writes and its memory by. Constant
/// while the backend is open; a layer reports the capabilities of the
/// backend it wraps.
///
/// ```
/// use chest_core::backend::{Capabilities, ReadCost};
/// use std::time::Duration;
///
/// let disk = Capabilities::DEFAULT
///     .with_packs_large_values(true)
///     .with_read_cost(ReadCost::new(Duration::from_micros(100), 1_000_000_000));
/// assert_eq!(disk.write_concurrency, 1);
/// assert!(disk.packs_large_values);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[non_exhaustive]
pub struct Capabilities {
    /// How many objects [`put_many`](super::Backend::put_many) writes at
    /// once; a chest evicts in batches big enough to use it. A hint, not a
    /// limit: a batch of any size is valid. At least 1.
    pub write_concurrency: usize,
    /// What reading an object back costs, roughly: a hint for which values
    /// a chest keeps in memory (see [`ReadCost`]).
    pub read_cost: ReadCost,
    /// Whether a chest should pack large values written together into one
    /// object (written as parts), rather than give each an object of its
    /// own. `true` suits a local directory: a file per value costs a
    /// create, a rename and an fsync each. `false` suits object storage,
    /// where objects of their own go up concurrently and come back with
    /// plain GETs.
    pub packs_large_values: bool,
}

impl Capabilities {
    /// Nothing native: one write at a time, reads that cost their bytes
    /// alone, a value per object. The default of
    /// [`Backend::capabilities`](super::Backend::capabilities).
    pub const DEFAULT: Capabilities = Capabilities {
        write_concurrency: 1,
        read_cost: ReadCost::BYTES,
        packs_large_values: false,
    };

    /// With `n` writes at once (taken as at least 1).
    pub const fn with_write_concurrency(self, n: usize) -> Self {
        Self {
            write_concurrency: if n == 0 { 1 } else { n },
            ..self
        }
    }

    /// With reads that cost `cost`.
    pub const fn with_read_cost(self, cost: ReadCost) -> Self {
        Self {
            read_cost: cost,
            ..self
        }
    }

    /// Packing large values written together, or not.
    pub const fn with_packs_large_values(self, packs: bool) -> Self {
        Self {
            packs_large_values: packs,
            ..self
        }
    }
}

impl Default for Capabilities {
    fn default() -> Self {
        Self::DEFAULT
    }
}

/// What reading an object back from a store costs, roughly: a fixed
/// latency, then its bytes at a bandwidth ([`Capabilities::read_cost`]). A
/// hint for which values a chest keeps in memory: what a value saves is
/// how often it is read times what a read of it costs, per byte of memory.
///
/// ```
/// use chest_core::ReadCost;
/// use std::time::Duration;
///
/// let disk = ReadCost::new(Duration::from_micros(100), 1_000_000_000);
/// // A read of 100 KB costs twice what its latency alone costs.
/// assert_eq!(disk.latency_bytes(), 100_000);
/// assert_eq!(ReadCost::BYTES.latency_bytes(), 0);
/// ```
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ReadCost {
    /// Time to the first byte of a read.
    pub latency: std::time::Duration,
    /// Bytes per second once it flows (at least 1).
    pub bytes_per_sec: u64,
}

impl ReadCost {
    /// A read costs its bytes alone (no latency): the default hint, and
    /// the memory backend's.
    pub const BYTES: ReadCost = ReadCost {
        latency: std::time::Duration::ZERO,
        bytes_per_sec: u64::MAX,
    };

    /// A latency and a bandwidth in bytes per second (taken as at least 1).
    pub const fn new(latency: std::time::Duration, bytes_per_sec: u64) -> Self {
        Self {
            latency,
            bytes_per_sec: if bytes_per_sec == 0 { 1 } else { bytes_per_sec },
        }
    }

    /// The bytes a read moves in the time of its latency: below this size
    /// a read costs mostly its latency.
    pub fn latency_bytes(&self) -> u64 {
        let bytes = self.latency.as_secs_f64() * self.bytes_per_sec as f64;
        bytes.min(u64::MAX as f64) as u64
    }
}

/// How a store keeps a chest to one writer at a time (the answer of
/// [`Backend::single_writer`](super::Backend::single_writer)).
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum SingleWriter {
    /// This handle already excludes every other writer: it holds a lock of
    /// the operating system on a directory, or the store is private to it.
    Held,
    /// The store's conditional writes ([`PutMode`](super::PutMode)
    /// `Create` and `Update`) are atomic: a chest takes a writer lease with
    /// them, and makes its manifest commits conditional, so a second writer
    /// is refused and a writer that lost its lease is fenced.
    Lease,
    /// Nothing excludes a second writer, and the chest relies on its user
    /// to open one at a time (the default of a backend, and what an explicit
    /// opt-out such as `lock=none` on an `s3://` URL gives).
    Trusted,
    /// The store cannot exclude a second writer (a server that ignores
    /// conditional writes), and its user has not taken that on: a chest
    /// refuses to open it for writing. Says why, and how to opt out.
    Unavailable(String),
}
