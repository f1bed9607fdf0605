//! Flush: make every entry durable, with a manifest that names them all.
//!
//! Shard by shard, with no I/O under a shard lock:
//! 1. compaction: the shard's records in mostly-dead segments are read and
//!    rewritten into a new segment, then the keys that still point at the
//!    old records are pointed at the new ones;
//! 2. under the lock, a snapshot of the shard: every key with a stored copy
//!    goes into the manifest as it is (with its object's size, looked up
//!    while the entry holds the object live); every dirty value is taken
//!    (a shared handle, no copy);
//! 3. the dirty values are written (no lock), go into the manifest at their
//!    new locations, and their slots become clean unless they changed.
//!
//! So the manifest holds each shard as it was at its snapshot: every change
//! made before the flush began is in it, and a later change is either in it
//! or leaves the chest marked as changed. Objects a snapshot names are not
//! deleted until a later manifest that does not name them is durable (the
//! store's epochs). The store then commits the manifest (see
//! `store::commit`).

use std::collections::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::chest::{join, lock, Chest, Inner, Key};
use crate::entry::Slot;
use crate::error::{Error, Result};
use crate::evict::{Outcome, Victim};
use crate::serializer::Serializer;
use crate::stats::Counters;
use crate::store::manifest::ManifestWriter;
use crate::store::{Loc, Store};

/// Ends a flush that has begun; if it is dropped before the commit (a
/// panic), the flush is aborted so that the next one can run.
struct Flushing<'a> {
    store: &'a Store,
    ended: bool,
}

