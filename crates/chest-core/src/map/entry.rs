//! The life of an entry: the states a key's slot goes through, and which
//! lock or atomic guards each move.
//!
//! ```text
//! from                      move (by whom)                               to
//! ────────────────────────  ───────────────────────────────────────────  ─────────────────────────
//! (absent)                  insert                                       Resident dirty
//! Resident dirty            an eviction takes it (evicting call) and     Resident dirty, evicting
//!                           hands its batch to the writer (queued)       (being written)
//! Resident dirty, evicting  its write lands (writer; no lock meanwhile)  Spilled(loc)
//!                           its write fails (writer)                     Resident dirty (queued)
//!                           the serializer fails or panics (writer)      Resident dirty, pinned
//!                           the chest is dropped before it is written    Resident dirty (queued)
//!                           update (the caller; its write is released    Resident dirty (new value)
//!                           when it lands: the update wins)
//! Resident dirty (any)      a flush writes it                            Resident clean(loc)
//!                           (evicting: stays evicting; when its write
//!                           lands, the flush's copy is kept, it is
//!                           evicted)
//! Resident clean(loc)       an eviction takes it (no write)              Spilled(loc)
//! Spilled(loc)              get / update / prefetch misses, read_ahead   Loading(loc)
//!                           (its job then waits for a reader thread)
//!                           a get miss of a small value not to be kept   Spilled(loc) (unchanged)
//!                           (read through: no lock held, nothing
//!                           published; see `Inner::read_through`)
//! Loading(loc)              read and decoded, to be kept (see            Resident clean(loc)
//!                           `Admission`) and fits the budget
//!                           not kept, heavier than the budget, or the    Spilled(loc)
//!                           read failed
//! any                       insert, update                               Resident dirty
//! any                       remove                                       (absent)
//! ```
//!
//! - **Resident, dirty** (`stored: None`): the value exists only in memory.
//!   It is in its shard's eviction queue unless it is *pinned* (its
//!   serializer failed: it stays in memory until it is replaced, updated,
//!   or a flush manages to write it) or *evicting*.
//! - **Resident, dirty, evicting**: taken by an eviction batch, which the
//!   chest's background writer (see [`crate::engine::writer`]) serializes and
//!   writes with no lock held. The value stays resident meanwhile: `get`
//!   reads it from memory, `update` changes it (a copy, as the batch holds
//!   a handle), and its weight counts in `usage` — and in `inflight` —
//!   until the batch is placed, so the bytes in flight count against the
//!   budget.
//! - **Resident, clean** (`stored: Some(loc)`): an identical copy is stored
//!   at `loc`; evicting it costs no write.
//! - **Spilled(loc)**: only the stored copy exists (12 bytes in memory).
//! - **Loading(load)**: a reader is reading `loc` outside the lock (or a
//!   read-ahead job waits for a background reader, see
//!   [`crate::engine::readahead`]); other readers of the key wait for that one read
//!   instead of making their own.
//!
//! `insert`, `update` and `remove` may hit a key in any state: they replace
//! the slot (or change the value in place) and release the stored copy the
//! old state held, if any. A writer that finishes after the slot changed
//! (an eviction batch, a flush, a load, a compaction) sees that the slot no
//! longer holds what it wrote or read (`Arc::ptr_eq` on the value, or on the
//! load) and releases what it made instead of installing it.
//!
//! What guards what:
//! - a slot, its place in the eviction queue, its `evicting` and `pinned`
//!   marks, and the budget's `usage`, `resident` and `inflight` counters'
//!   share of it (see [`crate::map::budget`]) and `len` change only under
//!   the shard's mutex (`inflight` grows when a victim is marked
//!   `evicting`, and shrinks when its batch places it, whatever became of
//!   the slot meanwhile); the budget's `reserved` room for loads on their
//!   way is taken under the write-behind mutex and given back with none;
//!   a resident value leaves memory through one move,
//!   `Inner::spill_resident`;
//! - the `changes` counter is bumped under the shard's mutex by every
//!   insert, update and remove, after the change is in the map, so a flush
//!   that reads it before visiting the shards either sees the change or
//!   leaves `changes` ahead of what it committed (and the next flush writes);
//! - the store's object table has its own mutex, always taken after a
//!   shard's, never before; no I/O is done under either;
//! - the writers' queue, the batches not yet placed and the errors not yet
//!   reported are under the write-behind mutex, a leaf taken with no other
//!   lock held (see [`crate::engine::writer`]; whether there are errors is
//!   also in an atomic, changed under it and read without it); so is the
//!   mutex of the empty list a placed eviction batch gives back for the
//!   next one.

