//! Reads of spilled values: `get` misses, `update` of a spilled value and
//! `prefetch`. The read and the decoding happen with no lock held. A value
//! to be kept in memory, or a large one, is *loaded*: the slot is `Loading`
//! meanwhile, so concurrent readers of the key wait for this one read (see
//! [`crate::map::entry`]). A small value that is not to be kept is *read
//! through* ([`Inner::read_through`]): the slot stays `Spilled`, and
//! concurrent readers each read it (cheaper, for a small value, than
//! publishing one read to the others).

use std::borrow::Borrow;
use std::collections::VecDeque;
use std::fmt::Debug;
use std::hash::Hash;
use std::sync::Arc;

use crate::config::{Admission, Key};
use crate::engine::guard;
use crate::engine::inner::Inner;
use crate::error::{BackendError, Error, Result};
use crate::map::entry::{Load, Resident, Slot};
use crate::map::policy::frequency::Keep;
use crate::stats::Counters;
use crate::store::{object_name, Checked, Loc, ReadError};
use crate::value::serializer::Serializer;

/// A value as `fetch` found or loaded it.
pub(crate) struct Fetched<V> {
    pub value: Arc<V>,
    /// Its weight; 0 for a value read through without being kept (see
    /// [`Inner::read_through`]), which only `get` asks for and does not use.
    pub weight: usize,
    /// Where it was loaded from (meaningful for loaded values only).
    pub loc: Loc,
}

