//! Read-ahead: [`Chest::read_ahead`] starts loading spilled values on a
//! background reader and returns at once, so that a caller who knows which
//! keys come next keeps the backend busy while it works on the values it
//! has (the next window is on its way while this one is used).
//!
//! # States and locks
//!
//! A key handed to the reader is `Loading`, set under its shard's lock as a
//! `get` miss of a value to be kept sets it (see [`crate::map::entry`]): a `get`
//! of it waits for that
//! load instead of reading again, and an insert, update or remove replaces
//! the slot as for any load (the reader then sees that the slot no longer
//! holds its load, and installs nothing). The reader reads with no lock
//! held and installs each value under its shard's lock
//! ([`Inner::finish_load`]), kept (as [`Chest::prefetch`] keeps), a chunk
//! at a time with room reserved for it ([`Inner::load_kept`]).
//! `ReadAhead::state` is a leaf: nothing else is locked while it is held.
//!
//! # Errors
//!
//! A read that fails, or a value that cannot be decoded, puts the slot back
//! to `Spilled`: the `get` waiting for it (or the next one) reads it again
//! itself and returns the error, naming the key. The reader counts the
//! failure in the stats (`errors`) and logs it; nothing is lost, as a read
//! changes nothing stored.
//!
//! # Threads
//!
//! Up to [`READERS`] threads (`chest-reader`), started as jobs come: a few,
//! so that a caller who reads two or three windows ahead has them all on
//! their way, one window's last, slowest reads overlapping the next
//! windows' first (the backend bounds the requests in flight, S3 over all
//! calls). The chest's drop stops them: queued jobs are abandoned (their keys
//! go back to `Spilled`), the jobs being read complete, and the threads are
//! joined, so none outlives its chest.

use std::borrow::Borrow;
use std::hash::Hash;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::{Arc, PoisonError};

use crate::config::Key;
use crate::engine::crew::next_job;
use crate::engine::guard::panic_message;
use crate::engine::inner::Inner;
use crate::engine::load::LoadGuard;
use crate::engine::read_queue::{Job, ReadAhead};
use crate::map::entry::{Load, Slot};
use crate::stats::Counters;
use crate::value::serializer::Serializer;

/// The name of the reader threads.
pub(crate) const READER_THREAD: &str = "chest-reader";

/// Reader threads of a chest, at most.
pub(crate) const READERS: usize = 4;

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// Hands a job to the readers (or reads it now, if no reader can start).
    fn submit_reads(&self, job: Job<K, V>) {
        let mut st = self.ra.state();
        if st.crew.stopping() {
            drop(st);
            return abandon(self, job);
        }
        st.active += 1;
        let me = &self.me;
        let unstarted = st.crew.push(job, READERS, READER_THREAD, || {
            me.upgrade().map(|me| move || me.reader_loop())
        });
        drop(st);
        match unstarted {
            // No reader: this thread reads the job.
            Some(job) => self.read_job(job),
            None => self.ra.work.notify_one(),
        }
    }

    /// A reader thread: reads jobs until the chest stops it.
    fn reader_loop(self: Arc<Self>) {
        while let Some(job) = next_job(self.ra.state(), &self.ra.work, |st| &mut st.crew) {
            self.read_job(job);
        }
    }

    /// Reads one job's values and installs them (kept). A panic anywhere in
    /// it (a backend, a deserializer, a weigher, a key's `Debug` or `Hash`)
    /// is counted and logged, and the reader goes on: the guards, made
    /// first, put the keys not yet installed back to `Spilled` (their
    /// waiters read them themselves), and the job counts as done.
    fn read_job(&self, job: Job<K, V>) {
        let _done = JobDone { ra: &self.ra };
        let outcome = catch_unwind(AssertUnwindSafe(|| {
            let guards: Vec<LoadGuard<'_, K, V, S, K>> = job
                .loads
                .iter()
                .map(|(key, load)| LoadGuard {
                    chest: self,
                    key,
                    load: Some(Arc::clone(load)),
                })
                .collect();
            // Room for each chunk is made as it is read (see `load_kept`).
            for finished in self.load_kept(guards) {
                if let Err(e) = finished {
                    // The `get` of this key reads it again and reports it.
                    tracing::warn!(error = %e, "read-ahead");
                    Counters::add(&self.counters.errors, 1);
                }
            }
        }));
        if let Err(payload) = outcome {
            tracing::warn!(message = panic_message(&*payload), "read-ahead panicked");
            Counters::add(&self.counters.errors, 1);
        }
    }

    /// Waits until every read-ahead job submitted is done (for the
    /// invariant check of a quiescent chest).
    pub(crate) fn wait_read(&self) {
        let mut st = self.ra.state();
        while st.active > 0 {
            st = self
                .ra
                .done
                .wait(st)
                .unwrap_or_else(PoisonError::into_inner);
        }
    }

    /// Stops the readers: queued jobs are abandoned (their keys go back to
    /// `Spilled`), the ones being read complete, the threads are joined.
    /// Called by the chest's drop.
    pub(crate) fn stop_readers(&self) {
        let (threads, queued) = self.ra.state().crew.stop();
        self.ra.work.notify_all();
        for job in queued {
            abandon(self, job);
            self.ra.state().active -= 1;
        }
        self.ra.done.notify_all();
        for thread in threads {
            // A reader's panics are caught in `read_job`.
            let _ = thread.join();
        }
    }
}