use std::sync::{Arc, Condvar, Mutex, PoisonError};

use crate::map::policy::frequency::Freq;
use crate::store::Loc;

/// A value in memory.
pub(crate) struct Resident<V> {
    pub value: Arc<V>,
    pub weight: usize,
    /// Shard clock at the last access (for LRU).
    pub tick: u64,
    /// How often it was wanted lately (for
    /// [`Admission::Frequency`](crate::Admission::Frequency)): the rounds of
    /// the eviction queue in which it was used (see [`crate::map::policy::frequency`]).
    pub freq: Freq,
    /// Where an identical copy is stored, if any: evicting it costs no write.
    pub stored: Option<Loc>,
    /// Failed to serialize: kept in memory, out of the eviction queue, until replaced.
    pub pinned: bool,
    /// Taken by an eviction batch that is writing it: out of the eviction
    /// queue, its weight counted in the chest's `inflight`.
    pub evicting: bool,
}

impl<V> Resident<V> {
    pub fn new(value: Arc<V>, weight: usize, tick: u64, stored: Option<Loc>) -> Box<Self> {
        Box::new(Self {
            value,
            weight,
            tick,
            freq: Freq::default(),
            stored,
            pinned: false,
            evicting: false,
        })
    }

    /// Its size for what reading it back costs: its stored copy's length,
    /// else (not stored yet) its weight.
    pub fn size(&self) -> u64 {
        self.stored
            .map_or(self.weight as u64, |loc| u64::from(loc.len))
    }
}

/// A key's state.
pub(crate) enum Slot<V> {
    Spilled(Loc),
    Loading(Arc<Load<V>>),
    Resident(Box<Resident<V>>),
}

impl<V> Slot<V> {
    /// The stored copy, if any.
    pub fn stored(&self) -> Option<Loc> {
        match self {
            Slot::Spilled(loc) => Some(*loc),
            Slot::Loading(load) => Some(load.loc),
            Slot::Resident(r) => r.stored,
        }
    }
}

/// One read of a spilled value, shared by every reader of the key.
pub(crate) struct Load<V> {
    pub loc: Loc,
    state: Mutex<LoadState<V>>,
    done: Condvar,
}

enum LoadState<V> {
    Pending,
    /// The value and its weight.
    Loaded(Arc<V>, usize),
    /// The read failed or was abandoned: each waiter tries again itself.
    Failed,
}

impl<V> Load<V> {
    pub fn new(loc: Loc) -> Arc<Self> {
        Arc::new(Self {
            loc,
            state: Mutex::new(LoadState::Pending),
            done: Condvar::new(),
        })
    }

    /// Publishes the outcome (the value and its weight; `None`: failed)
    /// and wakes the waiters.
    pub fn finish(&self, value: Option<(Arc<V>, usize)>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        if matches!(*state, LoadState::Pending) {
            *state = match value {
                Some((v, weight)) => LoadState::Loaded(v, weight),
                None => LoadState::Failed,
            };
        }
        drop(state);
        self.done.notify_all();
    }

    /// Waits for the outcome: the value and its weight, or `None` if the
    /// load failed.
    pub fn wait(&self) -> Option<(Arc<V>, usize)> {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        loop {
            match &*state {
                LoadState::Pending => {
                    state = self
                        .done
                        .wait(state)
                        .unwrap_or_else(PoisonError::into_inner)
                }
                LoadState::Loaded(v, weight) => return Some((Arc::clone(v), *weight)),
                LoadState::Failed => return None,
            }
        }
    }
}

/// A resident value that may be chosen for eviction (neither pinned nor
/// being evicted).
pub(crate) fn eligible<V>(slot: Option<&Slot<V>>) -> Option<&Resident<V>> {
    match slot {
        Some(Slot::Resident(r)) if !r.pinned && !r.evicting => Some(r),
        _ => None,
    }
}

/// [`eligible`], to change it.
pub(crate) fn eligible_mut<V>(slot: Option<&mut Slot<V>>) -> Option<&mut Resident<V>> {
    match slot {
        Some(Slot::Resident(r)) if !r.pinned && !r.evicting => Some(r),
        _ => None,
    }
}
