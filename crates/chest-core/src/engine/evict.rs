//! Eviction: choosing victims to keep memory within the budget, writing them
//! outside the shard locks, and applying what became of each.
//!
//! Victims are taken from the shards in turn, a little from each, under each
//! shard's lock (they are marked `evicting` and leave the eviction queue;
//! their weight is counted in `inflight`), by the call that finds memory
//! past the high mark (see [`crate::engine::writer`] for the marks and the
//! backpressure). The batch goes to the background writer, which
//! serializes and writes it with no lock held (small values packed
//! together into one segment, large ones through one `put_many`), then
//! locks each shard again to apply the outcomes (see [`Inner::place`]).
//! A value heavier than the budget is written by the call itself, and a
//! flush writes its dirty values through the same code, without evicting
//! them.

use std::sync::Arc;

use crate::config::Key;
use crate::engine::guard;
use crate::engine::inner::Inner;
use crate::engine::locks::join;
use crate::engine::write_queue::{Outcome, Victim};
use crate::error::{Error, Result};
use crate::map::entry::Slot;
use crate::map::policy::frequency::Freq;
use crate::map::shard::Shard;
use crate::stats::Counters;
use crate::store::{seal_shared, seal_whole, Loc, SegmentBuf, WholeRecord};
use crate::value::serializer::Serializer;

/// Large values are written in batches of at most this many bytes...
const WHOLE_BATCH_BYTES: usize = 64 << 20;
/// ...or this many values.
const WHOLE_BATCH_COUNT: usize = 32;