/// Marks a job done when dropped (however its reading ended) and wakes
/// [`Inner::wait_read`].
struct JobDone<'a, K, V> {
    ra: &'a ReadAhead<K, V>,
}

impl<K, V> Drop for JobDone<'_, K, V> {
    fn drop(&mut self) {
        self.ra.state().active -= 1;
        self.ra.done.notify_all();
    }
}

/// Gives up a job not read: its keys go back to `Spilled` (the guards'
/// drop), and whoever waits for them reads them itself.
fn abandon<K: Key, V: Send + Sync + 'static, S: Serializer<V>>(
    chest: &Inner<K, V, S>,
    job: Job<K, V>,
) {
    for (key, load) in &job.loads {
        drop(LoadGuard::<'_, K, V, S, K> {
            chest,
            key,
            load: Some(Arc::clone(load)),
        });
    }
}

impl<K: Key, V: Send + Sync + 'static, S: Serializer<V>> Inner<K, V, S> {
    /// [`Chest::read_ahead`](crate::Chest::read_ahead), whose documentation says what it does.
    pub(crate) fn read_ahead(&self, keys: impl IntoIterator<Item = K>) -> usize {
        let keys: Vec<K> = keys.into_iter().collect();
        self.mark_used(keys.iter());
        let mut loads = Vec::new();
        for key in keys {
            let mut shard = self.shard(&key);
            if let Some(slot @ Slot::Spilled(_)) = shard.map.get_mut(&key) {
                let Slot::Spilled(loc) = *slot else {
                    unreachable!()
                };
                let load = Load::new(loc);
                *slot = Slot::Loading(Arc::clone(&load));
                drop(shard);
                loads.push((key, load));
            }
        }
        let started = loads.len();
        if started > 0 {
            self.submit_reads(Job { loads });
        }
        started
    }

    /// Marks the values of `keys` in memory as used now: when room is made
    /// for the others (a prefetch's, a read-ahead's), they go last.
    pub(crate) fn mark_used<'q, Q>(&self, keys: impl Iterator<Item = &'q Q>)
    where
        K: Borrow<Q>,
        Q: Hash + Eq + ?Sized + 'q,
    {
        for key in keys {
            let mut shard = self.shard(key);
            let tick = shard.tick();
            if let Some(Slot::Resident(r)) = shard.map.get_mut(key) {
                r.tick = tick;
            }
        }
    }
}
