//! [`ChestBuilder`]: the memory budget, eviction policy, serializer and
//! weigher of a chest, and where it lives.

use std::marker::PhantomData;
use std::sync::Arc;

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::api::chest::Chest;
use crate::backend::location::IntoLocation;
use crate::backend::registry::{self, OpenOptions, OpenedBackend};
use crate::backend::Backend;
use crate::config::{
    Admission, Config, EvictionPolicy, Key, OpenMode, Weigher, DEFAULT_BUDGET, DEFAULT_LEASE_TTL,
    DEFAULT_READER_GRACE,
};
use crate::error::Result;
use crate::value::serializer::{Cbor, Serializer};
use crate::value::weigh::Weigh;

/// Configures and opens a [`Chest`].
///
/// ```
/// use chest_core::{Chest, EvictionPolicy, Raw};
///
/// let chest: Chest<u64, Vec<u8>, Raw> = Chest::builder()
///     .memory_budget(1 << 20)
///     .eviction_policy(EvictionPolicy::LargestFirst)
///     .serializer(Raw)
///     .open("memory://")?;
/// chest.insert(1, b"one".to_vec())?;
/// assert_eq!(chest.get(&1)?.as_deref().map(Vec::as_slice), Some(&b"one"[..]));
/// # Ok::<(), chest_core::Error>(())
/// ```
pub struct ChestBuilder<K, V, S = Cbor> {
    config: Config,
    serializer: S,
    weigher: Weigher<V>,
    _key: PhantomData<fn() -> K>,
}

impl<K: Key, V: Weigh + Send + Sync + 'static> ChestBuilder<K, V, Cbor> {
    /// A builder with the defaults: 256 MiB budget, LRU, CBOR, weights from [`Weigh`].
    pub fn new() -> Self {
        Self::with_weigher(|v: &V| v.weigh())
    }
}

impl<K: Key, V: Weigh + Send + Sync + 'static> Default for ChestBuilder<K, V, Cbor> {
    fn default() -> Self {
        Self::new()
    }
}

