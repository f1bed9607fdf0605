//! [`Inner`]: what a chest holds — its shards, store, serializer, weigher,
//! budget, counters, and the background writers and readers — shared by
//! the API's calls and the engine's threads, with the small helpers every
//! part of the engine uses (which shard holds a key, its lock, whether
//! changes are allowed).

use std::fmt::Debug;
use std::hash::{BuildHasher, Hash};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard, Weak};

use crate::config::{Admission, Config, Key, Weigher};
use crate::engine::guard;
use crate::engine::read_queue::ReadAhead;
use crate::engine::window::WindowShare;
use crate::engine::write_queue::WriteBehind;
use crate::error::{Error, Result};
use crate::map::budget::Budget;
use crate::map::changes::Changes;
use crate::map::entry::{Resident, Slot};
use crate::map::policy::cost::Worth;
use crate::map::policy::frequency::Evicted;
use crate::map::shard::{Shard, ShardHash};
use crate::stats::Counters;
use crate::store::{Loc, Store};
use crate::value::serializer::Serializer;

/// A shard behind its lock, on cache lines of its own (128 bytes: x86
/// processors fetch lines in pairs): threads working in two shards do not
/// take a line from each other when they lock, stamp a tick or count a
/// hit. Without it, where a shard's lock word falls depends on the size
/// of a shard: when the index's table grew by 8 bytes, two threads of hits
/// (W3) ran 10% slower than with this.
#[repr(align(128))]
pub(crate) struct ShardLock<K, V>(Mutex<Shard<K, V>>);

impl<K, V> std::ops::Deref for ShardLock<K, V> {
    type Target = Mutex<Shard<K, V>>;

    fn deref(&self) -> &Self::Target {
        &self.0
    }
}

/// What a [`Chest`] holds: everything its own calls and its background
/// writers and readers work on.
pub(crate) struct Inner<K: Key, V: Send + Sync + 'static, S: Serializer<V>> {
    pub(crate) shards: Box<[ShardLock<K, V>]>,
    /// Picks each key's shard (see [`ShardHash`]).
    hasher: ShardHash,
    pub(crate) store: Store,
    pub(crate) serializer: S,
    pub(crate) weigher: Weigher<V>,
    pub(crate) config: Config,
    /// The memory counters and their rules (see [`crate::map::budget`]).
    pub(crate) budget: Budget,
    /// The changes of the map, and how many of them are durable.
    pub(crate) changes: Changes,
    /// How many keys the map holds: changed only by [`Inner::keys_added`]
    /// and [`Inner::keys_removed`], under the shard lock of the change.
    len: AtomicUsize,
    /// The shard eviction takes from next ([`Inner::next_shard`]).
    cursor: AtomicUsize,
    /// The counts of the values eviction takes (for
    /// [`Admission::Frequency`]).
    pub(crate) evicted: Evicted,
    /// The share of memory the windows of loads on probation may hold
    /// (for [`Admission::Frequency`]).
    pub(crate) window: WindowShare,
    pub(crate) counters: Counters,
    pub(crate) persistent: bool,
    pub(crate) flush_lock: Mutex<()>,
    /// Set by `close`: the drop has nothing left to do.
    closed: AtomicBool,
    /// Set when a panic poisoned a shard's lock: changes are refused.
    poisoned: AtomicBool,
    /// Newer manifests found damaged and skipped at open.
    pub(crate) skipped_manifests: Vec<String>,
    /// The background writers' queue and state.
    pub(crate) wb: WriteBehind<K, V>,
    /// The background readers' queue and state.
    pub(crate) ra: ReadAhead<K, V>,
    /// This, as the writers and readers it starts hold it.
    pub(crate) me: Weak<Self>,
}

/// Memory the chest holds for each value in memory beyond the value itself:
/// its entry, the counts of its shared handle, its places in the eviction
/// order and the allocator's headers of those allocations. Counted in the
/// value's weight, so that the budget bounds what the process holds (for
/// 100-byte values this is about as much again as the values).
pub(crate) fn entry_overhead<K, V>() -> usize {
    std::mem::size_of::<Resident<V>>()
        + 2 * std::mem::size_of::<usize>()
        + 2 * std::mem::size_of::<crate::map::policy::lru::Queued<K>>()
        + 3 * 16
}

