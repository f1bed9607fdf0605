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
