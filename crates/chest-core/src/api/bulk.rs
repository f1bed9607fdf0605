//! Operations on many keys: key iteration a shard at a time, `values`,
//! `retain`, `clear`, `extend`.

use std::sync::Arc;

use crate::api::chest::Chest;
use crate::config::Key;
use crate::engine::locks::join;
use crate::error::Result;
use crate::value::serializer::Serializer;

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Chest<K, V, S> {
    /// Every key, copied a shard at a time (so a chest of many keys is
    /// never copied whole), in no particular order. No I/O. Keys inserted
    /// or removed meanwhile may or may not be seen.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, String> = Chest::builder().open("memory://")?;
    /// c.extend((0..100).map(|i| (i, i.to_string())))?;
    /// assert_eq!(c.iter_keys().filter(|k| k % 2 == 0).count(), 50);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn iter_keys(&self) -> impl Iterator<Item = K> + '_ {
        (0..self.inner.shards.len()).flat_map(move |i| {
            let keys: Vec<K> = self.inner.lock_shard(i).map.keys().cloned().collect();
            keys
        })
    }

    /// Every value, loading spilled ones as it goes (see [`iter`](Chest::iter)).
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, u64> = Chest::builder().open("memory://")?;
    /// c.extend((1..=10).map(|i| (i, u64::from(i))))?;
    /// let total: u64 = c.values().map(|v| v.map(|v| *v)).sum::<Result<u64, _>>()?;
    /// assert_eq!(total, 55);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn values(&self) -> impl Iterator<Item = Result<Arc<V>>> + '_ {
        self.iter().map(|entry| entry.map(|(_, v)| v))
    }

    /// Inserts every pair, as [`insert`](Chest::insert) does. Values that
    /// could not be spilled stay in memory; the errors are returned together.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<String, usize> = Chest::builder().open("memory://")?;
    /// c.extend(["a", "bb", "ccc"].map(|w| (w.to_string(), w.len())))?;
    /// assert_eq!(c.len(), 3);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn extend(&self, pairs: impl IntoIterator<Item = (K, V)>) -> Result<()> {
        let mut errors = Vec::new();
        for (k, v) in pairs {
            if let Err(e) = self.insert(k, v) {
                errors.push(e);
            }
        }
        join(errors)
    }

    /// Keeps only the entries for which `keep(key, value)` is true, loading
    /// spilled values to ask (for a decision on keys alone, filter
    /// [`iter_keys`](Chest::iter_keys) and [`remove`](Chest::remove)). An
    /// entry changed by another thread between the look and the removal is
    /// removed all the same: `retain` is not atomic against concurrent
    /// writers of the same keys. Stops at the first value that cannot be
    /// read, with its error (the entries before it are decided).
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(8 << 10).open("memory://")?;
    /// c.extend((0..64).map(|i| (i, vec![i as u8; 1000])))?;
    /// c.retain(|_, v| v[0] % 4 == 0)?;
    /// assert_eq!(c.len(), 16);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn retain(&self, mut keep: impl FnMut(&K, &V) -> bool) -> Result<()> {
        self.inner.check_writable()?;
        let keys: Vec<K> = self.iter_keys().collect();
        for key in keys {
            let Some(value) = self.get(&key)? else {
                continue;
            };
            if !keep(&key, &value) {
                self.remove(&key)?;
            }
        }
        Ok(())
    }

    /// Removes every key, in memory and in the backend (the objects go as
    /// a removal's do: once no kept manifest names them). Errors of
    /// background writes not reported yet go with the values they were
    /// about.
    ///
    /// ```
    /// use chest_core::Chest;
    ///
    /// let c: Chest<u32, Vec<u8>> = Chest::builder().memory_budget(4 << 10).open("memory://")?;
    /// c.extend((0..16).map(|i| (i, vec![0; 1024])))?;
    /// c.clear()?;
    /// assert!(c.is_empty());
    /// assert_eq!(c.memory_usage(), 0);
    /// # Ok::<(), chest_core::Error>(())
    /// ```
    pub fn clear(&self) -> Result<()> {
        self.inner.check_writable()?;
        for i in 0..self.inner.shards.len() {
            let mut shard = self.inner.lock_shard(i);
            if shard.map.is_empty() {
                continue;
            }
            let drained: Vec<_> = shard.map.drain().collect();
            shard.clear_queue();
            for (_, slot) in &drained {
                self.unaccount(slot);
                if let Some(loc) = slot.stored() {
                    self.inner.store.release(loc);
                }
            }
            self.inner.keys_removed(drained.len());
            self.inner.bump();
            drop(shard);
            // Values are dropped with no lock held.
            drop(drained);
            self.inner.store.reap();
        }
        // Errors of earlier background writes not reported yet were about
        // values that are gone now: they go with them. (A value put since,
        // whose write failed, is still dirty in memory; the next flush
        // writes it itself and reports its own failure.)
        drop(self.inner.take_errors());
        Ok(())
    }
}
