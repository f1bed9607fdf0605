//! The key index of a shard: a compact hash map, laid out as CPython's
//! `dict` has been since 3.6.
//!
//! The entries (key and slot) sit densely in a vector; the hash table holds
//! only their positions, 4 bytes each (with a byte of the hash to tell
//! them apart, in cache-line chunks: see [`super::positions`]). A hash
//! table must stay sparse — at most 7/8 full, and half of that just after
//! it doubles — so keeping the 24-byte entries of a `u64` key out of it and
//! only 4-byte positions in it makes the sparseness cheap: a reopened chest
//! of 1,000,000 keys takes about 33 bytes a key instead of 52 (W4 in the
//! benchmark). A lookup reads the positions' chunk, then the entry: two
//! cache misses on a large index.
//!
//! Removing a key moves the last entry into its place (and points the
//! moved entry's bucket there), so the entries stay dense. Iteration goes
//! by position: insertion order, until removals move entries. A position is
//! also a hint for finding a key again without the hash table (see
//! [`Index::get_hinted`]).

use std::borrow::Borrow;
use std::hash::{BuildHasher, Hash};

use super::positions::Positions;

/// The hasher of the index's tables (and of the largest-first order):
/// fast, seeded per process.
pub(crate) type FastHash = foldhash::fast::RandomState;

/// A hash map of dense entries and a table of their positions.
pub(crate) struct Index<K, V> {
    /// Positions in `entries`, hashed by their entry's key.
    table: Positions,
    entries: Vec<(K, V)>,
    hasher: FastHash,
}

impl<K, V> Default for Index<K, V> {
    fn default() -> Self {
        Self {
            table: Positions::new(),
            entries: Vec::new(),
            hasher: FastHash::default(),
        }
    }
}

