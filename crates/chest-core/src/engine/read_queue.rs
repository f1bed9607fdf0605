//! The read-ahead queue: the jobs handed to the background readers and not
//! yet done, and the condition variables readers and callers wait on (see
//! [`crate::engine::readahead`] for who does what). `state` is a leaf lock.

use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use crate::engine::crew::Crew;
use crate::engine::locks::lock;
use crate::map::entry::Load;

/// The background readers of one chest: their queue of jobs.
pub(crate) struct ReadAhead<K, V> {
    state: Mutex<State<K, V>>,
    /// Readers wait here for jobs.
    pub work: Condvar,
    /// `Inner::wait_read` waits here for the jobs to be done.
    pub done: Condvar,
}

pub(crate) struct State<K, V> {
    /// The reader threads and the jobs not yet taken by one; stopped by the
    /// chest's drop (queued jobs are abandoned).
    pub crew: Crew<Job<K, V>>,
    /// Jobs submitted and not yet done (queued or being read).
    pub active: usize,
}

/// Keys made `Loading` by one read-ahead, with their loads.
pub(crate) struct Job<K, V> {
    pub loads: Vec<(K, Arc<Load<V>>)>,
}

impl<K, V> Default for ReadAhead<K, V> {
    fn default() -> Self {
        Self {
            state: Mutex::new(State {
                crew: Crew::default(),
                active: 0,
            }),
            work: Condvar::new(),
            done: Condvar::new(),
        }
    }
}

impl<K, V> ReadAhead<K, V> {
    pub(crate) fn state(&self) -> MutexGuard<'_, State<K, V>> {
        lock(&self.state)
    }
}
