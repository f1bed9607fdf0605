//! [`Chest`]: the map API. Keys are always known; values live in memory up
//! to the budget and in the backend beyond it.
//!
//! Each method is a call into the engine below ([`crate::engine`]): what a
//! chest holds is [`Inner`]; the states of an entry and what guards each
//! move are in [`crate::map::entry`].

use std::borrow::Borrow;
use std::fmt::{self, Debug};
use std::hash::Hash;
use std::sync::Arc;

use crate::backend::registry::OpenedBackend;
use crate::config::{Config, Key, Weigher};
use crate::engine::inner::Inner;
use crate::error::{Error, Result};
use crate::map::entry::{Resident, Slot};
use crate::map::policy::frequency::Freq;
use crate::map::shard::Shard;
use crate::stats::{Counters, Stats};
use crate::value::serializer::{Cbor, Serializer};

/// A dictionary whose values spill to a backend when they outgrow a memory budget.
///
/// All methods take `&self`; a chest is `Send + Sync` and can be shared by
/// threads (e.g. in an `Arc` or a scoped thread). Reads of values in memory
/// return a shared handle ([`Arc`]) without copying the value and without I/O;
/// no method does I/O while it holds a lock other threads need.
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
///
/// # Panics in user code
///
/// A serializer, deserializer or weigher that panics is caught: the call
/// returns [`Error::Panicked`] and the chest stays consistent (the value
/// concerned stays in memory). A panic in an [`update`](Chest::update)
/// closure propagates to the caller after the chest has recorded the
/// (possibly partial) change. A chest dropped while its thread is panicking
/// does not flush. A panic the chest cannot catch while it holds one of its
/// locks makes it refuse further changes ([`Error::Poisoned`]).
pub struct Chest<K: Key, V: Send + Sync + 'static, S: Serializer<V> = Cbor> {
    /// The map and its machinery, shared with the chest's background
    /// writers and readers (see [`crate::engine::writer`], [`crate::engine::readahead`]),
    /// which are joined when the chest is dropped.
    pub(crate) inner: Arc<Inner<K, V, S>>,
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    pub(crate) fn from_inner(mut inner: Inner<K, V, S>) -> Self {
        Self {
            inner: Arc::new_cyclic(|me| {
                inner.me = me.clone();
                inner
            }),
        }
    }

    /// Where the chest lives (its backend's location, usually a URL).
    pub fn location(&self) -> &str {
        self.inner.location()
    }

    /// The memory budget in bytes.
    pub fn memory_budget(&self) -> usize {
        self.inner.config.budget
    }

    /// Bytes of values held in memory now (by their weight, which adds the
    /// chest's own bookkeeping of about a hundred bytes a value), those
    /// being written by the background writers included.
    pub fn memory_usage(&self) -> usize {
        self.inner.memory_usage()
    }

    /// Number of keys.
    pub fn len(&self) -> usize {
        self.inner.len()
    }

    /// `true` if the chest holds no key.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Newer manifests that were found damaged at open and skipped, falling
    /// back to the newest readable one (each with what was wrong). Empty
    /// unless a flush was cut short by a machine crash on a store that does
    /// not make [`put_durable`](crate::BackendExt::put_durable) durable; then
    /// the chest holds the state of the flush before it.
    pub fn damaged_manifests(&self) -> &[String] {
        &self.inner.skipped_manifests
    }

    /// Inserts or replaces a value. When memory nears the budget, the
    /// coldest values are handed to the background writer to be spilled;
    /// the insert returns while they are written, unless the writer has
    /// fallen behind and memory is over the budget: then it waits for room.
    /// Errors of earlier spills not yet reported (naming their keys) are
    /// returned, but the inserted value is kept (in memory) either way, and
    /// so are the values whose spill failed: nothing is lost.
    ///
    /// A value heavier than the whole budget is written straight to the
    /// backend (with no lock held); if that fails it is kept in memory and
    /// the error returned.
    pub fn insert(&self, key: K, value: V) -> Result<()> {
        self.inner.check_writable()?;
        let weight = self.inner.weigh(&key, &value)?;
        let value = Arc::new(value);
        if weight > self.inner.config.budget {
            return self.insert_heavy(key, value, weight);
        }
        let mut shard = self.inner.shard(&key);
        self.put_resident(&mut shard, key, value, weight);
        self.inner.bump();
        drop(shard);
        self.inner.store.reap();
        self.inner.enforce_budget();
        self.inner.report()
    }

    /// Writes a value heavier than the budget as an object of its own, then
    /// points the key at it.
    fn insert_heavy(&self, key: K, value: Arc<V>, weight: usize) -> Result<()> {
        let written = self.inner.write_alone(&key, &value, weight);
        let mut shard = self.inner.shard(&key);
        match written {
            Ok(loc) => {
                let old = shard.map.insert(key.clone(), Slot::Spilled(loc));
                self.forget(&mut shard, &key, old);
                self.inner.bump();
                drop(shard);
                self.inner.store.reap();
                Ok(())
            }
            Err(e) => {
                // Kept in memory so nothing is lost; a value that cannot be
                // serialized is pinned there rather than retried by every eviction.
                let unserializable = matches!(e, Error::Serialize { .. } | Error::Panicked { .. });
                self.put_resident(&mut shard, key.clone(), value, weight);
                if unserializable {
                    if let Some(Slot::Resident(r)) = shard.map.get_mut(&key) {
                        r.pinned = true;
                    }
                    shard.dequeue(&key);
                }
                self.inner.bump();
                drop(shard);
                Counters::add(&self.inner.counters.errors, 1);
                Err(e)
            }
        }
    }

    /// Makes `value` the resident, dirty value of `key`.
    pub(crate) fn put_resident(
        &self,
        shard: &mut Shard<K, V>,
        key: K,
        value: Arc<V>,
        weight: usize,
    ) {
        let tick = shard.tick();
        let mut resident = Resident::new(value, weight, tick, None);
        resident.freq = Freq::new(1, shard.counting().unwrap_or(0));
        let slot = Slot::Resident(resident);
        let old = shard.map.insert(key.clone(), slot);
        self.inner.budget.admit(weight);
        self.forget(shard, &key, old);
        shard.enqueue(&key);
    }

    /// Takes a slot that leaves the map (or its resident state) out of the
    /// memory counters.
    pub(crate) fn unaccount(&self, old: &Slot<V>) {
        if let Slot::Resident(r) = old {
            self.inner.budget.release(r.weight);
        }
    }

    /// Accounts for a replaced or removed slot (the key's new slot, if any,
    /// is already in the map).
    pub(crate) fn forget(&self, shard: &mut Shard<K, V>, key: &K, old: Option<Slot<V>>) {
        match old {
            None => {
                self.inner.keys_added(1);
            }
            Some(old) => {
                self.unaccount(&old);
                if let Some(loc) = old.stored() {
                    self.inner.store.release(loc);
                }
                if !matches!(shard.map.get(key), Some(Slot::Resident(_))) {
                    shard.dequeue(key);
                }
            }
        }
    }

    /// The value of `key`, loading it from the backend if it was spilled
    /// (with no lock held; concurrent readers of a large value, or of one to
    /// be kept, share one read).
    /// A hit in memory copies nothing and does no I/O. A loaded value stays
    /// in memory as the chest's [`crate::Admission`] says: by
    /// default when it is loaded a second time within a while, so that
    /// values read once do not push out the values in use.
    pub fn get<Q>(&self, key: &Q) -> Result<Option<Arc<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        Ok(self.inner.fetch(key, false)?.map(|f| f.value))
    }

    /// Changes a value in place: `f` gets it mutably (loaded first if it was
    /// spilled; copied first if a reader still holds a handle to it). The
    /// stored copy is rewritten on the next spill or flush. Returns what `f`
    /// returns, or `None` if the key is absent.
    ///
    /// `f` runs under the lock of the key's shard: it must not call back into
    /// this chest. If `f` panics, the panic goes on to the caller; the value
    /// keeps whatever `f` did to it before panicking, and is written as it is.
    pub fn update<Q, R>(&self, key: &Q, f: impl FnOnce(&mut V) -> R) -> Result<Option<R>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
        V: Clone,
    {
        self.modify(key, f, None::<(K, fn() -> V)>)
    }

    /// Removes a key and its value, in memory and in the backend. Returns
    /// whether the key was present.
    pub fn remove<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        self.inner.check_writable()?;
        let mut shard = self.inner.shard(key);
        let removed = self.remove_slot(&mut shard, key);
        drop(shard);
        self.inner.store.reap();
        Ok(removed.is_some())
    }

    /// Takes `key` out of the map, with its accounting; the caller reaps
    /// once the lock is released.
    pub(crate) fn remove_slot<Q>(&self, shard: &mut Shard<K, V>, key: &Q) -> Option<Slot<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let old = shard.map.remove(key)?;
        shard.dequeue(key);
        self.inner.keys_removed(1);
        self.unaccount(&old);
        if let Some(loc) = old.stored() {
            self.inner.store.release(loc);
        }
        self.inner.bump();
        Some(old)
    }

    /// `true` if the chest holds `key` (in memory or spilled). No I/O.
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.shard(key).map.contains_key(key)
    }

    /// A snapshot of every key, in no particular order. No I/O.
    pub fn keys(&self) -> Vec<K> {
        let mut keys = Vec::with_capacity(self.inner.len());
        for i in 0..self.inner.shards.len() {
            keys.extend(self.inner.lock_shard(i).map.keys().cloned());
        }
        keys
    }

    /// Every key with its value, loading spilled values as it goes (which
    /// may spill others). Keys removed meanwhile are skipped. On a backend
    /// that reads several objects at once (S3), the next few values are
    /// prefetched together.
    pub fn iter(&self) -> impl Iterator<Item = Result<(K, Arc<V>)>> + '_ {
        let window = self
            .inner
            .store
            .backend()
            .capabilities()
            .write_concurrency
            .max(1);
        let mut keys = self.iter_keys();
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

    /// Flushes (for a chest at a persistent location) and closes the chest,
    /// returning the errors that dropping it would have to ignore (those of
    /// background writes not yet reported included).
    pub fn close(self) -> Result<()> {
        self.inner.mark_closed();
        if self.inner.persistent && !self.inner.config.read_only {
            self.flush()
        } else {
            self.inner.wait_written();
            self.inner.report()
        }
    }

    /// A snapshot of the chest's state and counters.
    pub fn stats(&self) -> Stats {
        let mut stats = Stats {
            len: self.inner.len(),
            memory_usage: self.memory_usage(),
            memory_budget: self.inner.config.budget,
            objects: self.inner.store.object_count(),
            stored_bytes: self.inner.store.stored_bytes(),
            backend: self.inner.store.backend().counters(),
            ..Stats::default()
        };
        stats.resident = self.inner.budget.resident();
        stats.fill(&self.inner.counters);
        stats.hits += self.inner.pending_hits();
        stats
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    /// Makes every entry durable: waits for the values being written by the
    /// background writers, writes the values that have no stored copy, then
    /// the manifest. After a crash, a reopen sees the state of the last
    /// completed flush (or a later one).
    ///
    /// Errors: if a value's write fails (disk full, network down), nothing
    /// is committed — the last flush's state stays the durable one — and the
    /// values stay in memory for the next flush. A value that cannot be
    /// serialized stays in memory and out of the manifest (its key is not
    /// durable until it can be written); the others are committed.
    ///
    /// A background write that failed since the last call that returned
    /// errors is returned too ([`Error::Write`], naming its keys), even when
    /// this flush then wrote those values itself and committed: a failing
    /// store is always heard of. So an error from `flush` means "something
    /// failed", not always "nothing is durable": call `flush` again; when it
    /// returns `Ok`, every change made before it is durable.
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }

    /// Checks the chest's invariants (see the module's code for the list);
    /// with `quiescent` (no call of the chest in progress), the background
    /// writes are waited for first, and the check is exact.
    ///
    /// Returns what is wrong. For tests; it costs a pass over every key.
    #[doc(hidden)]
    pub fn check_invariants(&self, quiescent: bool) -> Result<(), String> {
        self.inner.check_invariants(quiescent)
    }

    /// Opens the chest on a backend: recovers its index, then shares it
    /// with the background writers to come.
    pub(crate) fn from_parts(
        config: Config,
        serializer: S,
        weigher: Weigher<V>,
        opened: OpenedBackend,
    ) -> Result<Self> {
        let inner = Inner::from_parts(config, serializer, weigher, opened)?;
        Ok(Self::from_inner(inner))
    }

    /// Starts loading the given keys' values in the background and returns
    /// at once: each is read (together, where the backend reads several
    /// objects at once) and kept in memory, and a `get` of a key still on
    /// its way waits for its load instead of reading it again. Returns how
    /// many loads were started; keys that are absent, in memory or being
    /// loaded are skipped.
    ///
    /// The readers load the keys as [`prefetch`](Chest::prefetch) does, a
    /// chunk at a time with room reserved for each, so the values read
    /// ahead never take memory past the budget (a reader waits for room
    /// while writes or other loads are on their way). Keep the keys read
    /// ahead (those on their way and those not yet used) to what fits the
    /// budget, or they push each other out. A failed read is reported by
    /// the `get` of its key, which reads it again itself.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(64 << 10).open("memory://")?;
    /// for i in 0..64 {
    ///     c.insert(i, vec![i as u8; 4096])?;
    /// }
    /// let keys: Vec<u32> = (0..64).collect();
    /// let mut windows = keys.chunks(4);
    /// let mut next = windows.next();
    /// if let Some(first) = next {
    ///     c.read_ahead(first.iter().copied());
    /// }
    /// while let Some(window) = next {
    ///     next = windows.next();
    ///     if let Some(following) = next {
    ///         c.read_ahead(following.iter().copied()); // on its way while this window is used
    ///     }
    ///     for k in window {
    ///         assert_eq!(c.get(k)?.unwrap()[0], *k as u8);
    ///     }
    /// }
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn read_ahead(&self, keys: impl IntoIterator<Item = K>) -> usize {
        self.inner.read_ahead(keys)
    }

    /// Loads the given keys' values into memory ahead of use, reading them
    /// from the backend at once where it can (S3: concurrent requests).
    /// Prefetch a window that fits the budget: values beyond it push out
    /// others. Returns how many were loaded; keys that are absent, already
    /// in memory or being loaded are skipped.
    ///
    /// The window is read a chunk at a time (a quarter of the budget at
    /// most), each with room reserved first — the coldest values are
    /// evicted for it, and the call waits while writes or other loads on
    /// their way hold the room — so the values in memory and those on their
    /// way stay within the budget, however large the window.
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
        self.inner.prefetch(keys)
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Drop for Chest<K, V, S> {
    fn drop(&mut self) {
        let skip = std::thread::panicking()
            || !self.inner.config.flush_on_drop
            || !self.inner.persistent
            || self.inner.config.read_only
            || self.inner.is_closed()
            || self.inner.is_poisoned();
        // The readers and writers stop once the flush is over, even if it panics.
        let _stop = StopWriters(&self.inner);
        if !skip {
            // Best effort; `close` returns the errors. A failure loses the
            // changes since the last completed flush: said loudly.
            if let Err(e) = self.flush() {
                self.inner.report_lost_on_drop(&e);
            }
        }
    }
}

/// Stops a chest's background readers, then its writers, when dropped (see
/// [`Inner::stop_readers`] and [`Inner::stop_writers`]).
struct StopWriters<'a, K: Key, V: Send + Sync + 'static, S: Serializer<V>>(&'a Inner<K, V, S>);

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Drop for StopWriters<'_, K, V, S> {
    fn drop(&mut self) {
        // Readers first: a reader making room may hand the writers a batch.
        self.0.stop_readers();
        self.0.stop_writers();
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Debug for Chest<K, V, S> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Chest")
            .field("location", &self.inner.store.location())
            .field("len", &self.inner.len())
            .field("memory_usage", &self.inner.budget.usage())
            .field("memory_budget", &self.inner.config.budget)
            .finish()
    }
}