/// Victims taken from their shards and not yet placed back. If this is
/// dropped before [`Batch::place`] (a backend panicked while writing), every
/// victim goes back as not written: nothing stays marked `evicting`, and
/// `inflight` is given back.
struct Batch<'a, K: Key, V: Send + Sync + 'static, S: Serializer<V>> {
    chest: &'a Inner<K, V, S>,
    victims: Vec<Victim<K, V>>,
    evict: bool,
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Batch<'_, K, V, S> {
    fn place(mut self, outcomes: Vec<Outcome>) {
        let victims = std::mem::take(&mut self.victims);
        self.chest.place_all(victims, outcomes, self.evict);
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Drop for Batch<'_, K, V, S> {
    fn drop(&mut self) {
        if !self.victims.is_empty() {
            let victims = std::mem::take(&mut self.victims);
            let outcomes = victims.iter().map(|_| Outcome::WriteFailed).collect();
            self.chest.place_all(victims, outcomes, self.evict);
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// Takes victims, a little from each shard in turn, until `usage -
    /// inflight` is down to `target`: clean values are dropped at once,
    /// dirty ones are returned, marked `evicting` and counted in flight.
    ///
    /// A clean value is dropped only while memory taken is above
    /// `clean_floor`: dropping one costs nothing now but a read later, so
    /// the margin below the budget that eviction keeps (the marks) is kept
    /// for dirty values, whose writes take time, and clean ones fill the
    /// budget. When the coldest value is clean and memory is already down
    /// to the floor, it stays where it was and taking stops.
    pub(crate) fn pick_victims(&self, target: usize, clean_floor: usize) -> Vec<Victim<K, V>> {
        let n = self.shards.len();
        let gap = self.config.budget.saturating_sub(target);
        let chunk = (gap / n).max(1);
        // About as many victims as values of the average weight make up
        // what is to be freed: a batch of small values is thousands long,
        // and growing the list one doubling at a time copied it over and
        // over (a fifth of W2's insert instructions). Allocated at the
        // first value to write (clean values are dropped without one).
        let average = self.budget.usage() / self.budget.resident().max(1);
        let expected = self.budget.staying().saturating_sub(target) / average.max(1);
        let mut victims = self.wb.victim_list();
        let mut idle = 0;
        while idle < n {
            if self.budget.staying() <= target {
                break;
            }
            let i = self.next_shard();
            let Some(taken) =
                self.take_victims(i, chunk, target, clean_floor, expected, &mut victims)
            else {
                break;
            };
            idle = if taken > 0 { 0 } else { idle + 1 };
        }
        if victims.is_empty() && victims.capacity() > 0 {
            // No value to write: kept for the next batch.
            self.wb.give_back(std::mem::take(&mut victims));
        }
        victims
    }

    /// Writes `victims` on this thread and applies the outcomes (`evict`:
    /// drop written values from memory; otherwise keep them as clean).
    /// Errors are counted and returned; failed values stay in memory.
    pub(crate) fn write_batch(&self, victims: Vec<Victim<K, V>>, evict: bool) -> Result<()> {
        join(self.write_victims(victims, evict))
    }

    /// [`write_batch`](Inner::write_batch), with the errors as a list.
    pub(crate) fn write_victims(&self, victims: Vec<Victim<K, V>>, evict: bool) -> Vec<Error> {
        let span = tracing::debug_span!("chest.evict", values = victims.len(), evict);
        let _entered = span.enter();
        let started = std::time::Instant::now();
        let bytes: usize = victims.iter().map(|v| v.weight).sum();
        let batch = Batch {
            chest: self,
            victims,
            evict,
        };
        let mut errors = Vec::new();
        let outcomes = self.encode_and_write(&batch.victims, &mut errors);
        batch.place(outcomes);
        tracing::debug!(
            weight = bytes,
            errors = errors.len(),
            secs = started.elapsed().as_secs_f64(),
            "batch written"
        );
        for e in &errors {
            tracing::warn!(error = %e, "spill");
        }
        self.store.reap();
        Counters::add(&self.counters.errors, errors.len() as u64);
        errors
    }

    /// Takes about `chunk` bytes of the coldest values of shard `i`: clean
    /// ones are dropped at once, dirty ones become victims to be written
    /// (still in memory, counted as in flight). `None`: the coldest value
    /// is clean and memory taken is down to `clean_floor` (see
    /// [`pick_victims`](Inner::pick_victims)), so taking stops. `expected`:
    /// about how many victims the whole batch takes (the list's size when
    /// its first victim comes).
    fn take_victims(
        &self,
        i: usize,
        chunk: usize,
        target: usize,
        clean_floor: usize,
        expected: usize,
        victims: &mut Vec<Victim<K, V>>,
    ) -> Option<usize> {
        let mut shard = self.lock_shard(i);
        let mut taken = 0;
        while taken < chunk {
            if self.budget.staying() <= target {
                break;
            }
            let Some((key, at)) = shard.pop_coldest() else {
                break;
            };
            let Some(slot) = shard.map.get_mut_hinted(&key, at) else {
                continue;
            };
            let Slot::Resident(r) = slot else { continue };
            let w = r.weight;
            match r.stored {
                Some(_) if self.budget.taken() <= clean_floor => {
                    shard.unpop(key, at);
                    return None;
                }
                Some(loc) => {
                    // Clean: an identical copy is stored; drop it without a write.
                    let freq = r.freq;
                    self.spill_resident(slot, loc);
                    self.count_evicted(&mut shard, &key, freq, loc);
                    Counters::add(&self.counters.evictions, 1);
                }
                None => {
                    if let Some(v) = self.victim_of(i, slot, key, at) {
                        if victims.capacity() == 0 {
                            victims.reserve(expected.min(1 << 16) + 1);
                        }
                        victims.push(v);
                    }
                }
            }
            taken += w;
        }
        Some(taken)
    }

    /// Drops the values the window of `shard` pushes out unused (see
    /// [`Shard::window_overflow`]): a clean one leaves memory as eviction
    /// drops it; one changed since it was loaded (it cannot be dropped) goes
    /// into the eviction order instead.
    pub(crate) fn drop_window_overflow(&self, shard: &mut Shard<K, V>) {
        while let Some((key, at)) = shard.window_overflow(&self.evicted) {
            let Some(slot) = shard.map.get_mut_hinted(&key, at) else {
                continue;
            };
            let Slot::Resident(r) = slot else { continue };
            match r.stored {
                Some(loc) => {
                    let freq = r.freq;
                    self.spill_resident(slot, loc);
                    // Its count stays in the sketch; it does not join the
                    // average of what eviction takes, which is the bar for
                    // the values in the eviction order.
                    shard.remember(self.hash_of(&key), freq);
                    Counters::add(&self.counters.evictions, 1);
                }
                None => shard.enqueue(&key),
            }
        }
    }

    /// A value of `key` left memory by eviction with `freq`, its stored
    /// copy `stored`: under [`Admission::Frequency`](crate::Admission::Frequency)
    /// its worth (count and size) joins the average of what eviction takes
    /// and its count stays in the shard's sketch; otherwise nothing is
    /// counted.
    fn count_evicted(&self, shard: &mut Shard<K, V>, key: &K, freq: Freq, stored: Loc) {
        if let Some(epoch) = shard.counting() {
            self.evicted.note(freq.get(epoch), u64::from(stored.len));
            shard.remember(self.hash_of(key), freq);
        }
    }

    /// Takes `key`'s resident, dirty value as a victim to be evicted.
    pub(crate) fn take_one(&self, shard: &mut Shard<K, V>, key: K) -> Option<Victim<K, V>> {
        shard.dequeue(&key);
        let i = self.shard_of(&key);
        let (at, slot) = shard.map.get_mut_positioned(&key)?;
        self.victim_of(i, slot, key, at)
    }

    fn victim_of(&self, shard: usize, slot: &mut Slot<V>, key: K, at: u32) -> Option<Victim<K, V>> {
        let Slot::Resident(r) = slot else { return None };
        if r.stored.is_some() || r.pinned || r.evicting {
            return None;
        }
        r.evicting = true;
        self.budget.start_write(r.weight);
        Some(Victim {
            shard,
            value: Arc::clone(&r.value),
            key,
            at,
            weight: r.weight,
        })
    }

    /// Serializes a value (a panicking serializer is an error).
    fn serialize(&self, key: &K, value: &V, buf: &mut Vec<u8>) -> Result<()> {
        let start = buf.len();
        let result = guard::catch("serializer", key, || self.serializer.serialize(value, buf))
            .and_then(|r| {
                r.map_err(|source| Error::Serialize {
                    key: format!("{key:?}"),
                    source,
                })
            });
        if result.is_err() {
            buf.truncate(start);
        }
        result
    }

    /// Serializes and writes one value as an object of its own.
    /// `hint`: the value's weight, to size the buffer.
    pub(crate) fn write_alone(&self, key: &K, value: &Arc<V>, hint: usize) -> Result<Loc> {
        let record = match self.shared_record(key, value)? {
            Some(record) => record,
            None => {
                let mut buf = self.store.buffer(hint.saturating_add(4).min(1 << 30));
                self.serialize(key, value, &mut buf)?;
                seal_whole(buf)
            }
        };
        let n = (record.len() - 4) as u64;
        let loc = self.store.write_wholes(vec![record])?[0];
        Counters::add(&self.counters.spills, 1);
        Counters::add(&self.counters.bytes_written, n);
        Ok(loc)
    }

    /// The record of a value that is its own encoding
    /// ([`Serializer::shared_bytes`]), checksummed in place; `None` if the
    /// serializer has no such form for it.
    fn shared_record(&self, key: &K, value: &Arc<V>) -> Result<Option<WholeRecord>> {
        let shared = guard::catch("serializer", key, || self.serializer.shared_bytes(value))?;
        Ok(shared.map(seal_shared))
    }

    /// Serializes a value: appended to `seg` as a record (`None`), or, if it
    /// is large, as a record of its own to be an object alone (`Some`). A
    /// large value that is its own encoding ([`Serializer::shared_bytes`])
    /// is not copied: its bytes are checksummed and written in place.
    fn encode(
        &self,
        key: &K,
        value: &Arc<V>,
        weight: usize,
        seg: &mut SegmentBuf,
    ) -> Result<Option<WholeRecord>> {
        let large = weight >= self.config.large_value;
        if large {
            if let Some(record) = self.shared_record(key, value)? {
                return Ok(Some(record));
            }
        }
        let mut own = Vec::new();
        let buf = if large {
            own = self.store.buffer(weight.saturating_add(4).min(1 << 30));
            &mut own
        } else {
            if seg.bytes.capacity() == 0 {
                // A kept buffer of a past segment (or large record), grown
                // as needed.
                seg.bytes = self.store.buffer(self.config.large_value);
            }
            &mut seg.bytes
        };
        let start = buf.len();
        self.serialize(key, value, buf)?;
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
    pub(crate) fn encode_and_write(
        &self,
        victims: &[Victim<K, V>],
        errors: &mut Vec<Error>,
    ) -> Vec<Outcome> {
        let mut outcomes: Vec<Outcome> = victims.iter().map(|_| Outcome::WriteFailed).collect();
        let mut seg = SegmentBuf::default();
        // Sized once: grown by doubling, these lists were the writer's
        // larger allocations, each served by `malloc` only after merging
        // the small blocks freed meanwhile.
        let mut seg_items = Vec::with_capacity(victims.len());
        let mut wholes: Vec<(usize, WholeRecord)> = Vec::new();
        let mut whole_bytes = 0;
        let mut next = 0;
        while next < victims.len() {
            if seg.records.capacity() == 0 {
                // As many as remain, or as a segment holds of 28-byte values.
                seg.records
                    .reserve((victims.len() - next).min(self.config.segment_bytes / 32));
            }
            // Serialize until a write is due, in one batch of the serializer.
            self.serializer.around_batch(|| {
                while next < victims.len() {
                    let (idx, v) = (next, &victims[next]);
                    next += 1;
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
                    if whole_bytes >= WHOLE_BATCH_BYTES
                        || wholes.len() >= WHOLE_BATCH_COUNT
                        || seg.bytes.len() >= self.config.segment_bytes
                    {
                        break;
                    }
                }
            });
            let done = next == victims.len();
            if !wholes.is_empty()
                && (done || whole_bytes >= WHOLE_BATCH_BYTES || wholes.len() >= WHOLE_BATCH_COUNT)
            {
                whole_bytes = 0;
                let (items, records): (Vec<usize>, Vec<WholeRecord>) = wholes.drain(..).unzip();
                let n: u64 = records.iter().map(|r| r.len() as u64 - 4).sum();
                match self.store.write_wholes(records) {
                    Ok(locs) => {
                        Counters::add(&self.counters.spills, locs.len() as u64);
                        Counters::add(&self.counters.bytes_written, n);
                        for (item, loc) in items.into_iter().zip(locs) {
                            outcomes[item] = Outcome::Written(loc);
                        }
                    }
                    Err(e) => errors.push(not_written(victims, &items, e)),
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
                        errors.push(not_written(victims, &seg_items, e));
                        seg_items.clear();
                    }
                }
            }
        }
        outcomes
    }

    /// Applies the outcomes of victims, under one lock of a shard for each
    /// run of its victims in the list (an eviction takes them a shard's
    /// chunk at a time, a flush a shard at a time: a few runs a shard at
    /// most). In the list's order, without sorting it: a copy of a list of
    /// thousands of small values, made for the sort, was one of the
    /// blocks glibc served only after merging every small block freed
    /// meanwhile.
    pub(crate) fn place_all(
        &self,
        mut victims: Vec<Victim<K, V>>,
        outcomes: Vec<Outcome>,
        evict: bool,
    ) {
        let mut iter = victims.drain(..).zip(outcomes).peekable();
        while let Some((first, outcome)) = iter.next() {
            let sid = first.shard;
            let mut shard = self.lock_shard(sid);
            self.place(&mut shard, first, outcome, evict);
            while let Some((v, outcome)) = iter.next_if(|(v, _)| v.shard == sid) {
                self.place(&mut shard, v, outcome, evict);
            }
        }
        drop(iter);
        if evict {
            // The list, empty, serves the next batch (a flush's list of
            // every dirty value is not kept past it).
            self.wb.give_back(victims);
            // Memory was freed (or the values were given back): callers
            // waiting for room look again.
            self.wb.wake();
        }
    }

    /// Applies one victim's outcome to its slot, if the slot still holds the
    /// value that was written (the same `Arc`):
    /// - written: an eviction drops the value from memory (`Spilled`); a
    ///   flush keeps it, clean. If the value got a stored copy meanwhile
    ///   (a flush wrote it while an eviction did too), the copy already
    ///   there is kept, this one released, and an eviction still evicts;
    /// - unserializable: pinned in memory, out of the eviction queue;
    /// - write failed: back in the eviction queue.
    ///
    /// If the value changed meanwhile (replaced, updated, removed), whoever
    /// changed it has put the key where it belongs; a written copy is
    /// garbage and is released.
    fn place(&self, shard: &mut Shard<K, V>, v: Victim<K, V>, outcome: Outcome, evict: bool) {
        if evict {
            self.budget.placed(v.weight);
        }
        let slot = match shard.map.get_mut_hinted(&v.key, v.at) {
            Some(slot @ Slot::Resident(_)) => slot,
            _ => {
                if let Outcome::Written(loc) = outcome {
                    self.store.release(loc);
                }
                return;
            }
        };
        let Slot::Resident(r) = &mut *slot else {
            unreachable!()
        };
        if !Arc::ptr_eq(&r.value, &v.value) {
            if let Outcome::Written(loc) = outcome {
                self.store.release(loc);
            }
            return;
        }
        if evict {
            r.evicting = false;
        }
        match outcome {
            Outcome::Written(loc) => {
                let stored = match r.stored {
                    Some(existing) => {
                        self.store.release(loc);
                        existing
                    }
                    None => loc,
                };
                if evict {
                    let freq = r.freq;
                    self.spill_resident(slot, stored);
                    self.count_evicted(shard, &v.key, freq, stored);
                    Counters::add(&self.counters.evictions, 1);
                } else {
                    r.stored = Some(stored);
                    if r.pinned {
                        // Written after all (a flush retries pinned values):
                        // it can leave memory like any other now.
                        r.pinned = false;
                        shard.enqueue(&v.key);
                    }
                }
            }
            Outcome::Unserializable => {
                r.pinned = true;
                shard.dequeue(&v.key);
            }
            Outcome::WriteFailed => shard.enqueue(&v.key),
        }
    }
}

/// The error of a write of the values `items` of `victims`, naming every
/// one's key.
fn not_written<K: Key, V>(victims: &[Victim<K, V>], items: &[usize], source: Error) -> Error {
    if items.is_empty() {
        return source;
    }
    Error::Write {
        keys: items
            .iter()
            .map(|&i| format!("{:?}", victims[i].key))
            .collect(),
        source: Box::new(source),
    }
}