impl Drop for Flushing<'_> {
    fn drop(&mut self) {
        if !self.ended {
            self.store.abort_flush();
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// Makes every entry durable: writes the values that have no stored copy,
    /// then the manifest. After a crash, a reopen sees the state of the last
    /// completed flush (or a later one).
    ///
    /// Errors: if a value's write fails (disk full, network down), nothing
    /// is committed — the last flush's state stays the durable one — and the
    /// values stay in memory for the next flush. A value that cannot be
    /// serialized stays in memory and out of the manifest (its key is not
    /// durable until it can be written); the others are committed.
    pub(crate) fn flush(&self) -> Result<()> {
        self.check_writable()?;
        let _one_at_a_time = lock(&self.flush_lock);
        // The batches the writers have in hand are placed first: the
        // manifest is taken after them, and their values are not written twice.
        self.wait_written();
        let background = self.take_errors();
        let seen = self.changes.load(Ordering::SeqCst);
        if seen == self.flushed.load(Ordering::SeqCst) && !self.store.has_garbage() {
            // Nothing changed since the last flush (or the open): the
            // durable state is already this one.
            return Ok(());
        }
        let span = tracing::debug_span!("chest.flush", location = self.location());
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let written = self.counters.bytes_written.load(Ordering::Relaxed);
        let mut errors = self.flush_changes();
        self.store.reap();
        tracing::debug!(
            bytes_written = self.counters.bytes_written.load(Ordering::Relaxed) - written,
            keys = self.len(),
            objects = self.store.object_count(),
            errors = errors.len(),
            secs = started.elapsed().as_secs_f64(),
            "flushed"
        );
        for e in &errors {
            tracing::warn!(error = %e, "flush");
        }
        if errors.is_empty() {
            // Every value is durable, those whose background write failed
            // included: their errors (counted in the stats) are over.
            self.flushed.store(seen, Ordering::SeqCst);
        } else {
            errors.extend(background);
        }
        #[cfg(debug_assertions)]
        if let Err(e) = self.check_invariants(false) {
            panic!("chest invariant broken after a flush: {e}");
        }
        join(errors)
    }

    fn flush_changes(&self) -> Vec<Error> {
        let epoch = self.store.begin_flush();
        let mut flushing = Flushing {
            store: &self.store,
            ended: false,
        };
        let mut errors = Vec::new();
        let mut manifest = ManifestWriter::default();
        let mut key_buf = Vec::new();
        // Values whose write failed (not those that cannot be serialized,
        // which stay out of every manifest until they can be).
        let mut write_failed = 0;
        let sparse = self.store.sparse_segments();
        for i in 0..self.shards.len() {
            if !sparse.is_empty() {
                if let Err(e) = self.compact(i, &sparse) {
                    errors.push(e);
                }
            }
            let dirty = {
                let shard = self.lock_shard(i);
                let mut dirty = Vec::new();
                for (at, (key, slot)) in shard.map.iter().enumerate() {
                    if let Some(loc) = slot.stored() {
                        if let Err(e) = push_entry(&mut manifest, &mut key_buf, key, loc) {
                            errors.push(e);
                        }
                    } else if let Slot::Resident(r) = slot {
                        dirty.push(Victim {
                            shard: i,
                            key: key.clone(),
                            at: at as u32,
                            value: Arc::clone(&r.value),
                            weight: r.weight,
                        });
                    }
                }
                self.store.size_objects(&mut manifest);
                dirty
            };
            if dirty.is_empty() {
                continue;
            }
            let outcomes = self.encode_and_write(&dirty, &mut errors);
            write_failed += outcomes
                .iter()
                .filter(|o| matches!(o, Outcome::WriteFailed))
                .count();
            for (v, outcome) in dirty.iter().zip(&outcomes) {
                if let Outcome::Written(loc) = outcome {
                    if let Err(e) = push_entry(&mut manifest, &mut key_buf, &v.key, *loc) {
                        errors.push(e);
                    }
                }
            }
            // The new objects are live until their victims are placed below.
            self.store.size_objects(&mut manifest);
            self.place_all(dirty, outcomes, false);
        }
        if write_failed > 0 {
            // A manifest without those keys would drop the durable copies
            // they had at the last flush: keep that flush's state instead.
            errors.insert(
                0,
                Error::Manifest {
                    location: self.location().to_string(),
                    detail: format!(
                        "not committed: {write_failed} value(s) could not be written; \
                         the state of the last flush stays the durable one"
                    ),
                },
            );
        } else {
            let committed = self.store.commit(epoch, manifest, self.serializer.name());
            // Ended by the commit; if it panicked, the guard ends it.
            flushing.ended = true;
            if let Err(e) = committed {
                errors.insert(0, e);
            }
        }
        Counters::add(&self.counters.errors, errors.len() as u64);
        errors
    }

    /// Moves the live records of shard `i` out of mostly-dead segments into
    /// new ones, so the old segments can be deleted: the keys are collected
    /// under the lock, the records copied by the store with no lock held,
    /// and the keys that still hold the old records (spilled, or resident
    /// with that stored copy) pointed at the copies. A key that changed
    /// meanwhile keeps its new state; its copy is released.
    fn compact(&self, i: usize, sparse: &HashSet<u32>) -> Result<()> {
        let (keys, locs): (Vec<K>, Vec<Loc>) = {
            let shard = self.lock_shard(i);
            shard
                .map
                .iter()
                .filter_map(|(key, slot)| match slot {
                    // Being read: stays where it is this time.
                    Slot::Loading(_) => None,
                    _ => slot
                        .stored()
                        .filter(|l| sparse.contains(&l.obj.get()))
                        .map(|l| (key.clone(), l)),
                })
                .unzip()
        };
        if keys.is_empty() {
            return Ok(());
        }
        let copied = self.store.copy_records(&locs, self.config.segment_bytes);
        Counters::add(&self.counters.errors, copied.unreadable as u64);
        let mut shard = self.lock_shard(i);
        for ((key, old), new) in keys.iter().zip(locs).zip(copied.locs) {
            let Some(new) = new else { continue };
            let moved = match shard.map.get_mut(key) {
                Some(slot @ Slot::Spilled(_)) if slot.stored() == Some(old) => {
                    *slot = Slot::Spilled(new);
                    true
                }
                Some(Slot::Resident(r)) if r.stored == Some(old) => {
                    r.stored = Some(new);
                    true
                }
                _ => false,
            };
            // The old record, or the unneeded copy.
            self.store.release(if moved { old } else { new });
        }
        drop(shard);
        join(copied.errors)
    }
}

/// Adds the entry `key` → `loc` to the manifest.
fn push_entry<K: Key>(
    manifest: &mut ManifestWriter,
    key_buf: &mut Vec<u8>,
    key: &K,
    loc: Loc,
) -> Result<()> {
    key_buf.clear();
    ciborium::into_writer(key, &mut *key_buf).map_err(|e| Error::Key {
        key: format!("{key:?}"),
        detail: e.to_string(),
    })?;
    manifest.push(key_buf, loc);
    Ok(())
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
    pub fn flush(&self) -> Result<()> {
        self.inner.flush()
    }
}
