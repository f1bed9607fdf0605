//! A crew: the background threads of one kind a chest runs (its writers,
//! its readers) and their queue of jobs. The crew lives inside its owner's
//! state, under the owner's mutex, so the owner keeps its own bookkeeping
//! (batches not yet placed, jobs not yet done) beside it under one lock.
//!
//! A thread is started when a job is queued while more jobs wait than
//! threads idle (an idle thread that was notified counts as idle until it
//! takes the lock again), up to the owner's maximum. If none can run at
//! all, the job is handed back and the caller does the work itself.

use std::collections::VecDeque;
use std::sync::{Condvar, MutexGuard, PoisonError};
use std::thread::JoinHandle;

/// The threads and queue of one crew (see the [module](self)).
pub(crate) struct Crew<J> {
    /// Jobs queued and not yet taken by a thread.
    queue: VecDeque<J>,
    threads: Vec<JoinHandle<()>>,
    /// Threads waiting for a job.
    idle: usize,
    /// Set by [`Crew::stop`]: no new thread, no job taken.
    stopping: bool,
}

impl<J> Default for Crew<J> {
    fn default() -> Self {
        Self {
            queue: VecDeque::new(),
            threads: Vec::new(),
            idle: 0,
            stopping: false,
        }
    }
}

impl<J> Crew<J> {
    /// Whether [`Crew::stop`] was called.
    pub fn stopping(&self) -> bool {
        self.stopping
    }

    /// Queues `job`, starting a thread named `name` (up to `max`) to run
    /// the body `start` gives (none if it gives none) when more jobs wait
    /// than threads idle. Returns the job back if no thread runs at all:
    /// the caller does it. The caller notifies the crew's condition
    /// variable otherwise, once the lock is released.
    pub fn push<F: FnOnce() + Send + 'static>(
        &mut self,
        job: J,
        max: usize,
        name: &'static str,
        start: impl FnOnce() -> Option<F>,
    ) -> Option<J> {
        self.queue.push_back(job);
        if self.queue.len() > self.idle && self.threads.len() < max {
            if let Some(body) = start() {
                // The thread reports to the subscriber of the thread that starts it.
                let dispatch = tracing::dispatcher::get_default(|d| d.clone());
                let spawned = std::thread::Builder::new()
                    .name(name.into())
                    .spawn(move || tracing::dispatcher::with_default(&dispatch, body));
                match spawned {
                    Ok(handle) => self.threads.push(handle),
                    Err(e) => tracing::warn!(error = %e, thread = name, "cannot start a thread"),
                }
            }
        }
        if self.threads.is_empty() {
            self.queue.pop_back()
        } else {
            None
        }
    }

    /// Stops the crew: no job is taken any more. Returns its threads, to be
    /// joined, and the jobs still queued, for the owner to give up.
    pub fn stop(&mut self) -> (Vec<JoinHandle<()>>, VecDeque<J>) {
        self.stopping = true;
        (
            std::mem::take(&mut self.threads),
            std::mem::take(&mut self.queue),
        )
    }
}

/// On a crew's thread: waits for the next job of the crew that `crew` finds
/// in the owner's state `st` (woken through `work`); `None` once the crew
/// stops.
pub(crate) fn next_job<S, J>(
    mut st: MutexGuard<'_, S>,
    work: &Condvar,
    crew: fn(&mut S) -> &mut Crew<J>,
) -> Option<J> {
    loop {
        let c = crew(&mut st);
        if c.stopping {
            return None;
        }
        if let Some(job) = c.queue.pop_front() {
            return Some(job);
        }
        c.idle += 1;
        st = work.wait(st).unwrap_or_else(PoisonError::into_inner);
        crew(&mut st).idle -= 1;
    }
}

#[cfg(test)]
mod tests {
    use std::sync::{Arc, Condvar, Mutex};

    use super::*;

    type Shared = Arc<(Mutex<Crew<u32>>, Condvar, Mutex<Vec<u32>>)>;

    /// A crew whose threads record each job they take, until it stops.
    fn crew() -> Shared {
        Arc::new((
            Mutex::new(Crew::default()),
            Condvar::new(),
            Mutex::new(Vec::new()),
        ))
    }

    fn worker(shared: &Shared) -> impl FnOnce() -> Option<Box<dyn FnOnce() + Send>> + '_ {
        move || {
            let shared = Arc::clone(shared);
            Some(Box::new(move || {
                while let Some(job) = next_job(shared.0.lock().unwrap(), &shared.1, |c| c) {
                    shared.2.lock().unwrap().push(job);
                }
            }))
        }
    }

    #[test]
    fn with_no_thread_allowed_the_job_comes_back() {
        let shared = crew();
        let back = shared
            .0
            .lock()
            .unwrap()
            .push(7, 0, "test-crew", worker(&shared));
        assert_eq!(back, Some(7), "the caller does the job itself");
        assert!(shared.0.lock().unwrap().queue.is_empty());
    }

    #[test]
    fn a_thread_that_cannot_start_hands_the_job_back() {
        let mut c: Crew<u32> = Crew::default();
        let back = c.push(7, 4, "test-crew", || None::<fn()>);
        assert_eq!(back, Some(7));
        assert!(c.threads.is_empty() && c.queue.is_empty());
    }

    #[test]
    fn threads_start_up_to_the_maximum_and_take_every_job() {
        let shared = crew();
        for job in 0..10 {
            let back = shared
                .0
                .lock()
                .unwrap()
                .push(job, 2, "test-crew", worker(&shared));
            assert_eq!(back, None);
            shared.1.notify_one();
        }
        assert!(shared.0.lock().unwrap().threads.len() <= 2);
        // Stop once every job is taken: the queue drains, then the threads end.
        loop {
            let c = shared.0.lock().unwrap();
            if c.queue.is_empty() && c.idle == c.threads.len() {
                break;
            }
            drop(c);
            std::thread::yield_now();
        }
        let (threads, queued) = shared.0.lock().unwrap().stop();
        shared.1.notify_all();
        assert!(queued.is_empty());
        for t in threads {
            t.join().unwrap();
        }
        let mut done = shared.2.lock().unwrap().clone();
        done.sort_unstable();
        assert_eq!(done, (0..10).collect::<Vec<_>>());
    }

    #[test]
    fn a_stopped_crew_takes_no_job_and_returns_the_queued_ones() {
        let mut c: Crew<u32> = Crew::default();
        c.queue.extend([1, 2]);
        let (threads, queued) = c.stop();
        assert!(threads.is_empty());
        assert_eq!(Vec::from(queued), [1, 2]);
        assert!(c.stopping());
        let (m, cv) = (Mutex::new(c), Condvar::new());
        m.lock().unwrap().queue.push_back(3);
        assert_eq!(next_job(m.lock().unwrap(), &cv, |c| c), None);
    }
}