/// Slots of each shard's doorkeeper (see [`Admission`]): about one per KiB
/// of budget in all, between 1,024 and 65,536 (4 bytes each), 0 when every
/// load is kept.
fn recent_slots(config: &Config) -> usize {
    match config.admission {
        Admission::EveryRead | Admission::Frequency => 0,
        Admission::SecondRead => {
            ((config.budget >> 10).clamp(1 << 10, 1 << 16) / config.shards).max(16)
        }
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    pub(crate) fn new_empty(
        mut config: Config,
        serializer: S,
        weigher: Weigher<V>,
        store: Store,
        persistent: bool,
    ) -> Self {
        config.writers = Some(config.writers.unwrap_or_else(|| {
            if store.backend().capabilities().write_concurrency > 1 {
                2
            } else {
                1
            }
        }));
        // How counts are weighed by size: by what a read from the store
        // costs.
        let worth = Worth::new(
            config
                .read_cost
                .unwrap_or_else(|| store.backend().capabilities().read_cost)
                .latency_bytes(),
        );
        let shards = (0..config.shards)
            .map(|_| {
                let shard = Shard::new(config.policy, recent_slots(&config));
                ShardLock(Mutex::new(match config.admission {
                    // The same sizing as the doorkeeper's: a counter a row
                    // per KiB of budget, at least 1,024 a chest.
                    Admission::Frequency => shard.counting_frequencies(
                        ((config.budget >> 10).max(1 << 10) / config.shards).max(16),
                        worth,
                    ),
                    _ => shard,
                }))
            })
            .collect();
        let budget = Budget::new(config.budget, config.evict_batch, config.large_value);
        Self {
            shards,
            hasher: ShardHash::default(),
            store,
            serializer,
            weigher,
            config,
            budget,
            changes: Changes::default(),
            len: AtomicUsize::new(0),
            cursor: AtomicUsize::new(0),
            evicted: Evicted::new(worth),
            window: WindowShare::default(),
            counters: Counters::default(),
            persistent,
            flush_lock: Mutex::new(()),
            closed: AtomicBool::new(false),
            poisoned: AtomicBool::new(false),
            skipped_manifests: Vec::new(),
            wb: WriteBehind::default(),
            ra: ReadAhead::default(),
            me: Weak::new(),
        }
    }

    pub(crate) fn location(&self) -> &str {
        self.store.location()
    }

    /// The weight of `key`'s `value`: the weigher's answer (a panic in it
    /// is an error) plus the chest's own bookkeeping for an entry.
    pub(crate) fn weigh<Q: Debug + ?Sized>(&self, key: &Q, value: &V) -> Result<usize> {
        guard::catch("weigher", key, || (self.weigher)(value)).map(|w| {
            if self.config.entry_overhead {
                w.saturating_add(entry_overhead::<K, V>())
            } else {
                w
            }
        })
    }

    pub(crate) fn memory_usage(&self) -> usize {
        self.budget.usage()
    }

    pub(crate) fn len(&self) -> usize {
        self.len.load(Ordering::Relaxed)
    }

    /// `n` keys came into the map (under the shard lock of the change).
    pub(crate) fn keys_added(&self, n: usize) {
        self.len.fetch_add(n, Ordering::Relaxed);
    }

    /// `n` keys left the map (under the shard lock of the change).
    pub(crate) fn keys_removed(&self, n: usize) {
        let before = self.len.fetch_sub(n, Ordering::Relaxed);
        debug_assert!(before >= n, "{n} keys removed of {before}");
    }

    /// The hash of a key, as the chest spreads keys over its shards.
    pub(crate) fn hash_of<Q: Hash + ?Sized>(&self, key: &Q) -> u64 {
        self.hasher.hash_one(key)
    }

    pub(crate) fn shard_of<Q: Hash + ?Sized>(&self, key: &Q) -> usize {
        ((self.hash_of(key) >> 7) as usize) & (self.shards.len() - 1)
    }

    /// Locks shard `i`. A lock poisoned by a panic the chest could not
    /// catch makes the chest refuse changes from then on.
    pub(crate) fn lock_shard(&self, i: usize) -> MutexGuard<'_, Shard<K, V>> {
        self.shards[i].lock().unwrap_or_else(|e| {
            self.poisoned.store(true, Ordering::SeqCst);
            e.into_inner()
        })
    }

    pub(crate) fn shard<Q: Hash + ?Sized>(&self, key: &Q) -> MutexGuard<'_, Shard<K, V>> {
        self.lock_shard(self.shard_of(key))
    }

    pub(crate) fn check_writable(&self) -> Result<()> {
        if self.config.read_only {
            return Err(Error::ReadOnly {
                location: self.location().to_string(),
            });
        }
        if self.is_poisoned() {
            return Err(Error::Poisoned {
                location: self.location().to_string(),
            });
        }
        Ok(())
    }

    /// The move `Resident` → `Spilled(loc)` of [`crate::map::entry`]'s
    /// table: the value leaves memory (its stored copy at `loc` stays) and
    /// the budget takes its weight back. Called under the slot's shard lock;
    /// a slot that is not resident is left as it is.
    pub(crate) fn spill_resident(&self, slot: &mut Slot<V>, loc: Loc) {
        if let Slot::Resident(r) = slot {
            let weight = r.weight;
            *slot = Slot::Spilled(loc);
            self.budget.release(weight);
        }
    }

    /// Hits the shards counted and have not yet added to the chest's
    /// counter (see [`Shard::count_hit`]; takes each shard's lock).
    pub(crate) fn pending_hits(&self) -> u64 {
        (0..self.shards.len())
            .map(|i| self.lock_shard(i).pending_hits())
            .sum()
    }

    /// The shard eviction takes from next: each in turn.
    pub(crate) fn next_shard(&self) -> usize {
        self.cursor.fetch_add(1, Ordering::Relaxed) % self.shards.len()
    }

    /// Marks the chest closed by its `close` (its drop then does nothing).
    pub(crate) fn mark_closed(&self) {
        self.closed.store(true, Ordering::Relaxed);
    }

    /// Whether `close` was called.
    pub(crate) fn is_closed(&self) -> bool {
        self.closed.load(Ordering::Relaxed)
    }

    /// Whether a panic poisoned a shard's lock (changes are refused).
    pub(crate) fn is_poisoned(&self) -> bool {
        self.poisoned.load(Ordering::SeqCst)
    }

    /// Records a change of the map; called under the changed key's shard lock.
    pub(crate) fn bump(&self) {
        self.changes.record();
    }
}
