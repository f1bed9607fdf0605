//! Flush: make every entry durable, with a manifest that names them all.
//!
//! With no I/O under a shard lock:
//! 1. compaction: the records in mostly-dead segments (of every shard,
//!    together) are read and rewritten into new segments, then the keys
//!    that still point at the old records are pointed at the new ones;
//! 2. under the lock, a snapshot of the shard: every key with a stored copy
//!    goes into the manifest as it is (with its object's size, looked up
//!    while the entry holds the object live); every dirty value is taken
//!    (a shared handle, no copy);
//! 3. once every shard is taken, the dirty values of all of them are
//!    written together (no lock; small ones packed into shared segments),
//!    go into the manifest at their new locations, and their slots become
//!    clean unless they changed.
//!
//! So the manifest holds each shard as it was at its snapshot: every change
//! made before the flush began is in it, and a later change is either in it
//! or leaves the chest marked as changed. Objects a snapshot names are not
//! deleted until a later manifest that does not name them is durable (the
//! store's epochs). The store then commits the manifest (see
//! `store::commit`).

use foldhash::HashSet;
use std::sync::atomic::Ordering;
use std::sync::Arc;

use crate::config::Key;
use crate::engine::inner::Inner;
use crate::engine::locks::{join, lock};
use crate::engine::write_queue::{Outcome, Victim};
use crate::error::{Error, Result};
use crate::map::entry::Slot;
use crate::stats::Counters;
use crate::store::manifest::ManifestWriter;
use crate::store::{Loc, Store};
use crate::value::serializer::Serializer;

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
        let seen = self.changes.seen();
        if self.changes.all_flushed(seen) && !self.store.has_garbage() {
            // Nothing changed since the last flush (or the open): the
            // durable state is already this one. Background failures since
            // are still the caller's to hear of.
            return join(background);
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
            // included (this flush wrote them itself).
            self.changes.flushed_through(seen);
        }
        // The background writes that failed since the last call that
        // reported errors are reported here even when the flush then wrote
        // those values and committed: the caller hears that its storage
        // failed (a dying disk, revoked credentials), and a flush right
        // after returns `Ok` if nothing failed since.
        errors.extend(background);
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
        // The dirty values of every shard, written together after the last
        // snapshot: small ones packed into shared segments, so where the
        // keys' hashes put them does not decide how many objects a flush
        // writes (one small segment per shard before), nor which of them a
        // later remove empties.
        let mut dirty = Vec::new();
        if !sparse.is_empty() {
            if let Err(e) = self.compact(&sparse) {
                errors.push(e);
            }
        }
        for i in 0..self.shards.len() {
            let shard = self.lock_shard(i);
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
            if i == 0 {
                // The other shards hold about as many entries each.
                manifest.reserve_for(self.len());
            }
        }
        if !dirty.is_empty() {
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

    /// Moves the live records out of mostly-dead segments into new ones,
    /// so the old segments can be deleted: the keys are collected under
    /// each shard's lock, the records of all shards copied together by the
    /// store with no lock held (so how many segments they make does not
    /// depend on which shards the keys are in), and the keys that still
    /// hold the old records (spilled, or resident with that stored copy)
    /// pointed at the copies, shard by shard. A key that changed meanwhile
    /// keeps its new state; its copy is released.
    fn compact(&self, sparse: &HashSet<u32>) -> Result<()> {
        let mut keys: Vec<(usize, K)> = Vec::new();
        let mut locs: Vec<Loc> = Vec::new();
        for i in 0..self.shards.len() {
            let shard = self.lock_shard(i);
            for (key, slot) in shard.map.iter() {
                // Being read: stays where it is this time.
                if matches!(slot, Slot::Loading(_)) {
                    continue;
                }
                if let Some(l) = slot.stored().filter(|l| sparse.contains(&l.obj.get())) {
                    keys.push((i, key.clone()));
                    locs.push(l);
                }
            }
        }
        if keys.is_empty() {
            return Ok(());
        }
        let copied = self.store.copy_records(&locs, self.config.segment_bytes);
        Counters::add(&self.counters.errors, copied.unreadable as u64);
        let mut moves = keys.into_iter().zip(locs).zip(copied.locs).peekable();
        while let Some(&(((i, _), _), _)) = moves.peek() {
            let mut shard = self.lock_shard(i);
            while let Some((((_, key), old), new)) = moves.next_if(|(((j, _), _), _)| *j == i) {
                let Some(new) = new else { continue };
                let moved = match shard.map.get_mut(&key) {
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
        }
        join(copied.errors)
    }
}

/// Keys a drop's loss report names, at most (all are counted).
const LOST_KEYS_SHOWN: usize = 10;

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// The drop of a chest whose flush failed: its changes since the last
    /// completed flush go with it. Drop cannot return an error, so the loss
    /// is made loud: an error-level event naming the location, how many
    /// values are lost (those in memory that were never written, and those
    /// written since the last commit, which no durable manifest names) with
    /// the first keys, the changes since the last flush, and the cause; and
    /// [`Stats::lost_on_drop`](crate::Stats::lost_on_drop) counts them.
    pub(crate) fn report_lost_on_drop(&self, cause: &Error) {
        let mut lost = 0u64;
        let mut shown = Vec::new();
        for i in 0..self.shards.len() {
            let shard = self.lock_shard(i);
            for (key, slot) in shard.map.iter() {
                let gone = match slot.stored() {
                    None => true,
                    Some(loc) => self.store.written_since_commit(loc),
                };
                if gone {
                    lost += 1;
                    if shown.len() < LOST_KEYS_SHOWN {
                        shown.push(key.clone());
                    }
                }
            }
        }
        crate::stats::count_lost_on_drop(lost);
        // A key's `Debug` is user code: a panic there must not escape a drop.
        let keys = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let mut text = shown
                .iter()
                .map(|k| format!("{k:?}"))
                .collect::<Vec<_>>()
                .join(", ");
            if lost > shown.len() as u64 {
                text.push_str(&format!(" and {} more", lost - shown.len() as u64));
            }
            text
        }))
        .unwrap_or_else(|_| "(a key's Debug panicked)".to_string());
        let changes = self.changes.unflushed();
        // Every cause, each once (a failed commit's summary comes first,
        // the writes' own errors after it).
        let mut causes: Vec<String> = Vec::new();
        for e in cause.errors() {
            let text = e.to_string();
            if !causes.contains(&text) {
                causes.push(text);
            }
        }
        tracing::error!(
            location = self.location(),
            lost_values = lost,
            keys = %keys,
            changes_since_flush = changes,
            error = %causes.join("; "),
            "chest dropped without close and its flush failed: the changes since its last \
             completed flush are lost (call close() to get this error instead)"
        );
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
