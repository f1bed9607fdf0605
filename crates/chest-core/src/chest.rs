//! [`Chest`]: the map. Keys are always known; values live in memory up to the
//! budget and in the backend beyond it.

use std::borrow::Borrow;
use std::collections::HashSet;
use std::fmt::{self, Debug};
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::builder::{ChestBuilder, Config, Weigher};
use crate::error::{BackendError, Error, Result};
use crate::manifest::ManifestWriter;
use crate::registry::OpenedBackend;
use crate::serializer::{Cbor, Serializer};
use crate::shard::{FastHash, Resident, Shard, Slot};
use crate::stats::{Counters, Stats};
use crate::store::{object_name, seal_whole, Loc, ReadError, SegmentBuf, Store};
use crate::weigh::Weigh;

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

/// A dictionary whose values spill to a backend when they outgrow a memory budget.
///
/// All methods take `&self`; a chest is `Send + Sync` and can be shared by
/// threads (e.g. in an `Arc` or a scoped thread). Reads of values in memory
/// return a shared handle ([`Arc`]) without copying the value and without I/O.
///
/// ```
/// use chest_core::Chest;
///
/// let c: Chest<String, Vec<f64>> = Chest::builder().memory_budget(1 << 20).open("memory://doc-main")?;
/// c.insert("x".to_string(), vec![1.0, 2.0, 3.0])?;
/// assert_eq!(&**c.get("x")?.unwrap(), &[1.0, 2.0, 3.0]);
/// c.update("x", |v| v.push(4.0))?;                 // in place; the stored copy is rewritten
/// assert_eq!(c.get("x")?.unwrap().len(), 4);
/// c.close()?;                                        // flush, with errors
///
/// let again: Chest<String, Vec<f64>> = Chest::open("memory://doc-main")?;
/// assert_eq!(again.len(), 1);                        // keys are back, values load on demand
/// # Ok::<(), chest_core::Error>(())
/// ```
pub struct Chest<K: Key, V: Send + Sync + 'static, S: Serializer<V> = Cbor> {
    shards: Box<[Mutex<Shard<K, V>>]>,
    hasher: FastHash,
    store: Store,
    serializer: S,
    weigher: Weigher<V>,
    config: Config,
    usage: AtomicUsize,
    /// Set by every change of the map; a flush with none has nothing to do.
    changed: AtomicBool,
    /// Weight of the last large value evicted (sizes eviction batches).
    recent_large: AtomicUsize,
    /// Weight of the values being spilled right now (still in memory).
    inflight: AtomicUsize,
    len: AtomicUsize,
    cursor: AtomicUsize,
    counters: Counters,
    persistent: bool,
    flush_lock: Mutex<()>,
    closed: AtomicBool,
}

impl<K: Key, V: Weigh + Serialize + DeserializeOwned + Send + Sync + 'static> Chest<K, V, Cbor> {
    /// A builder (budget, policy, serializer, weigher) for a chest.
    pub fn builder() -> ChestBuilder<K, V, Cbor> {
        ChestBuilder::new()
    }

    /// Opens the chest at `location` (a URL or a path) with the defaults.
    pub fn open(location: &str) -> Result<Self> {
        Self::builder().open(location)
    }

    /// A chest in a new temporary location, removed when it is dropped.
    pub fn temp() -> Result<Self> {
        Self::builder().temp()
    }
}

/// Large values are written in batches of at most this many bytes...
const WHOLE_BATCH_BYTES: usize = 64 << 20;
/// ...or this many values.
const WHOLE_BATCH_COUNT: usize = 32;

/// A dirty value chosen to be written (by eviction or a flush).
struct Victim<K, V> {
    shard: usize,
    key: K,
    value: Arc<V>,
    weight: usize,
}

/// What became of a victim's value.
enum Outcome {
    Written(Loc),
    Unserializable,
    WriteFailed,
}

