//! The write-behind queue: the batches handed to the background writers
//! and not yet placed, their numbers, the errors not yet reported, and the
//! condition variables writers and callers wait on. Its rules (see
//! [`crate::engine::writer`] for who follows them): a batch is numbered when
//! it is submitted and stays *unplaced* until its outcomes are applied;
//! `state` is a leaf lock, nothing else is taken while it is held.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::engine::crew::Crew;
use crate::engine::locks::lock;
use crate::error::Error;
use crate::store::Loc;

/// A dirty value chosen to be written (by eviction or a flush).
pub(crate) struct Victim<K, V> {
    pub shard: usize,
    pub key: K,
    /// Where the key was in its shard's index (a hint, see
    /// [`Index::get_hinted`](crate::map::index::Index::get_hinted)).
    pub at: u32,
    pub value: Arc<V>,
    pub weight: usize,
}

/// What became of a victim's value.
pub(crate) enum Outcome {
    Written(Loc),
    Unserializable,
    WriteFailed,
}

/// Background errors kept for the caller, at most (the rest are counted in
/// the stats and logged).
pub(crate) const MAX_KEPT_ERRORS: usize = 64;

/// The background writers of one chest: their queue of batches, and what
/// callers wait on.
pub(crate) struct WriteBehind<K, V> {
    state: Mutex<State<K, V>>,
    /// Writers wait here for batches.
    pub work: Condvar,
    /// Callers wait here for batches to be placed (backpressure, flush).
    pub placed: Condvar,
    /// Whether `State::errors` holds any: set and cleared under the mutex
    /// (by [`WriteBehind::keep_errors`] and [`WriteBehind::take_errors`]),
    /// read without it, so that a call with nothing to report (every
    /// insert) does not take the mutex the writers take, and the cache
    /// line it lives in, from them.
    errors_kept: AtomicBool,
    /// The list of the last batch placed, empty, for the next batch (see
    /// [`WriteBehind::victim_list`]). A leaf lock.
    spare: Mutex<Vec<Victim<K, V>>>,
}

pub(crate) struct State<K, V> {
    /// The writer threads and the batches submitted and not yet taken by
    /// one; stopped by the chest's drop (queued batches are cancelled).
    pub crew: Crew<Job<K, V>>,
    /// Numbers of the batches submitted and not yet placed.
    pub unplaced: BTreeSet<u64>,
    pub next_seq: u64,
    /// The number of the last batch that failed (in part), if any.
    pub last_failed: Option<u64>,
    /// Errors of batches not yet reported to a caller.
    errors: Vec<Error>,
}

/// One eviction batch.
pub(crate) struct Job<K, V> {
    pub seq: u64,
    pub victims: Vec<Victim<K, V>>,
}

impl<K, V> Default for WriteBehind<K, V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                crew: Crew::default(),
                unplaced: BTreeSet::new(),
                next_seq: 0,
                last_failed: None,
                errors: Vec::new(),
            }),
            work: Condvar::new(),
            placed: Condvar::new(),
            errors_kept: AtomicBool::new(false),
            spare: Mutex::new(Vec::new()),
        }
    }
}

impl<K, V> WriteBehind<K, V> {
    pub(crate) fn state(&self) -> MutexGuard<'_, State<K, V>> {
        lock(&self.state)
    }

    /// Keeps `errors` of a batch for the caller (at most
    /// [`MAX_KEPT_ERRORS`] in all), under `st`, this queue's state.
    pub(crate) fn keep_errors(&self, st: &mut State<K, V>, errors: Vec<Error>) {
        let room = MAX_KEPT_ERRORS.saturating_sub(st.errors.len());
        st.errors.extend(errors.into_iter().take(room));
        self.errors_kept
            .store(!st.errors.is_empty(), Ordering::Release);
    }

    /// The errors kept and not yet reported (and forgets them); without
    /// taking the mutex when there are none.
    pub(crate) fn take_errors(&self) -> Vec<Error> {
        if !self.errors_kept.load(Ordering::Acquire) {
            return Vec::new();
        }
        let mut st = self.state();
        self.errors_kept.store(false, Ordering::Release);
        std::mem::take(&mut st.errors)
    }

    /// A list for a batch of victims: the last batch's list, given back
    /// empty when it was placed, if there is one (else a new one). A batch
    /// of small values is thousands of victims long; a list allocated for
    /// each batch by the thread that evicts and freed by the writer is a
    /// large block that glibc's `malloc` serves only after merging every
    /// small block the writer freed meanwhile (the values of the batch
    /// before): 7% of W2's insert instructions, and the small blocks no
    /// longer at hand for the next values.
    pub(crate) fn victim_list(&self) -> Vec<Victim<K, V>> {
        std::mem::take(&mut *lock(&self.spare))
    }

    /// Gives back a batch's list once its victims are placed, emptied here
    /// if it is not yet (a victim's handle held on would keep its value in
    /// memory past its eviction: a caller that dropped its own handles
    /// expects it gone, and Python's buffer finds a value still alive
    /// through its weak references); of two lists the larger is kept.
    pub(crate) fn give_back(&self, mut list: Vec<Victim<K, V>>) {
        list.clear();
        let mut spare = lock(&self.spare);
        if list.capacity() > spare.capacity() {
            *spare = list;
        }
    }

    /// Wakes the callers waiting for room: called after a placement that
    /// freed memory, with no shard lock held.
    pub(crate) fn wake(&self) {
        drop(self.state());
        self.placed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn victim(key: u64) -> Victim<u64, Vec<u8>> {
        Victim {
            shard: 0,
            key,
            at: 0,
            value: Arc::new(vec![1; 8]),
            weight: 8,
        }
    }

    #[test]
    fn errors_kept_are_taken_once_and_at_most_max_kept() {
        let wb: WriteBehind<u64, Vec<u8>> = WriteBehind::default();
        assert!(wb.take_errors().is_empty());
        let error = |i: usize| Error::Closed {
            location: format!("memory://{i}"),
            operation: "insert".into(),
        };
        let mut st = wb.state();
        wb.keep_errors(&mut st, (0..MAX_KEPT_ERRORS + 3).map(error).collect());
        drop(st);
        assert_eq!(wb.take_errors().len(), MAX_KEPT_ERRORS);
        assert!(wb.take_errors().is_empty(), "taken once");
        let mut st = wb.state();
        wb.keep_errors(&mut st, Vec::new());
        wb.keep_errors(&mut st, vec![error(1)]);
        drop(st);
        assert_eq!(wb.take_errors().len(), 1);
    }

    #[test]
    fn a_placed_batchs_list_serves_the_next_batch_empty() {
        let wb: WriteBehind<u64, Vec<u8>> = WriteBehind::default();
        let mut list = wb.victim_list();
        assert_eq!(list.capacity(), 0, "none given back yet");
        list.extend((0..1000).map(victim));
        let value = Arc::clone(&list[0].value);
        let first = list.as_ptr();
        wb.give_back(list);
        assert_eq!(
            Arc::strong_count(&value),
            1,
            "its values dropped when given back"
        );
        let mut next = wb.victim_list();
        assert!(next.is_empty());
        assert_eq!(next.as_ptr(), first, "the same allocation");
        // Taken: the next one is new, and of two the larger stays.
        let mut other = wb.victim_list();
        assert_eq!(other.capacity(), 0);
        other.push(victim(1));
        next.push(victim(2));
        wb.give_back(next);
        wb.give_back(other);
        let kept = wb.victim_list();
        assert_eq!(kept.as_ptr(), first);
    }
}