impl<K: Key, V: Send + Sync + 'static> ChestBuilder<K, V, Cbor> {
    /// A builder for values that do not implement [`Weigh`]: `weigher` gives
    /// the bytes of memory a value holds.
    pub fn with_weigher(weigher: impl Fn(&V) -> usize + Send + Sync + 'static) -> Self {
        let shards = std::thread::available_parallelism()
            .map(|n| (n.get() * 4).next_power_of_two())
            .unwrap_or(8)
            .clamp(4, 64);
        Self {
            config: Config {
                budget: DEFAULT_BUDGET,
                policy: EvictionPolicy::default(),
                admission: Admission::default(),
                shards,
                read_only: false,
                mode: OpenMode::OpenOrCreate,
                flush_on_drop: true,
                large_value: 256 << 10,
                segment_bytes: 8 << 20,
                evict_batch: 0,
                lease_ttl: DEFAULT_LEASE_TTL,
                reader_grace: DEFAULT_READER_GRACE,
                writers: None,
                entry_overhead: true,
                max_spill: None,
                read_cost: None,
            },
            serializer: Cbor,
            weigher: Arc::new(weigher),
            _key: PhantomData,
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S> ChestBuilder<K, V, S> {
    /// Bytes of values the chest keeps in memory before it spills the coldest.
    /// A value counts its weight (see [`Weigh`]) plus the chest's own
    /// bookkeeping for it (about a hundred bytes), so the budget bounds the
    /// memory the values really take. A value heavier than the whole budget
    /// goes straight to the backend.
    ///
    /// Beside the budget, the chest keeps the buffers its last writes were
    /// serialized into, for the next ones (up to an eighth of the budget,
    /// at most 64 MiB): allocating a large buffer anew for every write
    /// costs the system allocator a page fault per 4 KiB.
    pub fn memory_budget(mut self, bytes: usize) -> Self {
        self.config.budget = bytes;
        self
    }

    /// Which values leave memory first.
    pub fn eviction_policy(mut self, policy: EvictionPolicy) -> Self {
        self.config.policy = policy;
        self
    }

    /// Whether a value that `get` loads from the backend stays in memory:
    /// when it was wanted more often than what it would push out (the
    /// default, so that values read once do not push out the values in
    /// use), on its second load within a while, or on every load. See
    /// [`Admission`].
    pub fn admission(mut self, admission: Admission) -> Self {
        self.config.admission = admission;
        self
    }

    /// What reading a value back from the store costs, for
    /// [`Admission::Frequency`] to weigh how often a value is read against
    /// its size (default: the backend's [`Capabilities::read_cost`] hint — a
    /// local directory about 100 µs and 1 GB/s, S3 about 10 ms and
    /// 100 MB/s, memory its bytes alone). With a latency, small values
    /// read often are kept before large ones read as often.
    ///
    /// [`Capabilities::read_cost`]: crate::Capabilities::read_cost
    pub fn read_cost(mut self, cost: crate::ReadCost) -> Self {
        self.config.read_cost = Some(cost);
        self
    }

    /// How values become bytes (default [`Cbor`]).
    pub fn serializer<S2: Serializer<V>>(self, serializer: S2) -> ChestBuilder<K, V, S2> {
        ChestBuilder {
            config: self.config,
            serializer,
            weigher: self.weigher,
            _key: PhantomData,
        }
    }

    /// Replaces how a value is weighed for the budget.
    pub fn weigher(mut self, weigher: impl Fn(&V) -> usize + Send + Sync + 'static) -> Self {
        self.weigher = Arc::new(weigher);
        self
    }

    /// How long the writer lease holds without renewal (default
    /// [`DEFAULT_LEASE_TTL`], 30 s), on a store where a chest keeps to one
    /// writer with a lease (`s3://` on a server with conditional writes,
    /// `memory://name`; see [`SingleWriter`](crate::SingleWriter)).
    ///
    /// The chest renews it every sixth of this time and stops writing
    /// (it is *fenced*, [`Error::Fenced`](crate::Error::Fenced)) if three
    /// quarters of it pass without a successful renewal. A writer that died
    /// without closing blocks new writers for at most this long. Clocks of
    /// the machines sharing a chest must agree to within a quarter of it.
    pub fn lease_ttl(mut self, ttl: std::time::Duration) -> Self {
        self.config.lease_ttl = ttl;
        self
    }

    /// How long an object this writer no longer needs stays in the store
    /// at least (default [`DEFAULT_READER_GRACE`], 60 s), where read-only
    /// chests can be open beside the writer: a store kept to one writer by a
    /// lease (object storage, `memory://name`). The superseded manifests
    /// stay as long, and a writer that reopens spares their objects. A reader's
    /// snapshot is the manifest it opened; it stays readable while the
    /// writer's next two flushes and this long have not passed. A reader
    /// that finds an object gone gets
    /// [`Error::StaleSnapshot`](crate::Error::StaleSnapshot) and reopens.
    /// On a local directory, readers and the writer exclude each other and
    /// this does not apply; nor with `lock=none` on S3, where nothing is
    /// known of other processes.
    pub fn reader_grace(mut self, grace: std::time::Duration) -> Self {
        self.config.reader_grace = grace;
        self
    }

    /// Open for reading only: no writes, no flush, a shared lock.
    pub fn read_only(mut self, read_only: bool) -> Self {
        self.config.read_only = read_only;
        self
    }

    /// Whether to create a chest, open an existing one, or either (default
    /// [`OpenMode::OpenOrCreate`]). In every mode, a location that holds
    /// objects but no chest is refused and left untouched.
    ///
    /// ```
    /// use chest_core::{Chest, Error, OpenMode};
    ///
    /// let a: Chest<u32, String> = Chest::builder().mode(OpenMode::CreateNew).open("memory://doc-mode")?;
    /// a.insert(1, "one".into())?;
    /// a.close()?;
    /// let again = Chest::<u32, String>::builder().mode(OpenMode::CreateNew).open("memory://doc-mode");
    /// assert!(matches!(again, Err(Error::AlreadyExists { .. })));
    /// let missing = Chest::<u32, String>::builder().mode(OpenMode::MustExist).open("memory://doc-none");
    /// assert!(matches!(missing, Err(Error::NoChest { .. })));
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn mode(mut self, mode: OpenMode) -> Self {
        self.config.mode = mode;
        self
    }

    /// Whether dropping a chest at a persistent location flushes it
    /// (default `true`; errors are ignored then, [`Chest::close`] returns
    /// them). With `false`, what was not flushed explicitly is not made
    /// durable: the next open sees the last flush.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, String> = Chest::builder().flush_on_drop(false).open("memory://doc-nodrop")?;
    /// c.insert(1, "kept".into())?;
    /// c.flush()?;
    /// c.insert(2, "not flushed".into())?;
    /// drop(c);
    /// let again: Chest<u32, String> = Chest::open("memory://doc-nodrop")?;
    /// assert_eq!(again.len(), 1);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn flush_on_drop(mut self, flush: bool) -> Self {
        self.config.flush_on_drop = flush;
        self
    }

    /// Number of independently locked shards (rounded up to a power of two;
    /// default 4 × cores). More shards, less contention between threads.
    pub fn shards(mut self, shards: usize) -> Self {
        self.config.shards = shards.clamp(1, 1024).next_power_of_two();
        self
    }

    /// Values at least this heavy are stored as objects of their own; lighter
    /// ones are packed together into segments (default 256 KiB).
    pub fn large_value_bytes(mut self, bytes: usize) -> Self {
        self.config.large_value = bytes.clamp(1, 1 << 30);
        self
    }

    /// Number of background threads that write the values evicted from
    /// memory, started with the first eviction. The call that evicts
    /// returns while they write; it waits only when they fall so far behind
    /// that memory reaches the budget. With 0, the call that evicts writes
    /// the batch itself and returns once it is written.
    ///
    /// The default is 1, or 2 on a backend that writes several objects at
    /// once ([`crate::Capabilities::write_concurrency`]
    /// above 1, as S3): there a batch's last, slowest uploads would
    /// otherwise leave the connections idle until the next batch starts.
    /// The backend still bounds the requests in flight.
    pub fn writer_threads(mut self, threads: usize) -> Self {
        self.config.writers = Some(threads.min(64));
        self
    }

    /// A cap on the bytes the chest's store holds (its objects, as
    /// [`Stats::stored_bytes`](crate::Stats) counts them): a spill that
    /// would pass it is refused with [`Error::SpillFull`](crate::Error::SpillFull),
    /// naming the values, which stay in memory — memory then grows past the
    /// budget rather than lose anything — and spilling resumes once stored
    /// bytes are freed. A flush that cannot write its changes under the cap
    /// fails the same way. Default: no cap.
    ///
    /// ```
    /// use chest_core::{Chest, ErrorKind};
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder()
    ///     .memory_budget(64 << 10)
    ///     .writer_threads(0)
    ///     .max_spill(100 << 10)
    ///     .open("memory://")?;
    /// let mut refused = None;
    /// for i in 0..8 {
    ///     if let Err(e) = c.insert(i, vec![i as u8; 40 << 10]) {
    ///         refused = Some(e);
    ///     }
    /// }
    /// assert_eq!(refused.unwrap().kind(), ErrorKind::Full);
    /// assert!(c.stats().stored_bytes <= 100 << 10);
    /// assert_eq!(c.get(&7)?.unwrap()[0], 7);     // nothing lost
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn max_spill(mut self, bytes: u64) -> Self {
        self.config.max_spill = Some(bytes);
        self
    }

    /// How far below its starting point an eviction goes, in bytes: by
    /// default 1/16 of the budget (between 64 KiB and 32 MiB), so that one
    /// eviction writes a batch worth a write. `1`: only until the values
    /// fit again, one value at a time, as Python's `chest` did (every
    /// insert over the budget then evicts). Never more than the budget.
    pub fn eviction_batch(mut self, bytes: usize) -> Self {
        self.config.evict_batch = bytes.max(1);
        self
    }

    /// Whether a value's weight counts the chest's own bookkeeping for it
    /// (its entry, its place in the eviction order: about a hundred bytes)
    /// beside the weigher's answer. `true` (the default) bounds the memory
    /// the process really holds; `false` counts the weigher's answer only,
    /// as Python's `chest` did (its budget was the values' `nbytes`).
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder()
    ///     .weigher(|v: &Vec<u8>| v.len())
    ///     .count_entry_overhead(false)
    ///     .open("memory://")?;
    /// c.insert(1, vec![0; 1000])?;
    /// assert_eq!(c.memory_usage(), 1000);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn count_entry_overhead(mut self, count: bool) -> Self {
        self.config.entry_overhead = count;
        self
    }

    /// Target size of a segment of packed small values (default 8 MiB).
    pub fn segment_bytes(mut self, bytes: usize) -> Self {
        self.config.segment_bytes = bytes.clamp(4 << 10, 1 << 30);
        self
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> ChestBuilder<K, V, S> {
    /// Opens the chest at `location`: a URL (`file:///data/c1`, `memory://name`,
    /// `s3://bucket/prefix`, ...) or a local path, as a string, a `Path` or a
    /// `Url` (see [`IntoLocation`]). The keys of a chest flushed
    /// there before come back; values are read when asked for.
    pub fn open(self, location: impl IntoLocation) -> Result<Chest<K, V, S>> {
        let location = location.into_location()?;
        let opts = OpenOptions {
            read_only: self.config.read_only,
            create: !self.config.read_only && self.config.mode != OpenMode::MustExist,
        };
        let opened = registry::open_backend(&location, &opts)?;
        self.open_opened(opened)
    }

    /// Opens a temporary chest (a new temporary directory with the `chest`
    /// facade), removed when the chest is dropped.
    pub fn temp(self) -> Result<Chest<K, V, S>> {
        let opened = registry::open_temp()?;
        self.open_opened(opened)
    }

    /// Opens a chest over a backend built in code. The chest treats it as
    /// persistent: it is flushed on close and drop.
    pub fn open_backend(self, backend: Arc<dyn Backend>) -> Result<Chest<K, V, S>> {
        self.open_opened(OpenedBackend {
            backend,
            persistent: true,
        })
    }

    /// Opens a chest over a backend a factory opened.
    pub fn open_opened(mut self, opened: OpenedBackend) -> Result<Chest<K, V, S>> {
        let c = &mut self.config;
        c.evict_batch = match c.evict_batch {
            0 => (c.budget / 16).clamp(64 << 10, 32 << 20),
            chosen => chosen,
        }
        .min(c.budget);
        Chest::from_parts(self.config, self.serializer, self.weigher, opened)
    }
}

impl<K: Key, V: Weigh + Serialize + DeserializeOwned + Send + Sync + 'static> Chest<K, V, Cbor> {
    /// A builder (budget, policy, serializer, weigher, open mode) for a chest.
    pub fn builder() -> ChestBuilder<K, V, Cbor> {
        ChestBuilder::new()
    }

    /// Opens the chest at `location` (a URL or a path) with the defaults,
    /// creating it if the location is empty. A location that holds objects
    /// but no chest is refused ([`Error::NotAChest`](crate::Error::NotAChest)) and left untouched.
    pub fn open(location: impl IntoLocation) -> Result<Self> {
        Self::builder().open(location)
    }

    /// A chest in a new temporary location, removed when it is dropped.
    pub fn temp() -> Result<Self> {
        Self::builder().temp()
    }
}