/// Several errors as one: none, the only one, or [`Error::Many`].
fn join(mut errors: Vec<Error>) -> Result<()> {
    match errors.len() {
        0 => Ok(()),
        1 => Err(errors.remove(0)),
        _ => Err(Error::Many(errors)),
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    pub(crate) fn from_parts(
        config: Config,
        serializer: S,
        weigher: Weigher<V>,
        opened: OpenedBackend,
    ) -> Result<Self> {
        let shards = (0..config.shards)
            .map(|_| Mutex::new(Shard::new(config.policy)))
            .collect();
        let chest = Self {
            shards,
            hasher: FastHash::default(),
            store: Store::new(opened.backend),
            serializer,
            weigher,
            config,
            usage: AtomicUsize::new(0),
            inflight: AtomicUsize::new(0),
            recent_large: AtomicUsize::new(0),
            changed: AtomicBool::new(false),
            len: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            counters: Counters::default(),
            persistent: opened.persistent,
            flush_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
        };
        if let Err(e) = chest.load_index() {
            // Not opened: dropping it must not flush an empty index over the
            // manifest it could not read.
            chest.closed.store(true, Ordering::Relaxed);
            return Err(e);
        }
        Ok(chest)
    }

    /// Reads the manifest (not the values) and removes objects no manifest names.
    fn load_index(&self) -> Result<()> {
        if let Some(m) = self.store.load_manifest()? {
            if m.serializer != self.serializer.name() {
                return Err(Error::SerializerMismatch {
                    location: self.location().to_string(),
                    stored: m.serializer,
                    requested: self.serializer.name().to_string(),
                });
            }
            self.store.adopt(&m);
            // Decode the keys, sorted by shard; then fill each shard's table
            // from its own list (cache-friendly), on several threads.
            let n = self.shards.len();
            let per_shard = m.len / n + 1;
            let mut lists: Vec<Vec<(K, Loc)>> = (0..n)
                .map(|_| Vec::with_capacity(per_shard + per_shard / 8))
                .collect();
            // One scratch buffer for every key (`from_reader` zeroes 4 KiB a call).
            let mut scratch = vec![0u8; 4096];
            for (bytes, loc) in m.entries() {
                let key: K =
                    ciborium::de::from_reader_with_buffer(bytes, &mut scratch).map_err(|e| {
                        Error::Key {
                            key: "<undecodable>".into(),
                            detail: format!("manifest of {}: {e}", self.location()),
                        }
                    })?;
                lists[self.shard_of(&key)].push((key, loc));
            }
            drop(m);
            let threads = std::thread::available_parallelism()
                .map_or(1, |t| t.get())
                .clamp(1, 4);
            let per_thread = n.div_ceil(threads);
            std::thread::scope(|scope| {
                for (shards, lists) in self
                    .shards
                    .chunks(per_thread)
                    .zip(lists.chunks_mut(per_thread))
                {
                    scope.spawn(move || {
                        let mut added = 0;
                        for (shard, list) in shards.iter().zip(lists) {
                            let mut shard = lock(shard);
                            shard.map.reserve(list.len());
                            for (key, loc) in list.drain(..) {
                                added += usize::from(
                                    shard.map.insert(key, Slot::Spilled(loc)).is_none(),
                                );
                            }
                        }
                        self.len.fetch_add(added, Ordering::Relaxed);
                    });
                }
            });
        }
        if !self.config.read_only {
            self.store.remove_orphans()?;
        }
        Ok(())
    }

    /// Where the chest lives (its backend's location, usually a URL).
    pub fn location(&self) -> &str {
        self.store.location()
    }

    /// The memory budget in bytes.
    pub fn memory_budget(&self) -> usize {
        self.config.budget
    }

    /// Bytes of values held in memory now (by their weight).
    pub fn memory_usage(&self) -> usize {
        self.usage.load(Ordering::Relaxed)
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// `true` if the chest holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        let h = self.hasher.hash_one(key);
        ((h >> 7) as usize) & (self.shards.len() - 1)
    }

    fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>> {
        lock(&self.shards[self.shard_of(key)])
    }

    fn check_writable(&self) -> Result<()> {
        if self.config.read_only {
            return Err(Error::ReadOnly {
                location: self.location().to_string(),
            });
        }
        Ok(())
    }

    /// Inserts or replaces a value. If this pushes memory over the budget,
    /// the coldest values are spilled; an error of that spill is returned, but
    /// the inserted value is kept (in memory) either way: nothing is lost.
    pub fn insert(&self, key: K, value: V) -> Result<()> {
        self.check_writable()?;
        self.changed.store(true, Ordering::Relaxed);
        let weight = (self.weigher)(&value);
        let value = Arc::new(value);
        let mut shard = self.shard(&key);
        let mut direct = None;
        if weight > self.config.budget {
            // Heavier than the whole budget: straight to the backend.
            match self.write_alone(&key, &value, weight) {
                Ok(loc) => direct = Some(loc),
                Err(e) => {
                    // Keep it in memory so nothing is lost; report the failure.
                    self.put_resident(&mut shard, key, value, weight);
                    drop(shard);
                    Counters::add(&self.counters.errors, 1);
                    return Err(e);
                }
            }
        }
        match direct {
            Some(loc) => {
                let old = shard.map.insert(key.clone(), Slot::Spilled(loc));
                self.forget(&mut shard, &key, old);
                drop(shard);
                Ok(())
            }
            None => {
                self.put_resident(&mut shard, key, value, weight);
                drop(shard);
                self.enforce_budget()
            }
        }
    }

    /// Makes `value` the resident, dirty value of `key`.
    fn put_resident(&self, shard: &mut Shard<K, V>, key: K, value: Arc<V>, weight: usize) {
        let tick = shard.tick();
        let slot = Slot::Resident(Box::new(Resident {
            value,
            weight,
            tick,
            stored: None,
            pinned: false,
        }));
        let old = shard.map.insert(key.clone(), slot);
        self.usage.fetch_add(weight, Ordering::Relaxed);
        self.forget(shard, &key, old);
        shard.enqueue(&key);
    }

    /// Accounts for a replaced or removed slot.
    fn forget(&self, shard: &mut Shard<K, V>, key: &K, old: Option<Slot<V>>) {
        match old {
            None => {
                self.len.fetch_add(1, Ordering::Relaxed);
            }
            Some(old) => {
                self.usage
                    .fetch_sub(old.resident_weight(), Ordering::Relaxed);
                if let Some(loc) = old.stored() {
                    self.store.release(loc);
                }
                if !matches!(shard.map.get(key), Some(Slot::Resident(_))) {
                    shard.dequeue(key);
                }
            }
        }
    }

    /// Serializes and writes one value as an object of its own.
    /// `hint`: the value's weight, to size the buffer.
    fn write_alone(&self, key: &K, value: &V, hint: usize) -> Result<Loc> {
        let mut buf = Vec::with_capacity(hint.saturating_add(4).min(1 << 30));
        self.serializer
            .serialize(value, &mut buf)
            .map_err(|source| Error::Serialize {
                key: format!("{key:?}"),
                source,
            })?;
        let n = buf.len() as u64;
        let loc = self.store.write_whole(seal_whole(buf))?;
        Counters::add(&self.counters.spills, 1);
        Counters::add(&self.counters.bytes_written, n);
        Ok(loc)
    }

    /// The value of `key`, loading it from the backend if it was spilled.
    /// A hit in memory copies nothing and does no I/O.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<Arc<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let mut shard = self.shard(key);
        let tick = shard.tick();
        match shard.map.get_mut(key) {
            None => Ok(None),
            Some(Slot::Resident(r)) => {
                r.tick = tick;
                Counters::add(&self.counters.hits, 1);
                Ok(Some(Arc::clone(&r.value)))
            }
            Some(Slot::Spilled(loc)) => {
                let loc = *loc;
                Counters::add(&self.counters.misses, 1);
                let value = self.load(&mut shard, key, loc)?;
                drop(shard);
                // The read succeeded; a failure to make room is counted in the
                // stats and reported by the next insert or flush.
                let _ = self.enforce_budget();
                Ok(Some(value))
            }
        }
    }

    /// Reads a spilled value and makes it resident (unless it is heavier
    /// than the whole budget).
    fn load<Q>(&self, shard: &mut Shard<K, V>, key: &Q, loc: Loc) -> Result<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let read = self.store.read(loc);
        self.admit(shard, key, loc, read)
    }

    /// Turns a record read from `loc` into the value of `key`, and makes it
    /// resident (unless it is heavier than the whole budget).
    fn admit<Q>(
        &self,
        shard: &mut Shard<K, V>,
        key: &Q,
        loc: Loc,
        read: std::result::Result<bytes::Bytes, ReadError>,
    ) -> Result<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let object = || object_name(loc.obj);
        let bytes = read.map_err(|e| match e {
            ReadError::Backend(BackendError::NotFound { .. }) => Error::Corrupt {
                key: format!("{key:?}"),
                object: object(),
                location: self.location().to_string(),
                detail: "the object is missing".into(),
            },
            ReadError::Backend(e) => Error::Backend(e),
            ReadError::Corrupt(detail) => Error::Corrupt {
                key: format!("{key:?}"),
                object: object(),
                location: self.location().to_string(),
                detail,
            },
        })?;
        Counters::add(&self.counters.loads, 1);
        Counters::add(&self.counters.bytes_read, bytes.len() as u64);
        let value =
            self.serializer
                .deserialize_owned(bytes)
                .map_err(|source| Error::Deserialize {
                    key: format!("{key:?}"),
                    object: object(),
                    location: self.location().to_string(),
                    source,
                })?;
        let weight = (self.weigher)(&value);
        let value = Arc::new(value);
        if weight <= self.config.budget {
            let tick = shard.tick();
            // The eviction order owns a copy of the key.
            if let Some(k) = shard.map.get_key_value(key).map(|(k, _)| k.clone()) {
                if let Some(slot) = shard.map.get_mut(key) {
                    *slot = Slot::Resident(Box::new(Resident {
                        value: Arc::clone(&value),
                        weight,
                        tick,
                        stored: Some(loc),
                        pinned: false,
                    }));
                }
                self.usage.fetch_add(weight, Ordering::Relaxed);
                shard.enqueue(&k);
            }
        }
        Ok(value)
    }

    /// Changes a value in place: `f` gets it mutably (loaded first if it was
    /// spilled; copied first if a reader still holds a handle to it). The
    /// stored copy is rewritten on the next spill or flush. Returns what `f`
    /// returns, or `None` if the key is absent.
    ///
    /// `f` runs under the lock of the key's shard: it must not call back into
    /// this chest.
    pub fn update<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Result<Option<R>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
        V: Clone,
    {
        self.check_writable()?;
        self.changed.store(true, Ordering::Relaxed);
        let mut shard = self.shard(key);
        let loc = match shard.map.get(key) {
            None => return Ok(None),
            Some(Slot::Spilled(loc)) => Some(*loc),
            Some(Slot::Resident(_)) => None,
        };
        let mut detached = None;
        if let Some(loc) = loc {
            let value = self.load(&mut shard, key, loc)?;
            if !matches!(shard.map.get(key), Some(Slot::Resident(_))) {
                // Heavier than the budget: not kept resident; update a copy and rewrite it.
                detached = Some(value);
            }
        }
        if let Some(value) = detached {
            let mut value = Arc::unwrap_or_clone(value);
            let out = f(&mut value);
            let k = shard
                .map
                .get_key_value(key)
                .map(|(k, _)| k.clone())
                .expect("the key was present a moment ago under the same lock");
            let new_loc = self.write_alone(&k, &value, (self.weigher)(&value))?;
            let old = shard.map.insert(k.clone(), Slot::Spilled(new_loc));
            self.forget(&mut shard, &k, old);
            return Ok(Some(out));
        }
        let tick = shard.tick();
        let Some(Slot::Resident(r)) = shard.map.get_mut(key) else {
            unreachable!("the value was made resident under the same lock")
        };
        // Dirty before `f` runs, so a panic in `f` cannot leave a stale stored copy.
        if let Some(old) = r.stored.take() {
            self.store.release(old);
        }
        r.pinned = false;
        r.tick = tick;
        let out = f(Arc::make_mut(&mut r.value));
        let weight = (self.weigher)(&r.value);
        let old_weight = std::mem::replace(&mut r.weight, weight);
        self.usage.fetch_add(weight, Ordering::Relaxed);
        self.usage.fetch_sub(old_weight, Ordering::Relaxed);
        let k = shard
            .map
            .get_key_value(key)
            .map(|(k, _)| k.clone())
            .expect("present under the same lock");
        shard.enqueue(&k);
        drop(shard);
        self.enforce_budget()?;
        Ok(Some(out))
    }

    /// Removes a key and its value, in memory and in the backend. Returns
    /// whether the key was present.
    pub fn remove<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        self.check_writable()?;
        let mut shard = self.shard(key);
        let Some(old) = shard.map.remove(key) else {
            return Ok(false);
        };
        self.changed.store(true, Ordering::Relaxed);
        shard.dequeue(key);
        self.len.fetch_sub(1, Ordering::Relaxed);
        self.usage
            .fetch_sub(old.resident_weight(), Ordering::Relaxed);
        if let Some(loc) = old.stored() {
            self.store.release(loc);
        }
        Ok(true)
    }

    /// `true` if the chest holds `key` (in memory or spilled). No I/O.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.shard(key).map.contains_key(key)
    }

    /// A snapshot of every key, in no particular order. No I/O.
    pub fn keys(&self) -> Vec<K> {
        let mut keys = Vec::with_capacity(self.len());
        for s in self.shards.iter() {
            keys.extend(lock(s).map.keys().cloned());
        }
        keys
    }

    /// Every key with its value, loading spilled values as it goes (which
    /// may spill others). Keys removed meanwhile are skipped. On a backend
    /// that reads several objects at once (S3), the next few values are
    /// prefetched together.
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, Arc<V>)>> + '_ {
        let window = self.store.backend().write_concurrency().max(1);
        let mut keys = self.keys().into_iter();
        std::iter::from_fn(move || {
            let chunk: Vec<K> = keys.by_ref().take(window).collect();
            (!chunk.is_empty()).then_some(chunk)
        })
        .flat_map(move |chunk| {
            if window > 1 {
                // A failure here shows again, for its key, in `get` below.
                let _ = self.prefetch(chunk.iter());
            }
            chunk.into_iter().filter_map(move |k| match self.get(&k) {
                Ok(Some(v)) => Some(Ok((k, v))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
        })
    }

    /// Loads the given keys' values into memory ahead of use, reading them
    /// from the backend at once where it can (S3: concurrent requests).
    /// Prefetch a window that fits the budget: values beyond it push out
    /// others. Returns how many were loaded; keys that are absent or already
    /// in memory are skipped.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(64 << 10).open("memory://")?;
    /// for i in 0..64 {
    ///     c.insert(i, vec![i as u8; 4096])?;
    /// }
    /// let window: Vec<u32> = (0..8).collect();
    /// c.prefetch(&window)?;                 // one batch of reads
    /// let hits = c.stats().hits;
    /// for i in &window {
    ///     c.get(i)?;                        // served from memory
    /// }
    /// assert_eq!(c.stats().hits, hits + 8);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn prefetch<'q, Q>(&self, keys: impl IntoIterator<Item = &'q Q>) -> Result<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized + 'q,
    {
        let wanted: Vec<(&Q, Loc)> = keys
            .into_iter()
            .filter_map(|key| match self.shard(key).map.get(key) {
                Some(Slot::Spilled(loc)) => Some((key, *loc)),
                _ => None,
            })
            .collect();
        let locs: Vec<Loc> = wanted.iter().map(|&(_, loc)| loc).collect();
        let reads = self.store.read_many(&locs);
        let mut loaded = 0;
        let mut first_error = None;
        for ((key, loc), read) in wanted.into_iter().zip(reads) {
            let mut shard = self.shard(key);
            // Skip keys changed while the reads were in flight.
            if !matches!(shard.map.get(key), Some(Slot::Spilled(l)) if *l == loc) {
                continue;
            }
            match self.admit(&mut shard, key, loc, read) {
                Ok(_) => loaded += 1,
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        let _ = self.enforce_budget(); // counted in the stats, as for `get`
        match first_error {
            Some(e) => Err(e),
            None => Ok(loaded),
        }
    }

    /// Spills the coldest values until memory is within the budget (down to
    /// a low-water mark, so spills come in batches that pack well).
    ///
    /// Victims are taken from the shards in turn, a little from each, under
    /// each shard's lock; they are serialized and written outside the locks
    /// (small ones packed together into one segment, large ones through one
    /// `put_many`), then dropped from memory unless they changed meanwhile.
    fn enforce_budget(&self) -> Result<()> {
        let budget = self.config.budget;
        if self.memory_usage() <= budget {
            return Ok(());
        }
        let gap = self.low_water_gap();
        let target = budget - gap;
        let n = self.shards.len();
        let chunk = (gap / n).max(1);
        let mut errors = Vec::new();
        let mut victims = Vec::new();
        let mut idle = 0;
        while idle < n {
            let pending = self.inflight.load(Ordering::Relaxed);
            if self.memory_usage().saturating_sub(pending) <= target {
                break;
            }
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let taken = self.take_victims(i, chunk, target, &mut victims);
            idle = if taken > 0 { 0 } else { idle + 1 };
        }
        if !victims.is_empty() {
            let outcomes = self.encode_and_write(&victims, &mut errors);
            self.place_all(victims, outcomes);
        }
        Counters::add(&self.counters.errors, errors.len() as u64);
        join(errors)
    }

    /// How far below the budget an eviction goes: 1/16 of the budget, or, on
    /// a backend that writes several objects at once, enough of the large
    /// values recently evicted to keep its writers busy (at most 1/4).
    fn low_water_gap(&self) -> usize {
        let budget = self.config.budget;
        let base = self.config.evict_batch.min(budget);
        let writers = self.store.backend().write_concurrency();
        if writers <= 1 {
            return base;
        }
        let large = self.recent_large.load(Ordering::Relaxed);
        base.max(writers.saturating_mul(large).min(budget / 4))
    }

    /// Takes about `chunk` bytes of the coldest values of shard `i`: clean
    /// ones are dropped at once, dirty ones become victims to be written
    /// (still in memory, counted as in flight).
    fn take_victims(
        &self,
        i: usize,
        chunk: usize,
        target: usize,
        victims: &mut Vec<Victim<K, V>>,
    ) -> usize {
        let mut shard = lock(&self.shards[i]);
        let mut taken = 0;
        while taken < chunk {
            let pending = self.inflight.load(Ordering::Relaxed);
            if self.memory_usage().saturating_sub(pending) <= target {
                break;
            }
            let Some(key) = shard.pop_coldest() else {
                break;
            };
            let Some(slot) = shard.map.get_mut(&key) else {
                continue;
            };
            let Slot::Resident(r) = slot else { continue };
            let w = r.weight;
            taken += w;
            match r.stored {
                Some(loc) => {
                    // Clean: an identical copy is stored; drop it without a write.
                    *slot = Slot::Spilled(loc);
                    self.usage.fetch_sub(w, Ordering::Relaxed);
                    Counters::add(&self.counters.evictions, 1);
                }
                None => {
                    if w >= self.config.large_value {
                        self.recent_large.store(w, Ordering::Relaxed);
                    }
                    self.inflight.fetch_add(w, Ordering::Relaxed);
                    victims.push(Victim {
                        shard: i,
                        value: Arc::clone(&r.value),
                        key,
                        weight: w,
                    });
                }
            }
        }
        taken
    }

    /// Serializes a value: appended to `seg` as a record (`None`), or, if it
    /// is large, as a record of its own to be an object alone (`Some`).
    fn encode(
        &self,
        key: &K,
        value: &V,
        weight: usize,
        seg: &mut SegmentBuf,
    ) -> Result<Option<Vec<u8>>> {
        let large = weight >= self.config.large_value;
        let mut own = Vec::new();
        let buf = if large {
            own.reserve(weight.saturating_add(4).min(1 << 30));
            &mut own
        } else {
            &mut seg.bytes
        };
        let start = buf.len();
        if let Err(source) = self.serializer.serialize(value, buf) {
            buf.truncate(start);
            return Err(Error::Serialize {
                key: format!("{key:?}"),
                source,
            });
        }
        if !large && seg.bytes.len() - start >= self.config.large_value {
            // Lighter by weight than by bytes: give it an object of its own.
            own = seg.bytes.split_off(start);
        }
        if large || !own.is_empty() {
            Ok(Some(seal_whole(own)))
        } else {
            seg.seal(start);
            Ok(None)
        }
    }

    /// Serializes and writes the victims' values. Errors are collected; the
    /// outcome of each victim says where its value went, if anywhere.
    fn encode_and_write(&self, victims: &[Victim<K, V>], errors: &mut Vec<Error>) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = victims.iter().map(|_| Outcome::WriteFailed).collect();
        let mut seg = SegmentBuf::default();
        let mut seg_items = Vec::new();
        let mut wholes: Vec<(usize, Vec<u8>)> = Vec::new();
        let mut whole_bytes = 0;
        let last = victims.len().saturating_sub(1);
        for (idx, v) in victims.iter().enumerate() {
            match self.encode(&v.key, &v.value, v.weight, &mut seg) {
                Ok(Some(record)) => {
                    whole_bytes += record.len();
                    wholes.push((idx, record));
                }
                Ok(None) => seg_items.push(idx),
                Err(e) => {
                    outcomes[idx] = Outcome::Unserializable;
                    errors.push(e);
                }
            }
            let done = idx == last;
            if !wholes.is_empty()
                && (done || whole_bytes >= WHOLE_BATCH_BYTES || wholes.len() >= WHOLE_BATCH_COUNT)
            {
                whole_bytes = 0;
                let (items, records): (Vec<usize>, Vec<Vec<u8>>) = wholes.drain(..).unzip();
                let n: u64 = records.iter().map(|r| r.len() as u64 - 4).sum();
                match self.store.write_wholes(records) {
                    Ok(locs) => {
                        Counters::add(&self.counters.spills, locs.len() as u64);
                        Counters::add(&self.counters.bytes_written, n);
                        for (item, loc) in items.into_iter().zip(locs) {
                            outcomes[item] = Outcome::Written(loc);
                        }
                    }
                    Err(e) => errors.push(e),
                }
            }
            if !seg.is_empty() && (done || seg.bytes.len() >= self.config.segment_bytes) {
                let seg = std::mem::take(&mut seg);
                let n = seg.bytes.len() as u64 - 4 * seg.records.len() as u64;
                match self.store.write_segment(seg) {
                    Ok(locs) => {
                        Counters::add(&self.counters.spills, locs.len() as u64);
                        Counters::add(&self.counters.bytes_written, n);
                        for (item, loc) in seg_items.drain(..).zip(locs) {
                            outcomes[item] = Outcome::Written(loc);
                        }
                    }
                    Err(e) => {
                        seg_items.clear();
                        errors.push(e);
                    }
                }
            }
        }
        outcomes
    }

    /// Applies the outcomes of evicted victims, shard by shard.
    fn place_all(&self, mut victims: Vec<Victim<K, V>>, outcomes: Vec<Outcome>) {
        let mut items: Vec<(Victim<K, V>, Outcome)> = victims.drain(..).zip(outcomes).collect();
        items.sort_by_key(|(v, _)| v.shard);
        let mut iter = items.into_iter().peekable();
        while let Some((first, outcome)) = iter.next() {
            let sid = first.shard;
            let mut shard = lock(&self.shards[sid]);
            self.place(&mut shard, first, outcome, true);
            while let Some((v, outcome)) = iter.next_if(|(v, _)| v.shard == sid) {
                self.place(&mut shard, v, outcome, true);
            }
        }
    }

    /// Applies one victim's outcome to its slot: a written value is dropped
    /// from memory (`evict`) or kept as clean; one that cannot be serialized
    /// is pinned; one whose write failed goes back into the eviction order.
    /// If the value changed meanwhile (replaced, updated, removed, or written
    /// by a flush), the new object is garbage and is released.
    fn place(&self, shard: &mut Shard<K, V>, v: Victim<K, V>, outcome: Outcome, evict: bool) {
        if evict {
            self.inflight.fetch_sub(v.weight, Ordering::Relaxed);
        }
        let current = match shard.map.get_mut(&v.key) {
            Some(slot @ Slot::Resident(_)) => {
                let Slot::Resident(r) = &*slot else {
                    unreachable!()
                };
                if Arc::ptr_eq(&r.value, &v.value) && r.stored.is_none() {
                    Some(slot)
                } else {
                    None
                }
            }
            _ => None,
        };
        let Some(slot) = current else {
            if let Outcome::Written(loc) = outcome {
                self.store.release(loc);
            }
            return;
        };
        match outcome {
            Outcome::Written(loc) if evict => {
                *slot = Slot::Spilled(loc);
                self.usage.fetch_sub(v.weight, Ordering::Relaxed);
                Counters::add(&self.counters.evictions, 1);
            }
            Outcome::Written(loc) => {
                if let Slot::Resident(r) = slot {
                    r.stored = Some(loc);
                }
            }
            Outcome::Unserializable => {
                if let Slot::Resident(r) = slot {
                    r.pinned = true;
                }
                shard.dequeue(&v.key);
            }
            Outcome::WriteFailed => shard.enqueue(&v.key),
        }
    }

    /// Makes every entry durable: writes the values that have no stored copy,
    /// then the manifest. After a crash, a reopen sees the state of the last
    /// completed flush. Values that cannot be written stay in memory and their
    /// errors are returned (the manifest is written for all the others).
    pub fn flush(&self) -> Result<()> {
        self.check_writable()?;
        let _one_at_a_time = lock(&self.flush_lock);
        if !self.changed.swap(false, Ordering::Relaxed) && !self.store.has_garbage() {
            // Nothing changed since the last flush (or the open): the
            // durable state is already this one.
            return Ok(());
        }
        let result = self.flush_changes();
        if result.is_err() {
            self.changed.store(true, Ordering::Relaxed);
        }
        result
    }

    fn flush_changes(&self) -> Result<()> {
        let epoch = self.store.begin_flush();
        let mut errors = Vec::new();
        let mut manifest = ManifestWriter::default();
        let mut key_buf = Vec::new();
        let sparse = self.store.sparse_segments();
        for s in self.shards.iter() {
            let mut shard = lock(s);
            if !sparse.is_empty() {
                if let Err(e) = self.compact(&mut shard, &sparse) {
                    errors.push(e);
                }
            }
            let dirty: Vec<Victim<K, V>> = shard
                .map
                .iter()
                .filter_map(|(k, slot)| match slot {
                    Slot::Resident(r) if r.stored.is_none() => Some(Victim {
                        shard: 0,
                        key: k.clone(),
                        value: Arc::clone(&r.value),
                        weight: r.weight,
                    }),
                    _ => None,
                })
                .collect();
            let outcomes = self.encode_and_write(&dirty, &mut errors);
            for (v, outcome) in dirty.into_iter().zip(outcomes) {
                self.place(&mut shard, v, outcome, false);
            }
            for (key, slot) in shard.map.iter() {
                let Some(loc) = slot.stored() else { continue };
                key_buf.clear();
                match ciborium::into_writer(key, &mut key_buf) {
                    Ok(()) => manifest.push(&key_buf, loc),
                    Err(e) => errors.push(Error::Key {
                        key: format!("{key:?}"),
                        detail: e.to_string(),
                    }),
                }
            }
        }
        let bytes = self.store.finish_manifest(manifest, self.serializer.name());
        if let Err(e) = self.store.commit(epoch, bytes) {
            errors.insert(0, e);
        }
        join(errors)
    }

    /// Moves the live records of a shard out of mostly-dead segments into a
    /// new one, so the old segments can be deleted. Resident copies are simply
    /// marked dirty and rewritten by the flush.
    fn compact(&self, shard: &mut Shard<K, V>, sparse: &HashSet<u32>) -> Result<()> {
        let mut moving = Vec::new();
        for (key, slot) in shard.map.iter_mut() {
            match slot {
                Slot::Spilled(loc) if sparse.contains(&loc.obj.get()) => {
                    moving.push((key.clone(), *loc))
                }
                Slot::Resident(r) => {
                    if let Some(loc) = r.stored.filter(|l| sparse.contains(&l.obj.get())) {
                        r.stored = None;
                        self.store.release(loc);
                    }
                }
                Slot::Spilled(_) => {}
            }
        }
        let mut seg = SegmentBuf::default();
        let mut keys = Vec::new();
        for (key, loc) in moving {
            let Ok(bytes) = self.store.read(loc) else {
                // Unreadable: leave it where it is; `get` will report it.
                Counters::add(&self.counters.errors, 1);
                continue;
            };
            let start = seg.begin();
            seg.bytes.extend_from_slice(&bytes);
            seg.seal(start);
            keys.push(key);
            if seg.bytes.len() >= self.config.segment_bytes {
                self.repoint(shard, std::mem::take(&mut seg), &mut keys)?;
            }
        }
        if !seg.is_empty() {
            self.repoint(shard, seg, &mut keys)?;
        }
        Ok(())
    }

    /// Writes a segment of moved records and points their keys at it.
    fn repoint(&self, shard: &mut Shard<K, V>, seg: SegmentBuf, keys: &mut Vec<K>) -> Result<()> {
        let locs = self.store.write_segment(seg)?;
        for (key, loc) in keys.drain(..).zip(locs) {
            match shard.map.get_mut(&key) {
                Some(Slot::Spilled(old)) => {
                    let old = std::mem::replace(old, loc);
                    self.store.release(old);
                }
                _ => self.store.release(loc),
            }
        }
        Ok(())
    }

    /// Flushes (for a chest at a persistent location) and closes the chest,
    /// returning the errors that dropping it would have to ignore.
    pub fn close(self) -> Result<()> {
        self.closed.store(true, Ordering::Relaxed);
        if self.persistent && !self.config.read_only {
            self.flush()
        } else {
            Ok(())
        }
    }

    /// A snapshot of the chest's state and counters.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            len: self.len(),
            memory_usage: self.memory_usage(),
            memory_budget: self.config.budget,
            objects: self.store.object_count(),
            backend: self.store.backend().counters(),
            ..Stats::default()
        };
        stats.resident = self
            .shards
            .iter()
            .map(|s| {
                lock(s)
                    .map
                    .values()
                    .filter(|slot| matches!(slot, Slot::Resident(_)))
                    .count()
            })
            .sum();
        stats.fill(&self.counters);
        stats
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic in a user's `update` closure must not make the chest unusable.
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Drop for Chest<K, V, S> {
    fn drop(&mut self) {
        if self.persistent && !self.config.read_only && !self.closed.load(Ordering::Relaxed) {
            // Best effort; `close` returns the errors.
            let _ = self.flush();
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Debug for Chest<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chest")
            .field("location", &self.store.location())
            .field("len", &self.len.load(Ordering::Relaxed))
            .field("memory_usage", &self.usage.load(Ordering::Relaxed))
            .field("memory_budget", &self.config.budget)
            .finish()
    }
}