impl<K: Hash + Eq, V> Index<K, V> {
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The position of `key`'s entry. Inlined: it is most of a hit (W3),
    /// and a call costs a sixth of it.
    #[inline(always)]
    fn find<Q>(&self, key: &Q) -> Option<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let entries = &self.entries;
        self.table
            .find(self.hasher.hash_one(key), |i| {
                entries[i as usize].0.borrow() == key
            })
            .map(|i| i as usize)
    }

    /// Where `key`'s entry is now (a hint for the `_hinted` lookups), and
    /// its value.
    #[inline]
    pub fn get_positioned<Q>(&self, key: &Q) -> Option<(u32, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).map(|i| (i as u32, &self.entries[i].1))
    }

    /// [`get_positioned`](Index::get_positioned), the value mutable.
    #[inline]
    pub fn get_mut_positioned<Q>(&mut self, key: &Q) -> Option<(u32, &mut V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).map(|i| (i as u32, &mut self.entries[i].1))
    }

    /// The position of `key`'s entry: `hint` if the entry there holds
    /// `key` (one access to the entries, which are dense: no hashing, no
    /// probe of the table), or else found by its hash. A hint is where the
    /// key was once; it goes stale when a removal moves the last entry into
    /// the removed one's place, and a stale hint only costs the probe.
    fn find_hinted(&self, key: &K, hint: u32) -> Option<usize> {
        match self.entries.get(hint as usize) {
            Some((k, _)) if k == key => Some(hint as usize),
            _ => self.find(key),
        }
    }

    /// [`get`](Index::get), starting at the position `hint`.
    #[inline]
    pub fn get_hinted(&self, key: &K, hint: u32) -> Option<&V> {
        self.find_hinted(key, hint).map(|i| &self.entries[i].1)
    }

    /// [`get_mut`](Index::get_mut), starting at the position `hint`.
    #[inline]
    pub fn get_mut_hinted(&mut self, key: &K, hint: u32) -> Option<&mut V> {
        self.find_hinted(key, hint).map(|i| &mut self.entries[i].1)
    }

    #[inline]
    pub fn get<Q>(&self, key: &Q) -> Option<&V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).map(|i| &self.entries[i].1)
    }

    #[inline]
    pub fn get_mut<Q>(&mut self, key: &Q) -> Option<&mut V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).map(|i| &mut self.entries[i].1)
    }

    #[inline]
    pub fn get_key_value<Q>(&self, key: &Q) -> Option<(&K, &V)>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).map(|i| {
            let (k, v) = &self.entries[i];
            (k, v)
        })
    }

    #[inline]
    pub fn contains_key<Q>(&self, key: &Q) -> bool
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        self.find(key).is_some()
    }

    /// Sets `key`'s value; returns the value it replaced, if any.
    pub fn insert(&mut self, key: K, value: V) -> Option<V> {
        let hash = self.hasher.hash_one(&key);
        let Self {
            table,
            entries,
            hasher,
        } = self;
        let at = u32::try_from(entries.len()).expect("a shard holds fewer than 2^32 keys");
        if table.is_full() {
            if let Some(i) = table.find(hash, |i| entries[i as usize].0 == key) {
                return Some(std::mem::replace(&mut entries[i as usize].1, value));
            }
            // Rebuilt twice as large, from the entries in order (a walk
            // through them rather than through the old table).
            table.rebuild(
                entries.len() + 1,
                entries.iter().map(|(k, _)| hasher.hash_one(k)),
            );
        }
        if let Some(&mut i) = table.find_or_insert(hash, at, |i| entries[i as usize].0 == key) {
            return Some(std::mem::replace(&mut entries[i as usize].1, value));
        }
        entries.push((key, value));
        None
    }

    pub fn remove<Q>(&mut self, key: &Q) -> Option<V>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized,
    {
        let hash = self.hasher.hash_one(key);
        let entries = &self.entries;
        let at = self
            .table
            .remove(hash, |i| entries[i as usize].0.borrow() == key)?;
        let value = self.remove_at(at as usize);
        self.shrink_if_sparse();
        Some(value)
    }

    /// Removes the entry at `at`, whose bucket is already gone: the last
    /// entry moves into its place.
    fn remove_at(&mut self, at: usize) -> V {
        let Self {
            table,
            entries,
            hasher,
        } = self;
        let last = entries.len() - 1;
        if at != last {
            // The last entry moves to `at`: point its bucket there.
            let moved = hasher.hash_one(&entries[last].0);
            let bucket = table
                .find_mut(moved, |i| i as usize == last)
                .expect("every entry has a bucket");
            *bucket = at as u32;
        }
        entries.swap_remove(at).1
    }

    /// Gives back what mass removals left unused. Every entry must have
    /// its bucket (the table is rebuilt from the entries).
    fn shrink_if_sparse(&mut self) {
        let Self {
            table,
            entries,
            hasher,
        } = self;
        if entries.capacity() > 64 && entries.len() < entries.capacity() / 4 {
            // Give back what mass removals left unused.
            entries.shrink_to(entries.len() * 2);
            if table.would_shrink(entries.len() * 2) {
                table.rebuild(
                    entries.len() * 2,
                    entries.iter().map(|(k, _)| hasher.hash_one(k)),
                );
            }
        }
    }

    /// An index of `entries` (a reopen's keys, decoded into a vector that
    /// becomes the index's own: no copy). A key given twice keeps its last
    /// value.
    pub fn from_entries(entries: Vec<(K, V)>) -> Self {
        let mut index = Self {
            table: Positions::with_capacity(entries.len()),
            entries,
            hasher: FastHash::default(),
        };
        let Self {
            table,
            entries,
            hasher,
        } = &mut index;
        let mut repeated = Vec::new();
        for (i, (key, _)) in entries.iter().enumerate() {
            let hash = hasher.hash_one(key);
            let at = u32::try_from(i).expect("a shard holds fewer than 2^32 keys");
            if let Some(earlier) = table.find_or_insert(hash, at, |j| entries[j as usize].0 == *key)
            {
                // The later entry wins; the earlier one goes below.
                repeated.push(std::mem::replace(earlier, at));
            }
        }
        // Remove the superseded entries, from the last position down (each
        // removal moves the last entry, which is never one still to remove).
        repeated.sort_unstable_by(|a, b| b.cmp(a));
        for at in repeated {
            index.remove_at(at as usize);
        }
        index.shrink_if_sparse();
        index
    }

    /// The entries in the order of their positions (the `n`th yielded is
    /// at position `n`, as [`get_positioned`](Index::get_positioned) gives it).
    pub fn iter(&self) -> impl Iterator<Item = (&K, &V)> {
        self.entries.iter().map(|(k, v)| (k, v))
    }

    pub fn keys(&self) -> impl Iterator<Item = &K> {
        self.entries.iter().map(|(k, _)| k)
    }

    /// Removes and yields every entry.
    pub fn drain(&mut self) -> std::vec::Drain<'_, (K, V)> {
        self.table.clear();
        self.entries.drain(..)
    }

    /// Checks that the table and the entries agree: a bucket per entry,
    /// pointing at it (for the chest's consistency check).
    pub fn check(&self) -> Result<(), String> {
        if self.table.len() != self.entries.len() {
            return Err(format!(
                "the index has {} buckets for {} entries",
                self.table.len(),
                self.entries.len()
            ));
        }
        self.table.check(|i| {
            self.entries
                .get(i as usize)
                .map_or(0, |(k, _)| self.hasher.hash_one(k))
        })?;
        for (i, (k, _)) in self.entries.iter().enumerate() {
            if self.find(k) != Some(i) {
                return Err(format!("entry {i} of the index is not found where it is"));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashMap;

    #[derive(Debug, Clone)]
    enum Op {
        Insert(u16, u32),
        Remove(u16),
        Get(u16),
        Drain,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            6 => (any::<u16>(), any::<u32>()).prop_map(|(k, v)| Op::Insert(k % 512, v)),
            4 => any::<u16>().prop_map(|k| Op::Remove(k % 512)),
            3 => any::<u16>().prop_map(|k| Op::Get(k % 512)),
            1 => Just(Op::Drain),
        ]
    }

    proptest! {
        /// The index answers as `HashMap` does, whatever the operations.
        #[test]
        fn behaves_as_a_hash_map(ops in proptest::collection::vec(op(), 1..2000)) {
            let mut index: Index<u16, u32> = Index::default();
            let mut model: HashMap<u16, u32> = HashMap::new();
            for op in ops {
                match op {
                    Op::Insert(k, v) => prop_assert_eq!(index.insert(k, v), model.insert(k, v)),
                    Op::Remove(k) => prop_assert_eq!(index.remove(&k), model.remove(&k)),
                    Op::Get(k) => {
                        prop_assert_eq!(index.get(&k), model.get(&k));
                        // Any hint, right, stale or out of range, finds the same.
                        let at = index.get_positioned(&k).map(|(at, _)| at);
                        prop_assert_eq!(at.is_some(), model.contains_key(&k));
                        for hint in [at.unwrap_or(0), u32::from(k), u32::MAX] {
                            prop_assert_eq!(index.get_hinted(&k, hint), model.get(&k));
                        }
                        prop_assert_eq!(index.contains_key(&k), model.contains_key(&k));
                        if let Some(v) = index.get_mut_hinted(&k, u32::from(k) / 2) {
                            *v = v.wrapping_add(1);
                            let m = model.get_mut(&k).unwrap();
                            *m = m.wrapping_add(1);
                        }
                    }
                    Op::Drain => {
                        let mut drained: Vec<_> = index.drain().collect();
                        let mut expected: Vec<_> = model.drain().collect();
                        drained.sort_unstable();
                        expected.sort_unstable();
                        prop_assert_eq!(drained, expected);
                    }
                }
                prop_assert_eq!(index.len(), model.len());
            }
            prop_assert_eq!(index.check(), Ok(()));
            let mut all: Vec<_> = index.iter().map(|(k, v)| (*k, *v)).collect();
            all.sort_unstable();
            let mut expected: Vec<_> = model.into_iter().collect();
            expected.sort_unstable();
            prop_assert_eq!(all, expected);
        }
    }

    proptest! {
        /// An index made of entries (keys possibly repeated) holds what
        /// inserting them in order gives, and goes on working as a map.
        #[test]
        fn from_entries_keeps_the_last_of_each_key(
            entries in proptest::collection::vec((0u16..300, any::<u32>()), 0..1500)
        ) {
            let mut index = Index::from_entries(entries.clone());
            let model: HashMap<u16, u32> = entries.into_iter().collect();
            prop_assert_eq!(index.check(), Ok(()));
            prop_assert_eq!(index.len(), model.len());
            for (k, v) in &model {
                prop_assert_eq!(index.get(k), Some(v));
            }
            for k in 0..300u16 {
                prop_assert_eq!(index.remove(&k), model.get(&k).copied());
            }
            prop_assert!(index.is_empty());
        }
    }
}
