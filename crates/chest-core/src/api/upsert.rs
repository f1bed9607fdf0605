//! Changes that are atomic per key: update in place, get-or-insert,
//! update-or-insert, replace and take (the last two return the old value,
//! loading it if it was spilled).
//!
//! Each one looks at the key under its shard's lock. If the value is
//! spilled, the lock is dropped, the value is loaded (see [`crate::engine::load`]),
//! and the key is looked at again: the change is made only if the key still
//! holds what was loaded, otherwise it starts over. User code (`f`,
//! `default`) runs under the lock, once, and only when the change is made;
//! a panic in it is caught, the chest made consistent, and the panic
//! resumed once the lock is released.

use std::borrow::Borrow;
use std::fmt::Debug;
use std::hash::Hash;
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::Arc;

use crate::api::chest::Chest;
use crate::config::Key;
use crate::error::Result;
use crate::map::entry::{Resident, Slot};
use crate::map::shard::Shard;
use crate::value::serializer::Serializer;
use std::sync::MutexGuard;

/// A shard's lock, held.
type Locked<'a, K, V> = MutexGuard<'a, Shard<K, V>>;

/// What a look at a key under its lock found.
enum Found {
    /// Resident: the lock is held, the change can be made.
    Here,
    /// Absent.
    Absent,
    /// Spilled or being loaded: to load with the lock released.
    Gone,
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    /// Locks `key`'s shard with its value resident (loading it first if it
    /// was spilled), or reports it absent (`Err(shard)`: the lock is held).
    fn lock_resident<'a, Q>(
        &'a self,
        key: &Q,
    ) -> Result<std::result::Result<Locked<'a, K, V>, Locked<'a, K, V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        loop {
            let shard = self.inner.shard(key);
            let found = match shard.map.get(key) {
                None => Found::Absent,
                Some(Slot::Resident(_)) => Found::Here,
                Some(Slot::Spilled(_) | Slot::Loading(_)) => Found::Gone,
            };
            let fetched = match found {
                Found::Here => return Ok(Ok(shard)),
                Found::Absent => return Ok(Err(shard)),
                _ => {
                    drop(shard);
                    self.inner.fetch(key, true)?
                }
            };
            match fetched {
                // Removed while it was being loaded: look again.
                None => continue,
                Some(fetched) => {
                    let mut shard = self.inner.shard(key);
                    let tick = shard.tick();
                    match shard.map.get_mut(key) {
                        Some(Slot::Resident(_)) => return Ok(Ok(shard)),
                        Some(slot @ Slot::Spilled(_)) if slot.stored() == Some(fetched.loc) => {
                            // Heavier than the budget, so not kept resident by
                            // the load: resident for this change, written out
                            // right after it if it is still that heavy.
                            *slot = Slot::Resident(Resident::new(
                                fetched.value,
                                fetched.weight,
                                tick,
                                Some(fetched.loc),
                            ));
                            self.inner.budget.admit(fetched.weight);
                            shard.enqueue_key(key);
                            return Ok(Ok(shard));
                        }
                        // Changed meanwhile: look again.
                        _ => continue,
                    }
                }
            }
        }
    }

    /// Runs `default` (a panic in it is resumed after the lock is dropped)
    /// and weighs its value.
    fn make_value<'a>(
        &'a self,
        shard: Locked<'a, K, V>,
        key: &K,
        default: impl FnOnce() -> V,
    ) -> Result<(Locked<'a, K, V>, Arc<V>, usize)> {
        let value = match catch_unwind(AssertUnwindSafe(default)) {
            Ok(v) => v,
            Err(payload) => {
                drop(shard);
                resume_unwind(payload)
            }
        };
        let weight = self.inner.weigh(key, &value)?;
        Ok((shard, Arc::new(value), weight))
    }

    /// The change behind `update` and `update_or_insert`: `f` on the value
    /// of `key`, made resident first; if `key` is absent, `insert` (the key
    /// and a maker of its first value) inserts one first, or `None` is
    /// returned.
    pub(crate) fn modify<Q, R, D>(
        &self,
        key: &Q,
        f: impl FnOnce(&mut V) -> R,
        insert: Option<(K, D)>,
    ) -> Result<Option<R>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
        V: Clone,
        D: FnOnce() -> V,
    {
        self.inner.check_writable()?;
        let mut shard = match self.lock_resident(key)? {
            Ok(shard) => shard,
            Err(shard) => {
                let Some((k, default)) = insert else {
                    return Ok(None);
                };
                let (mut shard, value, weight) = self.make_value(shard, &k, default)?;
                self.put_resident(&mut shard, k, value, weight);
                shard
            }
        };
        let tick = shard.tick();
        let Some(Slot::Resident(r)) = shard.map.get_mut(key) else {
            unreachable!("the value is resident under the same lock")
        };
        // Dirty before `f` runs, so a panic in `f` cannot leave a stale stored copy.
        if let Some(old) = r.stored.take() {
            self.inner.store.release(old);
        }
        r.pinned = false;
        r.evicting = false;
        r.tick = tick;
        let outcome = catch_unwind(AssertUnwindSafe(|| f(Arc::make_mut(&mut r.value))));
        let weighed = self.inner.weigh(key, &r.value);
        let weight = *weighed.as_ref().unwrap_or(&r.weight);
        let old_weight = std::mem::replace(&mut r.weight, weight);
        self.inner.budget.reweigh(old_weight, weight);
        let k = shard
            .map
            .get_key_value(key)
            .map(|(k, _)| k.clone())
            .expect("present under the same lock");
        shard.enqueue(&k);
        self.inner.bump();
        // A value now heavier than the whole budget leaves memory at once
        // (unless `f` or the weigher failed: then it leaves by eviction).
        let heavy = (weight > self.inner.config.budget && outcome.is_ok() && weighed.is_ok())
            .then(|| self.inner.take_one(&mut shard, k));
        drop(shard);
        self.inner.store.reap();
        let out = match outcome {
            Ok(out) => out,
            Err(payload) => resume_unwind(payload),
        };
        weighed?;
        match heavy.flatten() {
            Some(victim) => self.inner.write_batch(vec![victim], true)?,
            None => {
                self.inner.enforce_budget();
                self.inner.report()?;
            }
        }
        Ok(Some(out))
    }

    /// Changes the value of `key` in place with `f`, inserting
    /// `default()` first if the key is absent — atomically: no other
    /// change of the key comes between the look and the change. Returns
    /// what `f` returns.
    ///
    /// `f` and `default` run under the lock of the key's shard: they must
    /// not call back into this chest. A spilled value is loaded first.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let counts: Chest<String, u64> = Chest::builder().open("memory://")?;
    /// for word in "a b a c a".split(' ') {
    ///     counts.update_or_insert(word.to_string(), |n| *n += 1, || 0)?;
    /// }
    /// assert_eq!(*counts.get("a")?.unwrap(), 3);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn update_or_insert<R>(
        &self,
        key: K,
        f: impl FnOnce(&mut V) -> R,
        default: impl FnOnce() -> V,
    ) -> Result<R>
    where
        V: Clone,
    {
        let k = key.clone();
        let out = self.modify(&k, f, Some((key, default)))?;
        Ok(out.expect("inserted when absent"))
    }

    /// The value of `key`, inserting `make()` first if it is absent —
    /// atomically: of several threads asking at once, one inserts and all
    /// get that value. A spilled value is loaded. `make` runs under the lock
    /// of the key's shard: it must not call back into this chest.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().open("memory://")?;
    /// let v = c.get_or_insert_with(1, || vec![7; 3])?;
    /// assert_eq!(*v, [7, 7, 7]);
    /// let again = c.get_or_insert_with(1, || unreachable!())?;
    /// assert_eq!(*again, [7, 7, 7]);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn get_or_insert_with(&self, key: K, make: impl FnOnce() -> V) -> Result<Arc<V>> {
        self.inner.check_writable()?;
        let shard = match self.lock_resident(&key)? {
            Ok(mut shard) => {
                let tick = shard.tick();
                let Some(Slot::Resident(r)) = shard.map.get_mut(&key) else {
                    unreachable!("the value is resident under the same lock")
                };
                r.tick = tick;
                let value = Arc::clone(&r.value);
                let heavy = r.weight > self.inner.config.budget;
                let victim = heavy.then(|| self.take_clean_or_victim(&mut shard, &key));
                drop(shard);
                if let Some(Some(v)) = victim {
                    self.inner.write_batch(vec![v], true)?;
                }
                return Ok(value);
            }
            Err(shard) => shard,
        };
        let (shard, value, weight) = self.make_value(shard, &key, make)?;
        self.install(shard, key, Arc::clone(&value), weight)?;
        Ok(value)
    }

    /// Makes `value` the resident, dirty value of `key` under the held
    /// lock, then, with the lock released, writes it out at once if it is
    /// heavier than the budget, or keeps the budget.
    fn install(
        &self,
        mut shard: Locked<'_, K, V>,
        key: K,
        value: Arc<V>,
        weight: usize,
    ) -> Result<()> {
        self.put_resident(&mut shard, key.clone(), value, weight);
        self.inner.bump();
        let heavy =
            (weight > self.inner.config.budget).then(|| self.inner.take_one(&mut shard, key));
        drop(shard);
        self.inner.store.reap();
        match heavy.flatten() {
            Some(victim) => self.inner.write_batch(vec![victim], true),
            None => {
                self.inner.enforce_budget();
                self.inner.report()
            }
        }
    }

    /// A value heavier than the budget that a look made resident leaves
    /// memory again: at once if it is clean, as a victim if it is dirty.
    fn take_clean_or_victim(
        &self,
        shard: &mut Shard<K, V>,
        key: &K,
    ) -> Option<crate::engine::write_queue::Victim<K, V>> {
        let slot = shard.map.get_mut(key)?;
        if let Slot::Resident(r) = slot {
            if let Some(loc) = r.stored {
                self.inner.spill_resident(slot, loc);
                shard.dequeue(key);
                return None;
            }
        }
        self.inner.take_one(shard, key.clone())
    }

    /// Replaces the value of `key`, returning the old one (loaded if it was
    /// spilled), or `None` if the key was absent — atomically. If the old
    /// value cannot be read, nothing changes and the error is returned.
    /// [`insert`](Chest::insert) is cheaper when the old value is not needed.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, String> = Chest::builder().open("memory://")?;
    /// assert_eq!(c.replace(1, "one".into())?, None);
    /// assert_eq!(c.replace(1, "uno".into())?.as_deref().map(String::as_str), Some("one"));
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn replace(&self, key: K, value: V) -> Result<Option<Arc<V>>> {
        self.inner.check_writable()?;
        let weight = self.inner.weigh(&key, &value)?;
        let value = Arc::new(value);
        let shard = match self.lock_resident(&key)? {
            Ok(shard) | Err(shard) => shard,
        };
        let old = match shard.map.get(&key) {
            Some(Slot::Resident(r)) => Some(Arc::clone(&r.value)),
            _ => None,
        };
        self.install(shard, key, value, weight)?;
        Ok(old)
    }

    /// Removes `key` and returns its value (loaded if it was spilled), or
    /// `None` if it was absent — atomically. If the value cannot be read,
    /// nothing changes and the error is returned. [`remove`](Chest::remove)
    /// is cheaper when the value is not needed.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, String> = Chest::builder().open("memory://")?;
    /// c.insert(1, "one".into())?;
    /// assert_eq!(c.take(&1)?.as_deref().map(String::as_str), Some("one"));
    /// assert!(c.take(&1)?.is_none());
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn take<Q>(&self, key: &Q) -> Result<Option<Arc<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        self.inner.check_writable()?;
        let Ok(mut shard) = self.lock_resident(key)? else {
            return Ok(None);
        };
        let old = self.remove_slot(&mut shard, key);
        drop(shard);
        self.inner.store.reap();
        match old {
            Some(Slot::Resident(r)) => Ok(Some(r.value)),
            _ => unreachable!("the value was resident under the same lock"),
        }
    }
}
