//! What is in memory, and moving values out of it on demand — for callers
//! that manage memory themselves: a worker's memory monitor that evicts
//! when the process (not the chest) is over its limit, the Python seed
//! API's `move_to_disk` and `flush`, a tool that shows where a key's stored
//! copy lives.

use std::borrow::Borrow;
use std::hash::Hash;
use std::sync::Arc;

use crate::api::chest::Chest;
use crate::config::Key;
use crate::engine::locks::join;
use crate::error::Result;
use crate::map::entry::Slot;
use crate::stats::Counters;
use crate::store::object_name;
use crate::value::serializer::Serializer;

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    /// Whether `key`'s value is in memory now (a `get` of it does no I/O).
    /// `false` for a key the chest does not hold. No I/O.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(64 << 10).open("memory://")?;
    /// c.insert(1, vec![1; 1000])?;
    /// assert!(c.is_in_memory(&1));
    /// c.spill(&1)?;                        // written now, and out of memory
    /// assert!(!c.is_in_memory(&1) && c.contains_key(&1));
    /// assert_eq!(c.keys_in_memory(), Vec::<u32>::new());
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn is_in_memory<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        matches!(self.inner.shard(key).map.get(key), Some(Slot::Resident(_)))
    }

    /// `key`'s value if it is in memory now (a hit, counted and marked used
    /// as a `get`'s), else `None` — also for a spilled value: this never
    /// reads the store, nor waits for a load. For callers that must not
    /// block (a thread holding a lock a loader may need), and for a hit
    /// path without the cost of a possible miss.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().open("memory://")?;
    /// c.insert(1, vec![1; 10])?;
    /// assert_eq!(c.get_in_memory(&1).as_deref(), Some(&vec![1; 10]));
    /// c.spill(&1)?;
    /// assert_eq!(c.get_in_memory(&1), None);       // spilled: not read
    /// assert!(c.get(&1)?.is_some());               // a get reads it
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn get_in_memory<Q>(&self, key: &Q) -> Option<Arc<V>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let mut shard = self.inner.shard(key);
        let tick = shard.tick();
        match shard.map.get_mut(key) {
            Some(Slot::Resident(r)) => {
                r.tick = tick;
                let value = Arc::clone(&r.value);
                if let Some(n) = shard.count_hit() {
                    Counters::add(&self.inner.counters.hits, n);
                }
                Some(value)
            }
            _ => None,
        }
    }

    /// How many values are in memory now (a counter: no I/O, no lock).
    pub fn len_in_memory(&self) -> usize {
        self.inner.budget.resident()
    }

    /// The keys whose values are in memory now, in no particular order.
    /// No I/O; each shard is looked at under its lock in turn, so a key
    /// that moves meanwhile may be missed or listed.
    pub fn keys_in_memory(&self) -> Vec<K> {
        let mut keys = Vec::new();
        for i in 0..self.inner.shards.len() {
            let shard = self.inner.lock_shard(i);
            keys.extend(
                shard
                    .map
                    .iter()
                    .filter(|(_, slot)| matches!(slot, Slot::Resident(_)))
                    .map(|(k, _)| k.clone()),
            );
        }
        keys
    }

    /// The name of the stored object (in the chest's backend) that holds
    /// `key`'s stored copy, if it has one: `None` for a key whose value is
    /// only in memory (not written since it changed) or that the chest does
    /// not hold. A small value shares its object (a segment) with others;
    /// the object holds records with checksums, not the bare serialized
    /// value. No I/O.
    pub fn stored_object<Q>(&self, key: &Q) -> Option<String>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let loc = self.inner.shard(key).map.get(key)?.stored()?;
        Some(object_name(loc.obj).to_string())
    }

    /// Moves `key`'s value out of memory now: writes it (on this thread)
    /// if its stored copy is not current, then drops it from memory, as
    /// eviction would. Returns whether the value was in memory. A value
    /// that cannot be written (its serializer fails) stays in memory and the
    /// error is returned, naming the key; so does one whose write fails.
    pub fn spill<Q>(&self, key: &Q) -> Result<bool>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.inner.check_writable()?;
        loop {
            let mut shard = self.inner.shard(key);
            let Some((k, Slot::Resident(r))) = shard.map.get_key_value(key) else {
                return Ok(false);
            };
            let (k, stored, evicting) = (k.clone(), r.stored, r.evicting);
            if let Some(loc) = stored {
                // Clean: the stored copy is current; drop the value.
                let slot = shard.map.get_mut(key).expect("present under the lock");
                self.inner.spill_resident(slot, loc);
                shard.dequeue(key);
                Counters::add(&self.inner.counters.evictions, 1);
                return Ok(true);
            }
            if evicting {
                // A background writer is writing it: wait for its batch, look again.
                drop(shard);
                self.inner.wait_written();
                continue;
            }
            if let Some(Slot::Resident(r)) = shard.map.get_mut(key) {
                // A value that failed to serialize is tried again, on request.
                r.pinned = false;
            }
            let victim = self
                .inner
                .take_one(&mut shard, k)
                .expect("a resident, dirty value not being written is a victim");
            drop(shard);
            self.inner.write_batch(vec![victim], true)?;
            return Ok(true);
        }
    }

    /// Evicts the coldest values, on this thread, until at least `bytes`
    /// of memory are freed or nothing more can be (what is left is pinned
    /// or on its way out): dirty values are written first, clean ones
    /// dropped. Returns the bytes of memory freed (as the budget counts
    /// them; other threads' calls meanwhile count too). Values whose write
    /// fails stay in memory, and the error is returned.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(1 << 20).open("memory://")?;
    /// for i in 0..10 {
    ///     c.insert(i, vec![0; 10_000])?;
    /// }
    /// let freed = c.evict(25_000)?;           // the three coldest values
    /// assert!(freed >= 25_000 && c.keys_in_memory().len() < 10);
    /// assert_eq!(c.evict(usize::MAX)? > 0, true);    // everything
    /// assert!(c.keys_in_memory().is_empty() && c.len() == 10);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn evict(&self, bytes: usize) -> Result<usize> {
        let budget = &self.inner.budget;
        let before = budget.usage();
        let target = budget.staying().saturating_sub(bytes);
        let mut errors = Vec::new();
        while budget.staying() > target {
            // Clean values are dropped as they are found; dirty ones come back.
            let victims = self.inner.pick_victims(target, 0);
            if victims.is_empty() {
                // Every shard was looked at: what is left cannot go now.
                break;
            }
            errors.extend(self.inner.write_victims(victims, true));
            if !errors.is_empty() {
                break;
            }
        }
        join(errors)?;
        Ok(before.saturating_sub(budget.usage()))
    }
}