/// A slot turned `Loading` by this thread. If it is dropped without
/// [`Inner::finish_load`] (a panic in a backend), the slot goes back to
/// `Spilled` and the waiters try again themselves.
pub(crate) struct LoadGuard<'a, K: Key, V: Send + Sync + 'static, S: Serializer<V>, Q: ?Sized>
where
    K: Borrow<Q>,
    Q: Hash + Eq,
{
    pub(crate) chest: &'a Inner<K, V, S>,
    pub(crate) key: &'a Q,
    pub(crate) load: Option<Arc<Load<V>>>,
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>, Q: Hash + Eq + ?Sized> Drop
    for LoadGuard<'_, K, V, S, Q>
where
    K: Borrow<Q>,
{
    fn drop(&mut self) {
        if let Some(load) = self.load.take() {
            let mut shard = self.chest.shard(self.key);
            if let Some(slot) = shard.map.get_mut(self.key) {
                if matches!(slot, Slot::Loading(l) if Arc::ptr_eq(l, &load)) {
                    *slot = Slot::Spilled(load.loc);
                }
            }
            drop(shard);
            load.finish(None);
        }
    }
}

/// What a value of `len` stored bytes is counted as while it is on its way
/// into memory (see [`Inner::reserve_load`]): its bytes, a little for its
/// weight beyond them (a `Vec`'s spare capacity), and the chest's own
/// bookkeeping of an entry.
pub(crate) fn load_estimate(len: usize) -> usize {
    len.saturating_add(len / 64).saturating_add(256)
}

/// The room a value of `len` stored bytes takes while it is loaded to be
/// kept by a chest of `budget` bytes: its [`load_estimate`], or nothing for
/// a value heavier than the whole budget (it is not kept: it takes only the
/// one value per thread while it is read).
pub(crate) fn kept_share(len: usize, budget: usize) -> usize {
    let estimate = load_estimate(len);
    if estimate > budget {
        0
    } else {
        estimate
    }
}

/// The size of the chunk the values next in line (their `shares`, in
/// order) are loaded in: as many as fit together under `limit`, at least
/// one. Returns how many, and the room they need together.
pub(crate) fn next_chunk(shares: impl IntoIterator<Item = usize>, limit: usize) -> (usize, usize) {
    let mut shares = shares.into_iter();
    let Some(first) = shares.next() else {
        return (0, 0);
    };
    let (mut count, mut need) = (1, first);
    for more in shares {
        if need.saturating_add(more) > limit {
            break;
        }
        count += 1;
        need += more;
    }
    (count, need)
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// Loads, to keep, the values that `guards` hold `Loading` (those of a
    /// prefetch or a read-ahead), a chunk at a time: room for each chunk is
    /// reserved first ([`Inner::reserve_load`]: it evicts, and waits for
    /// room while writes or other loads are on their way), its values are
    /// read together (concurrently where the backend can), installed, and
    /// their reservation given back; then the budget is enforced. So the
    /// values of a window, however large, and of windows loaded by several
    /// threads at once, never take memory past the budget together.
    /// Returns each guard's outcome, in order.
    pub(crate) fn load_kept<Q>(
        &self,
        guards: Vec<LoadGuard<'_, K, V, S, Q>>,
    ) -> Vec<Result<Option<Fetched<V>>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let estimate = |g: &LoadGuard<'_, K, V, S, Q>| {
            g.load.as_ref().map_or(0, |l| {
                kept_share(self.store.value_len(l.loc), self.config.budget)
            })
        };
        // A quarter of the budget at a time: several chunks (of this call,
        // of other threads) can be on their way while the rest is in use.
        let limit = (self.config.budget / 4).max(1);
        let mut outcomes = Vec::with_capacity(guards.len());
        let mut rest: VecDeque<_> = guards.into();
        while !rest.is_empty() {
            let (count, mut need) = next_chunk(rest.iter().map(estimate), limit);
            let mut chunk: Vec<_> = rest.drain(..count).collect();
            if !self.reserve_load(need, chunk.len() == 1) {
                // No room for the chunk and nothing on its way to make any:
                // one value at a time (each may take the budget past by
                // itself, as a `get` miss does).
                for g in chunk.drain(1..).rev() {
                    rest.push_front(g);
                }
                need = estimate(&chunk[0]);
                self.reserve_load(need, true);
            }
            let mut reserved = Reserved {
                chest: self,
                left: need,
            };
            let locs: Vec<Loc> = chunk
                .iter()
                .filter_map(|g| g.load.as_ref().map(|l| l.loc))
                .collect();
            let reads = self.store.read_many(&locs);
            for (guard, read) in chunk.into_iter().zip(reads) {
                let share = estimate(&guard);
                let finished = self.finish_load(guard, read, Keep::Main);
                reserved.give_back(share);
                outcomes.push(finished);
            }
            drop(reserved);
            self.store.reap();
            // Errors of the writes this causes are reported later, as for `get`.
            self.enforce_budget();
        }
        outcomes
    }

    /// Reads the value stored at `loc` for `key`, spilled there when the
    /// caller looked, without making it resident: the slot is not touched,
    /// so a read of a small value that is not to be kept costs no load to
    /// publish, no second lookup and no wake-up of waiters (`get` of many
    /// small values on a chest much larger than its budget, W2). Concurrent
    /// misses of one key each read it.
    ///
    /// The read runs with no lock held, so the key may change meanwhile (an
    /// insert, a remove, a compaction moving its record): objects are never
    /// rewritten and their ids never reused, so bytes that read back whole
    /// are the value the key had when the caller looked, a `get` ordered
    /// before the change. A read that fails is reported only if the key
    /// still refers to `loc`; otherwise the failure may come from the change
    /// (its object deleted) and `Ok(None)` tells the caller to look again.
    pub(crate) fn read_through<Q>(&self, key: &Q, loc: Loc) -> Result<Option<Fetched<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let read = self.store.read(loc);
        match self.decode(key, loc, read) {
            Ok(value) => {
                tracing::trace!("read through");
                Ok(Some(Fetched {
                    value: Arc::new(value),
                    weight: 0,
                    loc,
                }))
            }
            Err(e) => {
                let shard = self.shard(key);
                let still = match shard.map.get(key) {
                    Some(Slot::Spilled(l)) => *l == loc,
                    Some(Slot::Loading(load)) => load.loc == loc,
                    _ => false,
                };
                drop(shard);
                if still {
                    tracing::warn!(error = %e, "read");
                    Err(e)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Decodes what was read for a guarded load and installs it: resident
    /// and clean if it is to be kept and fits the budget, back to `Spilled`
    /// if not. `Ok(None)`
    /// if the read failed after the key changed meanwhile (the failure may
    /// come from that change): the caller looks again.
    pub(crate) fn finish_load<Q>(
        &self,
        mut guard: LoadGuard<'_, K, V, S, Q>,
        read: std::result::Result<Checked, ReadError>,
        place: Keep,
    ) -> Result<Option<Fetched<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        let key = guard.key;
        let Some(load) = guard.load.as_ref().map(Arc::clone) else {
            return Ok(None);
        };
        let loc = load.loc;
        let decoded = self
            .decode(key, loc, read)
            .and_then(|value| Ok((self.weigh(key, &value)?, Arc::new(value))));
        let mut shard = self.shard(key);
        let tick = shard.tick();
        let ours = matches!(shard.map.get(key), Some(Slot::Loading(l)) if Arc::ptr_eq(l, &load));
        guard.load = None;
        match decoded {
            Ok((weight, value)) => {
                if ours {
                    let fits = place != Keep::No && weight <= self.config.budget;
                    let freq = shard
                        .counting()
                        .map(|_| shard.loaded_freq(self.hash_of(key)));
                    if let Some(slot) = shard.map.get_mut(key) {
                        *slot = if fits {
                            let mut r = Resident::new(Arc::clone(&value), weight, tick, Some(loc));
                            if let Some(freq) = freq {
                                r.freq = freq;
                            }
                            Slot::Resident(r)
                        } else {
                            Slot::Spilled(loc)
                        };
                    }
                    if fits && place == Keep::Window {
                        self.budget.admit(weight);
                        // On probation: it must be used again while in the
                        // window to stay; the oldest the window pushes out
                        // leave memory (they are clean: just loaded).
                        if let Some(k) = shard.map.get_key_value(key).map(|(k, _)| k.clone()) {
                            shard.enqueue_window(&k);
                        }
                        self.drop_window_overflow(&mut shard);
                    } else if fits {
                        self.budget.admit(weight);
                        // The eviction order owns a copy of the key.
                        if let Some(k) = shard.map.get_key_value(key).map(|(k, _)| k.clone()) {
                            shard.enqueue(&k);
                        }
                        // Loaded because it is wanted (read now, or soon: a
                        // prefetch, a read-ahead): it counts as used once
                        // queued, so the values queued before it that were
                        // not used since go first. Otherwise a window read
                        // ahead would be the first to go when the next one
                        // makes room, before the values already used.
                        let used = shard.tick();
                        if let Some(Slot::Resident(r)) = shard.map.get_mut(key) {
                            r.tick = used;
                        }
                    }
                }
                drop(shard);
                load.finish(Some((Arc::clone(&value), weight)));
                Ok(Some(Fetched { value, weight, loc }))
            }
            Err(e) => {
                if ours {
                    if let Some(slot) = shard.map.get_mut(key) {
                        *slot = Slot::Spilled(loc);
                    }
                }
                drop(shard);
                load.finish(None);
                if ours {
                    Err(e)
                } else {
                    Ok(None)
                }
            }
        }
    }

    /// Turns a record read from `loc` into the value of `key`.
    fn decode<Q: Debug + ?Sized>(
        &self,
        key: &Q,
        loc: Loc,
        read: std::result::Result<Checked, ReadError>,
    ) -> Result<V> {
        let object = || object_name(loc.obj).to_string();
        let record = read.map_err(|e| match e {
            ReadError::Backend(BackendError::NotFound { .. })
                if self.config.read_only && self.store.snapshot_is_stale() =>
            {
                Error::StaleSnapshot {
                    key: format!("{key:?}"),
                    object: object(),
                    location: self.location().to_string(),
                }
            }
            ReadError::Backend(BackendError::NotFound { .. }) => Error::Corrupt {
                key: format!("{key:?}"),
                object: object(),
                location: self.location().to_string(),
                detail: "the object is missing".into(),
            },
            ReadError::Backend(e) => Error::Read {
                key: format!("{key:?}"),
                source: Box::new(Error::Backend(e)),
            },
            ReadError::Corrupt(detail) => Error::Corrupt {
                key: format!("{key:?}"),
                object: object(),
                location: self.location().to_string(),
                detail,
            },
        })?;
        Counters::add(&self.counters.loads, 1);
        Counters::add(&self.counters.bytes_read, record.len() as u64);
        guard::catch("deserializer", key, || record.deserialize(&self.serializer))?.map_err(
            |source| Error::Deserialize {
                key: format!("{key:?}"),
                object: object(),
                location: self.location().to_string(),
                source,
            },
        )
    }
}

/// Room reserved for a chunk of loads ([`Inner::reserve_load`]); what is
/// not given back as the values are installed is given back when it is
/// dropped (however the chunk ended, a panic included).
struct Reserved<'a, K: Key, V: Send + Sync + 'static, S: Serializer<V>> {
    chest: &'a Inner<K, V, S>,
    left: usize,
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Reserved<'_, K, V, S> {
    /// A value is installed (or given up): its share goes back.
    fn give_back(&mut self, share: usize) {
        let share = share.min(self.left);
        self.left -= share;
        self.chest.unreserve(share);
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Drop for Reserved<'_, K, V, S> {
    fn drop(&mut self) {
        self.chest.unreserve(self.left);
    }
}

/// `Fetched::loc` of a value found resident without a stored copy.
const NO_LOC: Loc = Loc {
    obj: std::num::NonZeroU32::MAX,
    offset: 0,
    len: 0,
};

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// How many values a shard's window of loads on probation may hold
    /// now, at a miss: the chest's [`WindowShare`](crate::engine::window::WindowShare)
    /// of the values a shard holds on average (the sample it climbs by fed
    /// with this miss), and the least share's (while the window is rarely
    /// used).
    fn window_cap(&self) -> (usize, usize) {
        if self.config.admission != Admission::Frequency {
            return (1, 1);
        }
        use std::sync::atomic::Ordering::Relaxed;
        let hits = self.counters.hits.load(Relaxed);
        let gets = hits + self.counters.misses.load(Relaxed);
        let resident = self.budget.resident();
        // Full: eviction has begun and memory is more than half taken (not
        // "no room": eviction of written values goes below the budget and
        // back many times a second, and would end every sample).
        let full = self.counters.evictions.load(Relaxed) > 0
            && self.budget.taken() >= self.budget.limit() / 2;
        self.window.missed(hits, gets, resident, full);
        let per_shard = (resident / self.shards.len()) as f64;
        (
            (per_shard * self.window.share()) as usize,
            (per_shard * crate::map::policy::climber::START) as usize,
        )
    }

    /// The value of `key`: from memory, from a load another thread is
    /// making, or loaded now. A value loaded now stays in memory if `keep`,
    /// or else as the chest's [`Admission`](crate::Admission) decides.
    ///
    /// Inlined into its callers (`get`, the upserts): a hit is a few dozen
    /// instructions, and a call with its `Fetched` returned through memory
    /// cost W3 about 9% more instructions when this was left out of line.
    #[inline]
    pub(crate) fn fetch<Q>(&self, key: &Q, keep: bool) -> Result<Option<Fetched<V>>>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized,
    {
        loop {
            let mut shard = self.shard(key);
            let tick = shard.tick();
            let waiting = match shard.map.get_mut(key) {
                None => return Ok(None),
                Some(Slot::Resident(r)) => {
                    r.tick = tick;
                    let fetched = Fetched {
                        value: Arc::clone(&r.value),
                        weight: r.weight,
                        loc: r.stored.unwrap_or(NO_LOC),
                    };
                    if let Some(n) = shard.count_hit() {
                        Counters::add(&self.counters.hits, n);
                    }
                    return Ok(Some(fetched));
                }
                Some(Slot::Loading(load)) => Arc::clone(load),
                Some(Slot::Spilled(loc)) => {
                    let loc = *loc;
                    // Room (asked by frequency admission only): memory not
                    // filled up to where eviction stops (after an eviction,
                    // what was freed is for the values that win their
                    // place), or, when an eviction empties most of a small
                    // budget, to half of it.
                    let room = self.config.admission == Admission::Frequency
                        && self
                            .budget
                            .taken()
                            .saturating_add(self.store.value_len(loc))
                            <= self.marks().low.max(self.budget.limit() / 2);
                    let place = if keep {
                        Keep::Main
                    } else {
                        let (window, window_least) = self.window_cap();
                        shard.keep_load(
                            self.hash_of(key),
                            room,
                            self.evicted.typical(u64::from(loc.len)),
                            window,
                            window_least,
                        )
                    };
                    let keep = place != Keep::No;
                    if !keep && (loc.len as usize) < self.config.large_value {
                        // A small value not to be kept: read through. Nothing
                        // in memory changes, so the slot stays `Spilled` and
                        // no load is published. (A large one, in a segment
                        // or an object of its own, is loaded the long way,
                        // so that concurrent misses of it share one read,
                        // which then costs more than the rest.)
                        drop(shard);
                        Counters::add(&self.counters.misses, 1);
                        let span = tracing::trace_span!("chest.load", object = loc.obj.get());
                        let _entered = span.enter();
                        match self.read_through(key, loc)? {
                            Some(fetched) => return Ok(Some(fetched)),
                            None => continue,
                        }
                    }
                    let load = Load::new(loc);
                    if let Some(slot) = shard.map.get_mut(key) {
                        *slot = Slot::Loading(Arc::clone(&load));
                    }
                    drop(shard);
                    Counters::add(&self.counters.misses, 1);
                    let guard = LoadGuard {
                        chest: self,
                        key,
                        load: Some(load),
                    };
                    let span = tracing::trace_span!("chest.load", object = loc.obj.get());
                    let _entered = span.enter();
                    let started = std::time::Instant::now();
                    let read = self.store.read(loc);
                    let finished = self.finish_load(guard, read, place);
                    match &finished {
                        Ok(_) => tracing::trace!(secs = started.elapsed().as_secs_f64(), "loaded"),
                        Err(e) => tracing::warn!(error = %e, "load"),
                    }
                    self.store.reap();
                    match finished? {
                        Some(fetched) => {
                            // The read succeeded; a failure to make room is
                            // counted in the stats and reported by the next
                            // insert or flush.
                            self.enforce_budget();
                            return Ok(Some(fetched));
                        }
                        None => continue,
                    }
                }
            };
            drop(shard);
            Counters::add(&self.counters.misses, 1);
            if let Some((value, weight)) = waiting.wait() {
                return Ok(Some(Fetched {
                    value,
                    weight,
                    loc: waiting.loc,
                }));
            }
            // That load failed: look again (and read it ourselves).
        }
    }

    /// [`Chest::prefetch`](crate::Chest::prefetch), whose documentation says what it does.
    pub(crate) fn prefetch<'q, Q>(&self, keys: impl IntoIterator<Item = &'q Q>) -> Result<usize>
    where
        K: Borrow<Q>,
        Q: Hash + Eq + Debug + ?Sized + 'q,
    {
        let keys: Vec<&Q> = keys.into_iter().collect();
        // The window's values in memory go last when room is made for the
        // others (a chunk at a time, as they are read: `load_kept`).
        self.mark_used(keys.iter().copied());
        let mut guards = Vec::new();
        for key in keys {
            let mut shard = self.shard(key);
            if let Some(slot @ Slot::Spilled(_)) = shard.map.get_mut(key) {
                let Slot::Spilled(loc) = *slot else {
                    unreachable!()
                };
                let load = Load::new(loc);
                *slot = Slot::Loading(Arc::clone(&load));
                guards.push(LoadGuard {
                    chest: self,
                    key,
                    load: Some(load),
                });
            }
        }
        let mut loaded = 0;
        let mut first_error = None;
        for finished in self.load_kept(guards) {
            match finished {
                Ok(Some(_)) => loaded += 1,
                Ok(None) => {}
                Err(e) => {
                    first_error.get_or_insert(e);
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(loaded),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_load_is_counted_at_least_as_its_bytes() {
        for len in [0, 1, 100, 4096, 1 << 20, usize::MAX / 2] {
            assert!(load_estimate(len) > len, "{len}");
        }
        assert_eq!(load_estimate(usize::MAX), usize::MAX, "saturates");
    }

    #[test]
    fn a_value_heavier_than_the_budget_takes_no_room() {
        let budget = 1 << 20;
        assert_eq!(kept_share(budget, budget), 0);
        assert_eq!(kept_share(1000, budget), load_estimate(1000));
        let largest_kept = (0..budget)
            .rev()
            .find(|&l| load_estimate(l) <= budget)
            .unwrap();
        assert_eq!(
            kept_share(largest_kept, budget),
            load_estimate(largest_kept)
        );
        assert_eq!(kept_share(largest_kept + 1, budget), 0);
    }

    #[test]
    fn a_chunk_takes_values_in_order_while_they_fit() {
        assert_eq!(next_chunk([10, 20, 30, 40], 60), (3, 60));
        assert_eq!(next_chunk([10, 20, 30, 40], 59), (2, 30));
        // A value that does not fit ends the chunk, even if a later one would.
        assert_eq!(next_chunk([50, 20, 1], 60), (1, 50));
        assert_eq!(next_chunk([0, 0, 0], 1), (3, 0));
    }

    #[test]
    fn a_chunk_holds_at_least_one_value() {
        assert_eq!(next_chunk([100, 1], 10), (1, 100));
        assert_eq!(next_chunk([usize::MAX, 1], 10), (1, usize::MAX));
        assert_eq!(next_chunk([], 10), (0, 0));
    }
}
