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
            let per_shard = m.len / self.shards.len() + 1;
            let mut shards: Vec<_> = self.shards.iter().map(|s| lock(s)).collect();
            for shard in &mut shards {
                shard.map.reserve(per_shard + per_shard / 8);
            }
            for (bytes, loc) in m.entries() {
                let key: K = ciborium::from_reader(bytes).map_err(|e| Error::Key {
                    key: "<undecodable>".into(),
                    detail: format!("manifest of {}: {e}", self.location()),
                })?;
                let i = self.shard_of(&key);
                if shards[i].map.insert(key, Slot::Spilled(loc)).is_none() {
                    self.len.fetch_add(1, Ordering::Relaxed);
                }
            }
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
        let object = || object_name(loc.obj);
        let bytes = self.store.read(loc).map_err(|e| match e {
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
            if let Some((k, slot)) = shard.map.get_key_value(key) {
                let k = k.clone();
                let _ = slot;
                shard.map.insert(
                    k.clone(),
                    Slot::Resident(Box::new(Resident {
                        value: Arc::clone(&value),
                        weight,
                        tick,
                        stored: Some(loc),
                        pinned: false,
                    })),
                );
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
    /// may spill others). Keys removed meanwhile are skipped.
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, Arc<V>)>> + '_ {
        self.keys()
            .into_iter()
            .filter_map(move |k| match self.get(&k) {
                Ok(Some(v)) => Some(Ok((k, v))),
                Ok(None) => None,
                Err(e) => Some(Err(e)),
            })
    }

    /// Loads the given keys' values into memory ahead of use, as far as the
    /// budget allows. Returns how many were loaded.
    pub fn prefetch<'q, Q>(&self, keys: impl IntoIterator<Item = &'q Q>) -> Result<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized + 'q,
    {
        let mut loaded = 0;
        for key in keys {
            let mut shard = self.shard(key);
            if let Some(Slot::Spilled(loc)) = shard.map.get(key) {
                let loc = *loc;
                self.load(&mut shard, key, loc)?;
                loaded += 1;
            }
            drop(shard);
            if self.memory_usage() >= self.config.budget {
                break;
            }
        }
        let _ = self.enforce_budget(); // counted in the stats, as for `get`
        Ok(loaded)
    }

    /// Spills the coldest values until memory is within the budget (down to
    /// a low-water mark, so spills come in batches that pack well).
    fn enforce_budget(&self) -> Result<()> {
        let budget = self.config.budget;
        if self.memory_usage() <= budget {
            return Ok(());
        }
        let target = budget - self.config.evict_batch.min(budget);
        let n = self.shards.len();
        let chunk = (self.config.evict_batch / n).max(1);
        let mut errors = Vec::new();
        let mut idle = 0;
        while self.memory_usage() > target && idle < n {
            let i = self.cursor.fetch_add(1, Ordering::Relaxed) % n;
            let mut shard = lock(&self.shards[i]);
            let (freed, errs) = self.evict(&mut shard, chunk, target);
            drop(shard);
            let failed = !errs.is_empty();
            errors.extend(errs);
            if freed == 0 || failed {
                idle += 1;
            } else {
                idle = 0;
            }
        }
        Counters::add(&self.counters.errors, errors.len() as u64);
        join(errors)
    }

    /// Evicts the coldest values of one shard, about `chunk` bytes of them.
    /// Returns the bytes freed and the errors met.
    fn evict(&self, shard: &mut Shard<K, V>, chunk: usize, target: usize) -> (usize, Vec<Error>) {
        let mut freed = 0;
        let mut dirty = Vec::new();
        let mut planned = 0;
        while freed + planned < chunk && self.memory_usage().saturating_sub(planned) > target {
            let Some(key) = shard.pop_coldest() else {
                break;
            };
            let Some(slot) = shard.map.get_mut(&key) else {
                continue;
            };
            let Slot::Resident(r) = slot else { continue };
            match r.stored {
                Some(loc) => {
                    // Clean: an identical copy is stored; drop it without a write.
                    let w = r.weight;
                    *slot = Slot::Spilled(loc);
                    self.usage.fetch_sub(w, Ordering::Relaxed);
                    Counters::add(&self.counters.evictions, 1);
                    freed += w;
                }
                None => {
                    planned += r.weight;
                    dirty.push(key);
                }
            }
        }
        let (more, errors) = self.write_back(shard, dirty, true);
        (freed + more, errors)
    }

    /// Writes the given resident, dirty values to the backend (large ones
    /// alone, small ones packed into segments). With `evict`, they leave
    /// memory once written; otherwise they stay, clean. Values that fail stay
    /// in memory, dirty; the errors are returned.
    fn write_back(
        &self,
        shard: &mut Shard<K, V>,
        keys: Vec<K>,
        evict: bool,
    ) -> (usize, Vec<Error>) {
        let mut freed = 0;
        let mut errors = Vec::new();
        let mut seg = SegmentBuf::default();
        let mut seg_keys: Vec<K> = Vec::new();
        // Large values, each to be an object of its own, written together
        // (concurrently, where the backend can).
        let mut wholes: Vec<(K, Vec<u8>)> = Vec::new();
        let mut whole_bytes = 0;
        let mut keys = keys.into_iter();
        while let Some(key) = keys.next() {
            let Some(Slot::Resident(r)) = shard.map.get_mut(&key) else {
                continue;
            };
            if r.stored.is_some() {
                continue;
            }
            let large = r.weight >= self.config.large_value;
            let mut own = Vec::new();
            let buf = if large {
                own.reserve(r.weight.saturating_add(4).min(1 << 30));
                &mut own
            } else {
                &mut seg.bytes
            };
            let start = buf.len();
            if let Err(source) = self.serializer.serialize(&r.value, buf) {
                buf.truncate(start);
                let e = Error::Serialize {
                    key: format!("{key:?}"),
                    source,
                };
                self.failed(shard, &key, &e);
                errors.push(e);
                continue;
            }
            if !large && seg.bytes.len() - start >= self.config.large_value {
                // Lighter by weight than by bytes: give it an object of its own.
                own = seg.bytes.split_off(start);
            }
            if large || !own.is_empty() {
                whole_bytes += own.len();
                wholes.push((key, seal_whole(own)));
            } else {
                seg.seal(start);
                seg_keys.push(key);
            }
            let result = if whole_bytes >= WHOLE_BATCH_BYTES || wholes.len() >= WHOLE_BATCH_COUNT {
                whole_bytes = 0;
                self.write_wholes(shard, &mut wholes, evict)
            } else if seg.bytes.len() >= self.config.segment_bytes {
                self.write_segment(shard, std::mem::take(&mut seg), &mut seg_keys, evict)
            } else {
                Ok(0)
            };
            match result {
                Ok(n) => freed += n,
                Err(e) => {
                    errors.push(e);
                    let pending = wholes.drain(..).map(|(k, _)| k);
                    self.requeue(
                        shard,
                        keys.by_ref().chain(seg_keys.drain(..)).chain(pending),
                        evict,
                    );
                    return (freed, errors);
                }
            }
        }
        for result in [
            self.write_wholes(shard, &mut wholes, evict),
            self.write_segment(shard, seg, &mut seg_keys, evict),
        ] {
            match result {
                Ok(n) => freed += n,
                Err(e) => errors.push(e),
            }
        }
        (freed, errors)
    }

    /// Writes large values' records, one object each, and places them; on
    /// failure they stay dirty.
    fn write_wholes(
        &self,
        shard: &mut Shard<K, V>,
        wholes: &mut Vec<(K, Vec<u8>)>,
        evict: bool,
    ) -> Result<usize> {
        if wholes.is_empty() {
            return Ok(0);
        }
        let (keys, records): (Vec<K>, Vec<Vec<u8>>) = wholes.drain(..).unzip();
        let n: u64 = records.iter().map(|r| r.len() as u64 - 4).sum();
        match self.store.write_wholes(records) {
            Ok(locs) => {
                Counters::add(&self.counters.spills, locs.len() as u64);
                Counters::add(&self.counters.bytes_written, n);
                Ok(keys
                    .iter()
                    .zip(locs)
                    .map(|(key, loc)| self.place(shard, key, loc, evict))
                    .sum())
            }
            Err(e) => {
                for key in &keys {
                    self.failed(shard, key, &e);
                }
                Err(e)
            }
        }
    }

    /// Writes a segment and places its values; on failure they stay dirty.
    fn write_segment(
        &self,
        shard: &mut Shard<K, V>,
        seg: SegmentBuf,
        keys: &mut Vec<K>,
        evict: bool,
    ) -> Result<usize> {
        if seg.is_empty() {
            return Ok(0);
        }
        let n = seg.bytes.len() as u64 - 4 * seg.records.len() as u64;
        match self.store.write_segment(seg) {
            Ok(locs) => {
                Counters::add(&self.counters.spills, locs.len() as u64);
                Counters::add(&self.counters.bytes_written, n);
                let mut freed = 0;
                for (key, loc) in keys.drain(..).zip(locs) {
                    freed += self.place(shard, &key, loc, evict);
                }
                Ok(freed)
            }
            Err(e) => {
                self.requeue(shard, keys.drain(..), evict);
                Err(e)
            }
        }
    }

    /// A value was written at `loc`: record it, and evict it if asked.
    fn place(&self, shard: &mut Shard<K, V>, key: &K, loc: Loc, evict: bool) -> usize {
        let Some(slot) = shard.map.get_mut(key) else {
            self.store.release(loc);
            return 0;
        };
        match slot {
            Slot::Resident(r) if evict => {
                let w = r.weight;
                *slot = Slot::Spilled(loc);
                self.usage.fetch_sub(w, Ordering::Relaxed);
                Counters::add(&self.counters.evictions, 1);
                w
            }
            Slot::Resident(r) => {
                r.stored = Some(loc);
                0
            }
            Slot::Spilled(_) => {
                self.store.release(loc);
                0
            }
        }
    }

    /// A value could not be written: it stays resident. One that cannot be
    /// serialized is pinned (kept out of the eviction order) until replaced.
    fn failed(&self, shard: &mut Shard<K, V>, key: &K, e: &Error) {
        if let Some(Slot::Resident(r)) = shard.map.get_mut(key) {
            if matches!(e, Error::Serialize { .. }) {
                r.pinned = true;
                shard.dequeue(key);
            } else {
                shard.enqueue(key);
            }
        }
    }

    fn requeue(&self, shard: &mut Shard<K, V>, keys: impl Iterator<Item = K>, evict: bool) {
        if evict {
            for k in keys {
                shard.enqueue(&k);
            }
        }
    }

    /// Makes every entry durable: writes the values that have no stored copy,
    /// then the manifest. After a crash, a reopen sees the state of the last
    /// completed flush. Values that cannot be written stay in memory and their
    /// errors are returned (the manifest is written for all the others).
    pub fn flush(&self) -> Result<()> {
        self.check_writable()?;
        let _one_at_a_time = lock(&self.flush_lock);
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
            let dirty: Vec<K> = shard
                .map
                .iter()
                .filter(|(_, slot)| matches!(slot, Slot::Resident(r) if r.stored.is_none()))
                .map(|(k, _)| k.clone())
                .collect();
            let (_, errs) = self.write_back(&mut shard, dirty, false);
            errors.extend(errs);
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
