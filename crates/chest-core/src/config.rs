//! The settings of a chest: what a key must be, the eviction policy and the
//! admission of loaded values (public), the defaults, and the tuning the
//! builder collects and the chest keeps ([`Config`]).

use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

/// What a key must be: serializable (keys are stored in the manifest as
/// CBOR), hashable, cloneable and printable (errors name the key).
/// Implemented for every type that has these traits.
pub trait Key:
    Serialize + DeserializeOwned + Hash + Eq + Clone + Debug + Send + Sync + 'static
{
}
impl<T: Serialize + DeserializeOwned + Hash + Eq + Clone + Debug + Send + Sync + 'static> Key
    for T
{
}

/// Which resident values leave memory first when the budget is exceeded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum EvictionPolicy {
    /// The least recently used value (inserted, read or updated) goes
    /// first, as a CLOCK approximates it: values leave in the order they
    /// came in (were inserted, loaded or updated), except that one read
    /// since gets a second chance and goes to the back instead. A read costs
    /// no reordering.
    #[default]
    LeastRecentlyUsed,
    /// The heaviest value goes first: frees the most memory per write,
    /// keeps many small values resident. (Python's `chest` evicted the least
    /// recently written or loaded value: [`LeastRecentlyUsed`](Self::LeastRecentlyUsed)
    /// is the closer match.)
    LargestFirst,
}

/// Whether a value that `get` loads from the backend stays in memory.
///
/// Keeping every loaded value lets a scan of values read once push out the
/// values in use (and, if those are dirty, write them): reading a chest
/// bigger than its budget from end to end would cycle every value through
/// memory for nothing. By default ([`Frequency`](Admission::Frequency)) a
/// loaded value is kept while memory is below where eviction stops (the
/// budget less an eviction batch or two), and after that only when it was
/// wanted more often lately than the values eviction takes, and more than
/// once, as W-TinyLFU admits; the others wait on probation in a small
/// window (about 1% of the values in memory) and stay if they are used
/// there and then wanted enough. A value read once does not push out one
/// read often, a loop over more values than fit does not wash the memory
/// out, the values kept converge to the ones read most, and a value read
/// again soon after its first read is there. On traces of independent
/// draws (Zipf 0.99, memory a tenth of the data) it loads 1.05-1.08x what
/// keeping the most requested keys would, where keeping a value on its
/// second read ([`SecondRead`](Admission::SecondRead)) loads 1.4x and
/// keeping every load 1.55x; on a loop over 1.25x as many values as fit,
/// 1.05x the offline optimum, where LRU reloads every value; on recorded
/// web and database traces about what an exact LRU loads, or less
/// (`tests/eviction_quality.rs`, W7 in `chest-bench`).
///
/// `update`, [`prefetch`](crate::Chest::prefetch) and the values a
/// `get_or_insert_with` style call loads are always kept: they say the value
/// is wanted in memory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum Admission {
    /// Kept on its second load within a while (the chest remembers the
    /// keys of recent loads it did not keep, a few thousand per chest, as
    /// 4-byte fingerprints, as 2Q does); read once, a value is handed to
    /// the caller and only the stored copy remains.
    SecondRead,
    /// Kept on every load, as Python's `chest` did: a value read stays in
    /// memory, pushing out the coldest.
    EveryRead,
    /// Kept while memory is below where eviction stops, or when it was
    /// wanted more often lately, and more than once, than the values
    /// eviction takes (the default). Counts: for values in memory, the rounds of the
    /// eviction queue in which they were used (a hit costs nothing more);
    /// for spilled keys, their loads, in a sketch of 4-bit counters with at
    /// least one counter a row per key; all are halved as time passes, so a
    /// change of what is wanted is followed. A load that does not win its
    /// place waits in a window (a CLOCK of its own: what is used there
    /// stays while it is), and moves on if it is then wanted more than what
    /// eviction takes; the window's share of memory (1% at first, up to
    /// 80%) follows the hit rate (Caffeine's hill climber), so traces where
    /// what was just read is read again soon get a large one. Eviction
    /// takes the least wanted of the few values coldest by recency.
    /// "Wanted" weighs counts by what a read costs per byte
    /// ([`ChestBuilder::read_cost`](crate::ChestBuilder::read_cost)): for
    /// values of one size, counts alone; with a read latency, small values
    /// read often are worth more per byte of memory than large ones.
    #[default]
    Frequency,
}

/// Weighs a value for the memory budget.
pub type Weigher<V> = Arc<dyn Fn(&V) -> usize + Send + Sync>;

/// Tuning of a chest, shared by the builder and the chest.
#[derive(Debug, Clone)]
pub(crate) struct Config {
    pub budget: usize,
    pub policy: EvictionPolicy,
    /// Whether values `get` loads stay in memory.
    pub admission: Admission,
    pub shards: usize,
    pub read_only: bool,
    pub mode: OpenMode,
    /// Whether dropping the chest flushes it (a persistent one).
    pub flush_on_drop: bool,
    /// Values at least this heavy are stored as objects of their own.
    pub large_value: usize,
    /// Small values are packed into segments of about this size.
    pub segment_bytes: usize,
    /// When over budget, evict down to `budget - evict_batch`.
    pub evict_batch: usize,
    /// How long a writer lease holds without renewal.
    pub lease_ttl: std::time::Duration,
    /// How long dead objects stay for readers beside the writer.
    pub reader_grace: std::time::Duration,
    /// Background threads that write eviction batches (0: the evicting
    /// call writes them itself; `None`: chosen by the backend, see
    /// [`ChestBuilder::writer_threads`]).
    pub writers: Option<usize>,
    /// Whether a value's weight counts the chest's own bookkeeping of an
    /// entry beside the weigher's answer.
    pub entry_overhead: bool,
    /// The cap on the bytes the store holds, if any.
    pub max_spill: Option<u64>,
    /// What a read from the store costs (`None`: the backend's hint).
    pub read_cost: Option<crate::ReadCost>,
}

/// Default time a dead object stays for readers beside a writer: 60 s.
pub const DEFAULT_READER_GRACE: std::time::Duration = std::time::Duration::from_secs(60);

/// Default time a writer lease holds without renewal: 30 s.
pub const DEFAULT_LEASE_TTL: std::time::Duration = std::time::Duration::from_secs(30);

/// Whether opening creates a chest, finds one, or either.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
#[non_exhaustive]
pub enum OpenMode {
    /// Open the chest at the location, or create one if the location is
    /// empty (the default).
    #[default]
    OpenOrCreate,
    /// Create a new chest; fail with [`Error::AlreadyExists`](crate::Error::AlreadyExists)
    /// if the location already holds one.
    CreateNew,
    /// Open an existing chest; fail with [`Error::NoChest`](crate::Error::NoChest)
    /// if the location holds none.
    MustExist,
}

/// Default memory budget: 256 MiB.
pub const DEFAULT_BUDGET: usize = 256 << 20;
